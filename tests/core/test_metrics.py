"""Accuracy metrics (mfjax.core.metrics): RMSE and MAE, ranking metrics, popularity."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax import notebook
from mfjax.core import metrics
from tests.conftest import random_params


def _ratings(users, items, values, n_users, n_items):
  return mfjax.Ratings(
    users=jnp.asarray(users, jnp.int32),
    items=jnp.asarray(items, jnp.int32),
    values=jnp.asarray(values, jnp.float32),
    n_users=n_users,
    n_items=n_items,
  )


# --- RMSE and MAE ------------------------------------------------------------------


def _numpy_predict(params, users, items):
  """Predictions in float64; an unknown (-1) id contributes no bias or factor."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  known_u, known_i = users >= 0, items >= 0
  u, i = np.where(known_u, users, 0), np.where(known_i, items, 0)
  dot = np.sum(p.user_factors[u] * p.item_factors[i], axis=1) * known_u * known_i
  return p.mean + p.user_bias[u] * known_u + p.item_bias[i] * known_i + dot


def _scored(seed=7, n=200, n_users=30, n_items=20):
  """Params with N(0, 1) factors (predictions well outside [1, 5]) and test
  ratings with some unknown users and items."""
  params = random_params(seed, n_users, n_items, 3, mean=3.5)
  rng = np.random.default_rng(seed)
  users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
  users[rng.random(n) < 0.1] = mfjax.UNKNOWN
  items[rng.random(n) < 0.1] = mfjax.UNKNOWN
  values = rng.integers(1, 6, n).astype(np.float32)
  return params, _ratings(users, items, values, n_users, n_items)


@pytest.mark.parametrize("scale", [None, (1, 5), (2.5, 3.5)])
def test_rmse_and_mae_match_numpy(scale):
  params, test = _scored()
  users, items = np.asarray(test.users), np.asarray(test.items)
  pred = _numpy_predict(params, users, items)
  if scale is not None:
    assert pred.min() < scale[0] and pred.max() > scale[1]  # Clipping matters.
    pred = np.clip(pred, *scale)
  errors = pred - np.asarray(test.values)
  np.testing.assert_allclose(
    mfjax.rmse(params, test, scale=scale), np.sqrt(np.mean(errors**2)), rtol=1e-5
  )
  np.testing.assert_allclose(
    mfjax.mae(params, test, scale=scale), np.mean(np.abs(errors)), rtol=1e-5
  )


def test_rmse_and_mae_under_jit_with_a_traced_scale():
  params, test = _scored(8)
  fn = jax.jit(
    lambda p, r, lo, hi: (
      metrics.rmse(p, r, scale=(lo, hi)),
      metrics.mae(p, r, scale=(lo, hi)),
    )
  )
  for lo, hi in ((1.0, 5.0), (2.0, 4.0)):
    rmse, mae = fn(params, test, lo, hi)
    np.testing.assert_allclose(
      rmse, mfjax.rmse(params, test, scale=(lo, hi)), rtol=1e-6
    )
    np.testing.assert_allclose(mae, mfjax.mae(params, test, scale=(lo, hi)), rtol=1e-6)


def _pad(ratings, weights, pad):
  """``ratings`` with ``weights`` and ``pad`` weight-0 entries at the end, as
  mfjax.core.sharding.shard_ratings pads."""
  return mfjax.Ratings(
    jnp.concatenate([ratings.users, jnp.zeros(pad, jnp.int32)]),
    jnp.concatenate([ratings.items, jnp.zeros(pad, jnp.int32)]),
    jnp.concatenate([ratings.values, jnp.full(pad, 3.0)]),
    ratings.n_users,
    ratings.n_items,
    weights=jnp.concatenate([jnp.asarray(weights, jnp.float32), jnp.zeros(pad)]),
    n_padding=pad,
  )


def test_rmse_and_mae_weigh_ratings_and_ignore_weight_zero():
  params, test = _scored(9)
  n = len(test)
  errors = _numpy_predict(params, np.asarray(test.users), np.asarray(test.items))
  errors = errors - np.asarray(test.values)
  both = jax.jit(lambda p, r: (mfjax.rmse(p, r), mfjax.mae(p, r)))
  weights = np.linspace(0.0, 2.0, n).astype(np.float32)
  weighted = mfjax.Ratings(
    test.users, test.items, test.values, 30, 20, weights=jnp.asarray(weights)
  )
  for w, ratings in (
    (weights, weighted),
    (weights, _pad(test, weights, 6)),
    (np.ones(n), _pad(test, np.ones(n), 6)),
  ):
    rmse, mae = both(params, ratings)
    np.testing.assert_allclose(
      rmse, np.sqrt(np.sum(w * errors**2) / w.sum()), rtol=1e-5
    )
    np.testing.assert_allclose(mae, np.sum(w * np.abs(errors)) / w.sum(), rtol=1e-5)


def test_rmse_and_mae_reject_bad_arguments():
  params, test = _scored(10, n=5)
  other = _ratings([0], [0], [1.0], 31, 20)
  with pytest.raises(ValueError, match="Load test files with the training file's"):
    mfjax.rmse(params, other)
  with pytest.raises(ValueError, match="ratings is empty"):
    mfjax.mae(params, test.subset(np.arange(0)))
  with pytest.raises(TypeError, match="ratings must be mfjax.Ratings"):
    mfjax.rmse(params, test.to_dense())
  with pytest.raises(TypeError, match="scale must be a pair"):
    mfjax.rmse(params, test, scale=5)
  with pytest.raises(ValueError, match=r"scale must satisfy lo <= hi"):
    mfjax.mae(params, test, scale=(5, 1))
  with pytest.raises(TypeError, match="clip"):
    mfjax.rmse(params, test, clip=(1, 5))  # 0.1's name: now scale=.
  # The notebook's params predict with another formula: refused, not mis-scored.
  with pytest.raises(ValueError, match="are NotebookParams, which predict"):
    mfjax.rmse(notebook.NotebookParams(*params), test)


# --- ranking metrics ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ranked():
  """``ranking_metrics`` under ``jit``: one program per shape and ``k``, shared.

  Called eagerly, each of its operations is compiled on its own for each new
  shape, several times the cost; eager calls are left to the tests of the host
  checks (and the docstring's example).
  """
  return jax.jit(metrics.ranking_metrics, static_argnames="k")


def _reference(top_items, users, test, k, threshold):
  """Plain loops over the rows; the definitions of the ranking_metrics docstring."""
  relevant = {}
  for u, i, v in zip(
    np.asarray(test.users), np.asarray(test.items), np.asarray(test.values), strict=True
  ):
    if u >= 0 and i >= 0 and v >= threshold:
      relevant.setdefault(int(u), set()).add(int(i))
  sums = dict(precision=0.0, recall=0.0, ndcg=0.0, map=0.0, hit_rate=0.0)
  counted = 0
  for row, user in zip(np.asarray(top_items), np.asarray(users), strict=True):
    rel = relevant.get(int(user), set())
    if not rel:
      continue
    counted += 1
    hits = [1.0 if item >= 0 and int(item) in rel else 0.0 for item in row[:k]]
    n_hits = sum(hits)
    sums["precision"] += n_hits / k
    sums["recall"] += n_hits / len(rel)
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(rel))))
    sums["ndcg"] += dcg / idcg
    ap, seen = 0.0, 0
    for j, h in enumerate(hits):
      if h:
        seen += 1
        ap += seen / (j + 1)
    sums["map"] += ap / min(k, len(rel))
    sums["hit_rate"] += float(n_hits > 0)
  out = {name: total / counted if counted else math.nan for name, total in sums.items()}
  return out, counted


def _random_case(seed, n_users=25, n_items=40, n_test=300, width=8):
  """Random test ratings (with unknown ids and repeated pairs) and top-k lists."""
  rng = np.random.default_rng(seed)
  users = rng.integers(0, n_users, n_test)
  items = rng.integers(0, n_items, n_test)
  values = rng.integers(1, 6, n_test).astype(np.float32)
  users[rng.random(n_test) < 0.05] = -1
  items[rng.random(n_test) < 0.05] = -1
  n_rows = 30  # Some users twice, some never; user 0 has no relevant test item.
  row_users = rng.integers(0, n_users, n_rows)
  values[users == 0] = np.minimum(values[users == 0], 2.0)
  test = _ratings(users, items, values, n_users, n_items)
  top = np.stack([rng.permutation(n_items)[:width] for _ in range(n_rows)])
  top[rng.random(top.shape) < 0.15] = -1  # Empty slots.
  row_users[:3] = 0
  return top.astype(np.int32), row_users.astype(np.int32), test


def _assert_matches(result, reference, counted):
  assert int(result.n_users) == counted
  for name, value in reference.items():
    np.testing.assert_allclose(float(getattr(result, name)), value, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.slow
def test_matches_numpy_reference_on_random_lists(ranked, seed):
  top, row_users, test = _random_case(seed)
  for k, threshold in ((None, 4.0), (None, 5), (3, 3.0), (1, 4.0)):
    result = ranked(top, row_users, test, k=k, threshold=threshold)
    reference, counted = _reference(top, row_users, test, k or 8, threshold)
    assert 0 < counted < len(row_users)  # Some rows skipped, some counted.
    _assert_matches(result, reference, counted)


def test_traced_thresholds_under_jit_and_vmap(ranked):
  top, row_users, test = _random_case(5)
  for threshold in (3.0, 4.0):  # One program for both: the threshold is traced.
    reference, counted = _reference(top, row_users, test, 6, threshold)
    result = ranked(top, row_users, test, k=6, threshold=jnp.float32(threshold))
    _assert_matches(result, reference, counted)
  # vmap over thresholds: one call, one result per threshold.
  many = jax.jit(
    jax.vmap(lambda th: metrics.ranking_metrics(top, row_users, test, threshold=th))
  )(jnp.array([3.0, 4.0, 5.0]))
  for j, threshold in enumerate((3.0, 4.0, 5.0)):
    reference, _ = _reference(top, row_users, test, 8, threshold)
    np.testing.assert_allclose(float(many.ndcg[j]), reference["ndcg"], rtol=1e-5)


def test_hand_computed_example(ranked):
  # User 0: relevant items 1 and 3 (item 4 rated 2 is not); list [1, 2, 3]
  # hits at ranks 1 and 3.
  test = _ratings([0, 0, 0, 1], [1, 3, 4, 0], [5.0, 4.0, 2.0, 4.5], 2, 5)
  result = ranked(jnp.array([[1, 2, 3]]), jnp.array([0]), test)
  assert int(result.n_users) == 1
  np.testing.assert_allclose(float(result.precision), 2 / 3, rtol=1e-6)
  np.testing.assert_allclose(float(result.recall), 1.0, rtol=1e-6)
  np.testing.assert_allclose(
    float(result.ndcg), (1 + 1 / 2) / (1 + 1 / math.log2(3)), rtol=1e-6
  )
  np.testing.assert_allclose(float(result.map), (1 + 2 / 3) / 2, rtol=1e-6)
  assert float(result.hit_rate) == 1.0

  # Two users: user 1 (one relevant item, item 0) misses with [2, -1, 4];
  # k=2 scores [1, 2] for user 0 (one hit of two relevant) and [2, -1] for user 1.
  result = ranked(jnp.array([[1, 2, 3], [2, -1, 0]]), jnp.array([0, 1]), test, k=2)
  assert int(result.n_users) == 2
  np.testing.assert_allclose(float(result.precision), (1 / 2 + 0) / 2, rtol=1e-6)
  np.testing.assert_allclose(float(result.recall), (1 / 2 + 0) / 2, rtol=1e-6)
  np.testing.assert_allclose(
    float(result.ndcg), (1 / (1 + 1 / math.log2(3)) + 0) / 2, rtol=1e-6
  )
  np.testing.assert_allclose(float(result.map), (1 / 2 + 0) / 2, rtol=1e-6)
  np.testing.assert_allclose(float(result.hit_rate), 0.5, rtol=1e-6)

  # With k=3 user 1's hit at rank 3, one relevant item: AP = (1/3) / 1.
  result = ranked(jnp.array([[2, -1, 0]]), jnp.array([1]), test)
  np.testing.assert_allclose(float(result.map), 1 / 3, rtol=1e-6)
  np.testing.assert_allclose(float(result.ndcg), 1 / 2, rtol=1e-6)


def test_users_without_relevant_items_unknown_ids_and_duplicates(ranked):
  # User 0's only ratings are below threshold or paired with an unknown item;
  # user 1's item 2 is rated twice (3 then 5): one relevant item; the unknown user
  # (-1) rating item 0 makes nothing relevant.
  test = _ratings([0, 0, 1, 1, -1], [1, -1, 2, 2, 0], [3.0, 5.0, 3.0, 5.0, 5.0], 2, 3)
  top = jnp.array([[1, 0], [2, 0], [0, 1]])
  result = ranked(top, jnp.array([0, 1, 1]), test)
  assert int(result.n_users) == 2  # User 0's row is not counted.
  np.testing.assert_allclose(float(result.recall), (1 + 0) / 2, rtol=1e-6)
  np.testing.assert_allclose(float(result.precision), (1 / 2 + 0) / 2, rtol=1e-6)
  # Lowering the threshold makes user 0's item 1 relevant.
  low = ranked(top, jnp.array([0, 1, 1]), test, threshold=3.0)
  assert int(low.n_users) == 3
  np.testing.assert_allclose(float(low.hit_rate), 2 / 3, rtol=1e-6)
  # No counted row: NaN averages, n_users 0.
  none = ranked(top[:1], jnp.array([0]), test)
  assert int(none.n_users) == 0 and math.isnan(float(none.ndcg))


def test_repeated_item_under_jit_counts_once(ranked):
  test = _ratings([0, 0], [1, 2], [5.0, 5.0], 1, 4)
  top = jnp.array([[1, 1, 2]])
  with pytest.raises(ValueError, match="row 0 lists item 1 more than once"):
    metrics.ranking_metrics(top, jnp.array([0]), test)
  result = ranked(top, jnp.array([0]), test)
  np.testing.assert_allclose(float(result.recall), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(result.precision), 2 / 3, rtol=1e-6)
  np.testing.assert_allclose(float(result.map), (1 + 2 / 3) / 2, rtol=1e-6)


def test_out_of_range_users_under_jit_are_not_counted(ranked):
  test = _ratings([0, 1], [1, 2], [5.0, 5.0], 2, 3)
  top = jnp.array([[1, 0], [2, 1], [2, 1]])
  result = ranked(top, jnp.array([0, -1, 2]), test)
  assert int(result.n_users) == 1
  np.testing.assert_allclose(float(result.precision), 1 / 2, rtol=1e-6)


def test_traces_once_per_shape():
  top, row_users, test = _random_case(6)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def score(top, users, test, threshold):
    return metrics.ranking_metrics(top, users, test, k=4, threshold=threshold)

  first = score(top, row_users, test, 4.0)
  second = score(top[::-1], row_users[::-1], test, 3.0)
  assert int(first.n_users) > 0 and int(second.n_users) > 0


def test_bad_inputs_raise_clear_errors():
  test = _ratings([0, 1], [1, 2], [5.0, 4.0], 2, 3)
  top, users = jnp.array([[1, 2]]), jnp.array([0])
  cases = [
    ((top, users, "test"), {}, TypeError, "test must be mfjax.Ratings"),
    ((top.astype(float), users, test), {}, TypeError, "top_items must hold integer"),
    ((top[0], users, test), {}, ValueError, "top_items must be a 2-D array"),
    ((top[:0], users[:0], test), {}, ValueError, "at least one row"),
    ((jnp.array([[1, 3]]), users, test), {}, ValueError, "top_items must lie in"),
    ((jnp.array([[1, -2]]), users, test), {}, ValueError, "got index -2"),
    ((top, jnp.array([2]), test), {}, ValueError, "users must lie in \\[0, 2\\)"),
    ((top, jnp.array([0, 1]), test), {}, ValueError, "one user per row"),
    ((top, jnp.array([0.0]), test), {}, TypeError, "users must be integer"),
    ((top, users, test), {"k": 3}, ValueError, "k must be at most .* 2; got 3"),
    ((top, users, test), {"k": 0}, ValueError, "k must be an int >= 1"),
    ((top, users, test), {"k": 1.0}, TypeError, "k must be an int >= 1"),
    ((top, users, test), {"threshold": math.nan}, ValueError, "threshold must be a"),
    ((top, users, test), {"threshold": jnp.inf}, ValueError, "threshold must be a"),
    ((top, users, test), {"threshold": "4"}, TypeError, "threshold must be a real"),
    ((top, users, test), {"threshold": True}, TypeError, "threshold must be a real"),
  ]
  for args, kwargs, error, message in cases:
    with pytest.raises(error, match=message):
      metrics.ranking_metrics(*args, **kwargs)


def test_a_relevant_rating_of_weight_zero_is_no_rating(ranked):
  test = mfjax.Ratings(
    jnp.array([0, 0, 0], jnp.int32),
    jnp.array([1, 2, 3], jnp.int32),
    jnp.array([5.0, 5.0, 5.0]),
    1,
    5,
    weights=jnp.array([1.0, 0.0, 1.0]),
  )
  m = ranked(jnp.array([[1, 2]]), jnp.array([0]), test)
  np.testing.assert_allclose([m.precision, m.recall], [0.5, 0.5])
  np.testing.assert_array_equal(
    metrics.popularity_params(test).item_bias, [0, 1, 0, 1, 0]
  )


# --- the most-popular baseline ------------------------------------------------------


def test_popularity_params_rank_items_by_training_count():
  train = _ratings(
    [0, 1, 2, 0, 1, 2, -1, 0], [3, 3, 3, 1, 1, 0, 2, -1], [1.0] * 8, 3, 5
  )
  params = metrics.popularity_params(train, rank=2)
  np.testing.assert_array_equal(params.item_bias, [1.0, 2.0, 0.0, 3.0, 0.0])
  assert params.user_factors.shape == (3, 2) and params.item_factors.shape == (5, 2)
  scores = mfjax.predict(params)
  np.testing.assert_array_equal(scores, np.tile([1.0, 2.0, 0.0, 3.0, 0.0], (3, 1)))
  top = jnp.argsort(-scores, axis=1, stable=True)[:, :2]
  np.testing.assert_array_equal(top, [[3, 1]] * 3)
  chex.assert_trees_all_close(
    jax.jit(metrics.popularity_params, static_argnames="rank")(train, rank=2), params
  )
  with pytest.raises(TypeError, match="train must be mfjax.Ratings"):
    metrics.popularity_params(np.ones((2, 2)))
  with pytest.raises(ValueError, match="rank must be an int >= 1"):
    metrics.popularity_params(train, rank=0)


def _numpy_effective_rank(params, rtol):
  scores = (
    np.asarray(params.user_factors, np.float64)
    @ np.asarray(params.item_factors, np.float64).T
  )
  singular = np.linalg.svd(scores, compute_uv=False)
  return int(np.sum(singular >= rtol * singular[0])) if singular[0] > 0 else 0


@pytest.mark.parametrize("planted", [0, 1, 2, 5, 8])
def test_effective_rank_counts_the_planted_dimensions_as_numpy_does(planted):
  rng = np.random.default_rng(planted)
  # Rank-8 tables whose product has rank `planted`, with a spread of sizes.
  users = rng.normal(size=(40, planted)) * np.geomspace(1, 0.05, planted)
  users = users @ rng.normal(size=(planted, 8))
  params = random_params(planted, 40, 30, rank=8)._replace(
    user_factors=jnp.asarray(users, jnp.float32)
  )
  for rtol in (0.01, 0.1):
    want = _numpy_effective_rank(params, rtol)
    assert int(metrics.effective_rank(params, rtol=rtol)) == want
    traced = jax.jit(lambda p, r=rtol: metrics.effective_rank(p, rtol=r))(params)
    assert int(traced) == want
    assert want <= planted and (want > 0) == (planted > 0)


def test_effective_rank_of_zero_factors_is_0_and_bad_rtol_is_refused():
  params = random_params(0, 6, 5, rank=4)
  zero = params._replace(item_factors=jnp.zeros_like(params.item_factors))
  assert int(metrics.effective_rank(zero)) == 0
  assert int(jax.jit(metrics.effective_rank)(zero)) == 0
  diverged = params._replace(user_factors=params.user_factors.at[0, 0].set(jnp.nan))
  assert int(metrics.effective_rank(diverged)) == -1
  assert int(jax.jit(metrics.effective_rank)(diverged)) == -1
  for rtol in (0, 1, -0.5, 2.0):
    with pytest.raises(ValueError, match="rtol must be in"):
      metrics.effective_rank(params, rtol=rtol)
  with pytest.raises(TypeError, match="rtol"):
    metrics.effective_rank(params, rtol="0.1")
  assert int(metrics.effective_rank(params, rtol=np.float32(0.5))) <= 4
  no_rank = random_params(0, 6, 5, rank=0)
  assert int(metrics.effective_rank(no_rank)) == 0
  assert int(jax.jit(metrics.effective_rank)(no_rank)) == 0
  # The item side losing dimensions counts as the user side does.
  items = params.item_factors.at[:, 2:].set(0.0).astype(jnp.bfloat16)
  half = params._replace(item_factors=items)
  assert int(metrics.effective_rank(half)) == 2 == _numpy_effective_rank(half, 0.01)
  assert int(jax.jit(metrics.effective_rank)(half)) == 2
  with pytest.raises(TypeError, match="mfjax.Params"):
    metrics.effective_rank((params.user_factors, params.item_factors))
