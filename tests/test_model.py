"""Params, init_params, predict and loss against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import mfjax
from tests.conftest import random_params

_params = random_params


def _numpy_predict(p, bias):
  P, Q = np.asarray(p.user_factors, np.float64), np.asarray(p.item_factors, np.float64)
  bu, bi = np.asarray(p.user_bias, np.float64), np.asarray(p.item_bias, np.float64)
  if bias == "additive":
    return float(p.mean) + bu[:, None] + bi[None, :] + P @ Q.T
  Bu = np.concatenate([bu[:, None], np.ones((len(bu), 1))], axis=1)
  Bi = np.concatenate([bi[:, None], np.ones((len(bi), 1))], axis=1)
  return float(p.mean) + Bu @ Bi.T + P @ Q.T  # The notebook's own expression.


# --- init_params -----------------------------------------------------------------


def test_init_params_shapes_and_dtypes():
  p = mfjax.init_params(jax.random.key(0), 5, 7, 3)
  assert [x.shape for x in p] == [(5, 3), (7, 3), (5,), (7,), ()]
  assert all(x.dtype == jnp.float32 for x in p)


def test_init_normal_scale_and_zero_biases():
  p = mfjax.init_params(jax.random.key(0), 400, 300, 20, scale=0.1)
  assert abs(float(jnp.std(p.user_factors)) - 0.1) < 0.005
  assert abs(float(jnp.mean(p.item_factors))) < 0.005
  np.testing.assert_array_equal(p.user_bias, 0.0)
  np.testing.assert_array_equal(p.item_bias, 0.0)


def test_init_uniform_is_torch_rand_like():
  p = mfjax.init_params(jax.random.key(1), 300, 200, 10, init="uniform", scale=1.0)
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


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(n_users=0), ValueError, "n_users must be an int >= 1; got 0"),
    (dict(n_items=-3), ValueError, "n_items must be an int >= 1; got -3"),
    (dict(rank=0), ValueError, "rank must be an int >= 1; got 0"),
    (dict(rank=2.5), TypeError, "rank must be an int"),
    (dict(rank=True), TypeError, "rank must be an int"),
    (dict(init="gaussian"), ValueError, "init must be one of 'normal', 'uniform'"),
    (dict(scale=-1.0), ValueError, "scale must be a finite number >= 0"),
    (dict(dtype=jnp.int32), TypeError, "dtype must be a floating dtype"),
  ],
)
def test_init_params_bad_input(kwargs, error, match):
  args = dict(n_users=4, n_items=6, rank=3) | kwargs
  with pytest.raises(error, match=match):
    mfjax.init_params(jax.random.key(0), **args)


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
@pytest.mark.parametrize("bias", ["additive", "notebook"])
def test_predict_full_matrix_matches_numpy(bias, shape):
  assert 5 * 7 * 3 <= mfjax.model._FUSED_DOT_MAX < 40 * 50 * 4  # Both kernels run.
  p = _params(0, *shape)
  np.testing.assert_allclose(
    mfjax.predict(p, bias=bias), _numpy_predict(p, bias), rtol=1e-5, atol=1e-5
  )


@pytest.mark.parametrize("bias", ["additive", "notebook"])
def test_predict_pairs_rows_and_columns(bias):
  p = _params()
  full = _numpy_predict(p, bias)
  users, items = np.array([0, 4, 2, 2]), np.array([6, 0, 3, 3])
  np.testing.assert_allclose(
    mfjax.predict(p, users, items, bias=bias), full[users, items], rtol=1e-5
  )
  np.testing.assert_allclose(
    mfjax.predict(p, users=users, bias=bias), full[users], rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(
    mfjax.predict(p, items=items, bias=bias), full[:, items], rtol=1e-5, atol=1e-5
  )


def test_predict_clip():
  p = _params()
  out = np.asarray(mfjax.predict(p, clip=(1, 5)))
  ref = np.clip(_numpy_predict(p, "additive"), 1, 5)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  assert out.min() >= 1 and out.max() <= 5


def test_predict_clip_may_be_an_array_or_traced():
  p = _params()
  ref = mfjax.predict(p, clip=(1.0, 5.0))
  np.testing.assert_allclose(mfjax.predict(p, clip=np.array([1.0, 5.0])), ref)
  jitted = jax.jit(lambda p, lo, hi: mfjax.predict(p, clip=(lo, hi)))
  np.testing.assert_allclose(jitted(p, 1.0, 5.0), ref)


def test_predict_jit_equals_eager_and_out_of_range_is_nan_under_jit():
  p = _params()
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
  p = _params()
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
    (dict(bias="multiplicative"), ValueError, "bias must be one of"),
    (dict(clip=(5, 1)), ValueError, "lo <= hi"),
    (dict(clip=3), TypeError, "clip must be a pair"),
    (dict(clip=(1, 2, 3)), TypeError, "clip must be a pair"),
    (dict(clip=("a", "b")), TypeError, "clip must be a pair of real numbers"),
  ],
)
def test_predict_bad_input(kwargs, error, match):
  with pytest.raises(error, match=match):
    mfjax.predict(_params(), **kwargs)


def test_params_shape_mismatch_is_caught():
  p = _params()._replace(item_bias=jnp.zeros(6))
  with pytest.raises(ValueError, match=r"params.item_bias must have shape \(7,\)"):
    mfjax.predict(p)
  with pytest.raises(TypeError, match="params must be mfjax.Params"):
    mfjax.predict(tuple(_params()))
  with pytest.raises(TypeError, match="params.user_bias must be a floating-point"):
    mfjax.predict(_params()._replace(user_bias=jnp.zeros(5, jnp.int32)))


# --- loss ------------------------------------------------------------------------


def _matrix(seed=1, shape=(5, 7)):
  rng = np.random.default_rng(seed)
  m = rng.integers(1, 6, size=shape).astype(np.float32)
  m[rng.random(shape) < 0.3] = 0.0
  return m


def test_loss_matches_numpy_default_mask():
  p, m = _params(), _matrix()
  err = (_numpy_predict(p, "additive") - m)[m != 0]
  np.testing.assert_allclose(mfjax.loss(p, m), np.mean(err**2), rtol=1e-5)


def test_loss_matches_numpy_explicit_mask_and_l2():
  p, m = _params(), _matrix()
  mask = np.ones_like(m, bool)
  mask[0, :] = False
  err = (_numpy_predict(p, "notebook") - m)[mask]
  squares = sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in p[:4])
  ref = (np.sum(err**2) + 0.3 * squares) / mask.sum()
  got = mfjax.loss(p, m, mask=mask, l2=0.3, bias="notebook")
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_loss_is_nonnegative_and_zero_at_exact_fit():
  p = _params()
  exact = np.asarray(mfjax.predict(p))
  assert float(mfjax.loss(p, exact, mask=np.ones_like(exact))) < 1e-10
  assert float(mfjax.loss(p, _matrix(), l2=1.0)) > 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", ["additive", "notebook"])
def test_loss_gradients_check_grads(bias, shape):
  with jax.enable_x64(True):
    m = jnp.asarray(_matrix(1, shape[:2]), jnp.float64)
    p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), _params(0, *shape))
    f = lambda p: mfjax.loss(p, m, l2=0.1, bias=bias)
    check_grads(f, (p64,), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_loss_and_train_keep_the_params_dtype():
  m = _matrix()
  p16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), _params())
  assert mfjax.loss(p16, m, l2=jnp.float32(0.1)).dtype == jnp.bfloat16
  result = mfjax.train(p16, m, l2=jnp.float32(0.1), steps=5)
  assert result.best_loss.dtype == jnp.bfloat16
  sweep = jax.vmap(lambda l2: mfjax.train(p16, m, l2=l2, steps=5))(jnp.ones(2))
  assert sweep.losses.shape == (2, 5)
  with jax.enable_x64(True):
    result = mfjax.train(_params(), m, l2=np.float64(0.1), steps=5)
    assert result.best_loss.dtype == jnp.float32


@pytest.mark.parametrize("shape", SHAPES)
def test_loss_gradient_matches_numpy(shape):
  p, m = _params(0, *shape), _matrix(1, shape[:2])
  grads = jax.grad(mfjax.loss)(p, m)
  w = (m != 0).astype(np.float64)
  e = w * (_numpy_predict(p, "additive") - m)
  n = w.sum()
  P, Q = np.asarray(p.user_factors, np.float64), np.asarray(p.item_factors, np.float64)
  np.testing.assert_allclose(grads.user_factors, 2 * e @ Q / n, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads.item_factors, 2 * e.T @ P / n, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads.user_bias, 2 * e.sum(1) / n, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads.item_bias, 2 * e.sum(0) / n, rtol=1e-4, atol=1e-6)


def test_loss_jit_equals_eager():
  p, m = _params(), _matrix()
  np.testing.assert_allclose(
    jax.jit(mfjax.loss)(p, m, l2=0.2), mfjax.loss(p, m, l2=0.2), rtol=1e-6
  )


@pytest.mark.parametrize(
  "data, kwargs, error, match",
  [
    (
      np.ones((5, 6)),
      {},
      ValueError,
      r"data must have shape \(n_users, n_items\) = \(5, 7\).*got \(5, 6\)",
    ),
    (np.ones(35), {}, ValueError, "data must be a 2-D array; got shape"),
    (np.full((5, 7), "a"), {}, TypeError, "data must hold real numbers"),
    (np.ones((5, 7), complex), {}, TypeError, "data must hold real numbers"),
    (np.ones((5, 7), bool), {}, TypeError, "data must hold real numbers"),
    ([[1, "x"]], {}, TypeError, "data must"),
    (
      np.where(np.eye(5, 7) > 0, np.nan, 1.0),
      {},
      ValueError,
      r"data must be finite; it holds 5 NaN or inf",
    ),
    (np.full((5, 7), np.inf), {}, ValueError, "data must be finite"),
    (
      np.ones((5, 7)),
      dict(mask=np.ones((7, 5))),
      ValueError,
      r"mask must have the shape of data, \(5, 7\); got \(7, 5\)",
    ),
    (
      np.ones((5, 7)),
      dict(mask=np.full((5, 7), "y")),
      TypeError,
      "mask must be boolean",
    ),
    (np.ones((5, 7)), dict(l2=-0.1), ValueError, "l2 must be a finite number >= 0"),
    (np.ones((5, 7)), dict(l2=np.nan), ValueError, "l2 must be a finite number"),
    (np.ones((5, 7)), dict(l2=jnp.ones(3)), TypeError, "l2 must be a real scalar"),
    (np.ones((5, 7)), dict(bias="sum"), ValueError, "bias must be one of"),
  ],
)
def test_loss_bad_input(data, kwargs, error, match):
  with pytest.raises(error, match=match):
    mfjax.loss(_params(), data, **kwargs)


def test_loss_under_jit_checks_shapes_but_not_values():
  p = _params()
  with pytest.raises(ValueError, match="data must have shape"):
    jax.jit(mfjax.loss)(p, jnp.ones((3, 3)))
  bad = jnp.full((5, 7), jnp.nan)
  assert np.isnan(jax.jit(mfjax.loss)(p, bad))
