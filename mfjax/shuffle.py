"""Mini-batch shuffles without a sort of the ratings: a stride order modulo the
data size (only the few batches are sorted, by random keys).

XLA's CPU sort of a permutation took 33 ms per 80k ratings, most of an ML-100k
epoch (benchmarks/RESULTS.md); these orders cost a few element-wise passes. The
data size may be traced (ratings padded to a bucket size): the order of ``n``
entries is the same whether ``n`` is known when tracing or not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["stride_order", "epoch_batches"]


def _coprime_below(stride: jax.Array, modulus: jax.Array) -> jax.Array:
  """The largest ``s <= stride`` with ``gcd(s, modulus) == 1`` (1 always is)."""

  def gcd(a, b):
    return jax.lax.while_loop(
      lambda ab: ab[1] != 0, lambda ab: (ab[1], ab[0] % ab[1]), (a, b)
    )[0]

  return jax.lax.while_loop(lambda s: gcd(s, modulus) != 1, lambda s: s - 1, stride)


def stride_order(
  key: jax.Array, modulus: int | jax.Array, size: int | None = None
) -> jax.Array:
  """A pseudo-random permutation of ``range(modulus)`` with no sort.

  Position ``x`` visits ``(start + stride·x) mod modulus``, a bijection for any
  stride coprime with ``modulus``. ``start`` is uniform; the stride is drawn
  from ``[sqrt(m)/2, sqrt(m)]`` and stepped down to the nearest coprime, so
  that one batch strides across the whole data (and so that Schrage's method
  computes ``stride·x mod m`` in int32 without overflow). Consecutive positions
  are ``stride`` apart, so a batch of ratings sorted by user still holds users
  from everywhere.

  ``modulus`` may be traced if ``size`` (static, ``>= modulus``) gives the
  length of the result; positions from ``modulus`` on hold ``modulus``.
  """
  size = modulus if size is None else size
  modulus = jnp.asarray(modulus, jnp.int32)
  root = jnp.maximum(jnp.sqrt(modulus.astype(jnp.float32)).astype(jnp.int32), 1)
  # float32 sqrt can miss the integer root by one either way; fix it without
  # squaring (which could overflow int32).
  root = jnp.where(root > modulus // root, root - 1, root)
  root = jnp.where(root + 1 <= modulus // (root + 1), root + 1, root)
  start_key, stride_key = jax.random.split(key)
  start = jax.random.randint(start_key, (), 0, modulus)
  stride = jax.random.randint(stride_key, (), jnp.maximum(root // 2, 1), root + 1)
  stride = _coprime_below(stride, modulus)
  # Schrage: s·x mod m = s·(x mod q) − r·(x div q), with q = m div s, r = m mod s,
  # exact in int32 when r < q, which s <= sqrt(m) guarantees.
  x = jnp.arange(size, dtype=jnp.int32)
  q, r = modulus // stride, modulus % stride
  product = stride * (x % q) - r * (x // q)
  product = jnp.where(product < 0, product + modulus, product)
  shifted = product - (modulus - start)  # In (-m, m): no int32 overflow.
  visits = jnp.where(shifted < 0, shifted + modulus, shifted)
  return jnp.where(x < modulus, visits, modulus)


def epoch_batches(
  key: jax.Array,
  n_total: int | jax.Array,
  batch_size: int,
  capacity: int | None = None,
) -> jax.Array:
  """One epoch's mini-batches: ``[n_batches, batch_size]`` indices into the data.

  Every index in ``range(n_total)`` appears once; the short last batch is padded
  with ``n_total``. The batches are shuffled too.

  ``n_total`` may be traced if ``capacity`` (static, ``>= n_total``) bounds it:
  the result then has ``ceil(capacity / batch_size)`` rows, the first
  ``ceil(n_total / batch_size)`` of them the batches, exactly as an untraced
  ``n_total`` gives them, and the rest all ``n_total``.
  """
  order_key, batch_key = jax.random.split(key)
  capacity = n_total if capacity is None else capacity
  n_slots = -(-capacity // batch_size)
  order = stride_order(order_key, n_total, n_slots * batch_size)
  order = order.reshape(n_slots, batch_size)
  # The batches in a random order: a sort of n_slots random keys, the empty
  # slots (after the data) last.
  n_batches = -(-jnp.asarray(n_total) // batch_size)
  rank = jax.random.bits(batch_key, (n_slots,), jnp.uint32) >> 1
  rank = jnp.where(jnp.arange(n_slots) < n_batches, rank, jnp.uint32(2**31))
  return order[jnp.argsort(rank, stable=True)]
