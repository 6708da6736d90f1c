"""mfjax.core.training: train and run, the best-params carry, TrainResult, jit and vmap.

Example tests against Python loops and planted models, then property tests
(hypothesis) of the best-loss bookkeeping. Examples are derandomized; set
``MFJAX_HYPOTHESIS_SCALE=20`` for a deeper run with fresh examples.
"""

import functools

import chex
import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mfjax
from mfjax import notebook
from mfjax.core import solvers, training
from mfjax.core.solvers import Solver
from tests.conftest import (
  MAYBE_MISSING,
  draw_params,
  draw_ratings,
  hypothesis_settings,
  planted_matrix,
  random_params,
)


def test_mean_is_observed_mean_and_never_trained():
  _, matrix, _ = planted_matrix(0, 20, 15, 2, 0.5)
  params = mfjax.init_params(jax.random.key(0), 20, 15, 2)._replace(mean=jnp.float32(9))
  # adamw decays every leaf, the mean included, if train let it.
  result = mfjax.train(
    params, matrix, optimizer=optax.adamw(0.05, weight_decay=0.5), steps=20
  )
  expected = matrix[matrix != 0].mean()
  for p in (result.params, result.best_params):
    np.testing.assert_allclose(p.mean, expected, rtol=1e-6)


@pytest.mark.slow
def test_mean_ignores_the_mask_and_weighs_weighted_ratings():
  _, matrix, _ = planted_matrix(0, 20, 15, 2, 0.5)
  params = mfjax.init_params(jax.random.key(0), 20, 15, 2)
  # Even with a mask that counts the zeros, mean is that of the non-zero entries.
  ones = np.ones_like(matrix, bool)
  result = mfjax.train(params, matrix, mask=ones, steps=3)
  np.testing.assert_allclose(result.params.mean, matrix[matrix != 0].mean(), rtol=1e-6)
  # For weighted Ratings, the weighted mean.
  ratings = mfjax.ratings_from_dense(matrix)
  weights = np.random.default_rng(0).random(len(ratings)).astype(np.float32)
  weighted = mfjax.Ratings(
    ratings.users, ratings.items, ratings.values, 20, 15, weights=weights
  )
  result = mfjax.train(params, weighted, steps=2)
  values = np.asarray(ratings.values, np.float64)
  np.testing.assert_allclose(
    result.params.mean, np.sum(weights * values) / weights.sum(), rtol=1e-5
  )


@pytest.mark.slow
def test_best_loss_carry_matches_a_python_loop():
  _, matrix, _ = planted_matrix(4, 12, 9, 2, 0.7)
  params = mfjax.init_params(
    jax.random.key(4), 12, 9, 2, init="uniform", init_scale=1.0
  )
  opt = optax.sgd(0.3, momentum=0.95)  # Oscillates, so the best is not the last.
  result = mfjax.train(params, matrix, optimizer=opt, steps=40)

  p = params._replace(mean=jnp.float32(matrix[matrix != 0].mean()))
  state, best, best_loss, losses = opt.init(p), None, np.inf, []
  value_and_grad = jax.jit(jax.value_and_grad(mfjax.loss))
  for _ in range(40):
    value, grads = value_and_grad(p, matrix)
    losses.append(float(value))
    if value < best_loss:
      best, best_loss = p, float(value)
    updates, state = opt.update(grads._replace(mean=jnp.zeros(())), state, p)
    p = optax.apply_updates(p, updates)._replace(mean=p.mean)

  np.testing.assert_allclose(result.losses, losses, rtol=1e-4)
  assert int(np.argmin(losses)) != 39
  np.testing.assert_allclose(result.best_loss, best_loss, rtol=1e-4)
  chex.assert_trees_all_close(result.best_params, best, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(result.params, p, rtol=1e-4, atol=1e-5)
  # The best params reproduce the best loss.
  np.testing.assert_allclose(
    mfjax.loss(result.best_params, matrix), result.best_loss, rtol=1e-5
  )
  assert float(result.best_loss) <= float(result.losses[0])
  assert int(result.diverged_step) == -1 and not bool(result.diverged)
  assert int(result.stopped_step) == -1
  assert np.all(np.isnan(result.validation_rmse))  # No validation data.


@pytest.mark.slow
def test_jit_equals_eager():
  _, matrix, _ = planted_matrix(6, 15, 10, 2, 0.6)
  params = mfjax.init_params(jax.random.key(6), 15, 10, 2)
  eager = mfjax.train(params, matrix, steps=30, l2=0.05)
  jitted = jax.jit(mfjax.train, static_argnames="steps")(
    params, matrix, steps=30, l2=0.05
  )
  chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)


def test_traces_once_per_shape_andhypothesis_settings():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def fit(params, matrix, l2):
    return mfjax.train(params, matrix, steps=10, l2=l2)

  chex.clear_trace_counter()
  for seed in range(3):
    _, matrix, _ = planted_matrix(seed, 8, 6, 2, 0.7)
    params = mfjax.init_params(jax.random.key(seed), 8, 6, 2)
    fit(params, matrix, 0.1 * seed).best_loss.block_until_ready()
  with pytest.raises(AssertionError):  # A new shape would be a second trace.
    fit(mfjax.init_params(jax.random.key(0), 9, 6, 2), np.ones((9, 6)), 0.0)


_, _VMAP_MATRIX, _ = planted_matrix(8, 20, 12, 2, 0.6)


def _run(key, l2):
  params = mfjax.init_params(key, 20, 12, 2)
  return mfjax.train(params, _VMAP_MATRIX, steps=40, l2=l2)


_one_run = jax.jit(_run)


@pytest.mark.slow
def test_vmap_over_keys_matches_unbatched():
  keys = jax.random.split(jax.random.key(7), 4)
  batch = jax.vmap(lambda k: mfjax.init_params(k, 20, 12, 2))(keys)
  batched = jax.jit(jax.vmap(lambda p: mfjax.train(p, _VMAP_MATRIX, steps=40)))(batch)
  assert batched.losses.shape == (4, 40)
  for j, key in enumerate(keys):
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, j=j: x[j], batched),
      _one_run(key, jnp.float32(0.0)),
      rtol=1e-4,
      atol=1e-5,
    )


@pytest.mark.slow
def test_vmap_over_l2_and_over_keys_and_l2_together():
  keys = jax.random.split(jax.random.key(8), 3)
  l2s = jnp.array([0.0, 0.1, 1.0, 10.0])
  # The inner vmap is over l2 alone (the params are not batched), the outer over keys.
  grid = jax.jit(jax.vmap(jax.vmap(_run, in_axes=(None, 0)), (0, None)))(keys, l2s)
  assert grid.best_loss.shape == (3, 4)
  for a, key in enumerate(keys):
    for b, l2 in enumerate(l2s):
      chex.assert_trees_all_close(
        jax.tree.map(lambda x, a=a, b=b: x[a, b], grid),
        _one_run(key, l2),
        rtol=1e-4,
        atol=1e-5,
      )
  # Stronger regularisation shrinks the factors.
  norms = np.linalg.norm(np.asarray(grid.best_params.user_factors), axis=(2, 3))
  assert np.all(np.diff(norms, axis=1) < 0)


@pytest.mark.slow
def test_train_keeps_the_params_dtype():
  _, matrix, _ = planted_matrix(1, 5, 7, 2, 0.7)
  params = mfjax.init_params(jax.random.key(1), 5, 7, 2)
  p16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), params)
  # A float32 l2 does not promote the bfloat16 params (nor the scan's carry).
  result = mfjax.train(p16, matrix, l2=jnp.float32(0.1), steps=5)
  assert result.best_loss.dtype == jnp.bfloat16
  assert all(x.dtype == jnp.bfloat16 for x in result.best_params)


@pytest.mark.slow
def test_train_keeps_the_params_dtype_under_vmap_and_x64():
  _, matrix, _ = planted_matrix(1, 5, 7, 2, 0.7)
  params = mfjax.init_params(jax.random.key(1), 5, 7, 2)
  p16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), params)
  sweep = jax.vmap(lambda l2: mfjax.train(p16, matrix, l2=l2, steps=5))(jnp.ones(2))
  assert sweep.losses.shape == (2, 5) and sweep.losses.dtype == jnp.bfloat16
  with jax.enable_x64(True):
    result = mfjax.train(params, matrix, l2=np.float64(0.1), steps=5)
    assert result.best_loss.dtype == jnp.float32


@pytest.mark.slow
def test_validation_picks_best_params_and_early_stopping_stops():
  _, matrix, _ = planted_matrix(4, 40, 30, 3, 0.5)
  ratings = mfjax.ratings_from_dense(matrix)
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
  assert np.all(np.isnan(np.asarray(result.losses)[stop:]))
  best = int(np.nanargmin(val))
  assert stop == best + 6  # Five epochs without improvement, then stop.
  np.testing.assert_allclose(
    mfjax.rmse(result.best_params, valid), val[best], rtol=1e-5
  )
  np.testing.assert_allclose(result.best_loss, result.losses[best], rtol=1e-6)
  assert int(result.diverged_step) == -1  # Skipped epochs are not a divergence.


# --- run: the scan over any Solver -------------------------------------------------


def _scripted_solver(script, loss_after):
  """A Solver whose step t adds 1 to every param and reports ``script[t]``."""
  script = jnp.asarray(script, jnp.float32)

  def step(params, count, _):
    params = jax.tree.map(lambda x: x + 1, params)
    return params, count + 1, script[count]

  return Solver(init=lambda p: jnp.array(0), step=step, loss_after=loss_after)


def _zeros():
  return mfjax.Params(
    jnp.zeros((2, 1)), jnp.zeros((3, 1)), jnp.zeros(2), jnp.zeros(3), jnp.zeros(())
  )


@pytest.mark.parametrize("loss_after", [False, True])
def test_run_keeps_the_params_of_the_lowest_loss(loss_after):
  script = [3.0, 1.0, 2.0, np.nan, 0.5, np.inf]
  result = training.run(
    _scripted_solver(script, loss_after), _zeros(), jnp.arange(len(script))
  )
  np.testing.assert_array_equal(result.losses, np.float32(script))
  assert float(result.best_loss) == 0.5
  # Full-batch a step's loss is of the params before its update, else after it.
  expected = 4 + int(loss_after)
  for leaf in result.best_params:
    np.testing.assert_array_equal(leaf, expected)
  np.testing.assert_array_equal(result.params.user_bias, len(script))
  assert int(result.diverged_step) == 3 and bool(result.diverged)
  assert int(result.stopped_step) == -1
  assert np.all(np.isnan(result.validation_rmse))


def test_run_ranks_by_score_and_stops_after_patience():
  script = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3], np.float32)
  scores = jnp.array([9.0, 7.0, 8.0, 8.5, 9.0, 1.0, 0.0, 0.0])
  # The score of the params before each step's update: their value is the step.
  score = lambda p: scores[p.mean.astype(jnp.int32)]
  result = training.run(
    _scripted_solver(script, False), _zeros(), jnp.arange(8), score=score, patience=3
  )
  # Best at step 1 (7.0); steps 2, 3, 4 do not improve; step 5 is skipped.
  assert int(result.stopped_step) == 5
  np.testing.assert_array_equal(result.validation_rmse[:5], scores[:5])
  assert np.all(np.isnan(result.validation_rmse[5:]))
  assert np.all(np.isnan(result.losses[5:]))
  np.testing.assert_array_equal(result.losses[:5], script[:5])
  assert float(result.best_loss) == 4.0  # The loss of the best-scored params.
  np.testing.assert_array_equal(result.best_params.mean, 1.0)
  np.testing.assert_array_equal(result.params.mean, 5.0)  # No update once stopped.
  assert int(result.diverged_step) == -1


@pytest.mark.slow
def test_run_of_a_built_in_solver_is_train():
  _, matrix, _ = planted_matrix(3, 9, 7, 2, 0.7)
  params = mfjax.init_params(jax.random.key(3), 9, 7, 2)
  ratings = mfjax.ratings_from_dense(matrix)
  opt = optax.adam(0.05)
  expected = mfjax.train(params, ratings, optimizer=opt, steps=15, l2=0.2)
  batch = mfjax.core.objectives.batch_of(ratings, None, jnp.float32)
  solver = solvers.full_batch(
    mfjax.core.objectives.RATING, batch, mfjax.core.objectives.Penalty(0.2, 0.2), opt
  )
  mean = jnp.mean(ratings.values)
  result = training.run(solver, params._replace(mean=mean), jnp.arange(15))
  chex.assert_trees_all_close(result, expected, rtol=1e-6, atol=1e-7)


# --- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(steps=0), ValueError, "steps must be an int >= 1; got 0"),
    (dict(steps=10.0), TypeError, "steps must be an int"),
    (dict(l2=-1.0), ValueError, "l2 must be a finite number >= 0"),
    (dict(objective="dot"), TypeError, "objective must be an mfjax.core.objectives"),
    (dict(optimizer="adam"), TypeError, "optimizer must be an optax"),
    (dict(mask=np.ones((3, 3))), ValueError, "mask must have the shape of data"),
    (dict(batch_size=8, key=jax.random.key(0)), ValueError, "batch_size needs Ratings"),
    # The 0.1 bias= flag is gone: objective=mfjax.notebook.OBJECTIVE replaces it.
    (dict(bias="notebook"), TypeError, "bias"),
  ],
)
def test_train_badhypothesis_settings(kwargs, error, match):
  params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
  with pytest.raises(error, match=match):
    mfjax.train(params, notebook.MATRIX, **kwargs)


def test_train_params_that_do_not_match_the_matrix():
  params = mfjax.init_params(jax.random.key(0), 6, 4, 3)
  with pytest.raises(ValueError, match=r"data must have shape .* = \(6, 4\)"):
    mfjax.train(params, notebook.MATRIX)
  with pytest.raises(ValueError, match="data must be finite"):
    mfjax.train(mfjax.init_params(jax.random.key(0), 2, 2, 1), [[1.0, np.nan], [2, 3]])
  with pytest.raises(ValueError, match="data must have shape"):  # Static under jit.
    jax.jit(mfjax.train)(params, jnp.ones((4, 6)))


def _ratings_30x20():
  _, matrix, _ = planted_matrix(0, 30, 20, 3, 0.5)
  return mfjax.ratings_from_dense(matrix)


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
    (dict(scale=(5, 1)), ValueError, "scale must satisfy lo <= hi"),
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
def test_sparse_train_badhypothesis_settings(kwargs, error, match):
  params = mfjax.init_params(jax.random.key(0), 30, 20, 3)
  with pytest.raises(error, match=match):
    mfjax.train(params, _ratings_30x20(), steps=3, **kwargs)


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


# --- the best params: properties (hypothesis) and divergence ----------------------


_TRAIN_STEPS = 12
_TRAIN_SHAPES = ((1, 1, 1), (4, 3, 2))
# Plain SGD with a learning rate up to 1e8 diverges to inf, then NaN.
_LEARNING_RATES = (1e-3, 0.1, 3.0, 1e3, 1e8)
_LOSS = jax.jit(mfjax.loss)


@functools.partial(jax.jit, static_argnames="steps")
def _train_sgd(params, data, learning_rate, l2, *, steps=_TRAIN_STEPS):
  return mfjax.train(
    params, data, optimizer=optax.sgd(learning_rate), steps=steps, l2=l2
  )


def _check_best(result, data, l2):
  """The best-loss bookkeeping of ``train``, as TrainResult documents it."""
  losses = np.asarray(result.losses)
  assert losses.shape == (_TRAIN_STEPS,)
  assert np.isfinite(losses[0])  # Finite data and parameters.
  best = float(result.best_loss)
  assert best <= losses[0]
  finite = np.isfinite(losses)
  assert best == losses[finite].min()
  for leaf in jax.tree.leaves(result.best_params):
    assert np.all(np.isfinite(leaf))
  # Full-batch, the first step's loss is the initial params'.
  assert float(result.initial_loss) == losses[0]
  grew = losses > training.DIVERGENCE_GROWTH * losses[0] if losses[0] > 0 else False
  bad = ~finite | grew
  diverged = int(result.diverged_step)
  if not bad.any():
    assert diverged == -1 and not bool(result.diverged)
  else:
    assert diverged == int(np.argmax(bad)) > 0 and bool(result.diverged)
  # best_loss is the loss of best_params, computed before their update.
  recomputed = float(_LOSS(result.best_params, data, l2=l2))
  np.testing.assert_allclose(recomputed, best, rtol=1e-3, atol=1e-6)


@pytest.mark.robustness
@hypothesis_settings(12)
@given(st.data())
@pytest.mark.slow
def test_best_loss_never_exceeds_the_first_loss(data):
  n_users, n_items, rank = data.draw(st.sampled_from(_TRAIN_SHAPES), label="shape")
  params = draw_params(data.draw, n_users, n_items, rank)
  if data.draw(st.booleans(), label="sparse"):
    # As many ratings as cells, so that each shape compiles once; pairs repeat.
    train_data = draw_ratings(data.draw, n_users, n_items, n_users * n_items)
  else:
    shape = (n_users, n_items)
    train_data = data.draw(hnp.arrays(np.float32, shape, elements=MAYBE_MISSING))
    hypothesis.assume(np.any(train_data != 0))  # Else refused: nothing to train on.
  learning_rate = np.float32(data.draw(st.sampled_from(_LEARNING_RATES), label="lr"))
  l2 = np.float32(data.draw(st.floats(0, 1, width=32), label="l2"))
  _check_best(_train_sgd(params, train_data, learning_rate, l2), train_data, l2)


@pytest.mark.parametrize("sparse", [False, True])
def test_divergence_keeps_best_finite_params(sparse):
  params = mfjax.init_params(jax.random.key(0), 4, 3, 2)
  matrix = np.arange(1, 13, dtype=np.float32).reshape(4, 3) % 5 + 1
  train_data = mfjax.ratings_from_dense(matrix) if sparse else matrix
  result = _train_sgd(params, train_data, np.float32(1e8), np.float32(0.0))
  assert bool(result.diverged)  # So that _check_best sees a divergence.
  _check_best(result, train_data, np.float32(0.0))


# --- divergence that stays finite, and the initial params as a candidate ---------


def _minibatch_run(learning_rate, steps=4):
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 40, 30, 600, 3)
  params = mfjax.init_params(jax.random.key(1), 40, 30, 3)
  result = mfjax.train(
    params,
    ratings,
    steps=steps,
    batch_size=64,
    key=jax.random.key(2),
    optimizer=optax.adam(learning_rate),
  )
  return params, ratings, result


@pytest.mark.slow
def test_a_finite_blow_up_is_a_divergence_and_the_initial_params_win():
  params, ratings, result = _minibatch_run(30.0)
  losses = np.asarray(result.losses)
  assert np.all(np.isfinite(losses))  # Finite: the old check saw nothing.
  initial = float(result.initial_loss)
  # The initial params' loss, as train's objective scores them (l2 defaults).
  start = params._replace(mean=jnp.mean(ratings.values))
  np.testing.assert_allclose(initial, mfjax.loss(start, ratings), rtol=0.05)
  first = int(np.argmax(losses > training.DIVERGENCE_GROWTH * initial))
  assert losses.max() > training.DIVERGENCE_GROWTH * initial
  assert int(result.diverged_step) == first and bool(result.diverged)
  # Nothing beat the start: the best params are the initial ones, mean set.
  assert int(result.best_step) == 0 and float(result.best_loss) == initial
  chex.assert_trees_all_close(result.best_params, start, rtol=1e-6)
  message = training.failure(result)
  assert message.startswith("training diverged: the loss grew to")
  assert f"at step {first + 1} of 4" in message


@pytest.mark.slow
def test_a_sane_run_neither_diverges_nor_keeps_the_initial_params():
  _, _, result = _minibatch_run(0.01)
  assert not bool(result.diverged) and int(result.best_step) == 4
  assert float(result.best_loss) < float(result.initial_loss)
  assert training.failure(result) is None


@pytest.mark.slow
def test_minibatch_loss_is_the_full_loss_when_batches_tile_the_data():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 20, 15, 256, 3)
  params = random_params(3, 20, 15, 2)
  batch_size = 64  # 256 = 4 batches of equal size: the mean is the full loss.
  penalty = mfjax.core.objectives.Penalty(jnp.float32(0.0), jnp.float32(0.0))
  solver = solvers.minibatch(
    mfjax.core.objectives.RATING, ratings, penalty, optax.sgd(0.1), batch_size,
    jnp.float32, key=jax.random.key(1),
  )  # fmt: skip
  errors = np.asarray(mfjax.predict(params, ratings.users, ratings.items))
  expected = np.mean((errors - np.asarray(ratings.values)) ** 2)
  np.testing.assert_allclose(solver.loss(params), expected, rtol=1e-5)


@pytest.mark.slow
def test_no_progress_is_a_failure_and_a_stack_names_its_model():
  # A solver whose passes only make things worse than the initial loss of 1.
  def step(params, state, _):
    return jax.tree.map(lambda x: x + 1, params), state, jnp.float32(2.0)

  solver = Solver(lambda p: (), step, loss_after=True, loss=lambda p: jnp.float32(1))
  result = training.run(solver, _zeros(), jnp.arange(3))
  assert int(result.best_step) == 0 and not bool(result.diverged)
  chex.assert_trees_all_close(result.best_params, _zeros())
  assert training.failure(result).startswith("training made no progress: no step")
  # Stacked (an ensemble): the failed member is named.
  good = result._replace(best_step=jnp.int32(3))
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), good, result)
  assert "(model 2 of 2)" in training.failure(stacked)
  # Stacked twice (folds × members): the flat index counts the models.
  grid = jax.tree.map(lambda a, b: jnp.stack([jnp.stack([a, a]), jnp.stack([a, b])]),
                      good, result)  # fmt: skip
  assert "(model 4 of 4)" in training.failure(grid)
  # One step full-batch cannot be judged: its only loss is the initial one.
  single = training.run(_scripted_solver([1.0], False), _zeros(), jnp.arange(1))
  assert training.failure(single) is None


@pytest.mark.parametrize(
  "data",
  [
    mfjax.Ratings(jnp.zeros(0, jnp.int32), jnp.zeros(0, jnp.int32), jnp.zeros(0), 3, 4),
    mfjax.Ratings([0, 1], [1, 2], [4.0, 3.0], 3, 4, weights=[0.0, 0.0]),
    np.zeros((3, 4), np.float32),
  ],
  ids=["empty", "zero-weights", "nothing-observed"],
)
def test_nothing_to_train_on_is_refused(data):
  params = mfjax.init_params(jax.random.key(0), 3, 4, 2)
  with pytest.raises(ValueError, match="there is nothing to train on"):
    mfjax.train(params, data, steps=2)
  if isinstance(data, mfjax.Ratings):
    with pytest.raises(ValueError, match="there is nothing to train on"):
      mfjax.fit(jax.random.key(0), data, rank=2, steps=2, ensemble=1)
