"""mfjax.core.solvers: the default optimizer, full_batch, chunked and minibatch steps.

Each solver step is checked against a hand-made optax step or against another
solver; training on sparse Ratings against dense training and planted models.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mfjax
from mfjax.core import objectives, shuffle, solvers
from mfjax.core.objectives import RATING, Penalty
from tests.conftest import planted_matrix

PENALTY = Penalty(0.3, 0.1)


def _data(seed=0, n_users=30, n_items=20, density=0.5):
  full, matrix, observed = planted_matrix(seed, n_users, n_items, 3, density)
  return full, matrix, observed, mfjax.ratings_from_dense(matrix)


def _heldout_rmse(result, full, observed):
  pred = np.asarray(mfjax.predict(result.best_params))
  return float(np.sqrt(np.mean((pred - full)[~observed] ** 2)))


def _first_update(optimizer, params):
  """The update the optimizer makes from its initial state on all-ones gradients."""
  ones = jax.tree.map(jnp.ones_like, params)
  updates, _ = optimizer.update(ones, optimizer.init(params), params)
  return updates


# --- the default optimizer ---------------------------------------------------------


@pytest.mark.slow
def test_default_optimizer_dense_learning_rate_formula():
  matrix = np.array([[5, 0, 3], [4, 2, 0], [1, 1, 1], [0, 0, 2]], np.float32)
  params = mfjax.init_params(jax.random.key(0), 4, 3, 2)
  # 8 observed; busiest user 3 ratings, busiest item 3 ratings.
  batch = objectives.batch_of(matrix, None, jnp.float32)
  optimizer = solvers.default_optimizer(batch)
  # SGD with heavy-ball momentum: the first update is -rate · gradient, and the
  # second adds momentum 0.8 of the first.
  updates = _first_update(optimizer, params)
  chex.assert_trees_all_close(
    updates,
    jax.tree.map(lambda x: -0.5 * 8 / 6 * x, jax.tree.map(jnp.ones_like, params)),
  )
  ones = jax.tree.map(jnp.ones_like, params)
  _, state = optimizer.update(ones, optimizer.init(params), params)
  second, _ = optimizer.update(ones, state, params)
  np.testing.assert_allclose(second.user_bias, -0.5 * 8 / 6 * 1.8, rtol=1e-6)
  assert solvers.DEFAULT_MOMENTUM == 0.8 and solvers.DEFAULT_LEARNING_RATE_SCALE == 0.5
  # A mask of ones counts every entry: 12 observed, busiest 3 + 4.
  everything = objectives.batch_of(matrix, np.ones_like(matrix, bool), jnp.float32)
  updates = _first_update(solvers.default_optimizer(everything), params)
  np.testing.assert_allclose(updates.user_factors, -0.5 * 12 / 7, rtol=1e-6)


def test_default_optimizer_for_ratings_is_adam():
  ratings = mfjax.ratings_from_dense(np.array([[5.0, 0.0], [3.0, 1.0]]))
  params = mfjax.init_params(jax.random.key(0), 2, 2, 1)
  optimizer = solvers.default_optimizer(objectives.batch_of(ratings, None, jnp.float32))
  assert solvers.DEFAULT_SPARSE_LEARNING_RATE == 0.01
  # Adam's first step is -learning_rate · sign(gradient), whatever its size.
  for scale in (1e-3, 1.0, 1e3):
    grads = jax.tree.map(lambda x, s=scale: s * jnp.ones_like(x), params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_allclose(updates.item_factors, -0.01, rtol=1e-4)


@pytest.mark.parametrize(
  "seed, n_users, n_items, density",
  [
    (0, 30, 20, 0.6),
    pytest.param(1, 50, 40, 0.5, marks=pytest.mark.slow),
    pytest.param(2, 100, 80, 0.3, marks=pytest.mark.slow),
    pytest.param(3, 300, 100, 0.2, marks=pytest.mark.slow),
  ],
)
def test_defaults_recover_planted_low_rank_matrix(seed, n_users, n_items, density):
  full, matrix, observed = planted_matrix(seed, n_users, n_items, 3, density)
  params = mfjax.init_params(jax.random.key(seed), n_users, n_items, 3)
  result = jax.jit(mfjax.train)(params, matrix)
  # The planted noise is 0.1 and the ratings spread ~1: held-out entries are
  # recovered to within a small multiple of the noise.
  assert _heldout_rmse(result, full, observed) < 0.2
  assert float(result.best_loss) < 0.02
  # Far better than the mean-only predictor the training starts from.
  baseline = float(np.sqrt(np.mean((full - matrix[observed].mean())[~observed] ** 2)))
  assert _heldout_rmse(result, full, observed) < 0.25 * baseline


def _pad(x, n):
  x = np.asarray(x)
  return np.pad(x, [(0, n - x.shape[0])] + [(0, 0)] * (x.ndim - 1))


@pytest.mark.slow
def test_defaults_do_not_diverge_on_unstructured_ratings():
  # Random 1-5 ratings have no low-rank structure: large residuals, large factors.
  # Eight random shapes from 3x3 to 11x11, each padded to 11x11 with users and
  # items without ratings and with zero factors. Those change neither the loss nor
  # the default learning rate (0.5 * observed / (busiest user + busiest item)) and,
  # without l2, never move: each run is the unpadded one, and one program per
  # rank trains all eight.
  matrices = np.zeros((8, 11, 11), np.float32)
  inits = {2: [], 3: []}
  for seed in range(8):
    rng = np.random.default_rng(seed)
    n_users, n_items = rng.integers(3, 12, size=2)
    matrices[seed, :n_users, :n_items] = np.where(
      rng.random((n_users, n_items)) < 0.6, rng.integers(1, 6, (n_users, n_items)), 0
    )
    for rank in inits:
      p = mfjax.init_params(jax.random.key(seed), n_users, n_items, rank)
      inits[rank].append(mfjax.Params(*(_pad(x, 11) for x in p[:4]), np.float32(0)))
  for rank, params in inits.items():
    stacked = jax.tree.map(lambda *x: np.stack(x), *params)
    result = jax.jit(jax.vmap(mfjax.train))(stacked, matrices)
    losses = np.asarray(result.losses)
    assert not np.any(np.asarray(result.diverged)), rank
    assert np.all(losses[:, -1] < losses[:, 0]), (rank, losses[:, [0, -1]])


# --- the solvers' steps --------------------------------------------------------------


@pytest.mark.slow
def test_full_batch_step_is_one_optax_step_on_the_loss_before_it():
  _, matrix, _, ratings = _data(0, 9, 7)
  params = mfjax.init_params(jax.random.key(0), 9, 7, 3)._replace(mean=jnp.float32(3))
  opt = optax.adam(0.05)
  for data in (matrix, ratings):
    batch = objectives.batch_of(data, None, jnp.float32)
    solver = solvers.full_batch(RATING, batch, PENALTY, opt)
    assert solver.loss_after is False
    state = solver.init(params)
    new, state, value = jax.jit(solver.step)(params, state, jnp.array(0))

    @jax.jit
    def by_hand(p, data):
      loss = lambda p: mfjax.loss(p, data, l2=0.3, l2_bias=0.1)
      value, grads = jax.value_and_grad(loss)(p)
      updates, _ = opt.update(grads._replace(mean=jnp.zeros(())), opt.init(p))
      return value, optax.apply_updates(p, updates)._replace(mean=p.mean)

    expected_value, expected = by_hand(params, data)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    chex.assert_trees_all_close(new, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(new.mean, 3.0)  # The mean is data.


@pytest.mark.parametrize("chunk_size", [1, 7, 40, 1000])
def test_chunked_step_equals_the_full_batch_step(chunk_size):
  _, _, _, ratings = _data(1, 9, 7)  # 35 ratings: 35 chunks, 5, or all in one.
  params = mfjax.init_params(jax.random.key(1), 9, 7, 3)._replace(mean=jnp.float32(3))
  opt = optax.sgd(0.1)
  pairs = objectives.batch_of(ratings, None, jnp.float32)
  full = solvers.full_batch(RATING, pairs, PENALTY, opt)
  chunked = solvers.chunked(RATING, pairs, PENALTY, opt, chunk_size)
  assert chunked.loss_after is False
  a = jax.jit(full.step)(params, full.init(params), jnp.array(0))
  b = jax.jit(chunked.step)(params, chunked.init(params), jnp.array(0))
  chex.assert_trees_all_close(b, a, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_minibatch_pass_is_a_step_per_batch_in_a_shuffled_order():
  _, _, _, ratings = _data(2, 9, 7)
  n = len(ratings)
  params = mfjax.init_params(jax.random.key(2), 9, 7, 3)._replace(mean=jnp.float32(3))
  opt = optax.sgd(0.05)
  order_key, key = jax.random.key(6), jax.random.key(7)
  solver = solvers.minibatch(
    RATING, ratings, PENALTY, opt, 8, jnp.float32, key=order_key
  )
  assert solver.loss_after is True
  new, _, value = jax.jit(solver.step)(params, solver.init(params), key)

  # By hand: the fit's order (the stride order, wrapped around), cut in the
  # epoch's windows (shuffle.epoch_windows), one SGD step each.
  stride = np.asarray(jax.jit(shuffle.stride_order, static_argnums=1)(order_key, n))
  windows = jax.jit(shuffle.epoch_windows, static_argnums=(1, 2))(key, n, 8)
  order = [
    stride[(start + np.arange(count)) % n]
    for start, count in zip(*map(np.asarray, windows), strict=True)
  ]

  @jax.jit
  def sgd_step(p, users, items, values):
    pairs = objectives.Pairs(users, items, values, jnp.ones(len(values)), n)
    value, grads = jax.value_and_grad(RATING.loss)(p, pairs, PENALTY)
    p = jax.tree.map(lambda x, g: x - 0.05 * g, p, grads)
    return p._replace(mean=jnp.float32(3)), value

  p, values = params, []
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  vals = np.asarray(ratings.values)
  for real in order:
    p, v = sgd_step(p, users[real], items[real], vals[real])
    values.append(float(v))
  np.testing.assert_allclose(value, np.mean(values), rtol=1e-5)
  chex.assert_trees_all_close(new, p, rtol=1e-5, atol=1e-6)


def _padded(ratings, pad):
  """``ratings`` and ``pad`` more entries of weight 0 (index 0), not marked as
  padding: only ``MiniBatch.n_data`` says where the data ends."""
  n = len(ratings)
  extend = lambda x, dtype: np.concatenate([np.asarray(x, dtype), np.zeros(pad, dtype)])
  weights = np.r_[np.ones(n, np.float32), np.zeros(pad, np.float32)]
  return mfjax.Ratings(
    extend(ratings.users, np.int32), extend(ratings.items, np.int32),
    extend(ratings.values, np.float32), ratings.n_users, ratings.n_items,
    weights=weights,
  )  # fmt: skip


@pytest.mark.slow
def test_a_traced_data_count_trains_as_the_unpadded_ratings():
  _, _, _, ratings = _data(4, 30, 20)
  n = len(ratings)
  params = mfjax.init_params(jax.random.key(1), 30, 20, 3)
  settings = dict(optimizer=optax.adam(0.02), steps=4, l2=0.1, key=jax.random.key(2))

  @jax.jit
  def padded_run(n_data, data):
    solver = solvers.MiniBatch(64, n_data=n_data)
    return mfjax.train(params, data, solver=solver, **settings)

  # Two data sizes padded to one length, n + 100: one program (n_data traced).
  for size in (n, n - 70):
    part = ratings.subset(np.arange(size))
    unpadded = mfjax.train(params, part, batch_size=64, **settings)
    padded = _padded(part, n + 100 - size)
    result = padded_run(jnp.int32(size), padded)
    chex.assert_trees_all_close(result, unpadded, rtol=1e-5, atol=1e-6)
    # A static count: the same, the initial params' loss included.
    static = mfjax.train(
      params, padded, solver=solvers.MiniBatch(64, n_data=size), **settings
    )
    chex.assert_trees_all_close(static, unpadded, rtol=1e-5, atol=1e-6)
  assert padded_run._cache_size() == 1


@pytest.mark.slow
def test_order_keys_under_vmap_train_as_each_model_alone():
  _, _, _, ratings = _data(5, 30, 20)
  settings = dict(optimizer=optax.adam(0.02), steps=3, l2=0.1, key=jax.random.key(2))
  inits = jax.random.split(jax.random.key(3), 2)
  order_keys = jax.random.split(jax.random.key(4), 2)

  def one(init_key, order_key):
    params = mfjax.init_params(init_key, 30, 20, 3)
    solver = solvers.MiniBatch(16, order_key=order_key)
    return mfjax.train(params, ratings, solver=solver, **settings)

  both = jax.jit(jax.vmap(one))(inits, order_keys)
  for m in range(2):
    alone = jax.jit(one)(inits[m], order_keys[m])
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, m=m: x[m], both), alone, rtol=1e-5, atol=1e-6
    )
  # Different orders, different batches: the two models' losses differ.
  assert not np.allclose(both.losses[0], both.losses[1])
  # Without order_key, train's key draws it: the first of its steps + 1 keys.
  params = mfjax.init_params(inits[0], 30, 20, 3)
  default = mfjax.train(params, ratings, batch_size=16, **settings)
  first = jax.random.split(settings["key"], 4)[0]
  chex.assert_trees_all_close(
    default, jax.jit(one)(inits[0], first), rtol=1e-4, atol=1e-6
  )


def test_minibatch_spec_checks():
  with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
    solvers.MiniBatch(0)
  with pytest.raises(TypeError, match="n_data must be an int >= 1"):
    solvers.MiniBatch(8, n_data=2.5)
  with pytest.raises(TypeError, match="integer scalar"):
    solvers.MiniBatch(8, n_data=jnp.ones(2, jnp.int32))
  assert solvers.MiniBatch(8, n_data=np.int64(5)).n_data == 5
  with pytest.raises(TypeError, match="order_key"):
    solvers.MiniBatch(8, order_key=3)
  _, _, _, ratings = _data(4, 30, 20)
  params = mfjax.init_params(jax.random.key(1), 30, 20, 3)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="entries before their padding"):
    mfjax.train(params, ratings, solver=solvers.MiniBatch(8, len(ratings) + 1), key=key)
  with pytest.raises(ValueError, match="leave out batch_size"):
    mfjax.train(params, ratings, solver=solvers.MiniBatch(8), batch_size=8, key=key)
  with pytest.raises(ValueError, match="needs key="):
    mfjax.train(params, ratings, solver=solvers.MiniBatch(8))


# --- training on sparse Ratings ------------------------------------------------------


_ADAM = optax.adam(0.05)


@functools.partial(jax.jit, static_argnames="batch_size")
def _train_adam(params, data, l2, key=None, batch_size=None):
  """30 Adam steps; one program per data shape and batch size, shared by tests."""
  return mfjax.train(
    params, data, optimizer=_ADAM, steps=30, l2=l2, key=key, batch_size=batch_size
  )


def test_sparse_and_dense_training_agree():
  _, matrix, _, ratings = _data(1)
  params = mfjax.init_params(jax.random.key(1), 30, 20, 3)
  dense = _train_adam(params, matrix, 0.1)
  sparse = _train_adam(params, ratings, 0.1)
  np.testing.assert_allclose(sparse.losses, dense.losses, rtol=1e-4)
  chex.assert_trees_all_close(
    sparse.best_params, dense.best_params, rtol=1e-3, atol=1e-4
  )


@pytest.mark.slow
def test_one_batch_per_epoch_equals_full_batch():
  _, _, _, ratings = _data(1)
  params = mfjax.init_params(jax.random.key(2), 30, 20, 3)
  full = _train_adam(params, ratings, 0.0)
  batch_size = len(ratings) + 7
  batched = _train_adam(params, ratings, 0.0, jax.random.key(0), batch_size)
  # A mini-batch loss belongs to the params before its update, like full-batch.
  np.testing.assert_allclose(batched.losses, full.losses, rtol=1e-4)
  chex.assert_trees_all_close(batched.params, full.params, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_mini_batches_recover_a_planted_model():
  # A planted biased rank-4 model with noise 0.1: 150 x 100 at 80 %, ~12000 ratings.
  _, matrix, _ = planted_matrix(3, 150, 100, 4, 0.8)
  ratings = mfjax.ratings_from_dense(matrix)
  train, test = mfjax.train_test_split(ratings, test_fraction=0.1, seed=0)
  params = mfjax.init_params(jax.random.key(4), 150, 100, 4)
  result = jax.jit(
    lambda p, k: mfjax.train(
      p, train, optimizer=optax.adam(0.01), steps=40, batch_size=256, key=k, l2=0.1
    )
  )(params, jax.random.key(5))
  err = float(mfjax.rmse(result.best_params, test))
  baseline = float(jnp.std(test.values))
  assert err < 0.3 and err < 0.25 * baseline
  assert float(result.losses[-1]) < 0.25 * float(result.losses[0])


# --- any optax optimizer --------------------------------------------------------------


@pytest.mark.slow
def test_any_optax_optimizer_plugs_in():
  full, matrix, observed = planted_matrix(5, 40, 30, 3, 0.5)
  params = mfjax.init_params(jax.random.key(5), 40, 30, 3)
  result = mfjax.train(params, matrix, optimizer=optax.adam(0.05), steps=300)
  assert _heldout_rmse(result, full, observed) < 0.3


@pytest.mark.slow
def test_line_search_optimizers_get_value_and_function():
  full, matrix, observed = planted_matrix(5, 40, 30, 3, 0.5)
  params = mfjax.init_params(jax.random.key(5), 40, 30, 3)
  result = mfjax.train(params, matrix, optimizer=optax.lbfgs(), steps=100)
  assert not bool(result.diverged)
  assert _heldout_rmse(result, full, observed) < 0.3
