"""mfjax.core.shuffle: mini-batch orders without a sort."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfjax.core import shuffle

# One program per shape, instead of one per operation and shape.
stride_order = jax.jit(shuffle.stride_order, static_argnums=(1, 2))
fit_order = jax.jit(shuffle.fit_order, static_argnums=(1, 2, 3))
traced_fit_order = jax.jit(shuffle.fit_order, static_argnums=(2, 3))
epoch_windows = jax.jit(shuffle.epoch_windows, static_argnums=(1, 2, 3))
traced_windows = jax.jit(shuffle.epoch_windows, static_argnums=(2, 3))


@pytest.mark.parametrize("modulus", [2, 3, 101, 80021, 80000, 4096])
@pytest.mark.slow
def test_stride_order_is_a_permutation_that_changes_with_the_key(modulus):
  orders = [
    np.asarray(stride_order(jax.random.key(seed), modulus)) for seed in range(2, 5)
  ]
  for order in orders:
    np.testing.assert_array_equal(np.sort(order), np.arange(modulus))
  if modulus > 100:  # Three keys, three orders (start and stride both vary).
    assert len({tuple(order[:3]) for order in orders}) == 3
    # Consecutive visits are one stride apart, the stride in [sqrt(m)/2, sqrt(m)].
    for order in orders:
      stride = (order[1] - order[0]) % modulus
      assert 1 <= stride <= int(modulus**0.5)
      assert math.gcd(stride, modulus) == 1
      np.testing.assert_array_equal(np.diff(order) % modulus, stride)


def _positions(starts, counts):
  """The positions of the fit's order that each window's data cover."""
  return [s + np.arange(c) for s, c in zip(starts, counts, strict=True)]


@pytest.mark.parametrize(
  "n, batch_size",
  [
    (1, 1),
    (10, 3),
    (97, 10),
    pytest.param(1000, 1000, marks=pytest.mark.slow),
    pytest.param(1000, 999, marks=pytest.mark.slow),
  ],
)
@pytest.mark.slow
def test_epoch_windows_cover_every_datum_once(n, batch_size):
  key = jax.random.key(n)
  order = np.asarray(fit_order(key, n, batch_size, None))
  assert order.shape == (n + batch_size,)
  # Position x of the fit's order is the stride order's x mod n.
  np.testing.assert_array_equal(
    order, np.asarray(stride_order(key, n))[np.arange(n + batch_size) % n]
  )
  starts, counts = map(np.asarray, epoch_windows(jax.random.key(n + 1), n, batch_size))
  assert starts.shape == counts.shape == (-(-n // batch_size),)
  assert np.all((0 <= starts) & (starts < n)) and counts.sum() == n
  assert (counts < batch_size).sum() <= 1  # One short batch at most.
  data = np.concatenate([order[p] for p in _positions(starts, counts)])
  np.testing.assert_array_equal(np.sort(data), np.arange(n))


def test_epoch_windows_rotate_and_shuffle_between_epochs():
  n, batch_size = 97, 10
  rotations, orders = [], []
  for k in (0, 1):
    starts = np.asarray(epoch_windows(jax.random.key(k), n, batch_size)[0])
    # The windows are batch_size apart from one rotation (the first batch's start).
    fits = [
      r for r in starts
      if np.array_equal(np.sort((starts - r) % n), np.arange(0, n, batch_size))
    ]  # fmt: skip
    assert len(fits) == 1
    rotations.append(int(fits[0]))
    orders.append(((starts - fits[0]) % n) // batch_size)
  assert rotations[0] != rotations[1]  # The boundaries move,
  assert not np.array_equal(orders[0], orders[1])  # and the batches are reordered.


@pytest.mark.parametrize(
  "n, batch_size", [(1, 1), (97, 10), (80000, 4096), (90570, 4096)]
)
@pytest.mark.slow
def test_a_traced_size_gives_the_same_windows_then_empty_slots(n, batch_size):
  capacity = 98304
  key = jax.random.key(7)
  static_order = np.asarray(fit_order(key, n, batch_size, None))
  traced_order = np.asarray(traced_fit_order(key, jnp.int32(n), batch_size, capacity))
  assert traced_order.shape == (capacity + batch_size,)
  np.testing.assert_array_equal(traced_order[: n + batch_size], static_order)
  static = np.asarray(epoch_windows(key, n, batch_size, None))
  traced = np.asarray(traced_windows(key, jnp.int32(n), batch_size, capacity))
  assert traced.shape == (2, -(-capacity // batch_size))
  np.testing.assert_array_equal(traced[:, : static.shape[1]], static)
  assert np.all(traced[1, static.shape[1] :] == 0)


def test_stride_order_of_a_traced_modulus_over_a_larger_size():
  key = jax.random.key(3)
  order = np.asarray(jax.jit(shuffle.stride_order, static_argnums=2)(key, 1000, 1200))
  np.testing.assert_array_equal(order[:1000], np.asarray(stride_order(key, 1000, None)))
  np.testing.assert_array_equal(np.sort(order[:1000]), np.arange(1000))
  assert np.all(order[1000:] == 1000)
