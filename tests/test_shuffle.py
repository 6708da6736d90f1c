"""mfjax.shuffle: mini-batch orders without a sort."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfjax import shuffle

# One program per shape, instead of one per operation and shape.
stride_order = jax.jit(shuffle.stride_order, static_argnums=(1, 2))
epoch_batches = jax.jit(shuffle.epoch_batches, static_argnums=(1, 2, 3))
traced_batches = jax.jit(shuffle.epoch_batches, static_argnums=(2, 3))


@pytest.mark.parametrize("modulus", [2, 3, 101, 80021, 80000, 4096])
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
def test_epoch_batches_visit_every_index_once(n, batch_size):
  batches = np.asarray(epoch_batches(jax.random.key(n), n, batch_size))
  assert batches.shape == (-(-n // batch_size), batch_size)
  visited = batches[batches < n]
  np.testing.assert_array_equal(np.sort(visited), np.arange(n))
  assert np.all(batches[batches >= n] == n)  # Padding points at row n.


def test_epoch_batches_differ_between_epochs():
  epochs = [np.asarray(epoch_batches(jax.random.key(k), 97, 10)) for k in (0, 1)]
  assert not np.array_equal(epochs[0], epochs[1])
  for batches in epochs:  # The short last batch is shuffled among the others.
    assert np.sum(batches == 97) == 3


@pytest.mark.parametrize(
  "n, batch_size", [(1, 1), (97, 10), (80000, 4096), (90570, 4096)]
)
def test_a_traced_size_gives_the_same_batches_then_empty_slots(n, batch_size):
  capacity = 98304
  key = jax.random.key(7)
  static = np.asarray(epoch_batches(key, n, batch_size, None))
  traced = np.asarray(traced_batches(key, jnp.int32(n), batch_size, capacity))
  assert traced.shape == (-(-capacity // batch_size), batch_size)
  np.testing.assert_array_equal(traced[: len(static)], static)
  assert np.all(traced[len(static) :] == n)


def test_stride_order_of_a_traced_modulus_over_a_larger_size():
  key = jax.random.key(3)
  order = np.asarray(jax.jit(shuffle.stride_order, static_argnums=2)(key, 1000, 1200))
  np.testing.assert_array_equal(order[:1000], np.asarray(stride_order(key, 1000, None)))
  np.testing.assert_array_equal(np.sort(order[:1000]), np.arange(1000))
  assert np.all(order[1000:] == 1000)
