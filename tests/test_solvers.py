"""Training on sparse Ratings: agreement with dense, mini-batches, validation."""

import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mfjax
import mfjax.train  # noqa: F401
from tests.conftest import planted_matrix

train_lib = sys.modules["mfjax.train"]


def _data(seed=0, n_users=30, n_items=20, density=0.5):
  full, matrix, observed = planted_matrix(seed, n_users, n_items, 3, density)
  return full, matrix, observed, mfjax.ratings_from_dense(matrix)


def test_sparse_and_dense_losses_and_gradients_agree():
  _, matrix, _, ratings = _data()
  params = mfjax.init_params(jax.random.key(0), 30, 20, 3)._replace(mean=jnp.float32(3))
  for l2, l2_bias in ((0.0, None), (0.3, 0.05)):
    dense = mfjax.loss(params, matrix, l2=l2, l2_bias=l2_bias)
    sparse = mfjax.loss(params, ratings, l2=l2, l2_bias=l2_bias)
    np.testing.assert_allclose(sparse, dense, rtol=1e-5)
    g_dense = jax.grad(mfjax.loss)(params, matrix, l2=l2, l2_bias=l2_bias)
    g_sparse = jax.grad(mfjax.loss)(params, ratings, l2=l2, l2_bias=l2_bias)
    chex.assert_trees_all_close(g_sparse, g_dense, rtol=1e-4, atol=1e-6)


def test_sparse_and_dense_training_agree():
  _, matrix, _, ratings = _data(1)
  params = mfjax.init_params(jax.random.key(1), 30, 20, 3)
  opt = optax.adam(0.05)
  dense = mfjax.train(params, matrix, optimizer=opt, steps=30, l2=0.1)
  sparse = mfjax.train(params, ratings, optimizer=opt, steps=30, l2=0.1)
  np.testing.assert_allclose(sparse.losses, dense.losses, rtol=1e-4)
  chex.assert_trees_all_close(
    sparse.best_params, dense.best_params, rtol=1e-3, atol=1e-4
  )


def test_one_batch_per_epoch_equals_full_batch():
  _, _, _, ratings = _data(2)
  params = mfjax.init_params(jax.random.key(2), 30, 20, 3)
  opt = optax.adam(0.05)
  full = mfjax.train(params, ratings, optimizer=opt, steps=10)
  batched = mfjax.train(
    params,
    ratings,
    optimizer=opt,
    steps=10,
    batch_size=len(ratings) + 7,
    key=jax.random.key(0),
  )
  np.testing.assert_allclose(batched.losses, full.losses, rtol=1e-4)
  chex.assert_trees_all_close(batched.params, full.params, rtol=1e-3, atol=1e-5)


def test_mini_batches_recover_planted_synthetic_model():
  ratings, planted = mfjax.synthetic_ratings(
    jax.random.key(3), 300, 200, 30_000, 4, noise=0.1, popularity=0.5, scale=None
  )
  train, test = mfjax.train_test_split(ratings, test_fraction=0.1, seed=0)
  params = mfjax.init_params(jax.random.key(4), 300, 200, 4)
  result = jax.jit(
    lambda p, k: mfjax.train(
      p, train, optimizer=optax.adam(0.01), steps=40, batch_size=512, key=k, l2=0.1
    )
  )(params, jax.random.key(5))
  err = float(mfjax.rmse(result.best_params, test))
  baseline = float(jnp.std(test.values))
  assert err < 0.3 and err < 0.25 * baseline
  assert float(result.losses[-1]) < 0.25 * float(result.losses[0])


def test_validation_picks_best_params_and_early_stopping_stops():
  full, matrix, observed, ratings = _data(4, 40, 30, 0.5)
  train, valid = mfjax.train_test_split(ratings, test_fraction=0.2, seed=0)
  params = mfjax.init_params(jax.random.key(4), 40, 30, 8)
  # Rank 8 on a rank-3 problem without regularisation overfits: validation turns up.
  result = mfjax.train(
    params,
    train,
    optimizer=optax.adam(0.05),
    steps=200,
    validation_data=valid,
    patience=5,
  )
  val = np.asarray(result.validation_rmse)
  stop = int(result.stopped_step)
  assert stop > 0 and np.all(np.isnan(val[stop:])) and np.all(np.isfinite(val[:stop]))
  best = int(np.nanargmin(val))
  assert stop == best + 6  # Five epochs without improvement, then stop.
  np.testing.assert_allclose(
    mfjax.rmse(result.best_params, valid), val[best], rtol=1e-5
  )
  np.testing.assert_allclose(result.best_loss, result.losses[best], rtol=1e-6)


def test_train_under_jit_with_ratings_closed_over_and_vmap_over_keys():
  _, _, _, ratings = _data(5)

  def run(key):
    params = mfjax.init_params(key, 30, 20, 3)
    return mfjax.train(params, ratings, steps=5, batch_size=64, key=key)

  batched = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), 3))
  assert batched.losses.shape == (3, 5)
  single = run(jax.random.split(jax.random.key(0), 3)[1])
  np.testing.assert_allclose(batched.losses[1], single.losses, rtol=1e-4)


def test_ensemble_params_average_the_models():
  _, _, _, ratings = _data(6)
  keys = jax.random.split(jax.random.key(6), 3)
  stacked = jax.vmap(
    lambda k: (
      mfjax.train(mfjax.init_params(k, 30, 20, 3), ratings, steps=20).best_params
    )
  )(keys)
  merged = mfjax.ensemble_params(stacked)
  assert merged.user_factors.shape == (30, 9)
  each = jax.vmap(lambda p: mfjax.predict(p))(stacked)
  np.testing.assert_allclose(mfjax.predict(merged), each.mean(0), rtol=1e-5, atol=1e-5)


def test_rmse_and_mae_match_numpy_with_clip():
  _, _, _, ratings = _data(7)
  params = mfjax.init_params(jax.random.key(7), 30, 20, 3, scale=1.0)._replace(
    mean=jnp.float32(3.5)
  )
  pred = np.clip(np.asarray(mfjax.predict(params, ratings.users, ratings.items)), 1, 5)
  err = pred - np.asarray(ratings.values)
  np.testing.assert_allclose(
    mfjax.rmse(params, ratings, clip=(1, 5)), np.sqrt(np.mean(err**2)), rtol=1e-5
  )
  np.testing.assert_allclose(
    mfjax.mae(params, ratings, clip=(1, 5)), np.mean(np.abs(err)), rtol=1e-5
  )


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(batch_size=8), ValueError, "batch_size needs key="),
    (
      dict(batch_size=0, key=jax.random.key(0)),
      ValueError,
      "batch_size must be an int >= 1",
    ),
    (dict(patience=3), ValueError, "patience .* needs validation_data"),
    (dict(mask=np.ones((30, 20))), ValueError, "mask applies to a dense matrix only"),
    (dict(l2_bias=-1.0), ValueError, "l2_bias must be a finite number >= 0"),
    (
      dict(
        validation_data=mfjax.Ratings(
          np.array([0]), np.array([0]), np.array([3.0]), 5, 5
        )
      ),
      ValueError,
      r"validation_data must have n_users, n_items = \(30, 20\)",
    ),
  ],
)
def test_sparse_train_bad_settings(kwargs, error, match):
  _, _, _, ratings = _data()
  params = mfjax.init_params(jax.random.key(0), 30, 20, 3)
  with pytest.raises(error, match=match):
    mfjax.train(params, ratings, steps=3, **kwargs)


def test_bad_ratings_are_caught():
  params = mfjax.init_params(jax.random.key(0), 3, 4, 2)
  bad = [
    (
      mfjax.Ratings(np.array([0, 3]), np.array([0, 1]), np.array([1.0, 2.0]), 3, 4),
      r"data.users must lie in \[0, 3\); got index 3",
    ),
    (
      mfjax.Ratings(np.array([0, -1]), np.array([0, 1]), np.array([1.0, 2.0]), 3, 4),
      r"data.users must lie in \[0, 3\); got index -1",
    ),
    (
      mfjax.Ratings(np.array([0, 1]), np.array([0, 1]), np.array([1.0, np.nan]), 3, 4),
      "data.values must be finite",
    ),
    (
      mfjax.Ratings(np.array([0, 1]), np.array([0]), np.array([1.0, 2.0]), 3, 4),
      "must have the same length",
    ),
    (
      mfjax.Ratings(np.array([0.0]), np.array([0]), np.array([1.0]), 3, 4),
      "data.users must be a 1-D integer array",
    ),
    (
      mfjax.Ratings(np.array([0]), np.array([0]), np.array([1.0]), 4, 4),
      r"data must have n_users, n_items = \(3, 4\) to match params",
    ),
  ]
  for ratings, match in bad:
    with pytest.raises((ValueError, TypeError), match=match):
      mfjax.train(params, ratings, steps=2)
  test = mfjax.Ratings(np.array([0]), np.array([0]), np.array([1.0]), 4, 4)
  with pytest.raises(
    ValueError, match="Load test files with the training file's id_maps"
  ):
    mfjax.rmse(params, test)


def test_each_epoch_visits_every_rating_once_in_a_new_order():
  # The sort-free shuffle: a bijection of range(p) for a prime p >= n.
  primes = [p for p in range(2, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]
  for n in (1, 2, 10, 97, 98, 1000, 1998):
    assert train_lib._next_prime(n) == min(p for p in primes if p >= max(n, 2))
  for modulus in (2, 3, 101, 80021):
    orders = [
      np.asarray(train_lib._stride_order(jax.random.key(seed), modulus))
      for seed in range(2, 5)
    ]
    for order in orders:
      np.testing.assert_array_equal(np.sort(order), np.arange(modulus))
    if modulus > 100:  # Three keys, three orders (start and stride both vary).
      assert len({tuple(order[:3]) for order in orders}) == 3
  for n, batch_size in ((1, 1), (10, 3), (97, 10), (1000, 1000), (1000, 999)):
    batches = np.asarray(train_lib._epoch_batches(jax.random.key(n), n, batch_size))
    assert batches.shape == (-(-n // batch_size), batch_size)
    visited = batches[batches < n]
    np.testing.assert_array_equal(np.sort(visited), np.arange(n))
    assert np.all(batches[batches >= n] == n)  # Padding points at row n.
