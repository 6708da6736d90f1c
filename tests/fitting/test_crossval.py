"""Cross-validation (mfjax.fitting.crossval) against folds fitted by hand."""

import dataclasses

import jax
import numpy as np
import pytest

import mfjax
from mfjax.core import objectives
from mfjax.fitting import buckets, crossval


@pytest.fixture(scope="module")
def data():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 40, 30, 1200, rank=3)
  return ratings


@pytest.mark.slow  # Compiles fit programs: several seconds.
def test_ranking_folds_match_fits_by_hand(data):
  result = mfjax.cross_validate(data, folds=3, seed=1, objective="ranking", rank=4)
  assert result.objective == "ranking"
  assert result.settings["rank"] == 4
  for j, (train, test) in enumerate(mfjax.kfold(data, 3, seed=1)):
    key = jax.random.fold_in(jax.random.key(1), j)
    params = mfjax.fit(key, train, objective="ranking", rank=4).best_params
    users = np.unique(np.asarray(test.users)).astype(np.int32)
    top, _ = mfjax.recommend(params, users, 10, exclude=train)
    expected = mfjax.ranking_metrics(top, users, test, k=10)
    # The padded training part (weight-0 entries) gives the same model.
    np.testing.assert_allclose(result.metrics["ndcg"][j], expected.ndcg, atol=1e-4)
    np.testing.assert_allclose(result.metrics["recall"][j], expected.recall, atol=1e-4)
    assert result.n_train[j] == len(train) and result.n_test[j] == len(test)
  # One compilation for all folds.
  assert result.compile_seconds[0] > 0 and not result.compile_seconds[1:].any()


@pytest.mark.slow
def test_padding_does_not_change_the_loss(data):
  train = data.subset(np.arange(1000))
  padded = crossval.padded(train, 1100)
  assert len(padded) == 1100
  params = mfjax.init_params(jax.random.key(2), data.n_users, data.n_items, 3)
  params = params._replace(mean=np.float32(3.5))
  for objective in (objectives.RATING, objectives.Ranking(alpha0=2.0)):
    a = mfjax.loss(params, train, l2=0.5, objective=objective)
    b = mfjax.loss(params, padded, l2=0.5, objective=objective)
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.slow
def test_rating_folds_report_rmse_mae_and_a_table(data):
  result = mfjax.cross_validate(
    data, folds=2, objective="rating", scale=(1, 5), rank=3, steps=2, ensemble=1
  )
  assert set(result.metrics) == {"rmse", "mae"}
  assert (result.metrics["mae"] <= result.metrics["rmse"]).all()
  assert (result.metrics["rmse"] < 1.5).all()  # The ratings' std is about 1.2.
  table = result.table().splitlines()
  assert table[0].split() == ["Fold", "1", "Fold", "2", "Mean", "Std"]
  rmse = [float(x) for x in table[1].split()[1:]]
  np.testing.assert_allclose(rmse[:2], result.metrics["rmse"], atol=1e-4)
  np.testing.assert_allclose(rmse[2], result.metrics["rmse"].mean(), atol=1e-4)


@pytest.mark.slow  # benchmarks/fast_loop.py: faster tests run its lines.
@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(folds=1), ValueError, r"folds must lie in \[2"),
    (dict(objective="rating", alpha0=1.0), TypeError, "'alpha0' is not a setting"),
    (dict(objective="ranking", learning_rate=0.1), TypeError, "not a setting"),
    (dict(objective="other"), ValueError, "objective"),
    (dict(k=31), ValueError, "k must be at most n_items = 30"),
    (dict(rank=0), ValueError, "rank"),
  ],
)
def test_bad_arguments_are_refused_before_any_fit(data, kwargs, error, match):
  with pytest.raises(error, match=match):
    mfjax.cross_validate(data, **kwargs)


@pytest.mark.slow
def test_the_default_batch_size_is_fits_for_the_padded_folds():
  # batch_size_for of the folds' bucket: with one batch an epoch, all of it.
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 60, 40, 9000, rank=2)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(buckets, "BATCHES_PER_EPOCH", 1)
    result = mfjax.cross_validate(ratings, folds=2, steps=1, ensemble=1, rank=2)
  assert max(result.n_train) == 4500
  assert result.settings["batch_size"] == buckets.bucket(4500) == 6144


@pytest.mark.slow
def test_settings_default_to_the_tuned_ones(data):
  result = mfjax.cross_validate(data, folds=2, steps=1, ensemble=1)
  expected = mfjax.FitSettings(steps=1, ensemble=1)
  assert result.settings == expected._asdict()


@pytest.mark.slow
def test_ranking_folds_of_different_sizes_share_one_program(data):
  # 1199 ratings in 3 folds: training parts of 799 and 800, each padded (with
  # weights) to one shape, so that the program compiled for the first serves all.
  odd = data.subset(np.arange(1199))
  result = mfjax.cross_validate(odd, folds=3, objective="ranking", rank=2, steps=1, k=5)
  assert sorted(set(result.n_train.tolist())) == [799, 800]
  assert np.isfinite(result.metrics["ndcg"]).all()
  assert result.compile_seconds[0] > 0 and not result.compile_seconds[1:].any()


@pytest.mark.slow
def test_ranking_folds_weigh_alike_what_all_the_ratings_decide(data):
  # One rating of 20 among 1..5 stars: all the ratings look like counts, but a
  # fold whose training part lacks the 20 would look like stars. Every fold
  # runs the first fold's program, so the choice is made once, on all of them.
  values = np.asarray(data.values).copy()
  values[7] = 20.0
  counts = dataclasses.replace(data, values=jax.numpy.asarray(values))
  kwargs = dict(folds=3, seed=1, objective="ranking", rank=2, steps=1)
  chosen = mfjax.cross_validate(counts, **kwargs)
  assert chosen.settings["confidence_transform"] == "log"
  assert chosen.settings["confidence"] == 0.0
  said = mfjax.cross_validate(
    counts, confidence_transform="log", confidence=0.0, **kwargs
  )
  np.testing.assert_array_equal(chosen.metrics["ndcg"], said.metrics["ndcg"])
