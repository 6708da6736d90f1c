"""The host-side checks every public function runs before tracing (mfjax.validation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax import notebook, validation
from tests.conftest import random_params


def test_is_concrete_tells_tracers_apart():
  assert validation.is_concrete(jnp.ones(2)) and validation.is_concrete(np.ones(2))
  seen = []
  jax.jit(lambda x: seen.append(validation.is_concrete(x)) or x)(jnp.ones(2))
  assert seen == [False]


def test_check_positive_int():
  assert validation.check_positive_int("steps", np.int64(3)) == 3
  with pytest.raises(ValueError, match="steps must be an int >= 1; got -2"):
    validation.check_positive_int("steps", -2)
  for bad in (1.0, "3", None, True, jnp.int32(2)):
    with pytest.raises(TypeError, match="steps must be an int >= 1"):
      validation.check_positive_int("steps", bad)


def test_check_nonnegative_concrete_and_traced():
  assert validation.check_nonnegative("l2", 0) == 0
  for bad in (-1e-9, float("inf"), float("nan")):
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
      validation.check_nonnegative("l2", bad)
  with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
    validation.check_nonnegative("l2", jnp.float32(-1))
  for bad in ("0.1", None, True, 1j, jnp.ones(2), jnp.array(True)):
    with pytest.raises(TypeError, match="l2 must be a real"):
      validation.check_nonnegative("l2", bad)
  # A tracer's value is unknown: only its shape and dtype are checked.
  out = jax.jit(lambda v: validation.check_nonnegative("l2", v) * 2)(-1.0)
  assert float(out) == -2.0
  with pytest.raises(TypeError, match="l2 must be a real scalar"):
    jax.jit(lambda v: validation.check_nonnegative("l2", v))(jnp.ones(3))


def test_check_real_array():
  assert validation.check_real_array("x", [[1, 2]], ndim=2).shape == (1, 2)
  with pytest.raises(TypeError, match="x must hold real numbers.*complex"):
    validation.check_real_array("x", np.ones(2, complex))
  with pytest.raises(TypeError, match="x must be an array of numbers"):
    validation.check_real_array("x", [[1, 2], [3]])
  with pytest.raises(TypeError, match="x must be an array of numbers"):
    validation.check_real_array("x", [object()])
  with pytest.raises(ValueError, match="x must be a 2-D array; got shape \\(3,\\)"):
    validation.check_real_array("x", np.ones(3), ndim=2)
  with pytest.raises(ValueError, match="x must be finite; it holds 2 NaN or inf"):
    validation.check_real_array("x", jnp.array([1.0, jnp.nan, -jnp.inf]))
  # Integers cannot be NaN; finiteness is not asked of them.
  assert validation.check_real_array("x", np.arange(3)).dtype.kind == "i"


def test_check_index_array():
  validation.check_index_array("users", [0, 4], 5, axis_name="users")
  with pytest.raises(
    ValueError,
    match=r"users must lie in \[0, 5\) \(5 users\); got "
    r"index 5",
  ):
    validation.check_index_array("users", [0, 5], 5, axis_name="users")
  with pytest.raises(TypeError, match="users must be integer indices; got dtype bool"):
    validation.check_index_array("users", [True], 5, axis_name="users")
  assert validation.check_index_array("users", [], 5, axis_name="users").size == 0


def test_check_choice():
  assert validation.check_choice("unknown", "raise", ("fallback", "raise")) == "raise"
  with pytest.raises(ValueError, match="unknown must be one of 'a', 'b'; got None"):
    validation.check_choice("unknown", None, ("a", "b"))


def test_describe_names_type_and_value_or_shape_and_dtype():
  assert validation.describe(np.ones((2, 3), np.float32)) == (
    "an array of shape (2, 3) and dtype float32"
  )
  assert validation.describe(jnp.zeros(4, jnp.int32)) == (
    "an array of shape (4,) and dtype int32"
  )
  assert validation.describe(5) == "int 5"
  assert validation.describe("x" * 100) == "str '" + "x" * 56 + "..."


def test_as_array_keeps_arrays_and_converts_sequences():
  x, y = jnp.ones(3), np.ones(3)
  assert validation.as_array("x", x) is x and validation.as_array("y", y) is y
  converted = validation.as_array("x", [[1, 2], [3, 4]])
  assert isinstance(converted, np.ndarray) and converted.shape == (2, 2)
  with pytest.raises(TypeError, match="x must be an array of numbers; got list"):
    validation.as_array("x", [[1, 2], [3]])
  with pytest.raises(TypeError, match="x must be an array of numbers"):
    validation.as_array("x", [object()])


def test_check_scale():
  assert validation.check_scale("scale", (1, 5)) == (1, 5)
  lo, hi = validation.check_scale("scale", np.array([0.5, 4.5], np.float32))
  assert (float(lo), float(hi)) == (0.5, 4.5)
  assert validation.check_scale("scale", (jnp.float32(1), jnp.int32(5)))[1] == 5
  assert validation.check_scale("scale", (2, 2)) == (2, 2)  # A single value.
  with pytest.raises(ValueError, match=r"scale must satisfy lo <= hi; got \(5, 1\)"):
    validation.check_scale("scale", (5, 1))
  for bad in (3, "15", (1, 2, 3), None):
    with pytest.raises(TypeError, match="scale must be a pair"):
      validation.check_scale("scale", bad)
  for bad in ((True, 5), (1, "5"), (1, np.ones(2)), (1, 5j)):
    with pytest.raises(TypeError, match="scale must be a pair of real numbers"):
      validation.check_scale("scale", bad)
  # Traced bounds: their order is not known, and not checked.
  clip = jax.jit(lambda lo, hi: validation.check_scale("scale", (lo, hi))[0] + hi)
  assert float(clip(5.0, 1.0)) == 6.0


def test_check_positive_float():
  assert validation.check_positive_float("learning_rate", np.float32(0.5)) == 0.5
  assert type(validation.check_positive_float("learning_rate", 2)) is float
  for bad in (0, -1.0, float("inf"), float("nan")):
    with pytest.raises(ValueError, match="learning_rate must be finite and > 0"):
      validation.check_positive_float("learning_rate", bad)
  for bad in ("0.1", True, None, jnp.float32(0.1)):
    with pytest.raises(TypeError, match="learning_rate must be a number > 0"):
      validation.check_positive_float("learning_rate", bad)


def test_check_real_scalar():
  assert validation.check_real_scalar("threshold", -2.5) == -2.5
  assert validation.check_real_scalar("threshold", np.int64(4)) == 4
  for bad in (float("nan"), np.inf, jnp.float32(-np.inf)):
    with pytest.raises(ValueError, match="threshold must be a finite number; got"):
      validation.check_real_scalar("threshold", bad)
  with pytest.raises(ValueError, match="l2 must be a finite number >= 0; got -1"):
    validation.check_real_scalar("l2", -1, nonnegative=True)
  for bad in ("4", True, jnp.ones(2), jnp.array(True)):
    with pytest.raises(TypeError, match="threshold must be a real"):
      validation.check_real_scalar("threshold", bad)
  traced = jax.jit(lambda v: validation.check_real_scalar("threshold", v) + 1)
  assert np.isnan(traced(np.float32(np.nan)))  # Not checked: NaN + 1.


def test_check_key():
  key = jax.random.key(0)
  assert validation.check_key("key", key) is key
  legacy = jax.random.PRNGKey(0)
  assert validation.check_key("key", legacy) is legacy
  for bad in (0, jax.random.split(key, 2), np.zeros(2, np.int32), None):
    with pytest.raises(TypeError, match="key must be a single JAX PRNG key"):
      validation.check_key("key", bad)


def test_check_params():
  params = random_params(0, 5, 7, 3)
  assert validation.check_params(params) == (5, 7, 3)
  with pytest.raises(TypeError, match="params must be mfjax.Params .* got tuple"):
    validation.check_params(tuple(params))
  with pytest.raises(TypeError, match="model must be mfjax.Params"):
    validation.check_params({}, "model")
  # Params of another formula: refused unless the caller predicts with it.
  theirs = notebook.NotebookParams(*params)
  with pytest.raises(ValueError, match="params are NotebookParams, which predict"):
    validation.check_params(theirs)
  assert validation.check_params(theirs, formula=theirs.formula) == (5, 7, 3)
  with pytest.raises(ValueError, match="params are Params, which predict mean"):
    validation.check_params(params, formula=theirs.formula)
  cases = [
    (dict(mean=np.int32(3)), TypeError, "params.mean must be a floating-point"),
    (dict(user_bias=[0.0] * 5), TypeError, "user_bias must be a floating-point"),
    (dict(user_factors=jnp.ones(5)), ValueError, "must be 2-D"),
    (dict(item_factors=jnp.ones((7, 2))), ValueError, r"item_factors must have"),
    (dict(item_bias=jnp.ones(6)), ValueError, r"item_bias must have shape \(7,\)"),
    (dict(mean=jnp.ones(1)), ValueError, r"mean must have shape \(\)"),
  ]
  for change, error, match in cases:
    with pytest.raises(error, match=match):
      validation.check_params(params._replace(**change))


def test_check_dense_and_check_data():
  data, mask = validation.check_dense(np.ones((2, 3)), None)
  assert data.shape == (2, 3) and mask is None
  validation.check_dense(np.ones((2, 3)), np.ones((2, 3), bool), (2, 3))
  with pytest.raises(ValueError, match=r"data must have shape \(n_users, n_items\)"):
    validation.check_dense(np.ones((2, 3)), None, (3, 2))
  with pytest.raises(TypeError, match="mask must be boolean"):
    validation.check_dense(np.ones((2, 3)), np.full((2, 3), "y"))
  with pytest.raises(ValueError, match=r"mask must have the shape of data, \(2, 3\)"):
    validation.check_dense(np.ones((2, 3)), np.ones((3, 2), bool))
  # check_data: dense data as check_dense, or Ratings of the params' shape.
  ratings = mfjax.ratings_from_dense(np.eye(2, 3, dtype=np.float32))
  assert validation.check_data(ratings, None, (2, 3)) == (ratings, None)
  assert validation.check_data(np.ones((2, 3)), None, (2, 3))[0].shape == (2, 3)
  with pytest.raises(ValueError, match="mask applies to a dense matrix only"):
    validation.check_data(ratings, np.ones((2, 3)), (2, 3))
  with pytest.raises(ValueError, match=r"data must have n_users, n_items = \(2, 4\)"):
    validation.check_data(ratings, None, (2, 4))
  with pytest.raises(ValueError, match=r"data must have shape \(n_users, n_items\)"):
    validation.check_data(np.ones((2, 3)), None, (2, 4))


def _ratings(users=(0, 1, 2, 0), items=(0, 1, 1, 2), values=(1.0, 2, 3, 4), **kw):
  return mfjax.Ratings(
    np.array(users), np.array(items), np.array(values), kw.pop("n_users", 3), 3, **kw
  )


def test_check_ratings():
  ratings = _ratings()
  assert validation.check_ratings("train", ratings) is ratings
  unknown = _ratings(users=(0, -1, 2, 0))
  validation.check_ratings("test", unknown, allow_unknown=True)
  cases = [
    ("x", {}, TypeError, "train must be mfjax.Ratings; got str"),
    (unknown, {}, ValueError, r"train.users must lie in \[0, 3\); got index -1"),
    (
      _ratings(items=(0, 1, 1, 3)),
      dict(allow_unknown=True),
      ValueError,
      r"train.items must lie in \[-1, 3\) \(-1 = unknown\); got index 3",
    ),
    (
      ratings,
      dict(shape=(4, 3), allow_unknown=True),
      ValueError,
      r"n_users, n_items = \(4, 3\) to match params; got \(3, 3\). Load test",
    ),
    (_ratings(n_users=0), {}, ValueError, "train.n_users must be an int >= 1"),
    (_ratings(n_users=3.0), {}, ValueError, "train.n_users must be an int >= 1"),
    (
      _ratings(users=(0.0, 1, 2, 0)),
      {},
      TypeError,
      "train.users must be a 1-D integer array",
    ),
    (_ratings(values=(1.0, 2, 3)), {}, ValueError, "must have the same length"),
    (_ratings(values=(1.0, np.nan, 3, 4)), {}, ValueError, "values must be finite"),
    (_ratings(values=("a",) * 4), {}, TypeError, "train.values must hold real"),
  ]
  for bad, kwargs, error, match in cases:
    with pytest.raises(error, match=match):
      validation.check_ratings("train", bad, **kwargs)
  # Under jit only shapes and dtypes are known: out-of-range values pass.
  out = jax.jit(lambda r: validation.check_ratings("train", r).users.sum())(
    _ratings(users=(0, 7, 2, 0))
  )
  assert int(out) == 9


@pytest.mark.parametrize(
  "weights, n_padding, message",
  [
    (np.ones(3), 0, "one weight per rating"),
    (np.array([1.0, -1.0, 1.0, 1.0]), 0, "must be >= 0"),
    (np.array([1.0, np.nan, 1.0, 1.0]), 0, "must be finite"),
    (None, 1, "weights is None"),
    (np.ones(4), 1, "must be 0 on the last"),
    (np.zeros(4), 5, r"n_padding must lie in \[0, 4\]"),
  ],
)
def test_bad_weights_and_padding_are_rejected(weights, n_padding, message):
  r = _ratings(weights=weights, n_padding=n_padding)
  with pytest.raises(ValueError, match=message):
    validation.check_ratings("ratings", r)
  params = random_params(0, 3, 3, 2)
  with pytest.raises(ValueError, match=message):  # As every function that takes them.
    mfjax.train(params, r, steps=1)


def _compiles(fn) -> list[str]:
  """The XLA compilations that ``fn()`` triggers (jax.monitoring events)."""
  events = []

  def listener(name, seconds, **kwargs):
    if "backend_compile" in name:
      events.append(name)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    fn()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return events


def test_host_checks_of_concrete_cpu_arrays_compile_nothing():
  # A length no other test uses: an eager jnp.min would compile a new program.
  n = 1237
  rng = np.random.default_rng(0)
  ratings = mfjax.Ratings(
    jax.device_put(rng.integers(0, 30, n).astype(np.int32)),
    jax.device_put(rng.integers(0, 20, n).astype(np.int32)),
    jax.device_put(rng.uniform(1, 5, n).astype(np.float32)),
    30,
    20,
    weights=jax.device_put(np.ones(n, np.float32)),
  )

  def checks():
    validation.check_ratings("ratings", ratings, shape=(30, 20))
    validation.check_something_to_train("ratings", ratings)

  assert _compiles(checks) == []
  # And the checks still see the values.
  bad = mfjax.Ratings(ratings.users, ratings.items, ratings.values, 30, 19)
  with pytest.raises(ValueError, match=r"ratings.items must lie in \[0, 19\)"):
    validation.check_ratings("ratings", bad)


@pytest.mark.parametrize("reduce", ["min", "max", "sum", "any"])
def test_concrete_reduce_agrees_with_numpy_on_host_and_device_paths(reduce):
  x = np.array([3.0, -1.5, 7.25, 0.0], np.float32)
  expected = getattr(x, reduce)()
  assert validation.concrete_reduce(x, reduce) == expected
  assert validation.concrete_reduce(jnp.asarray(x), reduce) == expected
  assert validation.host_values(jnp.asarray(x)) is not None  # CPU: a view.
  with pytest.MonkeyPatch.context() as patch:  # The accelerator's path.
    patch.setattr(validation, "host_values", lambda _: None)
    assert validation.concrete_reduce(jnp.asarray(x), reduce) == expected
  seen = []
  jax.jit(lambda y: seen.append(validation.host_values(y)) or y)(x)
  assert seen == [None]  # A tracer has no host values.


class _FakeFrame:
  columns = ["userId", "movieId", "rating"]


@pytest.mark.parametrize(
  "given, hint",
  [
    (_FakeFrame(), r"mfjax.ratings_from_frame\(frame\)"),
    ("u.data", r"mfjax.load_ratings\(path\)"),
    (
      ([1, 2], [3, 4], [5.0, 4.0]),
      r"mfjax.ratings_from_arrays\(users, items, ratings\)",
    ),
    (np.ones((3, 4)), r"mfjax.ratings_from_dense\(matrix\)"),
  ],
  ids=["frame", "path", "columns", "matrix"],
)
def test_a_ratings_argument_of_another_type_names_its_constructor(given, hint):
  with pytest.raises(TypeError, match=r"ratings must be mfjax.Ratings; got .*" + hint):
    mfjax.fit(jax.random.key(0), given)


def test_a_scipy_matrix_names_ratings_from_sparse():
  sparse = pytest.importorskip("scipy.sparse", reason="SciPy is not installed")
  with pytest.raises(TypeError, match=r"mfjax.ratings_from_sparse\(matrix\)"):
    mfjax.fit(jax.random.key(0), sparse.csr_matrix(np.eye(3)))
