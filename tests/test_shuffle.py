"""mfjax.shuffle: mini-batch orders without a sort."""

import jax
import numpy as np
import pytest

from mfjax import shuffle

# One program per shape, instead of one per operation and shape.
stride_order = jax.jit(shuffle.stride_order, static_argnums=1)
epoch_batches = jax.jit(shuffle.epoch_batches, static_argnums=(1, 2))

_PRIMES = [p for p in range(2, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


@pytest.mark.parametrize("n", [-5, 0, 1, 2, 3, 10, 97, 98, 1000, 1998])
def test_next_prime_is_the_smallest_prime_at_least_n(n):
  assert shuffle.next_prime(n) == min(p for p in _PRIMES if p >= max(n, 2))


def test_next_prime_of_a_large_n():
  assert shuffle.next_prime(2**31 - 2) == 2**31 - 1  # A Mersenne prime.
  assert shuffle.next_prime(1_000_000) == 1_000_003


@pytest.mark.parametrize("modulus", [2, 3, 101, 80021])
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
      assert int(modulus**0.5) // 2 <= stride <= int(modulus**0.5)
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
