"""Ratings from memory and from ratings (mfjax.data): dense, splits, synthetic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from tests.conftest import padded_ratings


def _ratings(seed=0, n_users=2000, n_items=200, n=20_000):
  """Random ratings; users drawn with power-law popularity, so some have one."""
  rng = np.random.default_rng(seed)
  weights = 1.0 / np.arange(1, n_users + 1)
  users = rng.choice(n_users, n, p=weights / weights.sum())
  return mfjax.Ratings(
    users=jnp.asarray(users, jnp.int32),
    items=jnp.asarray(rng.integers(0, n_items, n), jnp.int32),
    values=jnp.asarray(rng.integers(1, 6, n), jnp.float32),
    n_users=n_users,
    n_items=n_items,
  )


def _rows(ratings):
  """The (user, item, value, weight) rows of ``ratings``, sorted."""
  n = len(ratings)
  weights = np.ones(n) if ratings.weights is None else np.asarray(ratings.weights)
  columns = (ratings.users, ratings.items, ratings.values, weights)
  return sorted(zip(*(np.asarray(x).tolist() for x in columns), strict=True))


def test_ratings_from_dense_round_trip():
  dense = np.array([[5, 0, 3], [0, 1, 0]], np.float32)
  r = mfjax.ratings_from_dense(dense)
  assert len(r) == 3 and r.shape == (2, 3)
  np.testing.assert_array_equal(r.users, [0, 0, 1])
  np.testing.assert_array_equal(r.items, [0, 2, 1])
  np.testing.assert_array_equal(r.to_dense(), dense)
  assert r.users.dtype == jnp.int32 and r.values.dtype == jnp.float32


def test_ratings_from_dense_rejects_bad_matrices():
  with pytest.raises(ValueError, match="matrix must be a 2-D array"):
    mfjax.ratings_from_dense(np.ones(3))
  with pytest.raises(ValueError, match="matrix must be finite"):
    mfjax.ratings_from_dense(np.array([[1.0, np.nan]]))
  with pytest.raises(TypeError, match="matrix must hold real numbers"):
    mfjax.ratings_from_dense(np.array([["a"]]))


def test_train_test_split():
  ratings = _ratings()
  train, test = mfjax.train_test_split(ratings, test_fraction=0.25, seed=3)
  assert (len(test), len(train)) == (5000, 15000)
  assert train.shape == test.shape == ratings.shape
  assert sorted(_rows(train) + _rows(test)) == _rows(ratings)  # A partition.
  again, _ = mfjax.train_test_split(ratings, test_fraction=0.25, seed=3)
  np.testing.assert_array_equal(again.values, train.values)
  other, _ = mfjax.train_test_split(ratings, test_fraction=0.25, seed=4)
  assert _rows(other) != _rows(train)
  for bad in (0.0, 1.0, -0.5):
    with pytest.raises(ValueError, match="test_fraction must lie in"):
      mfjax.train_test_split(ratings, test_fraction=bad)
  with pytest.raises(TypeError, match="ratings must be mfjax.Ratings"):
    mfjax.train_test_split(ratings.to_dense())


def test_stratified_split_holds_out_a_share_of_each_user():
  ratings = _ratings(1)
  train, test = mfjax.train_test_split(ratings, test_fraction=0.2, stratify=True)
  counts = np.bincount(np.asarray(ratings.users), minlength=ratings.n_users)
  assert counts.min() <= 1 < counts.max()  # Users with one rating, and many.
  held = np.bincount(np.asarray(test.users), minlength=ratings.n_users)
  expected = np.where(counts > 1, np.minimum(np.floor(counts * 0.2), counts - 1), 0)
  np.testing.assert_array_equal(held, expected)
  assert set(np.unique(np.asarray(train.users))) == set(np.flatnonzero(counts))
  assert sorted(_rows(train) + _rows(test)) == _rows(ratings)


def test_kfold_tests_each_rating_once():
  ratings = _ratings(2, n=1001)
  folds = list(mfjax.kfold(ratings, 4, seed=1))
  assert len(folds) == 4
  assert [len(test) for _, test in folds] == [251, 250, 250, 250]
  tested = sorted(row for _, test in folds for row in _rows(test))
  assert tested == _rows(ratings)
  for train, test in folds:
    assert sorted(_rows(train) + _rows(test)) == _rows(ratings)
  with pytest.raises(ValueError, match="folds must lie in"):
    next(mfjax.kfold(ratings, 1))
  with pytest.raises(ValueError, match=r"folds must lie in \[2, 1001\]"):
    next(mfjax.kfold(ratings, 1002))


def test_kfold_takes_the_0_2_name_k_with_a_warning():
  ratings = _ratings(2, n=100)
  with pytest.warns(DeprecationWarning, match="kfold: 'k' is now 'folds'"):
    old = [_rows(test) for _, test in mfjax.kfold(ratings, k=4, seed=1)]
  new = [_rows(test) for _, test in mfjax.kfold(ratings, folds=4, seed=1)]
  assert old == new and len(new) == 4
  with pytest.raises(TypeError, match="give 'folds' only"):
    next(mfjax.kfold(ratings, 4, k=4))


def test_splits_carry_weights_and_drop_padding():
  ratings = _ratings(8, n=40)
  weights = np.arange(40, dtype=np.float32)
  padded = padded_ratings(ratings, 5, weights)
  weighted = mfjax.Ratings(
    ratings.users, ratings.items, ratings.values, 2000, 200, jnp.asarray(weights)
  )
  train, test = mfjax.train_test_split(padded, test_fraction=0.25, seed=0)
  assert (len(train), len(test)) == (30, 10)
  assert train.n_padding == test.n_padding == 0
  assert sorted(_rows(train) + _rows(test)) == _rows(weighted)
  folds = list(mfjax.kfold(padded, 4))
  assert sorted(row for _, t in folds for row in _rows(t)) == _rows(weighted)


@pytest.mark.slow  # Compiles jax.random's permutation and normal draws.
def test_synthetic_ratings_planted_and_power_law():
  ratings, planted = mfjax.synthetic_ratings(
    jax.random.key(0), 2000, 1000, 200_000, 8, noise=0.1, scale=None
  )
  assert len(ratings) == 200_000 and ratings.shape == (2000, 1000)
  truth = mfjax.predict(planted, ratings.users, ratings.items)
  resid = np.asarray(ratings.values) - np.asarray(truth)
  assert abs(resid.mean()) < 0.002 and abs(resid.std() - 0.1) < 0.005
  counts = np.sort(np.bincount(np.asarray(ratings.items), minlength=1000))[::-1]
  assert counts[0] > 20 * np.median(counts)  # A heavy head, as in real data.
  uniform, _ = mfjax.synthetic_ratings(
    jax.random.key(0), 2000, 1000, 200_000, 8, popularity=0.0
  )
  counts = np.bincount(np.asarray(uniform.items), minlength=1000)
  assert counts.max() < 2 * counts.mean()
  values = np.asarray(uniform.values)
  assert values.min() >= 1.0 and values.max() <= 5.0  # Clipped to the scale.


def test_synthetic_ratings_rejects_bad_arguments():
  key = jax.random.key(0)
  with pytest.raises(TypeError, match="key must be a single JAX PRNG key"):
    mfjax.synthetic_ratings(0, 5, 5, 10, 2)
  with pytest.raises(ValueError, match="n_ratings must be an int >= 1"):
    mfjax.synthetic_ratings(key, 5, 5, 0, 2)
  with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
    mfjax.synthetic_ratings(key, 5, 5, 10, 2, noise=-1.0)
  with pytest.raises(ValueError, match=r"scale must satisfy lo <= hi"):
    mfjax.synthetic_ratings(key, 5, 5, 10, 2, scale=(5, 1))
