"""fit(..., solver="gibbs"): the Bayesian rating fit through the one fit path, and
a model that serves, saves and cross-validates like any other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax.core import training
from mfjax.fitting import plan, sampler
from mfjax.settings import GibbsSettings
from tests.conftest import planted_matrix

SMALL = dict(solver="gibbs", rank=3, samples=12, burn_in=4)


@pytest.fixture(scope="module")
def planted_split():
  full, matrix, observed = planted_matrix(1, 70, 50, 3, 0.4, noise=0.3)
  ratings = mfjax.ratings_from_dense(matrix)
  train, test = mfjax.train_test_split(ratings, test_fraction=0.2, seed=0)
  return train, test


@pytest.mark.slow
def test_gibbs_fit_returns_the_posterior_mean_and_its_sweeps(planted_split):
  train, test = planted_split
  fitted = mfjax.fit(jax.random.key(0), train, **SMALL)
  assert fitted.objective == "rating"
  # 12 draws of rank 3 = 36 <= max_rank 64: the draws side by side.
  assert fitted.best_params.user_factors.shape == (70, 36)
  assert fitted.members.losses.shape == (1, 16)
  assert int(fitted.members.best_step[0]) == 16
  assert int(fitted.members.diverged_step[0]) == -1
  assert training.failure(fitted.members) is None
  # The losses are each sweep's training MSE: they fall from the mean-only one.
  losses = np.asarray(fitted.members.losses[0])
  assert losses[-1] < 0.5 * float(fitted.members.initial_loss[0])
  # Better on held-out ratings than the mean and biases alone would be.
  bias_only = fitted.best_params._replace(
    user_factors=jnp.zeros_like(fitted.best_params.user_factors)
  )
  assert mfjax.rmse(fitted.best_params, test) < 0.9 * mfjax.rmse(bias_only, test)


@pytest.mark.slow
def test_gibbs_model_serves_saves_and_folds_in(planted_split, tmp_path):
  train, test = planted_split
  fitted = mfjax.fit(jax.random.key(1), train, **SMALL)
  model = fitted.model(train, settings={"solver": "gibbs"})
  path = tmp_path / "bayes.npz"
  mfjax.save(path, model)
  loaded = mfjax.load(path)
  assert loaded.objective == "rating" and loaded.settings == {"solver": "gibbs"}
  users, items = np.asarray(test.users), np.asarray(test.items)
  np.testing.assert_allclose(
    mfjax.predict(loaded.params, users, items),
    mfjax.predict(fitted.best_params, users, items),
    rtol=1e-6,
  )
  top_items, _ = mfjax.recommend(loaded.params, users[:3], 5, exclude=train)
  assert top_items.shape == (3, 5)
  new = mfjax.Ratings(jnp.zeros(4, jnp.int32), jnp.arange(4), jnp.full(4, 4.0), 1, 50)
  folded = mfjax.fold_in(fitted.best_params, new)
  assert np.all(np.isfinite(np.asarray(folded.user_factors)))


def test_gibbs_settings_are_refused_elsewhere_and_others_refused_by_gibbs():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 20, 15, 100, 2)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="l2 does not apply to solver='gibbs'"):
    mfjax.fit(key, ratings, solver="gibbs", l2=1.0)
  with pytest.raises(ValueError, match="steps does not apply to solver='gibbs'"):
    mfjax.fit(key, ratings, solver="gibbs", steps=3)
  with pytest.raises(ValueError, match="samples applies to solver='gibbs' only"):
    mfjax.fit(key, ratings, samples=10)
  with pytest.raises(ValueError, match="max_rank does not apply to objective='rank"):
    mfjax.fit(key, ratings, objective="ranking", max_rank=10)
  with pytest.raises(ValueError, match="cannot fit objective='ranking'"):
    mfjax.fit(key, ratings, objective="ranking", solver="gibbs")
  with pytest.raises(ValueError, match="solver must be one of"):
    mfjax.fit(key, ratings, solver="sgd")
  with pytest.raises(ValueError, match="burn_in must be an int >= 0; got -1"):
    mfjax.fit(key, ratings, solver="gibbs", burn_in=-1)
  with pytest.raises(TypeError, match="samples must be an int >= 1"):
    mfjax.fit(key, ratings, solver="gibbs", samples=2.5)


@pytest.mark.slow  # benchmarks/fast_loop.py: faster tests run its lines.
def test_gibbs_fit_with_implicit_terms_predicts_held_out_ratings(planted_split):
  train, test = planted_split
  plain = mfjax.fit(jax.random.key(2), train, **SMALL)
  both = mfjax.fit(jax.random.key(2), train, implicit="both", **SMALL)
  assert both.best_params.user_factors.shape == (70, 36)
  assert training.failure(both.members) is None
  # The same planted model: within 10% of the plain fit's held-out RMSE.
  assert mfjax.rmse(both.best_params, test) < 1.1 * mfjax.rmse(plain.best_params, test)


def test_implicit_terms_are_checked_before_tracing():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 20, 15, 100, 2)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="implicit must be one of 'none', 'users'"):
    mfjax.fit(key, ratings, solver="gibbs", implicit="svd++")
  with pytest.raises(TypeError, match="implicit must be a str"):
    mfjax.fit(key, ratings, solver="gibbs", implicit=True)
  with pytest.raises(ValueError, match="implicit applies to solver='gibbs' only"):
    mfjax.fit(key, ratings, implicit="users")
  wide = mfjax.Ratings(jnp.array([0, 1]), jnp.array([0, 9000]), jnp.array([3.0, 4.0]),
                       2, 9001)  # fmt: skip
  with pytest.raises(ValueError, match="more than 8,192 .* use implicit='none'"):
    mfjax.fit(key, wide, solver="gibbs", implicit="users")


def test_plan_fills_the_gibbs_defaults():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 20, 15, 100, 2)
  fit_plan = plan.plan(jax.random.key(0), ratings, solver="gibbs", samples=7)
  assert fit_plan.settings == GibbsSettings(samples=7)
  assert fit_plan.objective == "rating" and fit_plan.bucketed is None


@pytest.mark.slow
def test_a_gibbs_fit_whose_draws_overflow_says_so():
  huge = mfjax.Ratings(
    jnp.array([0, 1, 2, 0]), jnp.array([0, 1, 0, 2]),
    jnp.array([1e19, -1e19, 3e19, 2.0]), 3, 3,
  )  # fmt: skip
  fitted = mfjax.fit(jax.random.key(0), huge, solver="gibbs", rank=2, samples=4)
  assert int(fitted.members.diverged_step[0]) == 0
  assert "became NaN or inf at step 1" in training.failure(fitted.members)


def test_cross_validate_runs_the_gibbs_plan_once_compiled():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 40, 30, 600, 2)
  result = mfjax.cross_validate(ratings, folds=3, **SMALL)
  assert result.settings["samples"] == 12 and result.settings["rank"] == 3
  assert result.metrics["rmse"].shape == (3,)
  assert np.all(np.isfinite(result.metrics["rmse"]))
  assert result.compile_seconds[1] == result.compile_seconds[2] == 0.0
  assert result.failures == (None, None, None)


@pytest.mark.slow
def test_cross_validate_with_implicit_terms_pads_the_folds_without_counting_the_pads():
  # Folds padded with weight-0 entries to one shape: the pads must not enter
  # the implicit terms' W (they would shift every padded row's prior mean).
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 40, 30, 600, 2)
  result = mfjax.cross_validate(ratings, folds=3, implicit="both", **SMALL)
  assert result.failures == (None, None, None)
  padded = plan.plan(jax.random.key(0), ratings, min_entries=700, implicit="both",
                     **SMALL).run()  # fmt: skip
  alone = mfjax.fit(jax.random.key(0), ratings, implicit="both", **SMALL)
  np.testing.assert_allclose(
    mfjax.predict(padded.best_params), mfjax.predict(alone.best_params), atol=2e-4
  )


def test_gibbs_program_is_cached_per_settings():
  a = sampler.cached_gibbs_program(GibbsSettings(samples=3), False)
  assert sampler.cached_gibbs_program(GibbsSettings(samples=3), False) is a
  assert sampler.cached_gibbs_program(GibbsSettings(samples=4), False) is not a
