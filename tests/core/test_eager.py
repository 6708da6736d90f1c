"""mfjax.core.eager: init_params, train and predict called outside jit run as one
kept program each, with the same numbers as inside the caller's jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mfjax
from mfjax.core import solvers

MATRIX = jnp.array(
  [
    [5.0, 3.0, 0.0, 1.0],
    [4.0, 0.0, 0.0, 1.0],
    [1.0, 1.0, 0.0, 5.0],
    [0.0, 1.0, 5.0, 4.0],
  ]
)


def _compiles(fn):
  """How many programs ``fn()`` lowered (each new program is lowered once, then
  compiled or read from the compilation cache)."""
  events = []

  def listen(event, seconds, **_):
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      events.append(seconds)

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    jax.block_until_ready(fn())
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  return len(events)


def test_a_second_eager_call_with_the_same_settings_compiles_nothing():
  params = mfjax.init_params(jax.random.key(0), 4, 4, 2)
  run = lambda: mfjax.train(params, MATRIX, steps=17, l2=0.01)
  first = _compiles(run)
  assert first == 1
  assert _compiles(run) == 0
  # Another l2 is an argument of the same program, another step count is not.
  assert _compiles(lambda: mfjax.train(params, MATRIX, steps=17, l2=0.5)) == 0
  assert _compiles(lambda: mfjax.train(params, MATRIX, steps=18, l2=0.01)) == 1
  assert _compiles(lambda: mfjax.init_params(jax.random.key(3), 4, 4, 2)) == 0
  predict = lambda: mfjax.predict(params, users=[1, 2], items=[0, 3], scale=(1, 5))
  _compiles(predict)
  assert _compiles(predict) == 0


def test_eager_train_equals_train_under_the_callers_jit():
  params = mfjax.init_params(jax.random.key(1), 4, 4, 2)
  eager_result = mfjax.train(params, MATRIX, steps=40, l2=0.01)
  jitted = jax.jit(lambda p, m, l2: mfjax.train(p, m, steps=40, l2=l2))(
    params, MATRIX, 0.01
  )
  np.testing.assert_array_equal(eager_result.losses, jitted.losses)
  np.testing.assert_array_equal(
    eager_result.best_params.user_factors, jitted.best_params.user_factors
  )
  assert int(eager_result.best_step) == int(jitted.best_step)


@pytest.mark.slow
def test_eager_calls_equal_the_same_calls_under_vmap():
  keys = jax.random.split(jax.random.key(2), 3)
  stacked = jax.vmap(lambda k: mfjax.init_params(k, 4, 4, 2))(keys)
  one = mfjax.init_params(keys[1], 4, 4, 2)
  np.testing.assert_allclose(stacked.item_factors[1], one.item_factors, rtol=1e-6)
  results = jax.vmap(mfjax.train, in_axes=(0, None))(stacked, MATRIX)
  alone = mfjax.train(one, MATRIX)
  # The inits differ in the last bit (vmap's draw); the curves stay together.
  np.testing.assert_allclose(results.losses[1], alone.losses, rtol=1e-5, atol=1e-6)
  predicted = jax.vmap(lambda p: mfjax.predict(p, scale=(1, 5)))(results.best_params)
  np.testing.assert_allclose(
    predicted[1], mfjax.predict(alone.best_params, scale=(1, 5)), atol=1e-4
  )


@pytest.mark.slow
def test_settings_that_hold_arrays_run_op_by_op_with_the_same_result():
  """A MiniBatch with an order key (an array) is unhashable: it runs op by op,
  with the numbers of the same fit under jit."""
  ratings = mfjax.ratings_from_dense(MATRIX)
  params = mfjax.init_params(jax.random.key(4), 4, 4, 2)
  solver = solvers.MiniBatch(4, order_key=jax.random.key(5))
  run = lambda p: mfjax.train(
    p,
    ratings,
    steps=6,
    solver=solver,
    key=jax.random.key(6),
    optimizer=optax.adam(0.05),
  )
  out = run(params)
  np.testing.assert_allclose(out.losses, jax.jit(run)(params).losses, rtol=1e-6)


def test_a_traced_scale_with_concrete_params_traces_in_place():
  params = mfjax.init_params(jax.random.key(7), 4, 4, 2)
  clipped = jax.jit(lambda hi: mfjax.predict(params, scale=(-0.01, hi)))(0.01)
  expected = np.clip(np.asarray(mfjax.predict(params)), -0.01, 0.01)
  np.testing.assert_allclose(clipped, expected, rtol=1e-6)
