"""Mini-batch shuffles without a sort: a stride order modulo a prime.

XLA's CPU sort of a permutation took 33 ms per 80k ratings, most of an ML-100k
epoch (benchmarks/RESULTS.md); these orders cost a few element-wise passes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["next_prime", "stride_order", "epoch_batches"]


def next_prime(n: int) -> int:
  """The smallest prime ``>= max(n, 2)`` (host, trial division; n < 2**31)."""
  candidate = max(int(n), 2)
  while any(candidate % d == 0 for d in range(2, int(candidate**0.5) + 1)):
    candidate += 1
  return candidate


def stride_order(key: jax.Array, modulus: int) -> jax.Array:
  """A pseudo-random permutation of ``range(modulus)`` (a prime) with no sort.

  Position ``x`` visits ``(start + stride·x) mod modulus``, a bijection for any
  stride in ``[1, modulus)``. ``start`` is uniform; the stride is drawn from
  ``[sqrt(m)/2, sqrt(m)]`` so that one batch strides across the whole data (and
  so that Schrage's method computes ``stride·x mod m`` in int32 without
  overflow). Consecutive positions are ``stride`` apart, so a batch of ratings
  sorted by user still holds users from everywhere.
  """
  root = max(int(modulus**0.5), 1)
  start_key, stride_key = jax.random.split(key)
  start = jax.random.randint(start_key, (), 0, modulus)
  stride = jax.random.randint(stride_key, (), max(root // 2, 1), root + 1)
  # Schrage: s·x mod m = s·(x mod q) − r·(x div q), with q = m div s, r = m mod s,
  # exact in int32 when r < q, which s <= sqrt(m) guarantees.
  x = jnp.arange(modulus, dtype=jnp.int32)
  q, r = modulus // stride, modulus % stride
  product = stride * (x % q) - r * (x // q)
  product = jnp.where(product < 0, product + modulus, product)
  shifted = product - (modulus - start)  # In (-m, m): no int32 overflow.
  return jnp.where(shifted < 0, shifted + modulus, shifted)


def epoch_batches(key: jax.Array, n_total: int, batch_size: int) -> jax.Array:
  """One epoch's mini-batches: ``[n_batches, batch_size]`` indices into the data.

  Every index in ``range(n_total)`` appears once; the short last batch is padded
  with ``n_total``. The batches are shuffled too.
  """
  order_key, batch_key = jax.random.split(key)
  n_batches = -(-n_total // batch_size)
  visits = stride_order(order_key, next_prime(n_total))
  # Drop the visits past the data (the prime modulus > n_total), keeping the
  # order: a cumulative count and a scatter, no sort.
  keep = visits < n_total
  slot = jnp.where(keep, jnp.cumsum(keep) - 1, n_batches * batch_size)
  order = jnp.full(n_batches * batch_size, n_total, visits.dtype)
  order = order.at[slot].set(visits, mode="drop").reshape(n_batches, batch_size)
  return order[jax.random.permutation(batch_key, n_batches)]
