"""mfjax.core.objectives: loss, the Objective protocol, Pairs/Dense batches, penalties.

Example tests against NumPy references and ``check_grads``, then property tests
(hypothesis) of the losses over random shapes, ranks, masks and penalties. JAX
compiles once per shape, so the property tests draw shapes from small sets and
call jitted functions. Examples are derandomized, so every run draws the same
ones; set ``MFJAX_HYPOTHESIS_SCALE=20`` for a deeper run with fresh examples.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads

import mfjax
from mfjax import notebook
from mfjax.core import kernels, objectives
from mfjax.core.objectives import RATING, Dense, Pairs, Penalty
from tests.conftest import (
  MAYBE_MISSING,
  NONZERO,
  draw_params,
  draw_ratings,
  hypothesis_settings,
  random_params,
)

OBJECTIVES = [RATING, notebook.OBJECTIVE]
_IDS = ["rating", "notebook"]


def numpy_predict(params, users, items, objective=RATING):
  """Each objective's prediction of the pairs, in float64."""
  user_factors, item_factors, user_bias, item_bias, mean = (
    np.asarray(x, np.float64) for x in params
  )
  dot = np.sum(user_factors[users] * item_factors[items], axis=-1)
  if objective is RATING:
    return mean + user_bias[users] + item_bias[items] + dot
  return mean + user_bias[users] * item_bias[items] + 1.0 + dot


def numpy_matrix(params, objective=RATING):
  n_users, n_items = params.user_factors.shape[0], params.item_factors.shape[0]
  users, items = np.indices((n_users, n_items)).reshape(2, -1)
  return numpy_predict(params, users, items, objective).reshape(n_users, n_items)


def numpy_penalty(params, l2, l2_bias):
  user_factors, item_factors, user_bias, item_bias, _ = (
    np.asarray(x, np.float64) for x in params
  )
  factors = np.sum(user_factors**2) + np.sum(item_factors**2)
  return l2 * factors + l2_bias * (np.sum(user_bias**2) + np.sum(item_bias**2))


def _as(objective, params):
  """``params`` as the objective's params type (the notebook's for its formula)."""
  return objective.params_type(*params)


def _matrix(seed=1, shape=(5, 7)):
  rng = np.random.default_rng(seed)
  m = rng.integers(1, 6, size=shape).astype(np.float32)
  m[rng.random(shape) < 0.3] = 0.0
  return m


# --- loss: examples ----------------------------------------------------------------


def test_loss_matches_numpy_default_mask():
  p, m = random_params(), _matrix()
  err = (numpy_matrix(p) - m)[m != 0]
  np.testing.assert_allclose(mfjax.loss(p, m), np.mean(err**2), rtol=1e-5)


@pytest.mark.parametrize("objective", OBJECTIVES, ids=_IDS)
def test_loss_matches_numpy_explicit_mask_and_l2(objective):
  p, m = _as(objective, random_params()), _matrix()
  mask = np.ones_like(m, bool)
  mask[0, :] = False
  err = (numpy_matrix(p, objective) - m)[mask]
  ref = (np.sum(err**2) + numpy_penalty(p, 0.3, 0.3)) / mask.sum()
  got = mfjax.loss(p, m, mask=mask, l2=0.3, objective=objective)
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_loss_is_nonnegative_and_zero_at_exact_fit():
  p = random_params()
  exact = np.asarray(mfjax.predict(p))
  assert float(mfjax.loss(p, exact, mask=np.ones_like(exact))) < 1e-10
  assert float(mfjax.loss(p, _matrix(), l2=1.0)) > 0


# (5, 7, 3) takes the fused multiply-and-sum kernel, (40, 50, 4) the dot.
@pytest.mark.parametrize(
  "objective, shape",
  [
    (RATING, (5, 7, 3)),
    pytest.param(RATING, (40, 50, 4), marks=pytest.mark.slow),
    pytest.param(notebook.OBJECTIVE, (5, 7, 3), marks=pytest.mark.slow),
    pytest.param(notebook.OBJECTIVE, (40, 50, 4), marks=pytest.mark.slow),
  ],
  ids=["rating-fused", "rating-dot", "notebook-fused", "notebook-dot"],
)
@pytest.mark.slow
def test_loss_gradients_check_grads(objective, shape):
  assert shape[0] * shape[1] * shape[2] != kernels.FUSED_DOT_MAX
  with jax.enable_x64(True):
    m = jnp.asarray(_matrix(1, shape[:2]), jnp.float64)
    p64 = jax.tree.map(
      lambda x: jnp.asarray(x, jnp.float64), _as(objective, random_params(0, *shape))
    )
    f = jax.jit(lambda p: mfjax.loss(p, m, l2=0.1, objective=objective))
    check_grads(f, (p64,), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
  "shape", [(5, 7, 3), pytest.param((40, 50, 4), marks=pytest.mark.slow)]
)
@pytest.mark.slow
def test_loss_gradient_matches_numpy(shape):
  p, m = random_params(0, *shape), _matrix(1, shape[:2])
  grads = jax.grad(mfjax.loss)(p, m)
  w = (m != 0).astype(np.float64)
  e = w * (numpy_matrix(p) - m)
  n = w.sum()
  P, Q = np.asarray(p.user_factors, np.float64), np.asarray(p.item_factors, np.float64)
  np.testing.assert_allclose(grads.user_factors, 2 * e @ Q / n, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads.item_factors, 2 * e.T @ P / n, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads.user_bias, 2 * e.sum(1) / n, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads.item_bias, 2 * e.sum(0) / n, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads.mean, 2 * e.sum() / n, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_loss_keeps_the_params_dtype():
  m = _matrix()
  p16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), random_params())
  assert mfjax.loss(p16, m, l2=jnp.float32(0.1)).dtype == jnp.bfloat16
  with jax.enable_x64(True):
    assert mfjax.loss(random_params(), m, l2=np.float64(0.1)).dtype == jnp.float32


def test_loss_jit_equals_eager():
  p, m = random_params(), _matrix()
  np.testing.assert_allclose(
    jax.jit(mfjax.loss)(p, m, l2=0.2), mfjax.loss(p, m, l2=0.2), rtol=1e-6
  )


def test_sparse_loss_weights_each_rating():
  p = random_params()
  users, items = np.array([0, 1, 4, 4]), np.array([2, 6, 0, 0])
  values = np.array([4.0, 1.0, 5.0, 3.0], np.float32)
  weights = np.array([0.5, 2.0, 0.0, 1.0], np.float32)
  ratings = mfjax.Ratings(users, items, values, 5, 7, weights=weights)
  err = numpy_predict(p, users, items) - values
  ref = (np.sum(weights * err**2) + numpy_penalty(p, 0.2, 0.05)) / weights.sum()
  got = mfjax.loss(p, ratings, l2=0.2, l2_bias=0.05)
  np.testing.assert_allclose(got, ref, rtol=1e-5)


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
    (
      np.ones((5, 7)),
      dict(l2_bias=-1.0),
      ValueError,
      "l2_bias must be a finite number >= 0",
    ),
    (
      np.ones((5, 7)),
      dict(objective="notebook"),
      TypeError,
      "objective must be an mfjax.core.objectives.Objective",
    ),
    # 0.1's bias= flag is gone: objective=mfjax.notebook.OBJECTIVE replaces it.
    (np.ones((5, 7)), dict(bias="notebook"), TypeError, "bias"),
  ],
)
def test_loss_bad_input(data, kwargs, error, match):
  with pytest.raises(error, match=match):
    mfjax.loss(random_params(), data, **kwargs)


def test_loss_refuses_params_of_another_formula_and_adopts_plain_params():
  m = _matrix()
  with pytest.raises(ValueError, match="NotebookParams"):
    mfjax.loss(notebook.NotebookParams(*random_params()), m)
  # Plain Params, as init_params makes them, are taken as the objective's type.
  p = random_params()
  np.testing.assert_array_equal(
    mfjax.loss(p, m, objective=notebook.OBJECTIVE),
    mfjax.loss(notebook.NotebookParams(*p), m, objective=notebook.OBJECTIVE),
  )
  assert objectives.adopt(notebook.OBJECTIVE, p).__class__ is notebook.NotebookParams
  assert objectives.adopt(RATING, p) is p


def test_loss_under_jit_checks_shapes_but_not_values():
  p = random_params()
  with pytest.raises(ValueError, match="data must have shape"):
    jax.jit(mfjax.loss)(p, jnp.ones((3, 3)))
  bad = jnp.full((5, 7), jnp.nan)
  assert np.isnan(jax.jit(mfjax.loss)(p, bad))


def test_losses_agree_on_data_without_ratings():
  params = mfjax.init_params(jax.random.key(0), 4, 3, 2)
  matrix = np.zeros((4, 3), np.float32)
  ratings = mfjax.ratings_from_dense(matrix)
  for l2 in (0.0, 0.5):
    dense = _LOSS(params, matrix, l2=l2)
    try:
      sparse = _LOSS(params, ratings, l2=l2)
    except ValueError:
      continue  # Rejecting Ratings without ratings would fix it too.
    np.testing.assert_allclose(sparse, dense, rtol=1e-6)


# --- batches, penalties and the Objective protocol ---------------------------------


def test_batch_of_ratings_is_pairs_and_of_a_matrix_is_dense():
  m = _matrix()
  ratings = mfjax.ratings_from_dense(m)
  pairs = objectives.batch_of(ratings, None, jnp.float32)
  assert isinstance(pairs, Pairs)
  np.testing.assert_array_equal(pairs.values, m[m != 0])
  np.testing.assert_array_equal(pairs.weights, np.ones(len(ratings)))
  assert pairs.total == len(ratings)  # Unweighted: the static count.
  weighted = mfjax.Ratings(
    ratings.users,
    ratings.items,
    ratings.values,
    5,
    7,
    weights=np.full(len(m[m != 0]), 0.5),
  )
  assert float(objectives.batch_of(weighted, None, jnp.float32).total) == 0.5 * len(
    ratings
  )

  dense = objectives.batch_of(m, None, jnp.float32)
  assert isinstance(dense, Dense)
  np.testing.assert_array_equal(dense.weights, (m != 0).astype(np.float32))
  mask = np.zeros_like(m)
  mask[1] = -2.0  # Non-zero counts, whatever its value.
  masked = objectives.batch_of(m, mask, jnp.float32)
  np.testing.assert_array_equal(masked.weights, (mask != 0).astype(np.float32))
  assert masked.values.dtype == jnp.float32


@pytest.mark.slow
def test_rating_objective_on_pairs_and_dense_batches_matches_numpy():
  p, m = random_params(), _matrix()
  ratings = mfjax.ratings_from_dense(m)
  penalty = Penalty(0.3, 0.1)
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  sse = np.sum((numpy_predict(p, users, items) - m[users, items]) ** 2)
  reg = numpy_penalty(p, 0.3, 0.1)
  n = len(ratings)
  dense = RATING.loss(p, objectives.batch_of(m, None, jnp.float32), penalty)
  pairs = RATING.loss(p, objectives.batch_of(ratings, None, jnp.float32), penalty)
  np.testing.assert_allclose(dense, (sse + reg) / n, rtol=1e-5)
  np.testing.assert_allclose(pairs, (sse + reg) / n, rtol=1e-5)
  # A mini-batch: its mean squared error plus the penalty over the whole data's
  # weight sum, so that the batch loss estimates the full loss without bias.
  half = Pairs(
    jnp.asarray(users[:5]),
    jnp.asarray(items[:5]),
    jnp.asarray(m[users[:5], items[:5]]),
    jnp.ones(5),
    n,
  )
  batch_sse = np.sum(
    (numpy_predict(p, users[:5], items[:5]) - m[users, items][:5]) ** 2
  )
  np.testing.assert_allclose(
    RATING.loss(p, half, penalty), batch_sse / 5 + reg / n, rtol=1e-5
  )
  np.testing.assert_allclose(
    RATING.predict_pairs(p, jnp.asarray(users), jnp.asarray(items)),
    numpy_predict(p, users, items),
    rtol=1e-5,
  )


def test_check_penalty():
  assert objectives.check_penalty(0.5, None) == Penalty(0.5, 0.5)
  assert objectives.check_penalty(0.5, 0.0) == Penalty(0.5, 0.0)
  traced = jax.jit(lambda l2: objectives.check_penalty(l2, None).l2_bias * 2)
  assert float(traced(1.5)) == 3.0  # Traced weights pass unchecked.
  with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
    objectives.check_penalty(-1.0, None)
  with pytest.raises(ValueError, match="l2_bias must be a finite number >= 0"):
    objectives.check_penalty(1.0, -1.0)


def test_objective_protocol_defaults_and_hashability():
  assert objectives.Objective.params_type is mfjax.Params
  assert RATING.params_type is mfjax.Params
  assert notebook.OBJECTIVE.params_type is notebook.NotebookParams
  base = objectives.Objective()
  with pytest.raises(NotImplementedError):
    base.loss(random_params(), None, Penalty(0.0, 0.0))
  with pytest.raises(NotImplementedError):
    base.predict_pairs(random_params(), jnp.zeros(1, int), jnp.zeros(1, int))
  # Static arguments of jit: equal objectives hash alike.
  assert hash(objectives.SquaredError()) == hash(RATING)
  assert objectives.SquaredError() == RATING


@dataclasses.dataclass(frozen=True)
class AbsoluteError(objectives.Objective):
  """A user-defined objective: mean absolute error plus the L2 penalty."""

  takes_dense = True  # Its loss handles Dense batches too.

  def predict_pairs(self, params, users, items):
    return kernels.predict_pairs(params, users, items)

  def loss(self, params, batch, penalty):
    reg = kernels.penalty(params, penalty.l2, penalty.l2_bias)
    if isinstance(batch, Dense):
      residual = kernels.predict_matrix(params) - batch.values
      total = batch.weights.sum()
    else:
      residual = self.predict_pairs(params, batch.users, batch.items) - batch.values
      total = batch.total
    weight_sum = kernels.positive(batch.weights.sum())
    return jnp.sum(batch.weights * jnp.abs(residual)) / weight_sum + reg / total


def test_a_user_defined_objective_plugs_into_loss_and_train():
  p, m = random_params(), _matrix()
  err = np.abs(numpy_matrix(p) - m)[m != 0]
  ref = np.mean(err) + numpy_penalty(p, 0.1, 0.1) / err.size
  np.testing.assert_allclose(
    mfjax.loss(p, m, l2=0.1, objective=AbsoluteError()), ref, rtol=1e-5
  )
  ratings = mfjax.ratings_from_dense(m)
  result = mfjax.train(
    p,
    ratings,
    optimizer=optax.adam(0.1),
    steps=50,
    objective=AbsoluteError(),
    validation_data=ratings,
  )
  assert type(result.best_params) is mfjax.Params
  assert float(result.best_loss) < 0.5 * float(result.losses[0])
  # best_loss is the user objective's loss of best_params (ranked by validation).
  np.testing.assert_allclose(
    mfjax.loss(result.best_params, ratings, objective=AbsoluteError()),
    result.best_loss,
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    mfjax.rmse(result.best_params, ratings),
    np.nanmin(result.validation_rmse),
    rtol=1e-5,
  )


@dataclasses.dataclass(frozen=True)
class PairsOnly(objectives.Objective):
  """A user objective that declares nothing: it takes Pairs only."""

  def predict_pairs(self, params, users, items):
    return kernels.predict_pairs(params, users, items)

  def loss(self, params, batch, penalty):
    residual = self.predict_pairs(params, batch.users, batch.items) - batch.values
    return jnp.sum(batch.weights * residual**2) / kernels.positive(batch.weights.sum())


@dataclasses.dataclass(frozen=True)
class Halved(objectives.SquaredError):
  """A SquaredError whose loss is overridden: half of it."""

  def loss(self, params, batch, penalty):
    return 0.5 * super().loss(params, batch, penalty)


def test_objectives_say_what_data_they_take():
  assert RATING.takes_dense and RATING.chunkable
  # The notebook's changes the prediction only: still dense and chunkable.
  assert notebook.OBJECTIVE.takes_dense and notebook.OBJECTIVE.chunkable
  assert not PairsOnly.takes_dense and not PairsOnly.chunkable
  # Overriding loss without sse: the chunked sum would not be this loss.
  assert not Halved.chunkable and not Halved.takes_dense
  assert AbsoluteError.takes_dense and not AbsoluteError.chunkable
  p, m = random_params(), _matrix()
  ratings = mfjax.ratings_from_dense(m)
  np.testing.assert_allclose(
    mfjax.loss(p, ratings, objective=Halved()),
    0.5 * mfjax.loss(p, ratings),
    rtol=1e-6,
  )
  for objective in (PairsOnly(), Halved()):
    name = type(objective).__name__
    with pytest.raises(ValueError, match=f"the objective {name} takes mfjax.Ratings"):
      mfjax.loss(p, m, objective=objective)
    with pytest.raises(ValueError, match=f"the objective {name} takes mfjax.Ratings"):
      mfjax.train(p, m, objective=objective, steps=1)
    with pytest.raises(ValueError, match=f"chunk_size needs .*; {name} is not"):
      mfjax.train(p, ratings, objective=objective, steps=1, chunk_size=4)


# --- loss: properties (hypothesis) ----------------------------------------------


_SHAPES = ((1, 1), (2, 5), (4, 3))
_RANKS = (1, 3)
_L2 = st.floats(0, 10, width=32)

_LOSS = jax.jit(mfjax.loss, static_argnames="objective")
_VALUE_AND_GRAD = jax.jit(jax.value_and_grad(mfjax.loss), static_argnames="objective")


def _reference_dense_loss(params, matrix, mask, l2, l2_bias, objective):
  predictions = numpy_matrix(params, objective).ravel()
  observed = (matrix != 0) if mask is None else (np.asarray(mask) != 0)
  weight = observed.ravel()
  squares = np.sum(weight * (predictions - matrix.ravel().astype(np.float64)) ** 2)
  return (squares + numpy_penalty(params, l2, l2_bias)) / max(weight.sum(), 1)


def _reference_sparse_loss(params, ratings, l2, l2_bias, objective):
  users, items, values = (
    np.asarray(x) for x in (ratings.users, ratings.items, ratings.values)
  )
  predictions = numpy_predict(params, users, items, objective)
  squares = np.sum((predictions - values.astype(np.float64)) ** 2)
  return (squares + numpy_penalty(params, l2, l2_bias)) / len(values)


def _draw_mask(draw, shape):
  return draw(
    st.one_of(
      st.none(),
      hnp.arrays(np.bool_, shape),
      # Non-zero marks an observed entry, whatever its value.
      hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0, 0.5, -2.0])),
    )
  )


@pytest.mark.robustness
@hypothesis_settings(30)
@given(st.data())
@pytest.mark.slow
def test_dense_loss_is_nonnegative_and_matches_numpy(data):
  n_users, n_items = data.draw(st.sampled_from(_SHAPES), label="shape")
  rank = data.draw(st.sampled_from(_RANKS), label="rank")
  objective = data.draw(st.sampled_from(OBJECTIVES), label="objective")
  params = draw_params(data.draw, n_users, n_items, rank, objective)
  shape = (n_users, n_items)
  matrix = data.draw(hnp.arrays(np.float32, shape, elements=MAYBE_MISSING))
  mask = _draw_mask(data.draw, shape)
  l2, l2_bias = data.draw(_L2, label="l2"), data.draw(_L2, label="l2_bias")
  value = float(
    _LOSS(params, matrix, mask=mask, l2=l2, l2_bias=l2_bias, objective=objective)
  )
  assert value >= 0.0
  expected = _reference_dense_loss(params, matrix, mask, l2, l2_bias, objective)
  np.testing.assert_allclose(value, expected, rtol=2e-4, atol=1e-5)


@pytest.mark.robustness
@hypothesis_settings(25)
@given(st.data())
@pytest.mark.slow
def test_sparse_loss_is_nonnegative_and_matches_numpy(data):
  n_users, n_items = data.draw(st.sampled_from(_SHAPES), label="shape")
  rank = data.draw(st.sampled_from(_RANKS), label="rank")
  objective = data.draw(st.sampled_from(OBJECTIVES), label="objective")
  params = draw_params(data.draw, n_users, n_items, rank, objective)
  n = data.draw(st.sampled_from((1, 7)), label="n_ratings")
  # Pairs may repeat and a rating of 0 is a rating: Ratings list what is observed.
  values = st.one_of(st.just(0.0), NONZERO)
  ratings = draw_ratings(data.draw, n_users, n_items, n, values)
  l2 = data.draw(_L2, label="l2")
  l2_bias = data.draw(st.one_of(st.none(), _L2), label="l2_bias")  # None: l2.
  value = float(_LOSS(params, ratings, l2=l2, l2_bias=l2_bias, objective=objective))
  assert value >= 0.0
  same = l2 if l2_bias is None else l2_bias
  expected = _reference_sparse_loss(params, ratings, l2, same, objective)
  np.testing.assert_allclose(value, expected, rtol=2e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.robustness
@hypothesis_settings(15)
@given(st.data())
def test_sparse_and_dense_losses_and_gradients_agree(data):
  n_users, n_items = data.draw(st.sampled_from(((1, 1), (4, 3))), label="shape")
  objective = data.draw(st.sampled_from(OBJECTIVES), label="objective")
  params = draw_params(data.draw, n_users, n_items, 2, objective)
  # A few counts of ratings only: each count is a shape, compiled once.
  size = n_users * n_items
  count = data.draw(st.sampled_from(sorted({1, (size + 1) // 2, size})), label="count")
  cells = data.draw(st.permutations(range(size)), label="cells")[:count]
  matrix = np.zeros(size, np.float32)
  matrix[cells] = data.draw(hnp.arrays(np.float32, count, elements=NONZERO))
  matrix = matrix.reshape(n_users, n_items)
  ratings = mfjax.ratings_from_dense(matrix)
  assert len(ratings) == count and ratings.shape == matrix.shape
  np.testing.assert_array_equal(ratings.to_dense(), matrix)
  l2, l2_bias = data.draw(_L2, label="l2"), data.draw(_L2, label="l2_bias")
  kwargs = dict(l2=l2, l2_bias=l2_bias, objective=objective)
  dense, dense_grads = _VALUE_AND_GRAD(params, matrix, **kwargs)
  sparse, sparse_grads = _VALUE_AND_GRAD(params, ratings, **kwargs)
  np.testing.assert_allclose(sparse, dense, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(sparse_grads, dense_grads, rtol=1e-4, atol=1e-5)
  # The default mask of a dense matrix is its non-zero entries.
  masked = _LOSS(params, matrix, mask=matrix != 0, **kwargs)
  np.testing.assert_allclose(masked, dense, rtol=1e-6)


@pytest.mark.parametrize("objective", ["notebook", notebook.NotebookParams, 3])
def test_an_objective_that_is_no_objective_is_refused_before_tracing(objective):
  params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
  for call in (mfjax.loss, mfjax.train):
    with pytest.raises(TypeError, match="objective must be an mfjax.core.objectives"):
      call(params, notebook.MATRIX, objective=objective)
