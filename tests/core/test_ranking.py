"""The ranking objective (iALS) and the alternating solver.

Checked against NumPy: the Gramian term against the sum over every user × item
pair, the whole loss against a brute-force reference (sparse and dense paths),
the gradient with ``check_grads``, one alternating pass against the normal
equations solved row by row, and a planted-preference problem whose top items
the fitted model must recover.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import mfjax
from mfjax.core import objectives, solvers
from mfjax.core.objectives import RATING, Penalty, Ranking
from tests.conftest import padded_ratings, random_params, random_ratings


def _confidences(objective, values):
  """``1 + confidence·g(r)`` in NumPy, by the transform's definition."""
  transform = objective.transform
  g = np.log1p(np.maximum(values, 0)) if transform == "log" else values
  confidence = objective.confidence
  if confidence is None:
    confidence = {"linear": 1.0, "log": 0.0}[transform]
  return 1 + confidence * g


def _brute_loss(params, ratings, objective, l2, l2_bias):
  """The iALS loss by its definition, every pair scored explicitly (float64)."""
  p = {k: np.asarray(v, np.float64) for k, v in params._asdict().items()}
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  values = np.asarray(ratings.values, np.float64)
  n_users, n_items = ratings.shape
  scores = p["user_factors"] @ p["item_factors"].T
  if objective.biases:
    scores = scores + p["mean"] + p["user_bias"][:, None] + p["item_bias"][None, :]
  weights = _confidences(objective, values)
  observed = np.sum(weights * (scores[users, items] - 1) ** 2)
  every_pair = objective.alpha0 * np.sum(scores**2)
  user_count = np.bincount(users, minlength=n_users)
  item_count = np.bincount(items, minlength=n_items)
  user_scale = (user_count + objective.alpha0 * n_items) ** objective.nu
  item_scale = (item_count + objective.alpha0 * n_users) ** objective.nu
  reg = l2 * (
    user_scale @ (p["user_factors"] ** 2).sum(1)
    + item_scale @ (p["item_factors"] ** 2).sum(1)
  )
  if objective.biases:
    reg += l2_bias * (
      user_scale @ p["user_bias"] ** 2 + item_scale @ p["item_bias"] ** 2
    )
  return (observed + every_pair + reg) / len(values)


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (40, 90, 8)])
def test_gramian_sum_is_the_sum_over_every_pair(shape):
  rng = np.random.default_rng(sum(shape))
  n_left, n_right, rank = shape
  left = rng.normal(size=(n_left, rank)).astype(np.float32)
  right = rng.normal(size=(n_right, rank)).astype(np.float32)
  expected = np.sum((left.astype(np.float64) @ right.T.astype(np.float64)) ** 2)
  got = objectives.gramian_sum(jnp.asarray(left), jnp.asarray(right))
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


OBJECTIVES = [
  Ranking(),
  Ranking(alpha0=0.7, nu=0.5, confidence=0.3),
  Ranking(alpha0=2.0, nu=0.0, biases=True),
  Ranking(alpha0=0.7, confidence=0.4, transform="log"),
  Ranking(alpha0=0.7, confidence=None, transform="log"),
]


@pytest.mark.parametrize("objective", OBJECTIVES, ids=repr)
@pytest.mark.parametrize("n", [20, 200], ids=["sparse", "dense"])
def test_ranking_loss_matches_the_brute_force_sum(objective, n):
  # 40 × 30 cells: 20 ratings take the per-rating path, 200 the dense one.
  assert (40 * 30 > objectives.DENSE_CELLS_PER_RATING * 20) and (
    40 * 30 <= objectives.DENSE_CELLS_PER_RATING * 200
  )
  ratings = random_ratings(1, 40, 30, n)
  params = objective.start(random_params(2, 40, 30, 4))
  got = mfjax.loss(params, ratings, l2=0.05, l2_bias=0.02, objective=objective)
  expected = _brute_loss(params, ratings, objective, 0.05, 0.02)
  np.testing.assert_allclose(float(got), expected, rtol=2e-5)


@pytest.mark.parametrize("n", [20, 200], ids=["sparse", "dense"])
def test_per_density_alpha0_is_alpha0_times_the_density(n):
  ratings = random_ratings(5, 40, 30, n)
  # Distinct pairs: the density counts each rated cell once.
  keys = np.asarray(ratings.users) * 30 + np.asarray(ratings.items)
  _, first = np.unique(keys, return_index=True)
  ratings = ratings.subset(np.sort(first))
  density = len(ratings) / (40 * 30)
  params = random_params(6, 40, 30, 4, mean=0.0)
  scaled = Ranking(alpha0=50.0, confidence=0.5, per_density=True)
  plain = Ranking(alpha0=50.0 * density, confidence=0.5)
  params = scaled.start(params)
  got = mfjax.loss(params, ratings, l2=0.05, objective=scaled)
  np.testing.assert_allclose(
    float(got), float(mfjax.loss(params, ratings, l2=0.05, objective=plain)), rtol=1e-5
  )


@pytest.mark.slow
def test_ranking_loss_of_a_dense_matrix_counts_its_nonzero_entries():
  rng = np.random.default_rng(3)
  matrix = np.where(rng.random((6, 8)) < 0.3, rng.integers(1, 6, (6, 8)), 0)
  matrix = matrix.astype(np.float32)
  params = random_params(4, 6, 8, 3, mean=0.0)
  objective = Ranking(alpha0=0.5, confidence=0.2)
  from_matrix = mfjax.loss(params, matrix, l2=0.1, objective=objective)
  from_pairs = mfjax.loss(
    params, mfjax.ratings_from_dense(matrix), l2=0.1, objective=objective
  )
  np.testing.assert_allclose(float(from_matrix), float(from_pairs), rtol=1e-6)


@pytest.mark.parametrize("objective", OBJECTIVES, ids=repr)
@pytest.mark.slow  # Several seconds of compiling on 2 CPU cores.
def test_ranking_loss_gradients_check_grads(objective):
  ratings = random_ratings(5, 9, 7, 25)
  with jax.enable_x64(True):
    params = jax.tree.map(
      lambda x: jnp.asarray(x, jnp.float64), random_params(6, 9, 7, 3, mean=0.0)
    )
    batch = objectives.pairs_of(ratings, jnp.float64)
    f = lambda p: objective.loss(p, batch, Penalty(0.2, 0.1))
    check_grads(f, (params,), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_ranking_rejects_bad_settings_before_tracing():
  with pytest.raises(ValueError, match="alpha0"):
    Ranking(alpha0=-0.1)
  with pytest.raises(ValueError, match="nu"):
    Ranking(nu=-1.0)
  with pytest.raises(ValueError, match="confidence"):
    Ranking(confidence=float("nan"))
  with pytest.raises(TypeError, match="biases"):
    Ranking(biases=1)
  params = random_params(0, 12, 9, 2)
  with pytest.raises(ValueError, match="leave batch_size out"):
    mfjax.train(
      params, random_ratings(), objective=Ranking(), batch_size=8,
      key=jax.random.key(0),
    )  # fmt: skip


def test_ranking_scores_are_not_ratings_and_start_from_zero_biases():
  assert RATING.scores_ratings and not Ranking().scores_ratings
  params = random_params(0, 12, 9, 2)
  started = Ranking().start(params)
  assert float(started.mean) == 0.0
  assert not np.any(np.asarray(started.user_bias))
  assert not np.any(np.asarray(started.item_bias))
  kept = Ranking(biases=True).start(params)
  np.testing.assert_array_equal(kept.item_bias, params.item_bias)
  assert float(kept.mean) == 0.0


# --- the alternating solver ---------------------------------------------------------


def _ials_half(objective, ratings, solve_users, p, l2, l2_bias):
  """One half pass of iALS by the normal equations (NumPy, float64)."""
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  values = np.asarray(ratings.values, np.float64)
  if not solve_users:
    users, items = items, users
    p = dict(
      user_factors=p["item_factors"], item_factors=p["user_factors"],
      user_bias=p["item_bias"], item_bias=p["user_bias"], mean=p["mean"],
    )  # fmt: skip
  n_rows, n_other = p["user_factors"].shape[0], p["item_factors"].shape[0]
  other = p["item_factors"]
  rank = other.shape[1]
  if objective.biases:  # Score = [p, b_u + mean]·[q, 1] + b_i.
    design = np.hstack([other, np.ones((n_other, 1))])
    offset = p["item_bias"]
  else:
    design, offset = other, np.zeros(n_other)
  count = np.bincount(users, minlength=n_rows)
  scale = (count + objective.alpha0 * n_other) ** objective.nu
  gram = design.T @ design
  new = np.zeros((n_rows, design.shape[1]))
  for r in range(n_rows):
    mine = users == r
    a = design[items[mine]]
    c = _confidences(objective, values[mine])
    lhs = (a.T * c) @ a + objective.alpha0 * gram
    rhs = (a.T * c) @ (1 - offset[items[mine]]) - objective.alpha0 * design.T @ offset
    penalty = np.full(design.shape[1], l2 * scale[r])
    if objective.biases:  # The bias coordinate is b_u itself (mean is 0).
      penalty[-1] = l2_bias * scale[r]
    new[r] = np.linalg.solve(lhs + np.diag(penalty), rhs)
  p = dict(p)
  p["user_factors"] = new[:, :rank]
  if objective.biases:
    p["user_bias"] = new[:, rank]
  if not solve_users:
    p = dict(
      user_factors=p["item_factors"], item_factors=p["user_factors"],
      user_bias=p["item_bias"], item_bias=p["user_bias"], mean=p["mean"],
    )  # fmt: skip
  return p


@pytest.mark.parametrize("objective", OBJECTIVES, ids=repr)
@pytest.mark.slow  # Several seconds of compiling on 2 CPU cores.
def test_one_alternating_pass_solves_the_normal_equations(objective):
  ratings = random_ratings(7, 11, 8, 30)
  rank = 3
  with jax.enable_x64(True):
    params = objective.start(
      jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), random_params(8, 11, 8, rank))
    )
    batch = objectives.pairs_of(ratings, jnp.float64)
    # Enough conjugate-gradient steps to solve each row exactly.
    solver = solvers.alternating(
      objective, batch, Penalty(0.05, 0.02), solvers.Alternating(cg_steps=12)
    )
    got, _, loss = solver.step(params, solver.init(params), 0)
    expected = {k: np.asarray(v) for k, v in params._asdict().items()}
    expected = _ials_half(objective, ratings, True, expected, 0.05, 0.02)
    expected = _ials_half(objective, ratings, False, expected, 0.05, 0.02)
    for name in ("user_factors", "item_factors", "user_bias", "item_bias"):
      np.testing.assert_allclose(getattr(got, name), expected[name], atol=1e-8)
    np.testing.assert_allclose(loss, objective.loss(got, batch, Penalty(0.05, 0.02)))


def _slow_after_first(objectives_):
  return [
    pytest.param(o, marks=() if i == 0 else pytest.mark.slow)
    for i, o in enumerate(objectives_)
  ]


@pytest.mark.parametrize(
  "objective", _slow_after_first([o for o in OBJECTIVES if not o.biases]), ids=repr
)
@pytest.mark.slow
def test_a_pass_over_row_chunks_solves_the_normal_equations(objective):
  # 60 users x 50 items and 45 ratings: the loss scores them pair by pair, so
  # the solver sets up each row's problem from row chunks; the weight-0
  # padding (on user 0, item 0) must change nothing.
  ratings = random_ratings(3, 60, 50, 45)
  padded = padded_ratings(ratings, 6)
  with jax.enable_x64(True):
    params = objective.start(
      jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), random_params(4, 60, 50, 3))
    )
    batch = objectives.pairs_of(padded, jnp.float64)
    penalty = Penalty(0.05, 0.0)
    solver = solvers.alternating(objective, batch, penalty, solvers.Alternating(6))
    state = solver.init(params)
    assert isinstance(state[1], solvers.RowChunks)  # The chunked path is taken.
    got, _, loss = jax.jit(solver.step)(params, state, 0)
    expected = {k: np.asarray(v) for k, v in params._asdict().items()}
    expected = _ials_half(objective, ratings, True, expected, 0.05, 0.0)
    expected = _ials_half(objective, ratings, False, expected, 0.05, 0.0)
    for name in ("user_factors", "item_factors"):
      np.testing.assert_allclose(getattr(got, name), expected[name], atol=1e-8)
    np.testing.assert_allclose(loss, objective.loss(got, batch, penalty), rtol=1e-12)


@pytest.mark.slow
def test_row_chunks_hold_every_pair_once_in_its_rows_chunks():
  rng = np.random.default_rng(5)
  n_rows, n = 9, 50
  rows = rng.choice([0, 2, 3, 7], n, p=[0.6, 0.2, 0.1, 0.1])  # Empty rows too.
  others = rng.integers(0, 100, n)
  weights = rng.uniform(0.5, 2.0, n).astype(np.float32)
  chunks = solvers.row_chunks(
    jnp.asarray(rows, jnp.int32), jnp.asarray(others, jnp.int32),
    jnp.asarray(weights), n_rows, 100, chunk=4,
  )  # fmt: skip
  assert chunks.others.shape == (50 // 4 + 9, 4) == chunks.weights.shape
  owner, got_others, got_weights = map(
    np.asarray, (chunks.rows, chunks.others, chunks.weights)
  )
  used = got_weights > 0
  got = sorted(
    zip(np.broadcast_to(owner[:, None], used.shape)[used].tolist(),
        got_others[used].tolist(), got_weights[used].tolist(), strict=True)
  )  # fmt: skip
  assert got == sorted(
    zip(rows.tolist(), others.tolist(), weights.tolist(), strict=True)
  )
  # A row takes ceil(m / 4) chunks; the rest belong to no row (n_rows).
  expected = {r: -(-np.sum(rows == r) // 4) for r in range(n_rows)}
  assert {r: int(np.sum(owner == r)) for r in range(n_rows)} == expected
  assert np.sum(owner == n_rows) == len(owner) - sum(expected.values())
  assert not np.any(got_weights[owner == n_rows])


@pytest.mark.slow
def test_row_chunks_of_narrow_index_types_count_past_their_range():
  # 300 pairs on uint8 rows: positions and counts past 255 must not wrap.
  rng = np.random.default_rng(2)
  rows, others = rng.integers(0, 3, 300), rng.integers(0, 200, 300)
  wide = solvers.row_chunks(
    jnp.asarray(rows, jnp.int32), jnp.asarray(others, jnp.int32),
    jnp.ones(300), 3, 200,
  )  # fmt: skip
  narrow = solvers.row_chunks(
    jnp.asarray(rows, jnp.uint8), jnp.asarray(others, jnp.uint8), jnp.ones(300), 3, 200
  )
  for got, want in zip(narrow, wide, strict=True):
    np.testing.assert_array_equal(got, want)
  assert int(np.sum(np.asarray(narrow.weights))) == 300
  with pytest.raises(ValueError, match="n_rows must be >= 1"):
    solvers.row_chunks(
      jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int32), jnp.ones(2), 0, 1
    )


def test_a_ranking_fit_under_jit_on_an_index_out_of_range_turns_nan():
  # jit cannot check indices: a user past the table must not silently train
  # another row (the chunked solver marks the pair with a NaN weight).
  ratings = random_ratings(6, 60, 50, 45)
  bad = dataclasses.replace(ratings, users=ratings.users.at[3].set(60))
  params = Ranking().start(random_params(1, 60, 50, 3))
  train = jax.jit(
    lambda p, r: (
      mfjax.train(
        p, r, steps=2, objective=Ranking(), solver=solvers.Alternating()
      ).losses
    )
  )
  assert np.all(np.isfinite(train(params, ratings)))
  assert np.all(np.isnan(train(params, bad)))


@pytest.mark.slow  # Several seconds of compiling on 2 CPU cores.
def test_alternating_rating_pass_solves_biased_least_squares():
  """The same solver on the rating objective: ridge regression per row."""
  ratings = random_ratings(9, 10, 12, 60)
  l2, l2_bias = 0.3, 0.1
  with jax.enable_x64(True):
    params = jax.tree.map(
      lambda x: jnp.asarray(x, jnp.float64), random_params(10, 10, 12, 2, mean=3.0)
    )
    batch = objectives.pairs_of(ratings, jnp.float64)
    solver = solvers.alternating(
      RATING, batch, Penalty(l2, l2_bias), solvers.Alternating(cg_steps=8)
    )
    got, _, _ = solver.step(params, (), 0)
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  values = np.asarray(ratings.values, np.float64)
  q, bi = np.asarray(params.item_factors), np.asarray(params.item_bias)
  for u in range(10):
    mine = users == u
    a = np.hstack([q[items[mine]], np.ones((mine.sum(), 1))])
    target = values[mine] - 3.0 - bi[items[mine]]
    # loss = Σ (a·x - target)² / n + (l2·|p|² + l2_bias·b²) / n
    x = np.linalg.solve(a.T @ a + np.diag([l2, l2, l2_bias]), a.T @ target)
    np.testing.assert_allclose(got.user_factors[u], x[:2], atol=1e-6)
    np.testing.assert_allclose(got.user_bias[u], x[2], atol=1e-6)


@pytest.mark.slow
def test_alternating_training_lowers_the_loss_every_pass_and_keeps_the_best():
  ratings = random_ratings(11, 30, 25, 200)
  params = mfjax.init_params(jax.random.key(0), 30, 25, 4)
  result = mfjax.train(
    params, ratings, steps=8, l2=0.01, objective=Ranking(alpha0=0.5),
    solver=solvers.Alternating(),
  )  # fmt: skip
  losses = np.asarray(result.losses)
  assert np.all(np.diff(losses) <= 1e-6 * losses[:-1])
  # The loss belongs to the params after each pass: the last is the best.
  assert float(result.best_loss) == losses.min() == losses[-1]
  again = mfjax.loss(
    result.best_params, ratings, l2=0.01, objective=Ranking(alpha0=0.5)
  )
  np.testing.assert_allclose(float(again), losses[-1], rtol=1e-5)


def test_alternating_refuses_an_optimizer_batches_or_chunks():
  params = random_params(0, 12, 9, 2)
  ratings = random_ratings()
  als = solvers.Alternating()
  for kwargs, name in [
    (dict(optimizer=optax.adam(0.1)), "optimizer"),
    (dict(batch_size=8, key=jax.random.key(0)), "batch_size"),
    (dict(chunk_size=8), "chunk_size"),
  ]:
    with pytest.raises(ValueError, match=f"takes no {name}"):
      mfjax.train(params, ratings, solver=als, **kwargs)
  with pytest.raises(TypeError, match="Alternating"):
    mfjax.train(params, ratings, solver="als")
  with pytest.raises(ValueError, match="cg_steps"):
    solvers.Alternating(cg_steps=0)


# --- the tuned fit ------------------------------------------------------------------


def _planted_preferences(seed=0, n_groups=4, users_per_group=15, items_per_group=10):
  """Users in groups, each picking 6 of its group's 10 items (and one stray)."""
  rng = np.random.default_rng(seed)
  n_users, n_items = n_groups * users_per_group, n_groups * items_per_group
  users, items, held_out = [], [], {}
  for u in range(n_users):
    group = u // users_per_group
    own = rng.permutation(items_per_group) + group * items_per_group
    stray = rng.choice(np.setdiff1d(np.arange(n_items), own))
    picked = list(own[:6]) + [stray]
    users += [u] * len(picked)
    items += picked
    held_out[u] = set(own[6:].tolist())
  ratings = mfjax.Ratings(
    users=jnp.asarray(users, jnp.int32),
    items=jnp.asarray(items, jnp.int32),
    values=jnp.asarray(rng.integers(1, 6, len(users)), jnp.float32),
    n_users=n_users,
    n_items=n_items,
  )
  return ratings, held_out


@pytest.mark.slow  # Several seconds of compiling on 2 CPU cores.
def test_ranking_fit_recovers_planted_top_items():
  ratings, held_out = _planted_preferences()
  fitted = mfjax.fit(jax.random.key(0), ratings, objective="ranking", rank=4)
  users = np.arange(ratings.n_users, dtype=np.int32)
  top, _ = mfjax.recommend(fitted.best_params, users, 4, exclude=ratings)
  hits = [len(set(np.asarray(top[u]).tolist()) & held_out[u]) for u in users]
  # The group's 4 unseen items are the top 4 of (almost) every user; a stray
  # pick can pull one other item in.
  assert sum(hits) >= 0.97 * 4 * len(users) and min(hits) >= 3
  # The rating fit, trained on observed ratings only, does not find them.
  rating_fit = mfjax.fit(jax.random.key(0), ratings, rank=4, ensemble=2)
  top, _ = mfjax.recommend(rating_fit.best_params, users, 4, exclude=ratings)
  rating_hits = [len(set(np.asarray(top[u]).tolist()) & held_out[u]) for u in users]
  assert sum(rating_hits) < 0.6 * sum(hits)


@pytest.mark.slow
def test_ranking_fit_settings_and_refusals():
  ratings = random_ratings(0, 12, 9, 40)
  fitted = mfjax.fit(
    jax.random.key(0), ratings, objective="ranking", rank=3, steps=4, alpha0=0.5
  )
  assert fitted.members.losses.shape == (1, 4)
  assert fitted.best_params.user_factors.shape == (12, 3)
  assert float(fitted.best_params.mean) == 0.0
  for kwargs in [
    dict(learning_rate=0.1), dict(l2_bias=0.1), dict(batch_size=8),
    dict(ensemble=2), dict(validation_data=ratings), dict(patience=2),
  ]:  # fmt: skip
    with pytest.raises(ValueError, match="does not apply to objective='ranking'"):
      mfjax.fit(jax.random.key(0), ratings, objective="ranking", **kwargs)
  with pytest.raises(ValueError, match="alpha0 applies to objective='ranking'"):
    mfjax.fit(jax.random.key(0), ratings, alpha0=1.0)
  with pytest.raises(ValueError, match="objective must be one of"):
    mfjax.fit(jax.random.key(0), ratings, objective="ndcg")
  with pytest.raises(ValueError, match="alpha0"):
    mfjax.fit(jax.random.key(0), ratings, objective="ranking", alpha0=-1.0)


def _scaled(ratings, factor):
  return dataclasses.replace(ratings, values=ratings.values * factor)


@pytest.mark.parametrize("traced", [False, True], ids=["host", "jit"])
@pytest.mark.slow
def test_auto_transform_is_log_for_counts_and_linear_for_ratings(traced):
  ratings = random_ratings(11, 40, 30, 60)  # Ratings in 1..5.
  counts = _scaled(ratings, 1000.0)  # Counts up to 5000.
  params = Ranking().start(random_params(12, 40, 30, 4))

  def loss(data, transform):
    objective = Ranking(alpha0=0.5, confidence=0.3, transform=transform)
    f = lambda d: mfjax.loss(params, d, l2=0.05, objective=objective)
    return float(jax.jit(f)(data) if traced else f(data))

  assert loss(ratings, "auto") == pytest.approx(loss(ratings, "linear"), rel=1e-6)
  assert loss(counts, "auto") == pytest.approx(loss(counts, "log"), rel=1e-6)
  assert loss(counts, "log") != pytest.approx(loss(counts, "linear"), rel=1e-3)
  # Padding (weight 0) of a huge value does not make ratings look like counts.
  weights = jnp.ones(60).at[0].set(0.0)
  padded = dataclasses.replace(
    ratings, values=ratings.values.at[0].set(1e6), weights=weights
  )
  assert loss(padded, "auto") == pytest.approx(loss(padded, "linear"), rel=1e-6)


@pytest.mark.parametrize(
  "values, expected",
  [
    ([1.0, 3.0, 5.0], False),  # stars
    ([1.0, 10.0], False),  # a 1..10 scale
    ([0.0, 1.0, 11.0], True),  # counts
    ([-10.0, 3.0, 352698.0], False),  # a value below 0: not counts
    ([], False),
  ],
)
def test_looks_like_counts(values, expected):
  values = jnp.asarray(values, jnp.float32)
  present = jnp.ones(values.shape, bool)
  assert bool(objectives.looks_like_counts(values, present)) is expected


def test_resolve_confidence_decides_auto_on_the_host():
  from mfjax.settings import RankingSettings

  stars = random_ratings(13, 20, 10, 40)
  plays = _scaled(stars, 100.0)
  default = RankingSettings()
  assert objectives.resolve_confidence(default, stars)[-3:] == (
    objectives.CONFIDENCE_TRANSFORMS["linear"], 3, "linear",
  )  # fmt: skip
  chosen = objectives.resolve_confidence(default, plays)
  assert (chosen.confidence_transform, chosen.confidence) == ("log", 0.0)
  given = default._replace(confidence=2.0)
  assert objectives.resolve_confidence(given, plays).confidence == 2.0
  forced = default._replace(confidence_transform="linear")
  assert objectives.resolve_confidence(forced, plays).confidence_transform == "linear"
  negative = _scaled(stars, -1.0)
  with pytest.raises(ValueError, match="'log' is for counts, >= 0; a rating is -"):
    objectives.resolve_confidence(
      default._replace(confidence_transform="log"), negative
    )
  seen = []

  @jax.jit
  def traced(values):
    traced_stars = dataclasses.replace(stars, values=values)
    seen.append(objectives.resolve_confidence(default, traced_stars))
    return values

  traced(plays.values)
  assert seen == [default]  # Traced: decided on the device instead.


def test_ranking_refuses_an_unknown_transform():
  with pytest.raises(ValueError, match="transform must be 'auto', 'linear' or 'log'"):
    Ranking(transform="sqrt")


@pytest.mark.slow
def test_per_density_alpha0_of_more_cells_than_int32_counts():
  # 200k users x 20k items: 4e9 cells. The density's denominator overflowed
  # int32 inside the traced loss (found at 10M interactions, 200k x 100k).
  n_users, n_items = 200_000, 20_000
  ratings = mfjax.Ratings(
    jnp.array([0, 5, 199_999]), jnp.array([1, 7, 19_999]), jnp.ones(3),
    n_users, n_items,
  )  # fmt: skip
  params = random_params(9, n_users, n_items, 2, mean=0.0)
  scaled = Ranking(alpha0=1e6, per_density=True)
  plain = Ranking(alpha0=1e6 * 3 / (n_users * n_items))
  got = mfjax.loss(scaled.start(params), ratings, l2=0.01, objective=scaled)
  expected = mfjax.loss(plain.start(params), ratings, l2=0.01, objective=plain)
  np.testing.assert_allclose(float(got), float(expected), rtol=1e-5)
