"""mfjax.core.model: init_params and predict against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax.core import kernels
from tests.conftest import random_params


def numpy_predict(p):
  """The additive biased-MF prediction, in float64."""
  P, Q = np.asarray(p.user_factors, np.float64), np.asarray(p.item_factors, np.float64)
  bu, bi = np.asarray(p.user_bias, np.float64), np.asarray(p.item_bias, np.float64)
  return float(p.mean) + bu[:, None] + bi[None, :] + P @ Q.T


# --- init_params -----------------------------------------------------------------


def test_init_params_shapes_and_dtypes():
  p = mfjax.init_params(jax.random.key(0), 5, 7, 3)
  assert type(p) is mfjax.Params
  assert [x.shape for x in p] == [(5, 3), (7, 3), (5,), (7,), ()]
  assert all(x.dtype == jnp.float32 for x in p)
  p16 = mfjax.init_params(jax.random.key(0), 5, 7, 3, dtype=jnp.bfloat16)
  assert all(x.dtype == jnp.bfloat16 for x in p16)


def test_init_normal_scale_and_zero_biases():
  # As many users as items: one shape of draws, one program.
  p = mfjax.init_params(jax.random.key(0), 350, 350, 20, init_scale=0.1)
  assert abs(float(np.std(p.user_factors)) - 0.1) < 0.005
  assert abs(float(np.mean(p.item_factors))) < 0.005
  np.testing.assert_array_equal(p.user_bias, 0.0)
  np.testing.assert_array_equal(p.item_bias, 0.0)
  np.testing.assert_array_equal(p.mean, 0.0)


def test_init_uniform_is_torch_rand_like():
  p = mfjax.init_params(jax.random.key(1), 300, 200, 10, init="uniform", init_scale=1.0)
  for x in (p.user_factors, p.item_factors, p.user_bias, p.item_bias):
    assert float(x.min()) >= 0.0 and float(x.max()) < 1.0
  assert abs(float(p.user_factors.mean()) - 0.5) < 0.02
  assert abs(float(p.item_bias.mean()) - 0.5) < 0.1


def test_init_is_deterministic_in_key():
  a = mfjax.init_params(jax.random.key(3), 4, 6, 2)
  b = mfjax.init_params(jax.random.key(3), 4, 6, 2)
  c = mfjax.init_params(jax.random.key(4), 4, 6, 2)
  np.testing.assert_array_equal(a.user_factors, b.user_factors)
  assert not np.allclose(a.user_factors, c.user_factors)


def test_inits_are_the_documented_choices():
  assert mfjax.core.model.INITS == ("normal", "uniform")
  for init in mfjax.core.model.INITS:
    assert mfjax.init_params(jax.random.key(0), 2, 3, 1, init=init).mean.shape == ()


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(n_users=0), ValueError, "n_users must be an int >= 1; got 0"),
    (dict(n_items=-3), ValueError, "n_items must be an int >= 1; got -3"),
    (dict(rank=0), ValueError, "rank must be an int >= 1; got 0"),
    (dict(rank=2.5), TypeError, "rank must be an int"),
    (dict(rank=True), TypeError, "rank must be an int"),
    (dict(init="gaussian"), ValueError, "init must be one of 'normal', 'uniform'"),
    (dict(init_scale=-1.0), ValueError, "init_scale must be a finite number >= 0"),
    (dict(dtype=jnp.int32), TypeError, "dtype must be a floating dtype"),
  ],
)
def test_init_params_bad_input(kwargs, error, match):
  args = dict(n_users=4, n_items=6, rank=3) | kwargs
  with pytest.raises(error, match=match):
    mfjax.init_params(jax.random.key(0), **args)


def test_init_params_scale_was_renamed_init_scale():
  with pytest.raises(TypeError, match="scale"):
    mfjax.init_params(jax.random.key(0), 4, 6, 3, scale=0.1)


def test_init_params_bad_key():
  for bad in (0, np.zeros(3, np.uint32), jax.random.split(jax.random.key(0), 2)):
    with pytest.raises(TypeError, match="key must be a single JAX PRNG key"):
      mfjax.init_params(bad, 4, 6, 3)
  legacy = jax.random.PRNGKey(0)
  assert mfjax.init_params(legacy, 4, 6, 3).user_factors.shape == (4, 3)


# --- predict ---------------------------------------------------------------------


# (5, 7, 3) takes the fused multiply-and-sum kernel, (40, 50, 4) the dot.
SHAPES = [(5, 7, 3), (40, 50, 4)]


@pytest.mark.parametrize("shape", SHAPES)
def test_predict_full_matrix_matches_numpy(shape):
  assert 5 * 7 * 3 <= kernels.FUSED_DOT_MAX < 40 * 50 * 4  # Both kernels run.
  p = random_params(0, *shape)
  np.testing.assert_allclose(mfjax.predict(p), numpy_predict(p), rtol=1e-5, atol=1e-5)


def test_predict_pairs_rows_and_columns():
  p = random_params()
  full = numpy_predict(p)
  users, items = np.array([0, 4, 2, 2]), np.array([6, 0, 3, 3])
  np.testing.assert_allclose(
    mfjax.predict(p, users, items), full[users, items], rtol=1e-5
  )
  np.testing.assert_allclose(
    mfjax.predict(p, users=users), full[users], rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(
    mfjax.predict(p, items=items), full[:, items], rtol=1e-5, atol=1e-5
  )


def test_predict_scale_clips():
  p = random_params()
  out = np.asarray(mfjax.predict(p, scale=(1, 5)))
  ref = np.clip(numpy_predict(p), 1, 5)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  assert out.min() >= 1 and out.max() <= 5


def test_predict_scale_may_be_an_array_or_traced():
  p = random_params()
  ref = mfjax.predict(p, scale=(1.0, 5.0))
  np.testing.assert_allclose(mfjax.predict(p, scale=np.array([1.0, 5.0])), ref)
  jitted = jax.jit(lambda p, lo, hi: mfjax.predict(p, scale=(lo, hi)))
  np.testing.assert_allclose(jitted(p, 1.0, 5.0), ref)


def test_rmse_and_mae_clip_to_scale_like_predict():
  # mfjax.core.metrics has its own tests; this checks that scale= is predict's clip.
  rng = np.random.default_rng(7)
  matrix = np.where(rng.random((30, 20)) < 0.5, rng.integers(1, 6, (30, 20)), 0)
  ratings = mfjax.ratings_from_dense(matrix.astype(np.float32))
  params = mfjax.init_params(jax.random.key(7), 30, 20, 3, init_scale=1.0)._replace(
    mean=jnp.float32(3.5)
  )
  pred = np.clip(numpy_predict(params)[ratings.users, ratings.items], 1, 5)
  err = pred - np.asarray(ratings.values)
  assert np.abs(err).max() > 0  # Not a perfect fit.
  np.testing.assert_allclose(
    mfjax.rmse(params, ratings, scale=(1, 5)), np.sqrt(np.mean(err**2)), rtol=1e-5
  )
  np.testing.assert_allclose(
    mfjax.mae(params, ratings, scale=(1, 5)), np.mean(np.abs(err)), rtol=1e-5
  )


def test_predict_jit_equals_eager_and_out_of_range_is_nan_under_jit():
  p = random_params()
  users, items = jnp.array([0, 3]), jnp.array([1, 6])
  jitted = jax.jit(mfjax.predict)
  np.testing.assert_allclose(
    jitted(p, users, items), mfjax.predict(p, users, items), rtol=1e-6
  )
  out = jitted(p, jnp.array([0, 5, -2, -1]), jnp.array([0, 0, 0, 2]))
  assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2])
  # -1 is an unknown id: the mean plus the known item bias.
  np.testing.assert_allclose(out[3], p.mean + p.item_bias[2], rtol=1e-6)


def test_predict_unknown_ids_fall_back_or_raise():
  p = random_params()
  out = mfjax.predict(p, users=[-1, 1, -1], items=[3, -1, -1])
  np.testing.assert_allclose(
    out, [p.mean + p.item_bias[3], p.mean + p.user_bias[1], p.mean], rtol=1e-6
  )
  rows = mfjax.predict(p, users=[-1])
  np.testing.assert_allclose(rows[0], p.mean + p.item_bias, rtol=1e-6)
  with pytest.raises(ValueError, match=r"users must lie in \[0, 5\)"):
    mfjax.predict(p, users=[-1], items=[0], unknown="raise")


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (
      dict(users=[0, 5], items=[0, 0]),
      ValueError,
      r"users must lie in \[0, 5\) \(5 users\), or -1 for an unknown id; got index 5",
    ),
    (
      dict(users=[0], items=[-2]),
      ValueError,
      r"items must lie in \[0, 7\) \(7 items\), or -1 for an unknown id; got index -2",
    ),
    (dict(unknown="zero"), ValueError, "unknown must be one of"),
    (dict(users=[0, 1], items=[0]), ValueError, "same length"),
    (dict(users=[0.5], items=[0]), TypeError, "users must be integer indices"),
    (dict(users=[[0]], items=[[0]]), ValueError, "users must be a 1-D array"),
    (dict(users=["a"], items=[0]), TypeError, "users must be integer indices"),
    (dict(scale=(5, 1)), ValueError, "lo <= hi"),
    (dict(scale=3), TypeError, "scale must be a pair"),
    (dict(scale=(1, 2, 3)), TypeError, "scale must be a pair"),
    (dict(scale=("a", "b")), TypeError, "scale must be a pair of real numbers"),
    # The 0.1 names are gone, not silently ignored.
    (dict(clip=(1, 5)), TypeError, "clip"),
    (dict(bias="notebook"), TypeError, "bias"),
  ],
)
def test_predict_bad_input(kwargs, error, match):
  with pytest.raises(error, match=match):
    mfjax.predict(random_params(), **kwargs)


def test_params_shape_mismatch_is_caught():
  p = random_params()._replace(item_bias=jnp.zeros(6))
  with pytest.raises(ValueError, match=r"params.item_bias must have shape \(7,\)"):
    mfjax.predict(p)
  with pytest.raises(TypeError, match="params must be mfjax.Params"):
    mfjax.predict(tuple(random_params()))
  with pytest.raises(TypeError, match="params.user_bias must be a floating-point"):
    mfjax.predict(random_params()._replace(user_bias=jnp.zeros(5, jnp.int32)))
