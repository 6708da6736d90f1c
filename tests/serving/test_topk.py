"""Serving (mfjax.serving): top-N recommendation and fold-in, against NumPy
references and planted users; and the recommend property of the robustness
section."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mfjax
from mfjax.core import objectives
from mfjax.serving.topk import fold_in, recommend
from mfjax.settings import RankingSettings
from tests.conftest import ML100K, hypothesis_settings, random_params

FIT = mfjax.FitSettings()  # fold_in's defaults are the fit defaults.


@pytest.fixture(scope="module")
def top():
  """recommend under jit: one program per shape, k and block size, shared.

  Called eagerly, recommend compiles its lax.map anew at each call; the eager
  path (the host checks, a scalar user) has tests of its own below.
  """
  return jax.jit(recommend, static_argnames=("k", "block_size"))


@pytest.fixture(scope="module")
def fold():
  """fold_in under jit, with l2 and l2_bias traced: one program per shape."""
  return jax.jit(fold_in)


def _params(seed, n_users, n_items, rank):
  return random_params(seed, n_users, n_items, rank, mean=3.5)


def _ratings(users, items, n_users, n_items, values=None):
  users = np.asarray(users, np.int32)
  if values is None:
    values = np.full(users.shape, 4.0)
  return mfjax.Ratings(
    jnp.asarray(users),
    jnp.asarray(np.asarray(items, np.int32)),
    jnp.asarray(np.asarray(values, np.float32)),
    n_users=n_users,
    n_items=n_items,
  )


def _reference(params, users, k, exclude=None):
  """Top-k by a stable argsort of the users' float64 scores, -1 when exhausted."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  users = np.asarray(users)
  scores = (
    p.mean
    + p.user_bias[users, None]
    + p.item_bias[None, :]
    + p.user_factors[users] @ p.item_factors.T
  )
  if exclude is not None:
    u, i = np.asarray(exclude.users), np.asarray(exclude.items)
    known = (u >= 0) & (i >= 0)
    u, i = u[known], i[known]
    order = np.argsort(u, kind="stable")
    u, i = u[order], i[order]
    for row, user in enumerate(users):
      lo, hi = np.searchsorted(u, [user, user + 1])
      scores[row, i[lo:hi]] = -np.inf
  order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  top = np.take_along_axis(scores, order, axis=1)
  return np.where(np.isneginf(top), -1, order), top


def _random_exclude(seed, n_users, n_items, n):
  """Random pairs, with repeats and a few unknown (-1) ids."""
  rng = np.random.default_rng(seed)
  users = rng.integers(0, n_users, n)
  items = rng.integers(0, n_items, n)
  users[:3] = -1
  items[3:5] = -1
  return _ratings(users, items, n_users, n_items)


def test_recommend_matches_numpy_reference(top):
  params = _params(0, 40, 30, 3)
  exclude = _random_exclude(1, 40, 30, 500)
  users = np.arange(40)
  for k in (7, 30):
    items, scores = top(params, users, k=k, exclude=exclude)
    ref_items, ref_scores = _reference(params, users, k, exclude)
    assert items.dtype == jnp.int32 and items.shape == scores.shape == (40, k)
    np.testing.assert_array_equal(items, ref_items)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
  # Without exclude the scores are predict's (both eager: the same float sums).
  items, scores = recommend(params, users, 30)
  np.testing.assert_allclose(
    scores,
    np.take_along_axis(np.asarray(mfjax.predict(params)), np.asarray(items), 1),
    rtol=1e-6,
  )
  np.testing.assert_array_equal(items, _reference(params, users, 30)[0])


def test_recommend_never_returns_an_excluded_item(top):
  params = _params(2, 40, 30, 3)
  exclude = _random_exclude(3, 40, 30, 500)
  items, _ = top(params, np.arange(40), k=30, exclude=exclude)
  u, i = np.asarray(exclude.users), np.asarray(exclude.items)
  excluded = {(a, b) for a, b in zip(u, i, strict=True) if a >= 0 and b >= 0}
  returned = {(a, b) for a in range(40) for b in np.asarray(items[a]) if b >= 0}
  assert excluded and not excluded & returned
  # Everything else is returned: k = n_items lists all the candidates.
  assert len(returned) == 40 * 30 - len(excluded)


def test_ties_rank_the_lower_item_index_first():
  params = mfjax.Params(
    user_factors=jnp.zeros((2, 2)),
    item_factors=jnp.zeros((6, 2)),
    user_bias=jnp.zeros(2),
    item_bias=jnp.array([1.0, 2.0, 2.0, 1.0, 2.0, 0.0]),
    mean=jnp.float32(3.0),
  )
  items, scores = recommend(params, [0, 1], 5, exclude=_ratings([1], [2], 2, 6))
  np.testing.assert_array_equal(items, [[1, 2, 4, 0, 3], [1, 4, 0, 3, 5]])
  np.testing.assert_array_equal(scores[1], [5.0, 5.0, 4.0, 4.0, 3.0])


def test_fewer_candidates_than_k_pad_with_minus_one(top):
  params = _params(4, 3, 6, 2)
  # User 0 rated all but items 2 and 4; user 1 rated everything; user 2 nothing.
  exclude = _ratings([0, 0, 0, 0] + [1] * 6, [0, 1, 3, 5] + list(range(6)), 3, 6)
  items, scores = top(params, np.arange(3), k=4, exclude=exclude)
  assert sorted(np.asarray(items[0, :2])) == [2, 4]
  np.testing.assert_array_equal(items[0, 2:], [-1, -1])
  assert np.all(np.isneginf(scores[0, 2:])) and np.all(np.isfinite(scores[0, :2]))
  np.testing.assert_array_equal(items[1], [-1] * 4)
  assert np.all(np.isneginf(scores[1]))
  assert np.all(np.asarray(items[2]) >= 0)


def test_blocks_do_not_change_the_answer(top):
  params = _params(5, 40, 30, 3)
  exclude = _random_exclude(6, 40, 30, 500)
  # Unsorted users with repeats; 7 does not divide 60.
  users = np.random.default_rng(7).integers(0, 40, 60)
  expected = _reference(params, users, 7, exclude)
  for block_size in (1, 7, 60, 4096):
    items, scores = top(params, users, k=7, exclude=exclude, block_size=block_size)
    np.testing.assert_array_equal(items, expected[0])
    np.testing.assert_allclose(scores, expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # Large data: a recommend program of its own.
def test_many_excluded_pairs_a_block_do_not_change_the_answer(top):
  # recommend scatters a block's excluded pairs 2**16 at a time (mfjax.serving);
  # 350 rows of users who rated about 630 of 1000 items each (with repeats) make
  # about 350k pairs in one block of 4096, six scatters, and two in blocks of 128.
  # (Blocks of a single scatter: test_blocks_do_not_change_the_answer.)
  params = _params(27, 300, 1000, 3)
  exclude = _random_exclude(28, 300, 1000, 300_000)
  users = np.random.default_rng(29).integers(0, 300, 350)
  expected = _reference(params, users, 10, exclude)
  for block_size in (128, 4096):
    items, scores = top(params, users, k=10, exclude=exclude, block_size=block_size)
    np.testing.assert_array_equal(items, expected[0])
    np.testing.assert_allclose(scores, expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # Large data: a recommend program of its own.
def test_a_catalogue_too_large_for_packed_keys_gives_the_same_answer(top):
  # Excluded pairs are grouped by one uint32 key per pair while
  # (n_users + 1) * n_items fits in 32 bits (mfjax.serving); 66000 users and
  # items do not fit, so the pairs are grouped by a key-value sort instead.
  n = 66_000
  assert (n + 1) * n > 2**32
  params = _params(30, n, n, 2)
  rng = np.random.default_rng(31)
  users = rng.integers(0, n, 25)
  # Every user asked for rated some items, among them the best ones.
  best = np.argsort(-np.asarray(mfjax.predict(params, users=users)), axis=1)[:, :5]
  exclude = _ratings(
    np.concatenate([np.repeat(users, 5), rng.integers(0, n, 2000)]),
    np.concatenate([best.ravel(), rng.integers(0, n, 2000)]),
    n,
    n,
  )
  expected = _reference(params, users, 7, exclude)
  items, scores = top(params, users, k=7, exclude=exclude, block_size=7)
  np.testing.assert_array_equal(items, expected[0])
  np.testing.assert_allclose(scores, expected[1], rtol=1e-5, atol=1e-5)
  for row in range(len(users)):
    assert not set(best[row]) & set(np.asarray(items[row]).tolist())


def test_recommend_under_jit_traces_once():
  params = _params(8, 40, 30, 3)
  exclude = _random_exclude(9, 40, 30, 500)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def top(params, users, exclude):
    return recommend(params, users, 7, exclude=exclude, block_size=16)

  for seed in (0, 1):
    users = np.random.default_rng(seed).integers(0, 40, 35).astype(np.int32)
    items, scores = top(params, jnp.asarray(users), exclude)
    expected = _reference(params, users, 7, exclude)
    np.testing.assert_array_equal(items, expected[0])
    np.testing.assert_allclose(scores, expected[1], rtol=1e-5, atol=1e-5)


def test_single_user_and_empty_selection():
  params = _params(10, 5, 8, 2)
  items, scores = recommend(params, 3, 4)
  assert items.shape == scores.shape == (4,)
  np.testing.assert_array_equal(items, _reference(params, [3], 4)[0][0])
  items, scores = recommend(params, np.array([], np.int32), 4)
  assert items.shape == scores.shape == (0, 4)


@pytest.mark.skipif(
  not (ML100K / "u1.base").exists(),
  reason=f"needs MovieLens 100k in {ML100K} (or the folder named by MFJAX_DATA)",
)
def test_all_movielens_users_in_one_call(top):
  train, _ = mfjax.load_ratings(ML100K / "u1.base")
  params = _params(11, train.n_users, train.n_items, 8)
  users = np.arange(train.n_users)
  items, _ = top(params, users, k=10, exclude=train, block_size=256)
  np.testing.assert_array_equal(items, _reference(params, users, 10, train)[0])


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(users=[0, 5]), ValueError, r"users must lie in \[0, 5\).*got index 5"),
    (dict(users=[-1]), ValueError, "got index -1"),
    (dict(users=[0.0]), TypeError, "users must be integer indices"),
    (dict(users=[[0, 1]]), ValueError, "users must be a 1-D array"),
    (dict(users="a"), TypeError, "users must be integer"),
    (dict(k=0), ValueError, "k must be an int >= 1"),
    (dict(k=9), ValueError, "k must be at most n_items = 8; got 9"),
    (dict(k=2.0), TypeError, "k must be an int"),
    (dict(k=True), TypeError, "k must be an int"),
    (dict(block_size=0), ValueError, "block_size must be an int >= 1"),
    (dict(exclude=np.zeros((5, 8))), TypeError, "exclude must be mfjax.Ratings"),
    (dict(exclude=_ratings([0], [1], 5, 9)), ValueError, r"n_users, n_items = \(5, 8"),
    (dict(exclude=_ratings([7], [1], 5, 8)), ValueError, "exclude.users must lie"),
    (dict(params="p"), TypeError, "params must be mfjax.Params"),
  ],
)
def test_recommend_rejects_bad_arguments(kwargs, error, match):
  args = dict(params=_params(12, 5, 8, 2), users=[0, 1], k=3)
  args.update(kwargs)
  with pytest.raises(error, match=match):
    recommend(args.pop("params"), args.pop("users"), args.pop("k"), **args)


def _ridge_reference(params, ratings, l2, l2_bias):
  """Per-user np.linalg.solve of the ridge normal equations, in float64."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  values = np.asarray(ratings.values, np.float64)
  rank = p.item_factors.shape[1]
  factors = np.zeros((ratings.n_users, rank))
  bias = np.zeros(ratings.n_users)
  order = np.argsort(users, kind="stable")
  starts = np.searchsorted(users[order], np.arange(ratings.n_users + 1))
  for u in range(ratings.n_users):
    mine = order[starts[u] : starts[u + 1]]
    if not len(mine):
      continue
    design = np.column_stack([p.item_factors[items[mine]], np.ones(len(mine))])
    target = values[mine] - p.mean - p.item_bias[items[mine]]
    penalty = np.diag([l2] * rank + [l2_bias])
    x = np.linalg.solve(design.T @ design + penalty, design.T @ target)
    factors[u], bias[u] = x[:rank], x[rank]
  return factors, bias


def _new_ratings(seed, n_new, n_items, n, empty_user=None):
  rng = np.random.default_rng(seed)
  users = rng.integers(0, n_new, n)
  if empty_user is not None:
    users[users == empty_user] = (empty_user + 1) % n_new
  return _ratings(
    users, rng.integers(0, n_items, n), n_new, n_items, rng.uniform(1, 5, n)
  )


@pytest.mark.slow
def test_fold_in_matches_numpy_ridge(fold):
  params = _params(13, 10, 30, 4)
  ratings = _new_ratings(14, 6, 30, 80, empty_user=4)
  for l2, l2_bias in ((10.0, 1.0), (0.5, 3.0)):
    folded = fold(params, ratings, l2=l2, l2_bias=l2_bias)
    factors, bias = _ridge_reference(params, ratings, l2, l2_bias)
    np.testing.assert_allclose(folded.user_factors, factors, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(folded.user_bias, bias, rtol=1e-4, atol=1e-5)
    assert not np.any(folded.user_factors[4]) and folded.user_bias[4] == 0
  # Eager, the item tables and the mean are the very arrays of params.
  folded = fold_in(params, ratings, l2=0.5, l2_bias=3.0)
  np.testing.assert_allclose(folded.user_factors, factors, rtol=1e-4, atol=1e-5)
  assert folded.item_factors is params.item_factors
  assert folded.item_bias is params.item_bias and folded.mean is params.mean


def test_fold_in_of_many_ratings_matches_numpy_ridge(fold):
  # fold_in accumulates the normal equations at most 2**22 elements at a time
  # (mfjax.serving): at rank 4, (4 + 1)**2 per rating, 167772 ratings a chunk;
  # 400k ratings take three chunks, the last one padded.
  params = _params(32, 10, 300, 4)
  ratings = _new_ratings(33, 500, 300, 400_000)
  folded = fold(params, ratings, l2=0.5, l2_bias=3.0)
  factors, bias = _ridge_reference(params, ratings, 0.5, 3.0)
  np.testing.assert_allclose(folded.user_factors, factors, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(folded.user_bias, bias, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # benchmarks/fast_loop.py: faster tests run its lines.
def test_fold_in_defaults_are_the_fit_defaults():
  params = _params(15, 10, 30, 4)
  ratings = _new_ratings(16, 6, 30, 80)
  folded = fold_in(params, ratings)
  factors, bias = _ridge_reference(params, ratings, FIT.l2, FIT.l2_bias)
  np.testing.assert_allclose(folded.user_factors, factors, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(folded.user_bias, bias, rtol=1e-4, atol=1e-5)


def test_fold_in_is_the_minimum_of_the_training_loss_over_the_user(fold):
  params = _params(17, 10, 30, 4)
  ratings = _new_ratings(18, 6, 30, 80)
  folded = fold(params, ratings, l2=2.0, l2_bias=0.5)
  grads = jax.jit(jax.grad(mfjax.loss))(folded, ratings, l2=2.0, l2_bias=0.5)
  np.testing.assert_allclose(grads.user_factors, 0, atol=1e-5)
  np.testing.assert_allclose(grads.user_bias, 0, atol=1e-5)


def test_fold_in_recovers_a_planted_user(top, fold):
  params = _params(19, 10, 30, 4)
  rng = np.random.default_rng(20)
  planted_factors = rng.normal(size=(6, 4)).astype(np.float32)
  planted_bias = rng.normal(size=6).astype(np.float32)
  counts = [14, 14, 13, 13, 13, 13]  # 80 ratings, >= rank + 1 per user.
  users = np.repeat(np.arange(6), counts)
  items = np.concatenate([rng.choice(30, n, replace=False) for n in counts])
  truth = params._replace(
    user_factors=jnp.asarray(planted_factors), user_bias=jnp.asarray(planted_bias)
  )
  values = np.asarray(mfjax.predict(truth, users, items))
  rated = _ratings(users, items, 6, 30, values)
  folded = fold(params, rated, l2=1e-6, l2_bias=1e-6)
  np.testing.assert_allclose(folded.user_factors, planted_factors, atol=1e-3)
  np.testing.assert_allclose(folded.user_bias, planted_bias, atol=1e-3)
  # The folded params predict and recommend for the new users directly.
  np.testing.assert_allclose(mfjax.predict(folded), mfjax.predict(truth), atol=1e-3)
  items, _ = top(folded, np.arange(6), k=7, exclude=rated)
  np.testing.assert_array_equal(items, _reference(truth, np.arange(6), 7, rated)[0])


def test_fold_in_under_jit_traces_once():
  params = _params(21, 10, 30, 4)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def fold(params, ratings, l2):
    return fold_in(params, ratings, l2=l2, l2_bias=1.0)

  for seed, l2 in ((22, 3.0), (23, 0.2)):
    ratings = _new_ratings(seed, 6, 30, 80)
    folded = fold(params, ratings, jnp.float32(l2))
    factors, bias = _ridge_reference(params, ratings, l2, 1.0)
    np.testing.assert_allclose(folded.user_factors, factors, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(folded.user_bias, bias, rtol=1e-4, atol=1e-5)


def test_traced_values_behave_as_documented(top, fold):
  params = _params(25, 10, 30, 4)
  ratings = _new_ratings(26, 6, 30, 80)
  items = np.asarray(ratings.items).copy()
  items[:5] = -1  # Unknown items: ignored under jit (the host rejects them).
  values = np.asarray(ratings.values).copy()
  values[np.asarray(ratings.users) == 2] = np.nan
  broken = _ratings(ratings.users, items, 6, 30, values)
  folded = fold(params, broken, l2=FIT.l2, l2_bias=FIT.l2_bias)
  kept = np.flatnonzero(items >= 0)
  factors, _ = _ridge_reference(params, ratings.subset(kept), FIT.l2, FIT.l2_bias)
  users = np.arange(6) != 2
  np.testing.assert_allclose(
    folded.user_factors[users], factors[users], rtol=1e-4, atol=1e-5
  )
  assert np.all(np.isnan(folded.user_factors[2]))
  # A user of -1 under jit scores items by mean + item bias.
  items, scores = top(params, jnp.array([-1]), k=5)
  np.testing.assert_array_equal(items[0], np.argsort(-np.asarray(params.item_bias))[:5])
  np.testing.assert_allclose(
    scores[0], 3.5 + np.sort(np.asarray(params.item_bias))[::-1][:5], rtol=1e-6
  )


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(ratings=_ratings([0], [-1], 2, 6)), ValueError, "ratings.items must lie"),
    (dict(ratings=_ratings([0], [6], 2, 6)), ValueError, "got index 6"),
    (dict(ratings=_ratings([2], [1], 2, 6)), ValueError, "ratings.users must lie"),
    (
      dict(ratings=_ratings([0], [1], 2, 6, [np.nan])),
      ValueError,
      "ratings.values must be finite",
    ),
    (
      dict(ratings=_ratings([0], [1], 2, 7)),
      ValueError,
      "ratings.n_items must be n_items = 6",
    ),
    (dict(ratings=np.ones((2, 6))), TypeError, "ratings must be mfjax.Ratings"),
    (dict(l2=-1.0), ValueError, "l2 must be a finite number >= 0"),
    (dict(l2_bias=np.inf), ValueError, "l2_bias must be a finite number >= 0"),
    (dict(l2="a"), TypeError, "l2 must be a real number"),
    (dict(params=(1, 2)), TypeError, "params must be mfjax.Params"),
  ],
)
def test_fold_in_rejects_bad_arguments(kwargs, error, match):
  args = dict(params=_params(24, 4, 6, 2), ratings=_ratings([0, 1], [1, 2], 2, 6))
  args.update(kwargs)
  with pytest.raises(error, match=match):
    fold_in(args.pop("params"), args.pop("ratings"), **args)


# --- the recommend property (robustness section) --------------------------------


# 10 examples (0.1 drew 25): each compiles recommend anew for its shape, k and
# block size. The example tests above cover ties, short lists, block sizes and
# exclusion one at a time; this property checks them together.
@pytest.mark.robustness
@pytest.mark.slow
@hypothesis_settings(10)
@given(st.data())
def test_recommend_lists_distinct_unexcluded_items_best_first(top, data):
  n_users, n_items = data.draw(
    st.sampled_from(((5, 4), (7, 9), (3, 12))), label="shape"
  )
  seed = data.draw(st.integers(0, 2**31), label="seed")
  params = random_params(seed, n_users, n_items, 2)
  # Coarse biases make ties likely, which must not let an excluded item through.
  bias = data.draw(
    hnp.arrays(np.float32, n_items, elements=st.sampled_from([0.0, 1.0]))
  )
  params = params._replace(item_bias=jnp.asarray(bias))
  pairs = data.draw(
    st.sets(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1))),
    label="excluded",
  )
  pairs = sorted(pairs)
  # Padded to a fixed length with pairs of unknown (-1) ids, which recommend
  # ignores, so that the number of pairs does not change the compiled program.
  unknown = [(-1, -1)] * (n_users * n_items - len(pairs))
  exclude = mfjax.Ratings(
    users=jnp.array([u for u, _ in pairs + unknown], jnp.int32),
    items=jnp.array([i for _, i in pairs + unknown], jnp.int32),
    values=jnp.ones(n_users * n_items, jnp.float32),
    n_users=n_users,
    n_items=n_items,
  )
  k = data.draw(st.integers(1, n_items), label="k")
  block_size = data.draw(st.sampled_from([1, 2, 3, 1024]), label="block_size")
  users = data.draw(st.lists(st.integers(0, n_users - 1), min_size=1, max_size=6))
  items, scores = top(
    params, jnp.asarray(users, jnp.int32), k=k, exclude=exclude, block_size=block_size
  )
  items, scores = np.asarray(items), np.asarray(scores)
  excluded = {}
  for u, i in pairs:
    excluded.setdefault(u, set()).add(i)
  for row, user in enumerate(users):
    listed = [int(i) for i in items[row] if i >= 0]
    assert not set(listed) & excluded.get(user, set())
    assert (
      len(listed) == len(set(listed)) == min(k, n_items - len(excluded.get(user, ())))
    )
    assert np.all(items[row][len(listed) :] == -1)
    assert np.all(np.diff(scores[row][: len(listed)]) <= 0)


# --- NaN never reaches a list ------------------------------------------------------


@pytest.mark.parametrize(
  "table, row, message",
  [
    ("item_factors", 3, r"params.item_factors holds NaN or inf \(row 3\)"),
    ("item_bias", 5, r"params.item_bias holds NaN or inf \(row 5\)"),
    ("user_factors", 2, r"params.user_factors holds NaN or inf \(row 2\)"),
  ],
)
def test_recommend_refuses_params_with_nan_where_the_lists_need_them(
  table, row, message
):
  params = random_params(0, 4, 6, 3)
  broken = params._replace(**{table: getattr(params, table).at[row].set(jnp.nan)})
  with pytest.raises(ValueError, match=message):
    recommend(broken, [0, 1, 2], 3)
  if table == "user_factors":  # Another user's list does not need that row.
    items, _ = recommend(broken, [0, 1], 3)
    np.testing.assert_array_equal(items, recommend(params, [0, 1], 3)[0])


def test_under_jit_a_nan_score_ranks_last():
  params = random_params(1, 3, 5, 2)
  broken = params._replace(item_factors=params.item_factors.at[2].set(jnp.nan))
  items, scores = jax.jit(lambda p: recommend(p, jnp.array([0, 1]), 5))(broken)
  # Item 2 is never listed: its slot is the last, item -1 and score -inf.
  np.testing.assert_array_equal(items[:, -1], -1)
  assert np.all(np.isneginf(scores[:, -1])) and not np.any(items[:, :-1] == 2)
  expected = np.array(mfjax.predict(params, users=[0, 1]))
  expected[:, 2] = -np.inf
  np.testing.assert_array_equal(items[:, :-1], np.argsort(-expected, 1)[:, :4])


@pytest.mark.slow
def test_fold_in_with_l2_zero_is_the_smallest_least_squares_solution():
  params = random_params(2, 1, 8, 4)  # rank 4: 5 unknowns a user.
  # User 0 has 2 ratings (underdetermined), user 1 has 8 (determined).
  users = jnp.array([0, 0] + [1] * 8)
  items = jnp.array([1, 4] + list(range(8)))
  values = jnp.array([4.0, 2.0, 5, 3, 4, 1, 2, 5, 3, 4])
  new = mfjax.Ratings(users, items, values, n_users=2, n_items=8)
  folded = fold_in(params, new, l2=0.0, l2_bias=0.0)
  q, b_i, mean = (
    np.asarray(x, np.float64)
    for x in (params.item_factors, params.item_bias, params.mean)
  )
  for user in (0, 1):
    mine = np.asarray(users) == user
    design = np.c_[q[np.asarray(items)[mine]], np.ones(mine.sum())]
    target = np.asarray(values)[mine] - mean - b_i[np.asarray(items)[mine]]
    solution = np.linalg.pinv(design) @ target  # Smallest-norm least squares.
    got = np.r_[folded.user_factors[user], folded.user_bias[user]]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, solution, rtol=2e-3, atol=2e-3)


@pytest.mark.slow
def test_fold_in_where_float32_cholesky_fails_falls_back_to_least_squares():
  # Rank 32 and a tiny l2, one user with 5,000 ratings of 10 items: in float32
  # the Gram (rank 11 of 33, entries ~500) plus 1e-3 is singular to Cholesky.
  rng = np.random.default_rng(0)
  q = rng.normal(size=(10, 32)).astype(np.float32)
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  params = mfjax.Params(
    jnp.zeros((1, 32)), jnp.asarray(q), jnp.zeros(1), jnp.zeros(10), jnp.float32(3)
  )
  n = 5000
  target = np.where(np.arange(10) < 5, 4.0, 2.0).astype(np.float32)
  items = (np.arange(n) % 10).astype(np.int32)
  new = mfjax.Ratings(np.zeros(n, np.int32), items, target[items], 1, 10)
  folded = fold_in(params, new, l2=1e-3, l2_bias=1e-3)
  assert np.all(np.isfinite(np.asarray(folded.user_factors)))
  assert np.isfinite(float(folded.user_bias[0]))
  # 11 unknowns, 10 distinct items: the ratings are fitted (almost) exactly.
  predicted = np.asarray(mfjax.predict(folded, users=[0]))[0]
  np.testing.assert_allclose(predicted, target, atol=0.05)


# --- fold-in of ranking models (the iALS row solve) ------------------------------


def _row_gradient(params, ratings, l2, objective):
  """The gradient of the ranking loss over the users' rows (items fixed)."""
  grad = jax.grad(lambda p: mfjax.loss(p, ratings, l2=l2, objective=objective))
  return jax.jit(grad)(params).user_factors


@pytest.mark.parametrize(
  "confidence, transform", [(0.0, "linear"), (0.7, "linear"), (0.5, "log")]
)
@pytest.mark.slow
def test_ranking_fold_in_is_the_minimum_of_the_ials_loss_over_the_user(
  confidence, transform
):
  params = _params(40, 10, 30, 4)
  ratings = _new_ratings(41, 6, 30, 60)
  if transform == "log":  # Counts up to 500.
    ratings = dataclasses.replace(ratings, values=ratings.values * 100)
  objective = objectives.Ranking(
    alpha0=0.4, nu=1.0, confidence=confidence, transform=transform
  )
  folded = fold_in(params, ratings, l2=0.05, objective=objective)
  assert folded.user_factors.shape == (6, 4)
  np.testing.assert_array_equal(folded.user_bias, 0)
  gradient = _row_gradient(folded, ratings, 0.05, objective)
  np.testing.assert_allclose(gradient, 0, atol=2e-5)
  # Not a trivial zero: the rows differ from the items' mean direction.
  assert np.abs(np.asarray(folded.user_factors)).max() > 0.05


@pytest.mark.slow
def test_ranking_fold_in_per_density_weighs_the_all_pairs_term_by_it():
  params = _params(42, 10, 30, 4)
  ratings = _new_ratings(43, 5, 30, 50)
  per_density = objectives.Ranking(alpha0=20.0, confidence=1.0, per_density=True)
  folded = fold_in(params, ratings, objective=per_density, density=0.02)
  same = objectives.Ranking(alpha0=20.0 * 0.02, confidence=1.0)
  gradient = _row_gradient(folded, ratings, RankingSettings().l2, same)
  np.testing.assert_allclose(gradient, 0, atol=2e-5)


@pytest.mark.slow
def test_a_ranking_models_fold_in_is_within_1e3_of_solving_the_user_in_a_refit():
  """The issue's target: scores of a folded-in user against that user's row
  solved in the training loss of a refit that includes it, the items fixed."""
  full, _ = mfjax.synthetic_ratings(jax.random.key(0), 120, 80, 3000, 4)
  users = np.asarray(full.users)
  new = users == 7
  train = mfjax.Ratings(
    jnp.asarray(np.where(users > 7, users - 1, users)[~new]),
    full.items[~new],
    full.values[~new],
    n_users=119,
    n_items=80,
  )
  fitted = mfjax.fit(jax.random.key(1), train, objective="ranking", rank=8, steps=4)
  maps = mfjax.IdMaps(users=np.arange(119), items=np.arange(80), scale=(1.0, 5.0))
  model = fitted.model(train, maps)
  items = np.asarray(full.items)[new]
  values = np.asarray(full.values)[new]
  folded = model.fold_in([1000] * len(items), items, values)
  scores = folded.params.user_factors[-1] @ folded.params.item_factors.T

  # The refit's loss: every training pair and the new user's, its density.
  settings = RankingSettings()
  objective = objectives.Ranking(
    alpha0=settings.alpha0, nu=settings.nu, confidence=settings.confidence,
    per_density=True,
  )  # fmt: skip
  both = mfjax.Ratings(
    jnp.concatenate([train.users, jnp.full(len(items), 119)]),
    jnp.concatenate([train.items, jnp.asarray(items)]),
    jnp.concatenate([train.values, jnp.asarray(values)]),
    n_users=120,
    n_items=80,
  )
  base = fitted.best_params
  grown = base._replace(
    user_factors=jnp.concatenate([base.user_factors, jnp.zeros((1, 8))]),
    user_bias=jnp.zeros(120),
  )

  def row_loss(row):
    params = grown._replace(user_factors=grown.user_factors.at[119].set(row))
    return mfjax.loss(params, both, l2=settings.l2, objective=objective)

  zero = jnp.zeros(8)
  hessian = jax.hessian(row_loss)(zero)
  row = -np.linalg.solve(np.asarray(hessian, np.float64), jax.grad(row_loss)(zero))
  expected = row @ np.asarray(base.item_factors).T
  np.testing.assert_allclose(scores, expected, atol=1e-3)
  assert np.abs(expected).max() > 0.1


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(objective=objectives.Ranking(biases=True)), ValueError, "biases=True"),
    (dict(objective=objectives.Ranking(), l2_bias=1.0), ValueError, "no biases"),
    (dict(objective=objectives.Ranking(per_density=True)), ValueError, "density="),
    (
      dict(objective=objectives.Ranking(per_density=True), density=1.5),
      ValueError,
      r"density must be in \(0, 1\]",
    ),
    (dict(density=0.1), ValueError, "density applies to a per_density"),
    (dict(objective="ranking"), TypeError, "objective must be None"),
  ],
)
def test_ranking_fold_in_refuses_what_does_not_apply(kwargs, error, match):
  with pytest.raises(error, match=match):
    fold_in(_params(44, 4, 6, 2), _ratings([0, 1], [1, 2], 2, 6), **kwargs)


def test_ranking_fold_in_refuses_an_undecided_transform_and_negative_counts():
  params, ratings = _params(46, 4, 6, 2), _ratings([0, 1], [1, 2], 2, 6, [-3.0, 2.0])
  with pytest.raises(ValueError, match="transform the model was fitted with"):
    fold_in(params, ratings, objective=objectives.Ranking(transform="auto"))
  with pytest.raises(ValueError, match="counts >= 0"):
    fold_in(params, ratings, objective=objectives.Ranking(transform="log"))


@pytest.mark.slow
def test_a_ranking_model_of_counts_folds_in_with_the_log_transform_it_fitted():
  plays, maps = mfjax.ratings_from_arrays(
    np.repeat(np.arange(30), 4), np.tile(np.arange(12), 10),
    np.tile([1.0, 40.0, 3.0, 900.0], 30),
  )  # fmt: skip
  fit = lambda **c: mfjax.fit(
    jax.random.key(0), plays, objective="ranking", rank=3, steps=2, **c
  )
  # At the defaults the model records what the fit chose for counts.
  assert fit().model(plays, maps).settings == {
    "confidence": 0.0, "confidence_transform": "log",
  }  # fmt: skip
  # Settings without the transform get the one the fit chose.
  assert fit().model(plays, maps, settings={"n_train": 120}).settings == {
    "n_train": 120, "confidence": 0.0, "confidence_transform": "log",
  }  # fmt: skip
  settings = {"confidence": 0.5, "confidence_transform": "log"}
  model = fit(confidence=0.5).model(plays, maps, settings=settings)
  folded = model.fold_in([100, 100, 100], [0, 3, 5], [2.0, 500.0, 7.0])
  new = mfjax.Ratings(
    jnp.zeros(3, jnp.int32), jnp.array([0, 3, 5]), jnp.array([2.0, 500.0, 7.0]),
    1, 12,
  )  # fmt: skip
  row = folded.params._replace(
    user_factors=folded.params.user_factors[-1:], user_bias=jnp.zeros(1)
  )
  alpha0 = RankingSettings().alpha0 * 120 / (30 * 12)  # At the fit's density.
  log = objectives.Ranking(alpha0=alpha0, confidence=0.5, transform="log")
  gradient = _row_gradient(row, new, RankingSettings().l2, log)
  np.testing.assert_allclose(gradient, 0, atol=2e-5)
  linear = dataclasses.replace(log, transform="linear")
  off = _row_gradient(row, new, RankingSettings().l2, linear)
  assert np.abs(np.asarray(off)).max() > 1e-3


def test_ranking_fold_in_refuses_ratings_that_weigh_below_zero():
  objective = objectives.Ranking(confidence=1.0)
  with pytest.raises(ValueError, match="negative weight"):
    fold_in(
      _params(45, 4, 6, 2), _ratings([0, 1], [1, 2], 2, 6, [-3.0, 2.0]),
      objective=objective,
    )  # fmt: skip


@pytest.mark.slow
def test_a_ranking_model_folds_in_later_users_at_the_fits_density():
  """Folding in two users one after the other gives the second the same row as
  folding both in at once: the density stays the fit's, not the grown model's."""
  train, maps = mfjax.ratings_from_arrays(
    np.repeat(np.arange(30), 4), np.tile(np.arange(12), 10), np.ones(120)
  )
  fitted = mfjax.fit(jax.random.key(0), train, objective="ranking", rank=3, steps=2)
  model = fitted.model(train, maps)
  users, items = [100, 100, 101, 101, 101], [0, 3, 1, 2, 5]
  at_once = model.fold_in(users, items, np.ones(5))
  first = model.fold_in(users[:2], items[:2], np.ones(2))
  second = first.fold_in(users[2:], items[2:], np.ones(3))
  assert second.settings["density"] == pytest.approx(120 / (30 * 12))
  np.testing.assert_allclose(
    second.params.user_factors[-1], at_once.params.user_factors[-1], rtol=1e-5
  )


@pytest.mark.parametrize("ranking", [False, True])
@pytest.mark.slow
def test_fold_in_of_many_users_in_blocks_gives_the_rows_of_one_solve(
  ranking, monkeypatch
):
  # Issue 31: a fold-in of 10**6 new users formed every user's Gram matrix at
  # once (an n × (k+1)² array) and ran out of memory. Blocks of users give the
  # same rows: here blocks of 3 users (block bytes lowered), against one solve.
  from mfjax.serving import topk

  params = random_params(3, 5, 8, 2)
  rng = np.random.default_rng(0)
  n_new, n = 10, 40
  users = np.sort(rng.integers(0, n_new - 1, n))  # The last user has no rating.
  new = mfjax.Ratings(
    jnp.asarray(rng.permutation(users), jnp.int32),
    jnp.asarray(rng.integers(0, 8, n), jnp.int32),
    jnp.asarray(rng.integers(1, 6, n), jnp.float32),
    n_users=n_new, n_items=8,
    weights=jnp.asarray(rng.uniform(0.5, 2.0, n), jnp.float32),
  )  # fmt: skip
  options = (
    {"objective": objectives.Ranking(alpha0=0.4, confidence=1.0)} if ranking else {}
  )
  whole = fold_in(params, new, **options)
  width = 2 if ranking else 3
  monkeypatch.setattr(topk, "FOLD_IN_BLOCK_BYTES", 3 * width * width * 4)
  blocked = fold_in(params, new, **options)
  for field in ("user_factors", "user_bias"):
    np.testing.assert_allclose(
      getattr(blocked, field), getattr(whole, field), rtol=1e-5, atol=1e-6
    )
  assert blocked.user_factors.shape == (n_new, 2)
  np.testing.assert_array_equal(blocked.user_factors[-1], 0.0)  # No ratings.
  # Traced params (the caller's jit) solve in one program; unsigned indices
  # are shifted and padded as signed ones.
  traced = jax.jit(lambda p: fold_in(p, new, **options))(params)
  np.testing.assert_allclose(
    traced.user_factors, whole.user_factors, rtol=1e-5, atol=1e-6
  )
  unsigned = dataclasses.replace(
    new, users=np.asarray(new.users, np.uint32), items=np.asarray(new.items, np.uint32)
  )
  np.testing.assert_allclose(
    fold_in(params, unsigned, **options).user_factors, whole.user_factors,
    rtol=1e-5, atol=1e-6,
  )  # fmt: skip
