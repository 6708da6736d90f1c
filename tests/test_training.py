"""train: the scan, the best-loss carry, jit/vmap behaviour, defaults and errors."""

import re
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mfjax
from tests.conftest import planted_matrix


def _heldout_rmse(result, full, observed):
  pred = np.asarray(mfjax.predict(result.best_params))
  return float(np.sqrt(np.mean((pred - full)[~observed] ** 2)))


@pytest.mark.parametrize(
  "seed, n_users, n_items, density",
  [(0, 30, 20, 0.6), (1, 50, 40, 0.5), (2, 100, 80, 0.3), (3, 300, 100, 0.2)],
)
def test_defaults_recover_planted_low_rank_matrix(seed, n_users, n_items, density):
  full, matrix, observed = planted_matrix(seed, n_users, n_items, 3, density)
  params = mfjax.init_params(jax.random.key(seed), n_users, n_items, 3)
  result = mfjax.train(params, matrix)
  # The planted noise is 0.1 and the ratings spread ~1: held-out entries are
  # recovered to within a small multiple of the noise.
  assert _heldout_rmse(result, full, observed) < 0.2
  assert float(result.best_loss) < 0.02
  # Far better than the mean-only predictor the training starts from.
  baseline = float(np.sqrt(np.mean((full - matrix[observed].mean())[~observed] ** 2)))
  assert _heldout_rmse(result, full, observed) < 0.25 * baseline


@pytest.mark.parametrize("seed", range(8))
def test_defaults_do_not_diverge_on_unstructured_ratings(seed):
  # Random 1-5 ratings have no low-rank structure: large residuals, large factors.
  rng = np.random.default_rng(seed)
  n_users, n_items = rng.integers(3, 12, size=2)
  matrix = np.where(
    rng.random((n_users, n_items)) < 0.6, rng.integers(1, 6, (n_users, n_items)), 0
  ).astype(np.float32)
  for rank in (2, 3):
    params = mfjax.init_params(jax.random.key(seed), n_users, n_items, rank)
    result = mfjax.train(params, matrix)
    assert not bool(result.diverged)
    assert float(result.losses[-1]) < float(result.losses[0])


def test_default_learning_rate_formula():
  matrix = np.array([[5, 0, 3], [4, 2, 0], [1, 1, 1], [0, 0, 2]], np.float32)
  # 8 observed; busiest user 3 ratings, busiest item 3 ratings.
  np.testing.assert_allclose(mfjax.default_learning_rate(matrix), 0.5 * 8 / 6)
  mask = np.ones_like(matrix, bool)
  np.testing.assert_allclose(mfjax.default_learning_rate(matrix, mask), 0.5 * 12 / 7)


def test_mean_is_observed_mean_and_never_trained():
  full, matrix, _ = planted_matrix(0, 20, 15, 2, 0.5)
  params = mfjax.init_params(jax.random.key(0), 20, 15, 2)._replace(mean=jnp.float32(9))
  # adamw decays every leaf, the mean included, if train let it.
  result = mfjax.train(
    params, matrix, optimizer=optax.adamw(0.05, weight_decay=0.5), steps=20
  )
  expected = matrix[matrix != 0].mean()
  for p in (result.params, result.best_params):
    np.testing.assert_allclose(p.mean, expected, rtol=1e-6)
  # Even with a mask that counts the zeros, mean is that of the non-zero entries.
  ones = np.ones_like(matrix, bool)
  result = mfjax.train(params, matrix, mask=ones, steps=3)
  np.testing.assert_allclose(result.params.mean, expected, rtol=1e-6)


def test_best_loss_carry_matches_a_python_loop():
  _, matrix, _ = planted_matrix(4, 12, 9, 2, 0.7)
  params = mfjax.init_params(jax.random.key(4), 12, 9, 2, init="uniform", scale=1.0)
  opt = optax.sgd(0.3, momentum=0.95)  # Oscillates, so the best is not the last.
  result = mfjax.train(params, matrix, optimizer=opt, steps=40)

  p = params._replace(mean=jnp.float32(matrix[matrix != 0].mean()))
  state, best, best_loss, losses = opt.init(p), None, np.inf, []
  for _ in range(40):
    value, grads = jax.value_and_grad(mfjax.loss)(p, matrix)
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


def test_any_optax_optimizer_plugs_in():
  full, matrix, observed = planted_matrix(5, 40, 30, 3, 0.5)
  params = mfjax.init_params(jax.random.key(5), 40, 30, 3)
  result = mfjax.train(params, matrix, optimizer=optax.adam(0.05), steps=300)
  assert _heldout_rmse(result, full, observed) < 0.3


def test_line_search_optimizers_get_value_and_function():
  full, matrix, observed = planted_matrix(5, 40, 30, 3, 0.5)
  params = mfjax.init_params(jax.random.key(5), 40, 30, 3)
  result = mfjax.train(params, matrix, optimizer=optax.lbfgs(), steps=100)
  assert not bool(result.diverged)
  assert _heldout_rmse(result, full, observed) < 0.3


def test_jit_equals_eager():
  _, matrix, _ = planted_matrix(6, 15, 10, 2, 0.6)
  params = mfjax.init_params(jax.random.key(6), 15, 10, 2)
  eager = mfjax.train(params, matrix, steps=30, l2=0.05)
  jitted = jax.jit(mfjax.train, static_argnames="steps")(
    params, matrix, steps=30, l2=0.05
  )
  chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)


def test_traces_once_per_shape_and_settings():
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


def test_vmap_over_keys_matches_unbatched():
  _, matrix, _ = planted_matrix(7, 20, 12, 2, 0.6)
  keys = jax.random.split(jax.random.key(7), 4)
  batch = jax.vmap(lambda k: mfjax.init_params(k, 20, 12, 2))(keys)
  batched = jax.jit(jax.vmap(lambda p: mfjax.train(p, matrix, steps=50)))(batch)
  assert batched.losses.shape == (4, 50)
  for j, key in enumerate(keys):
    single = mfjax.train(mfjax.init_params(key, 20, 12, 2), matrix, steps=50)
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, j=j: x[j], batched), single, rtol=1e-4, atol=1e-5
    )


def test_vmap_over_l2_matches_unbatched():
  _, matrix, _ = planted_matrix(8, 20, 12, 2, 0.6)
  params = mfjax.init_params(jax.random.key(8), 20, 12, 2)
  l2s = jnp.array([0.0, 0.1, 1.0, 10.0])
  batched = jax.vmap(lambda l2: mfjax.train(params, matrix, steps=50, l2=l2))(l2s)
  for j, l2 in enumerate(l2s):
    single = mfjax.train(params, matrix, steps=50, l2=float(l2))
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, j=j: x[j], batched), single, rtol=1e-4, atol=1e-5
    )
  # Stronger regularisation shrinks the factors.
  norms = np.linalg.norm(np.asarray(batched.best_params.user_factors), axis=(1, 2))
  assert np.all(np.diff(norms) < 0)


def test_vmap_over_keys_and_l2_together():
  _, matrix, _ = planted_matrix(8, 20, 12, 2, 0.6)
  keys = jax.random.split(jax.random.key(8), 3)
  l2s = jnp.array([0.0, 0.1, 1.0])

  def run(key, l2):
    return mfjax.train(mfjax.init_params(key, 20, 12, 2), matrix, steps=40, l2=l2)

  grid = jax.vmap(jax.vmap(run, in_axes=(None, 0)), in_axes=(0, None))(keys, l2s)
  assert grid.best_loss.shape == (3, 3)
  for a, key in enumerate(keys):
    for b, l2 in enumerate(l2s):
      single = run(key, float(l2))
      np.testing.assert_allclose(grid.best_loss[a, b], single.best_loss, rtol=1e-4)


def test_no_host_callback_in_the_loop_unless_progress():
  _, matrix, _ = planted_matrix(9, 6, 5, 2, 0.8)
  params = mfjax.init_params(jax.random.key(9), 6, 5, 2)
  quiet = str(jax.make_jaxpr(lambda p: mfjax.train(p, matrix, steps=5))(params))
  loud = str(
    jax.make_jaxpr(lambda p: mfjax.train(p, matrix, steps=5, progress=True))(params)
  )
  assert "callback" not in quiet
  assert "callback" in loud
  assert quiet.count("scan[") == 1


def test_progress_bar_reports_every_step(capsys):
  _, matrix, _ = planted_matrix(10, 6, 5, 2, 0.8)
  params = mfjax.init_params(jax.random.key(10), 6, 5, 2)
  result = mfjax.train(params, matrix, steps=7, progress=True)
  jax.effects_barrier()
  err = capsys.readouterr().err
  assert "mfjax train" in err and "7/7" in err
  quiet = mfjax.train(params, matrix, steps=7)
  chex.assert_trees_all_close(result, quiet)


def test_progress_bar_under_jit_vmap_and_one_step(capsys):
  _, matrix, _ = planted_matrix(10, 6, 5, 2, 0.8)
  keys = jax.random.split(jax.random.key(10), 3)
  run = jax.jit(
    jax.vmap(
      lambda k: mfjax.train(
        mfjax.init_params(k, 6, 5, 2), matrix, steps=4, progress=True
      )
    )
  )
  for _ in range(2):  # The second call of the compiled program gets its own bar.
    result = run(keys)
    jax.effects_barrier()
  err = capsys.readouterr().err
  assert err.count("4/4") == 2
  shown = re.findall(r"4/4 .*loss=(\d+\.\d+)", err)
  assert len(shown) == 2
  assert any(abs(float(shown[-1]) - float(v)) < 1e-4 for v in result.losses[:, -1])
  one = jax.jit(lambda p: mfjax.train(p, matrix, steps=1, progress=True))
  params = mfjax.init_params(keys[0], 6, 5, 2)
  for _ in range(2):
    one(params)
    jax.effects_barrier()
  assert capsys.readouterr().err.count("1/1") == 2


def test_divergence_keeps_best_finite_params():
  _, matrix, _ = planted_matrix(11, 10, 8, 2, 0.8)
  params = mfjax.init_params(jax.random.key(11), 10, 8, 2)
  result = mfjax.train(params, matrix, optimizer=optax.sgd(1e4), steps=30)
  losses = np.asarray(result.losses)
  assert bool(result.diverged)
  first_bad = int(np.argmax(~np.isfinite(losses)))
  assert int(result.diverged_step) == first_bad > 0
  assert np.isfinite(float(result.best_loss))
  assert float(result.best_loss) == losses[np.isfinite(losses)].min()
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in result.best_params)
  np.testing.assert_allclose(
    mfjax.loss(result.best_params, matrix), result.best_loss, rtol=1e-5
  )


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(steps=0), ValueError, "steps must be an int >= 1; got 0"),
    (dict(steps=10.0), TypeError, "steps must be an int"),
    (dict(l2=-1.0), ValueError, "l2 must be a finite number >= 0"),
    (dict(bias="dot"), ValueError, "bias must be one of"),
    (dict(optimizer="adam"), TypeError, "optimizer must be an optax"),
    (dict(mask=np.ones((3, 3))), ValueError, "mask must have the shape of data"),
  ],
)
def test_train_bad_settings(kwargs, error, match):
  params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
  with pytest.raises(error, match=match):
    mfjax.train(params, mfjax.NOTEBOOK_MATRIX, **kwargs)


def test_default_helpers_check_their_input():
  with pytest.raises(ValueError, match="data must be a 2-D array"):
    mfjax.default_learning_rate(np.ones(3))
  with pytest.raises(ValueError, match="mask must have the shape of data"):
    mfjax.default_optimizer(np.ones((3, 3)), mask=np.ones((2, 3)))
  with pytest.raises(ValueError, match="data must be finite"):
    mfjax.observed_mean([[1.0, np.inf]])


def test_train_params_that_do_not_match_the_matrix():
  params = mfjax.init_params(jax.random.key(0), 6, 4, 3)
  with pytest.raises(ValueError, match=r"data must have shape .* = \(6, 4\)"):
    mfjax.train(params, mfjax.NOTEBOOK_MATRIX)
  with pytest.raises(ValueError, match="data must be finite"):
    mfjax.train(mfjax.init_params(jax.random.key(0), 2, 2, 1), [[1.0, np.nan], [2, 3]])
  with pytest.raises(ValueError, match="data must have shape"):  # Static under jit.
    jax.jit(mfjax.train)(params, jnp.ones((4, 6)))


def test_fit_is_the_cli_program_and_recovers_a_planted_model():
  ratings, _ = mfjax.synthetic_ratings(
    jax.random.key(0), 120, 80, 6000, 3, noise=0.1, scale=None
  )
  train_set, test_set = mfjax.train_test_split(ratings, test_fraction=0.2, seed=0)
  settings = dict(rank=4, epochs=30, learning_rate=0.02, batch_size=512, seeds=2)
  fitted = mfjax.fit(jax.random.key(1), train_set, l2=0.1, l2_bias=0.1, **settings)
  train_lib = sys.modules["mfjax.train"]
  program = train_lib._fit_program(4, 30, 0.02, 512, 2, None, False)
  results, params = program(
    jax.random.key(1), train_set, jnp.float32(0.1), jnp.float32(0.1), None, None
  )
  chex.assert_trees_all_equal(fitted.params, params)
  assert fitted.params.user_factors.shape == (120, 8)
  assert fitted.results.losses.shape == (2, 30)
  error = float(mfjax.rmse(fitted.params, test_set))
  assert error < 0.5 * float(jnp.std(test_set.values))
  before = train_lib._cached_fit_program.cache_info().hits
  mfjax.fit(jax.random.key(2), train_set, l2=0.5, l2_bias=0.1, **settings)
  assert train_lib._cached_fit_program.cache_info().hits == before + 1


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(rank=0), ValueError, "rank must be an int >= 1"),
    (dict(seeds=1.5), TypeError, "seeds"),
    (dict(learning_rate=0.0), ValueError, "learning_rate must be finite and > 0"),
    (dict(learning_rate="0.1"), TypeError, "learning_rate must be a number"),
    (dict(l2=-1.0), ValueError, "l2"),
    (dict(patience=0), ValueError, "patience"),
  ],
)
def test_fit_bad_settings(kwargs, error, match):
  ratings = mfjax.ratings_from_dense(jnp.array([[5.0, 3.0], [4.0, 0.0]]))
  with pytest.raises(error, match=match):
    mfjax.fit(jax.random.key(0), ratings, **kwargs)
  with pytest.raises(TypeError, match="ratings must be mfjax.Ratings"):
    mfjax.fit(jax.random.key(0), jnp.ones((2, 2)))


def test_progress_bar_uses_the_text_bar_without_ipywidgets(monkeypatch):
  import builtins

  from tqdm.std import tqdm as text_bar

  real_import = builtins.__import__

  def no_widgets(name, *args, **kwargs):
    if name == "ipywidgets":
      raise ImportError(name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_widgets)
  # tqdm.auto would warn (an error under this suite's filterwarnings) in Jupyter.
  assert sys.modules["mfjax.train"]._tqdm() is text_bar
