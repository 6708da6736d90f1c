"""The host-side checks every public function runs before tracing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfjax import validation


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
  assert validation.check_choice("bias", "notebook", ("additive", "notebook"))
  with pytest.raises(ValueError, match="bias must be one of 'a', 'b'; got None"):
    validation.check_choice("bias", None, ("a", "b"))
