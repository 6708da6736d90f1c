"""mfjax.notebook: the seed notebook reproduced, its printed values, its formula."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mfjax
from mfjax import notebook
from mfjax.core import kernels
from mfjax.notebook import MATRIX, OBJECTIVE, PRINTED, NotebookParams
from tests.conftest import random_params

EVERYTHING = np.ones_like(MATRIX, bool)  # nn.MSELoss counts the missing 0 too.


def numpy_notebook_predict(p):
  """The notebook's own expression, ``mu + [bu, 1] @ [bi, 1].T + P @ Q.T``."""
  P, Q = np.asarray(p.user_factors, np.float64), np.asarray(p.item_factors, np.float64)
  bu, bi = np.asarray(p.user_bias, np.float64), np.asarray(p.item_bias, np.float64)
  Bu = np.concatenate([bu[:, None], np.ones((len(bu), 1))], axis=1)
  Bi = np.concatenate([bi[:, None], np.ones((len(bi), 1))], axis=1)
  return float(p.mean) + Bu @ Bi.T + P @ Q.T


def test_matrix_and_mu_are_the_notebooks():
  assert MATRIX.shape == (4, 6) and int((MATRIX == 0).sum()) == 1
  assert (notebook.RANK, notebook.LEARNING_RATE, notebook.STEPS) == (3, 0.008, 100)
  np.testing.assert_allclose(kernels.observed_mean(MATRIX), 74 / 23, rtol=1e-6)
  np.testing.assert_allclose(notebook.printed_params().mean, 74 / 23, rtol=1e-6)


def test_printed_params_reproduce_printed_matrix():
  params = notebook.printed_params()
  assert type(params) is NotebookParams
  pred = notebook.predict(params, scale=(1, 5))
  # 3.26e-4 apart at most, as in float64: the printed params have 4 decimals.
  np.testing.assert_allclose(pred, PRINTED["prediction"], rtol=0, atol=3.3e-4)
  np.testing.assert_allclose(
    notebook.predict(params), numpy_notebook_predict(params), rtol=1e-5, atol=1e-5
  )
  # The usual additive formula, on the same numbers, does not reproduce it.
  additive = mfjax.predict(mfjax.Params(*params), scale=(1, 5))
  assert np.abs(np.asarray(additive) - PRINTED["prediction"]).max() > 0.5


# (5, 7, 3) takes the fused multiply-and-sum kernel, (40, 50, 4) the dot.
@pytest.mark.parametrize("shape", [(5, 7, 3), (40, 50, 4)])
def test_predict_and_objective_match_the_notebooks_expression(shape):
  p = NotebookParams(*random_params(0, *shape))
  full = numpy_notebook_predict(p)
  np.testing.assert_allclose(notebook.predict(p), full, rtol=1e-5, atol=1e-5)
  users, items = jnp.array([0, 4, 2, 2]), jnp.array([6, 0, 3, 3])
  np.testing.assert_allclose(
    OBJECTIVE.predict_pairs(p, users, items), full[users, items], rtol=1e-5
  )


def test_printed_params_reproduce_printed_loss():
  value = mfjax.loss(
    notebook.printed_params(), MATRIX, mask=EVERYTHING, objective=OBJECTIVE
  )
  assert abs(float(value) - PRINTED["best_loss"]) < 1e-3


def test_notebook_params_are_refused_where_the_formula_differs(tmp_path):
  """0.1 ranked notebook models with the additive formula; 0.2 refuses them."""
  params = notebook.printed_params()
  ratings = mfjax.ratings_from_dense(MATRIX)
  calls = {
    "predict": lambda: mfjax.predict(params),
    "recommend": lambda: mfjax.recommend(params, jnp.array([0]), 2),
    "fold_in": lambda: mfjax.fold_in(params, ratings),
    "rmse": lambda: mfjax.rmse(params, ratings),
    "mae": lambda: mfjax.mae(params, ratings),
    "save": lambda: mfjax.save(tmp_path / "notebook.npz", params),
    "loss": lambda: mfjax.loss(params, MATRIX),
    "train": lambda: mfjax.train(params, MATRIX, steps=1),
  }
  for name, call in calls.items():
    with pytest.raises(ValueError) as info:
      call()
    message = str(info.value)
    assert NotebookParams.formula in message, name
    assert mfjax.Params.formula in message, name
    assert "mfjax.notebook" in message, name  # Where to score them instead.
  assert not list(tmp_path.iterdir())  # save wrote nothing.
  # And notebook.predict refuses additive params the same way.
  with pytest.raises(ValueError, match="NotebookParams|user_bias·item_bias"):
    notebook.predict(random_params())


def test_reproduce_notebook_matches_the_notebook_loop_by_hand():
  """The notebook's loop in plain Python: .grad accumulates and is never zeroed."""
  key = jax.random.key(3)
  result = mfjax.reproduce_notebook(key)
  assert type(result.best_params) is NotebookParams

  p = mfjax.init_params(key, 4, 6, 3, init="uniform", init_scale=1.0)
  P, Q = np.asarray(p.user_factors, np.float64), np.asarray(p.item_factors, np.float64)
  bu = np.asarray(p.user_bias, np.float64)[:, None]
  bi = np.asarray(p.item_bias, np.float64)[:, None]
  mu, lr = 74 / 23, 0.008
  grad_acc = [np.zeros_like(x) for x in (P, Q, bu, bi)]
  losses, best_loss, best = [], np.inf, None
  for _ in range(100):
    Bu = np.concatenate([bu, np.ones_like(bu)], axis=1)
    Bi = np.concatenate([bi, np.ones_like(bi)], axis=1)
    pred = mu + Bu @ Bi.T + P @ Q.T
    err = pred - MATRIX
    loss = np.mean(err**2)
    losses.append(loss)
    if best_loss > loss:
      best_loss, best = loss, (P.copy(), Q.copy(), bu.copy(), bi.copy())
    d = 2 * err / err.size  # nn.MSELoss gradient.
    grads = (d @ Q, d.T @ P, (d @ bi), (d.T @ bu))
    for acc, g in zip(grad_acc, grads, strict=True):
      acc += g  # loss.backward() adds to .grad
    P, Q, bu, bi = (
      x - lr * acc for x, acc in zip((P, Q, bu, bi), grad_acc, strict=True)
    )

  np.testing.assert_allclose(result.losses, losses, rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(result.best_loss, best_loss, rtol=2e-4)
  np.testing.assert_allclose(result.best_params.user_factors, best[0], atol=2e-3)
  np.testing.assert_allclose(result.best_params.item_bias, best[3][:, 0], atol=2e-3)
  assert result.best_params.mean == np.float32(74 / 23)


def test_notebook_optimizer_is_sgd_with_momentum_one():
  """Step t applies lr · (g_1 + ... + g_t): .grad is never zeroed."""
  opt = notebook.optimizer()
  x = jnp.zeros(2)
  state = opt.init(x)
  grads = [jnp.array([1.0, -2.0]), jnp.array([0.5, 0.5]), jnp.array([-3.0, 1.0])]
  total = np.zeros(2)
  for g in grads:
    total += np.asarray(g)
    updates, state = opt.update(g, state, x)
    np.testing.assert_allclose(updates, -notebook.LEARNING_RATE * total, rtol=1e-6)
  with pytest.raises(ValueError, match="learning_rate"):
    notebook.optimizer(-1.0)


_RUN = jax.jit(
  jax.vmap(
    lambda key, optimizer: (
      mfjax.train(
        mfjax.init_params(key, 4, 6, 3, init="uniform", init_scale=1.0),
        MATRIX,
        optimizer=optimizer,
        mask=EVERYTHING,
        objective=OBJECTIVE,
      ).best_loss
    ),
    in_axes=(0, None),
  ),
  static_argnums=1,
)
_KEYS = jax.random.split(jax.random.key(2024), 20)


@pytest.mark.slow
def test_median_best_loss_over_20_keys_is_notebook_like():
  best = np.asarray(_RUN(_KEYS, notebook.optimizer()))
  assert np.median(best) < 1.0  # The notebook printed 0.713.
  # reproduce_notebook is exactly this run.
  np.testing.assert_allclose(
    mfjax.reproduce_notebook(_KEYS[0]).best_loss, best[0], rtol=1e-5
  )


@pytest.mark.slow
def test_without_gradient_accumulation_the_median_is_far_worse():
  best = np.asarray(_RUN(_KEYS, optax.sgd(notebook.LEARNING_RATE)))
  assert np.median(best) > 3.0


@pytest.mark.slow
def test_reproduce_notebook_under_jit_and_shapes():
  result = jax.jit(mfjax.reproduce_notebook)(jax.random.key(0))
  eager = mfjax.reproduce_notebook(jax.random.key(0))
  np.testing.assert_allclose(result.losses, eager.losses, rtol=1e-5)
  assert result.losses.shape == (100,)
  assert result.best_params.user_factors.shape == (4, 3)
  assert float(result.best_loss) == float(jnp.min(result.losses))
