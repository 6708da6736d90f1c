"""Mini-batch shuffles without a sort of the ratings.

A fit puts its data once in a pseudo-random order (:func:`fit_order`, a stride
order modulo the data size); each epoch then takes contiguous windows of it from
a random rotation, the batches in a random order (:func:`epoch_windows`: only
the few batches are sorted, by random keys).

XLA's CPU sort of a permutation took 33 ms per 80k ratings, most of an ML-100k
epoch (benchmarks/RESULTS.md); these orders cost a few element-wise passes. The
data size may be traced (ratings padded to a bucket size): the order of ``n``
entries is the same whether ``n`` is known when tracing or not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["stride_order", "fit_order", "epoch_windows"]


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


def fit_order(
  key: jax.Array,
  n_total: int | jax.Array,
  batch_size: int,
  capacity: int | None = None,
) -> jax.Array:
  """A fit's one shuffled order of its data, with room for any batch window.

  ``[capacity + batch_size]`` indices into the data: position ``x`` holds
  ``stride_order(key, n_total)[x mod n_total]``. Gathered once, the data in this
  order let every mini-batch of every epoch be a contiguous window
  (:func:`epoch_windows`) from a start below ``n_total``, with no per-batch
  gather: strided reads of a large array cost a cache (and page) miss per
  rating, a third of a one-model epoch on 900,000 ratings
  (``benchmarks/RESULTS.md``, "Contiguous mini-batches").

  ``n_total`` may be traced if ``capacity`` (static, ``>= n_total``) bounds it;
  the first ``n_total + batch_size`` positions are those of the static order.
  """
  capacity = n_total if capacity is None else capacity
  order = stride_order(key, n_total, capacity)
  x = jnp.arange(capacity + batch_size, dtype=jnp.int32)
  return order[x % jnp.asarray(n_total, jnp.int32)]


def epoch_windows(
  key: jax.Array,
  n_total: int | jax.Array,
  batch_size: int,
  capacity: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """One epoch's mini-batches as windows of :func:`fit_order`: ``(starts, counts)``.

  The epoch visits the positions ``r, r + 1, ..., r + n_total - 1`` (mod
  ``n_total``) of the fit's order from a random rotation ``r``, cut into
  batches of ``batch_size``, the batches in a random order: batch ``j`` (in
  that order) is the window of ``batch_size`` positions from ``starts[j]``, of
  which the first ``counts[j]`` are data (the short last batch has fewer; the
  rest of its window must weigh 0). Every datum is in exactly one batch. The
  rotation moves the batch boundaries from epoch to epoch.

  ``n_total`` may be traced if ``capacity`` (static, ``>= n_total``) bounds it:
  the result then has ``ceil(capacity / batch_size)`` slots, the first
  ``ceil(n_total / batch_size)`` of them the batches, exactly as an untraced
  ``n_total`` gives them, and the rest with count 0.
  """
  rotation_key, batch_key = jax.random.split(key)
  capacity = n_total if capacity is None else capacity
  n_slots = -(-capacity // batch_size)
  n = jnp.asarray(n_total, jnp.int32)
  n_batches = -(-n // batch_size)
  rotation = jax.random.randint(rotation_key, (), 0, n)
  # The batches in a random order: a sort of n_slots random keys, the empty
  # slots (after the data) last.
  rank = jax.random.bits(batch_key, (n_slots,), jnp.uint32) >> 1
  rank = jnp.where(jnp.arange(n_slots) < n_batches, rank, jnp.uint32(2**31))
  first = jnp.argsort(rank, stable=True).astype(jnp.int32) * batch_size
  starts = (rotation + jnp.minimum(first, n)) % n
  return starts, jnp.clip(n - first, 0, batch_size)
