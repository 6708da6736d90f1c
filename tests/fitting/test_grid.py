"""mfjax.fitting.grid: one vmapped train_grid call equals separate train calls."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mfjax
from mfjax import notebook
from mfjax.fitting.grid import GridResult, train_grid


@pytest.fixture(scope="module")
def split():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 60, 40, 1500, 3)
  return mfjax.train_test_split(ratings, test_fraction=0.2, seed=0)


@jax.jit
def _one_run(params, learning_rate, l2, key, train, valid):
  """One configuration alone: one program, the settings as traced arguments."""
  return mfjax.train(
    params,
    train,
    optimizer=optax.adam(learning_rate),
    l2=l2,
    l2_bias=0.5,
    key=key,
    steps=4,
    batch_size=256,
    validation_data=valid,
  )


@pytest.mark.slow
def test_each_configuration_equals_its_own_train_call(split):
  train, valid = split
  n = 3
  init_keys = jax.random.split(jax.random.key(1), n)
  stacked = jax.vmap(lambda k: mfjax.init_params(k, 60, 40, 3))(init_keys)
  learning_rates = jnp.array([0.003, 0.03, 0.1])
  l2s = jnp.array([0.1, 3.0, 10.0])
  keys = jax.random.split(jax.random.key(2), n)
  grid = jax.jit(
    lambda p, k: train_grid(
      p,
      train,
      learning_rate=learning_rates,
      l2=l2s,
      l2_bias=0.5,
      keys=k,
      steps=4,
      batch_size=256,
      validation_data=valid,
    )
  )(stacked, keys)
  assert isinstance(grid, GridResult)
  assert grid.results.losses.shape == (n, 4)
  best_rmse = []
  for j in range(n):
    params = mfjax.init_params(init_keys[j], 60, 40, 3)
    one = _one_run(params, learning_rates[j], l2s[j], keys[j], train, valid)
    member = jax.tree.map(lambda x, j=j: x[j], grid.results)
    # Float rounding differs between the vmap and one run; over 4 Adam steps
    # it grew to 6e-6 on one small factor (the epoch order of 12-02 met it).
    chex.assert_trees_all_close(member, one, rtol=2e-4, atol=1e-5)
    best_rmse.append(float(np.nanmin(one.validation_rmse)))
  np.testing.assert_allclose(grid.scores, best_rmse, rtol=1e-5)
  assert int(grid.best_index) == int(np.argmin(best_rmse))
  # The best params are the chosen configuration's, and score its RMSE.
  best = jax.tree.map(lambda x: x[int(np.argmin(best_rmse))], grid.results.best_params)
  chex.assert_trees_all_equal(grid.best_params, best)
  np.testing.assert_allclose(
    mfjax.rmse(grid.best_params, valid), min(best_rmse), rtol=1e-5
  )
  np.testing.assert_allclose(grid.learning_rate, learning_rates)
  np.testing.assert_allclose(grid.l2, l2s)
  np.testing.assert_allclose(grid.l2_bias, [0.5] * n)


@pytest.mark.slow
def test_full_batch_grid_without_validation_ranks_by_training_loss(split):
  train, _ = split
  params = mfjax.init_params(jax.random.key(3), 60, 40, 3)
  grid = train_grid(
    params, train, learning_rate=0.05, l2=jnp.array([0.0, 30.0]), steps=10
  )
  one_run = jax.jit(
    lambda l2: mfjax.train(params, train, optimizer=optax.adam(0.05), l2=l2, steps=10)
  )
  for j, l2 in enumerate((0.0, 30.0)):
    one = one_run(jnp.float32(l2))
    np.testing.assert_allclose(grid.results.losses[j], one.losses, rtol=1e-5)
  # A heavy penalty gives a higher regularised training loss.
  assert int(grid.best_index) == 0
  np.testing.assert_allclose(grid.scores, grid.results.best_loss)


@pytest.mark.slow
def test_make_optimizer_and_objective_reach_every_configuration():
  # The notebook's model: its formula and its optimizer, a function of the rate.
  key = jax.random.key(4)
  params = notebook.NotebookParams(
    *mfjax.init_params(key, 4, 6, 3, init="uniform", init_scale=1.0)
  )
  rates = jnp.array([0.002, 0.008])
  grid = train_grid(
    params,
    notebook.MATRIX,
    learning_rate=rates,
    make_optimizer=notebook.optimizer,
    objective=notebook.OBJECTIVE,
    steps=30,
  )
  assert type(grid.best_params) is notebook.NotebookParams
  one_run = jax.jit(
    lambda rate: mfjax.train(
      params,
      notebook.MATRIX,
      optimizer=notebook.optimizer(rate),
      objective=notebook.OBJECTIVE,
      steps=30,
    )
  )
  for j, rate in enumerate(rates):
    one = one_run(rate)
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, j=j: x[j], grid.results), one, rtol=1e-4, atol=1e-5
    )
  # Without the notebook's objective its params are refused, naming the formula.
  with pytest.raises(ValueError, match=r"user_bias·item_bias \+ 1"):
    train_grid(params, notebook.MATRIX, learning_rate=0.1, steps=2)


def test_grid_rejects_bad_configurations():
  train = mfjax.ratings_from_dense(notebook.MATRIX)
  params = mfjax.init_params(jax.random.key(3), 4, 6, 3)
  with pytest.raises(ValueError, match="learning_rate 2, l2 3"):
    train_grid(params, train, learning_rate=jnp.ones(2), l2=jnp.ones(3))
  with pytest.raises(TypeError, match="make_optimizer must be a function"):
    train_grid(params, train, learning_rate=0.1, make_optimizer=optax.adam(0.1))
  with pytest.raises(TypeError, match="optimizer"):  # 0.1's name for it.
    train_grid(params, train, learning_rate=0.1, optimizer=optax.adam)
  with pytest.raises(TypeError, match="bias"):  # 0.1's flag: objective= now.
    train_grid(params, train, learning_rate=0.1, bias="notebook")
  with pytest.raises(ValueError, match="batch_size needs keys"):
    train_grid(params, train, learning_rate=0.1, batch_size=10)
  with pytest.raises(ValueError, match="l2 must hold finite numbers >= 0"):
    train_grid(params, train, learning_rate=0.1, l2=jnp.array([1.0, -1.0]))
  with pytest.raises(ValueError, match="learning_rate must be > 0"):
    train_grid(params, train, learning_rate=jnp.array([0.1, 0.0]))
  with pytest.raises(TypeError, match="mfjax.Params"):
    train_grid({"a": 1}, train, learning_rate=0.1)


@pytest.mark.slow
def test_one_key_is_shared_by_every_configuration(split):
  train, valid = split
  params = mfjax.init_params(jax.random.key(4), 60, 40, 3)
  key = jax.random.key(5)
  lrs = jnp.array([0.01, 0.05])
  grid = train_grid(
    params,
    train,
    learning_rate=lrs,
    l2=0.1,
    l2_bias=0.5,
    keys=key,
    steps=4,
    batch_size=256,
    validation_data=valid,
  )
  for j in range(2):
    one = _one_run(params, lrs[j], jnp.float32(0.1), key, train, valid)
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, j=j: x[j], grid.results), one, rtol=2e-4, atol=1e-5
    )
