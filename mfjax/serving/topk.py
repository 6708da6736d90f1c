"""Serving a trained model: top-N lists and fold-in of new users.

:func:`recommend` ranks every item for some users, leaving out the items they
already rated, in blocks of users so that memory stays bounded by
``block_size × n_items`` whatever the number of users. :func:`fold_in` gives new
users factors and biases from their ratings, with the items fixed, by the ridge
solve that training would reach for them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import eager, kernels, objectives
from mfjax.settings import FitSettings, RankingSettings
from mfjax.types import UNKNOWN, Params, Ratings

__all__ = ["recommend", "fold_in"]

_FIT = FitSettings()  # fold_in regularises as the default fit does.
_RANKING = RankingSettings()

# Excluded pairs are scattered into a block's score tile this many at a time: a
# fixed-size chunk keeps the work buffers bounded however many pairs a block has.
_EXCLUDE_CHUNK = 1 << 16
# fold_in accumulates the per-rating outer products [n, k+1, k+1] in chunks of at
# most this many elements (16 MB in float32), not all at once.
_GRAM_CHUNK_ELEMENTS = 1 << 22
# Excluded pairs are grouped by sorting one uint32 key per pair when
# (n_users + 1) · n_items fits in it.
_PACK_LIMIT = 2**32


def _check_users(users, n_users: int):
  """Host checks of ``users``; returns ``(users as 1-D, whether it was a scalar)``."""
  scalar = np.ndim(users) == 0
  if scalar:
    users = users[None] if hasattr(users, "shape") else np.asarray(users)[None]
  users = validation.check_index_array("users", users, n_users, axis_name="users")
  return users, scalar


def _check_finite_rows(params: Params, users) -> None:
  """Refuses concrete params whose item tables or ``users``' rows are not finite:
  their scores would be NaN, which no ranking can order."""
  tables = [(f, getattr(params, f), None) for f in ("item_factors", "item_bias")]
  tables.append(("mean", params.mean[None], None))
  if validation.is_concrete(users):
    rows = np.asarray(users)
    tables += [(f, getattr(params, f), rows) for f in ("user_factors", "user_bias")]
  for name, table, rows in tables:
    if not validation.is_concrete(table):
      continue
    host = np.asarray(table) if rows is None else np.asarray(table)[rows]
    bad = ~np.isfinite(host.reshape(len(host), -1) if host.size else host).all(axis=-1)
    if bad.any():
      row = int(np.argmax(bad)) if rows is None else int(rows[np.argmax(bad)])
      at = "" if name == "mean" else f" (row {row})"
      raise ValueError(
        f"params.{name} holds NaN or inf{at}: the scores would be NaN, "
        "which no ranking can order. Are these the params of a diverged fit? "
        "TrainResult.best_params are finite."
      )


def _exclusion_table(exclude: Ratings, n_users: int):
  """The excluded items grouped by user (CSR): ``(items, starts, counts)``.

  ``items[starts[u] : starts[u] + counts[u]]`` are user ``u``'s excluded items.
  Pairs with an unknown user or item (-1) are left out.
  """
  n_items = exclude.n_items
  users = jnp.asarray(exclude.users, jnp.int32)
  items = jnp.asarray(exclude.items, jnp.int32)
  known = (users >= 0) & (users < n_users) & (items >= 0) & (items < n_items)
  if exclude.weights is not None:  # A weight-0 entry (padding) is no rating.
    known = known & (jnp.asarray(exclude.weights) > 0)
  key = jnp.where(known, users, n_users)  # Unknown pairs sort last, uncounted.
  items = jnp.where(known, items, 0)
  if (n_users + 1) * n_items <= _PACK_LIMIT:
    # One uint32 key per pair: XLA's CPU sort of a single array is about 6x
    # faster than a key-value sort (0.2 s against 1.2 s for 5M pairs).
    packed = jnp.sort(
      key.astype(jnp.uint32) * jnp.uint32(n_items) + items.astype(jnp.uint32)
    )
    bounds = jnp.arange(n_users + 1, dtype=jnp.uint32) * jnp.uint32(n_items)
    edges = jnp.searchsorted(packed, bounds).astype(jnp.int32)
    return (
      (packed % jnp.uint32(n_items)).astype(jnp.int32),
      edges[:-1],
      edges[1:] - edges[:-1],
    )
  _, items = jax.lax.sort_key_val(key, items, is_stable=False)
  counts = jnp.zeros(n_users + 1, jnp.int32).at[key].add(1)[:n_users]
  return items, jnp.cumsum(counts) - counts, counts


def _exclude_block(scores, block_users, block_valid, table):
  """Sets the excluded pairs of a block's ``[B, n_items]`` score tile to -inf."""
  items, starts, counts = table
  n_rows = scores.shape[0]
  n_pairs = items.shape[0]
  chunk = min(n_pairs, _EXCLUDE_CHUNK)
  n_users = counts.shape[0]
  in_range = block_valid & (block_users >= 0) & (block_users < n_users)
  safe_users = jnp.clip(block_users, 0, n_users - 1)
  row_count = jnp.where(in_range, counts[safe_users], 0)
  row_end = jnp.cumsum(row_count)  # The block's pairs, row after row.
  row_start = starts[safe_users]
  total = row_end[-1]
  neg_inf = jnp.array(-jnp.inf, scores.dtype)

  def body(state):
    step, scores = state
    position = step * chunk + jnp.arange(chunk, dtype=jnp.int32)
    row = jnp.searchsorted(row_end, position, side="right").astype(jnp.int32)
    row = jnp.minimum(row, n_rows - 1)
    within = position - (row_end[row] - row_count[row])
    item = items[jnp.clip(row_start[row] + within, 0, n_pairs - 1)]
    row = jnp.where(position < total, row, n_rows)  # Past the end: dropped.
    return step + 1, scores.at[row, item].set(neg_inf, mode="drop")

  _, scores = jax.lax.while_loop(
    lambda state: state[0] * chunk < total, body, (jnp.int32(0), scores)
  )
  return scores


def _recommend(params: Params, users, k: int, exclude, block_size: int):
  """:func:`recommend` without the host checks; ``users`` is 1-D."""
  n_users = params.user_factors.shape[0]
  n = users.shape[0]
  dtype = params.user_factors.dtype
  if n == 0:
    return jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), dtype)
  block = min(block_size, n)
  n_blocks = -(-n // block)
  pad = n_blocks * block - n
  users = jnp.asarray(users, jnp.int32)
  padded = jnp.concatenate([users, jnp.zeros(pad, jnp.int32)]).reshape(n_blocks, block)
  valid = (jnp.arange(n_blocks * block) < n).reshape(n_blocks, block)
  table = None
  if exclude is not None and exclude.users.shape[0]:
    table = _exclusion_table(exclude, n_users)
  item_factors_t = params.item_factors.T

  def one_block(inputs):
    block_users, block_valid = inputs
    # gather: an out-of-range index under jit scores NaN, as in predict.
    dot = kernels.gather(params.user_factors, block_users) @ item_factors_t
    scores = kernels.combine(
      params.mean,
      kernels.gather(params.user_bias, block_users)[:, None],
      params.item_bias[None, :],
      dot,
    )
    # lax.top_k ranks NaN first: a NaN score (broken params under jit) is last.
    scores = jnp.where(jnp.isnan(scores), -jnp.inf, scores)
    if table is not None:
      scores = _exclude_block(scores, block_users, block_valid, table)
    values, index = jax.lax.top_k(scores, k)
    index = jnp.where(values == -jnp.inf, -1, index).astype(jnp.int32)
    return index, values

  index, values = jax.lax.map(one_block, (padded, valid))
  return index.reshape(-1, k)[:n], values.reshape(-1, k)[:n]


def _recommend_settled(settings, params, users, exclude):
  """:func:`_recommend` with ``(k, block_size)`` as one static argument, for
  :func:`mfjax.core.eager.call`: one program per shape outside ``jit``."""
  k, block_size = settings
  return _recommend(params, users, k, exclude, block_size)


def recommend(
  params: Params,
  users: ArrayLike,
  k: int,
  *,
  exclude: Ratings | None = None,
  block_size: int = 1024,
) -> tuple[jax.Array, jax.Array]:
  """The ``k`` highest-scored items for each user, leaving out rated ones.

  A user's score of an item is the additive model's prediction, ``mean + b_u +
  b_i + p_u·q_i`` (:func:`mfjax.predict`, unclipped). Users are scored in blocks
  of ``block_size`` inside one ``lax.map``, and each block keeps its ``k`` best
  with ``lax.top_k``, so memory is bounded by ``block_size × n_items`` scores, never
  ``n_users × n_items``. Excluded pairs are grouped by user on the device and
  scattered as -inf into each block's scores, a bounded chunk at a time.

  Equal scores rank the lower item index first. Called outside ``jit``, it runs
  as one compiled program per shape and setting, kept for later calls
  (:func:`mfjax.core.eager.call`); inside ``jit`` (``k`` and ``block_size``
  static) it traces in place.

  Args:
    params: model parameters (finite).
    users: user indices, an int or a 1-D int array ``[n]`` (repeats allowed).
    k: how many items per user, a static int in ``[1, n_items]``.
    exclude: optional :class:`mfjax.Ratings` with the model's ``n_users`` and
      ``n_items``, usually the training ratings; its ``(user, item)`` pairs are
      never recommended (values are ignored). Pairs with an unknown user or item
      (-1), and entries of weight 0 (the padding of
      :func:`mfjax.core.sharding.shard_ratings`), are ignored.
    block_size: users scored at once, a static int >= 1. Memory and per-block
      work grow with ``block_size × n_items``.

  Returns:
    ``(items, scores)``: int32 item indices and their scores, best first, each
    ``[n, k]``, or ``[k]`` when ``users`` is a single int (or 0-D array). When a
    user has fewer than ``k`` items left after the exclusion, the remaining slots
    hold item -1 and score ``-inf``.

  User indices are checked on the host (in ``[0, n_users)``), and params with
  NaN or inf where the lists need them are refused. Under ``jit`` they are
  tracers: an index of -1 then scores the items by ``mean + b_i`` alone, and a
  NaN score (another out-of-range index, or broken params) ranks last, as item
  -1 with score ``-inf`` when nothing else is left.

  Examples:
    >>> import jax, mfjax
    >>> from mfjax.serving.topk import recommend
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> rated = mfjax.Ratings(
    ...   jax.numpy.array([0, 0]), jax.numpy.array([1, 2]),
    ...   jax.numpy.array([5.0, 3.0]), n_users=4, n_items=6)
    >>> items, scores = recommend(params, [0, 3], 2, exclude=rated)
    >>> items.shape, scores.shape
    ((2, 2), (2, 2))
    >>> bool(set(items[0].tolist()) & {1, 2})
    False
  """
  n_users, n_items, _ = validation.check_params(params)
  users, scalar = _check_users(users, n_users)
  k = validation.check_positive_int("k", k)
  if k > n_items:
    raise ValueError(f"k must be at most n_items = {n_items}; got {k}.")
  block_size = validation.check_positive_int("block_size", block_size)
  if exclude is not None:
    validation.check_ratings(
      "exclude", exclude, allow_unknown=True, shape=(n_users, n_items)
    )
  _check_finite_rows(params, users)
  settings = (k, block_size)
  items, scores = eager.call(_recommend_settled, settings, params, users, exclude)
  if scalar:
    return items[0], scores[0]
  return items, scores


def _positive(weight) -> bool:
  """Whether an L2 weight is known (concrete) to be > 0."""
  return validation.is_concrete(weight) and float(weight) > 0


def _fold_in(params: Params, ratings: Ratings, l2, l2_bias) -> Params:
  """:func:`fold_in` of a rating model, without the host checks."""
  dtype = params.item_factors.dtype
  rank = params.item_factors.shape[1]
  n = ratings.values.shape[0]
  items = jnp.asarray(ratings.items, jnp.int32)
  # Each rating is a row [q_i, 1] of the user's least-squares problem, with target
  # r - mean - b_i and unknowns [p_u, b_u].
  weight = _pair_weights(ratings, dtype)
  root = jnp.sqrt(weight)  # Weighted least squares: rows scaled by √w.
  design = (
    jnp.concatenate(
      [kernels.gather(params.item_factors, items), jnp.ones((n, 1), dtype)], axis=1
    )
    * root[:, None]
  )
  target = (
    jnp.asarray(ratings.values, dtype)
    - params.mean
    - kernels.gather(params.item_bias, items)
  ) * root
  gram, rhs, counts = _normal_equations(design, target, weight, ratings)
  penalty = jnp.concatenate(
    [
      jnp.full((rank,), jnp.asarray(l2, dtype)),
      jnp.full((1,), jnp.asarray(l2_bias, dtype)),
    ]
  )
  gram = gram + jnp.diag(penalty)[None]
  solution = _solve(gram, rhs, counts == 0, _positive(l2) and _positive(l2_bias))
  return Params(
    user_factors=solution[:, :rank],
    item_factors=params.item_factors,
    user_bias=solution[:, rank],
    item_bias=params.item_bias,
    mean=params.mean,
  )


def _fold_in_ranking(params: Params, ratings: Ratings, l2, objective, alpha) -> Params:
  """:func:`fold_in` of a ranking model (no biases), without the host checks:
  each new user's row of the iALS loss with the items fixed, in closed form::

    (Σ_i c_ui q_i q_iᵀ + α QᵀQ + l2 (n_u + α n_items)^nu I) p_u = Σ_i c_ui q_i

  (:class:`mfjax.core.objectives.Ranking`; ``α`` the effective all-pairs weight,
  ``c_ui = w (1 + confidence g(r_ui))``, ``n_u`` the user's number of ratings).
  """
  dtype = params.item_factors.dtype
  n_items = params.item_factors.shape[0]
  items = jnp.asarray(ratings.items, jnp.int32)
  weight = _pair_weights(ratings, dtype)
  values = jnp.asarray(ratings.values, dtype)
  root = jnp.sqrt(weight * objective.pair_confidence(values, weight > 0))
  design = kernels.gather(params.item_factors, items) * root[:, None]
  gram, rhs, counts = _normal_equations(
    design, root, (weight > 0).astype(dtype), ratings
  )
  alpha = jnp.asarray(alpha, dtype)
  items_gram = params.item_factors.T @ params.item_factors
  scale = (counts + alpha * n_items) ** jnp.asarray(objective.nu, dtype)
  eye = jnp.eye(design.shape[1], dtype=dtype)
  ridge = (jnp.asarray(l2, dtype) * scale)[:, None, None] * eye[None]
  gram = gram + (alpha * items_gram)[None] + ridge
  solution = _solve(gram, rhs, counts == 0, _positive(l2))
  return Params(
    user_factors=solution,
    item_factors=params.item_factors,
    user_bias=jnp.zeros((ratings.n_users,), dtype),
    item_bias=params.item_bias,
    mean=params.mean,
  )


def _pair_weights(ratings: Ratings, dtype) -> jax.Array:
  """Each pair's weight: 0 for an unknown item (-1), else its weight (or 1)."""
  weight = (jnp.asarray(ratings.items) != UNKNOWN).astype(dtype)
  if ratings.weights is not None:
    weight = weight * jnp.asarray(ratings.weights, dtype)
  return weight


def _normal_equations(design, target, counted, ratings: Ratings):
  """``(gram, rhs, counts)`` per new user: ``Σ rowsᵀrows``, ``Σ rows·target``
  and ``Σ counted`` over each user's rows, the outer products accumulated in
  chunks of bounded size."""
  n_new = ratings.n_users
  n, width = design.shape
  dtype = design.dtype
  users = jnp.asarray(ratings.users, jnp.int32)
  chunk = max(1, min(n, _GRAM_CHUNK_ELEMENTS // (width * width)))
  n_chunks = -(-n // chunk)
  pad = n_chunks * chunk - n
  # Padding rows are all zero, so they add nothing to user 0.
  design_chunks = jnp.concatenate([design, jnp.zeros((pad, width), dtype)])
  user_chunks = jnp.concatenate([users, jnp.zeros(pad, jnp.int32)])

  def accumulate(gram, inputs):
    rows, owners = inputs
    outer = rows[:, :, None] * rows[:, None, :]
    return gram + jax.ops.segment_sum(outer, owners, n_new), None

  gram, _ = jax.lax.scan(
    accumulate,
    jnp.zeros((n_new, width, width), dtype),
    (
      design_chunks.reshape(n_chunks, chunk, width),
      user_chunks.reshape(n_chunks, chunk),
    ),
  )
  rhs = jax.ops.segment_sum(design * target[:, None], users, n_new)
  return gram, rhs, jax.ops.segment_sum(counted, users, n_new)


def _solve(gram, rhs, empty, definite: bool) -> jax.Array:
  """Each user's ``gram x = rhs``; 0 for a user without ratings (``empty``)."""
  dtype = gram.dtype
  width = gram.shape[-1]
  # A user without ratings solves I x = 0: zero factors and bias even with l2 = 0.
  gram = jnp.where(empty[:, None, None], jnp.eye(width, dtype=dtype)[None], gram)
  smallest = lambda: (jnp.linalg.pinv(gram, hermitian=True) @ rhs[:, :, None])[..., 0]
  if definite:
    # Positive definite: Cholesky, half the work of LU. In float32 it can still
    # fail (NaN) for a user whose ratings determine little next to a large Gram
    # and a small l2: those users get the smallest least-squares solution.
    factor = jnp.linalg.cholesky(gram)
    solution = cho_solve((factor, True), rhs[:, :, None])[:, :, 0]
    failed = ~jnp.all(jnp.isfinite(solution), axis=1)
    solution = jax.lax.cond(
      failed.any(),
      lambda s: jnp.where(failed[:, None], smallest(), s),
      lambda s: s,
      solution,
    )
  else:  # l2 = 0 (or traced): maybe singular; the smallest solution.
    solution = smallest()
  return jnp.where(empty[:, None], jnp.zeros((), dtype), solution)


def fold_in(
  params: Params,
  ratings: Ratings,
  *,
  l2: ArrayLike | None = None,
  l2_bias: ArrayLike | None = None,
  objective: objectives.Ranking | None = None,
  density: float | None = None,
) -> Params:
  """Factors and biases of new users from their ratings, with the items fixed.

  Each new user ``u`` gets the exact minimiser of

      Σ_i (mean + b_u + b_i + p_u·q_i − r_ui)² + l2·‖p_u‖² + l2_bias·b_u²

  over its ratings, with the item factors ``q_i``, item biases ``b_i`` and
  ``mean`` of ``params`` held fixed: a ridge regression of ``rank + 1`` unknowns
  per user, solved in closed form for all users at once (their normal equations
  accumulated with ``segment_sum``, then one batched solve). It is the user's part
  of :func:`mfjax.train`'s objective, so the default weights are those of the fit
  defaults (:class:`mfjax.FitSettings`).

  For an ensemble (:func:`mfjax.fitting.ensemble.ensemble_params`), fold into
  the merged params with the members' own, unscaled ``l2``, or into each member
  (``jax.vmap`` over the stacked members) and merge the results with
  ``ensemble_params``. Both came within 0.01 RMSE of retraining with the new
  users on MovieLens 100k; scaling ``l2`` by the number of members or its
  inverse did worse
  (``benchmarks/fold_in_movielens.py``).

  With ``objective`` a :class:`mfjax.core.objectives.Ranking` (a model of
  ``fit(objective="ranking")``), each new user gets instead the exact minimiser
  of that user's part of the iALS loss with the items fixed (the closed-form
  solve that implicit's ``recalculate_user`` makes)::

      Σ_i c_ui (p_u·q_i − 1)² + α Σ_all j (p_u·q_j)² + l2 (n_u + α n_items)^nu ‖p_u‖²

  ``c_ui = 1 + confidence·g(r_ui)`` (``g`` the objective's transform: ``r``,
  or ``log(1 + r)`` for counts), ``n_u`` the user's number of ratings, ``α``
  the objective's ``alpha0`` (times ``density`` with ``per_density``, as the
  fit weighs it); the all-items sum is ``α·QᵀQ``, formed once.

  ``fold_in`` is not jitted; it works under ``jax.jit`` (``ratings.n_users`` is
  static) and traces once per shape.

  Args:
    params: trained parameters; only the item tables and ``mean`` are used.
    ratings: the new users' ratings, a :class:`mfjax.Ratings` whose ``n_users`` is
      the number of new users (indices ``0 .. n_new - 1``) and whose ``n_items`` is
      that of ``params``. Items must be known (no -1).
    l2: L2 weight of the user factors, ``>= 0``; may be traced. None: the
      default fit's (:class:`mfjax.FitSettings`, or with a ranking ``objective``
      :class:`mfjax.settings.RankingSettings`).
    l2_bias: L2 weight of the user bias, ``>= 0``; may be traced. None: the
      default fit's. A ranking model has no biases: leave it out.
    objective: None for a rating model, or the ``Ranking`` objective the model
      was fitted with (without biases).
    density: with a ``per_density`` ranking objective, the training data's
      ``n_ratings / (n_users · n_items)`` (in ``(0, 1]``); else leave it out.

  Returns:
    :class:`mfjax.Params` whose ``user_factors`` ``[n_new, rank]`` and
    ``user_bias`` ``[n_new]`` are the new users', and whose item tables and
    ``mean`` are those of ``params``, so :func:`mfjax.predict` and
    :func:`recommend` take it directly. A new user without ratings gets zero
    factors and bias (predictions ``mean + b_i``). With ``l2`` or ``l2_bias``
    0 (or traced), a user whose ratings do not determine the solution (fewer
    than ``rank + 1`` independent ones) gets the least-squares solution of
    smallest norm (a pseudo-inverse, slower than the Cholesky solve of the
    other cases), never NaN; so does a user whose Cholesky solve fails in
    float32 (a tiny ``l2`` next to many ratings of few items).

  Checked on the host: ``params``, the ratings' shape, indices and finiteness, and
  the weights. Under ``jit`` the values are tracers: NaN or inf ratings give that
  user NaN, an item of -1 is ignored, another out-of-range item gives its user
  NaN, and a negative weight is not detected.

  Examples:
    >>> import jax, jax.numpy as jnp, mfjax
    >>> from mfjax.serving.topk import fold_in
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> new = mfjax.Ratings(jnp.array([0, 0, 1]), jnp.array([2, 5, 0]),
    ...                     jnp.array([4.0, 2.0, 5.0]), n_users=2, n_items=6)
    >>> folded = fold_in(params, new)
    >>> folded.user_factors.shape, folded.item_factors.shape
    ((2, 3), (6, 3))
  """
  _, n_items, _ = validation.check_params(params)
  validation.check_ratings("ratings", ratings)
  if ratings.n_items != n_items:
    raise ValueError(
      f"ratings.n_items must be n_items = {n_items} to match params; got "
      f"{ratings.n_items}. ratings.n_users is the number of new users."
    )
  if objective is not None:
    alpha = _check_ranking_fold_in(objective, l2_bias, density)
    _check_confidence_weights(ratings, objective)
    l2 = _RANKING.l2 if l2 is None else l2
    validation.check_nonnegative("l2", l2)
    fold = lambda part: _fold_in_ranking(params, part, l2, objective, alpha)
    return _in_user_blocks(fold, params, ratings, params.user_factors.shape[1])
  if density is not None:
    raise ValueError("density applies to a per_density ranking objective only.")
  l2 = _FIT.l2 if l2 is None else l2
  l2_bias = _FIT.l2_bias if l2_bias is None else l2_bias
  validation.check_nonnegative("l2", l2)
  validation.check_nonnegative("l2_bias", l2_bias)
  fold = lambda part: _fold_in(params, part, l2, l2_bias)
  return _in_user_blocks(fold, params, ratings, params.user_factors.shape[1] + 1)


# The new users' normal equations a fold-in holds at once: their Gram matrices,
# (rank + 1)² numbers each. 10**6 users at rank 32 would take 4.4 GB at once.
FOLD_IN_BLOCK_BYTES = 1 << 27


def _in_user_blocks(fold, params: Params, ratings: Ratings, width: int) -> Params:
  """``fold(ratings)``, in blocks of users whose Gram matrices take at most
  ``FOLD_IN_BLOCK_BYTES`` when there are more (concrete ratings only): each
  user's solve reads only their own ratings, so the blocks give the whole's
  rows. Every block has one shape (padded with entries of item -1, which
  weigh 0), so the solve compiles once."""
  dtype = params.item_factors.dtype
  per_block = max(1, FOLD_IN_BLOCK_BYTES // (width * width * np.dtype(dtype).itemsize))
  n_new = ratings.n_users
  # On the host only: under jit, vmap or grad (a traced column or params) the
  # caller's program holds the whole solve.
  columns = [ratings.users, ratings.items, ratings.values, ratings.weights]
  if n_new <= per_block or not all(
    validation.is_concrete(x) and getattr(x, "is_fully_addressable", True)
    for x in jax.tree.leaves((params, columns))
  ):
    return fold(ratings)
  users, items = (np.asarray(c, np.int64) for c in columns[:2])
  weights = np.ones(len(users)) if ratings.weights is None else ratings.weights
  columns = [
    users,
    items,
    np.asarray(ratings.values, dtype),
    np.asarray(weights, dtype),
  ]
  order = np.argsort(users, kind="stable")
  columns = [c[order] for c in columns]
  starts = np.arange(0, n_new, per_block)
  edges = np.searchsorted(columns[0], np.append(starts, n_new))
  size = int(np.max(np.diff(edges)))
  fills = (0, UNKNOWN, 0.0, 0.0)  # Padding: item -1, weight 0.
  rows = []
  for start, lo, hi in zip(starts, edges[:-1], edges[1:], strict=True):
    part = [
      np.concatenate([c[lo:hi], np.full(size - (hi - lo), fill, c.dtype)])
      for c, fill in zip(columns, fills, strict=True)
    ]
    part[0] = np.where(np.arange(size) < hi - lo, part[0] - start, 0)
    block = Ratings(
      jnp.asarray(part[0], jnp.int32), jnp.asarray(part[1], jnp.int32),
      jnp.asarray(part[2]), n_users=per_block, n_items=ratings.n_items,
      weights=jnp.asarray(part[3]),
    )  # fmt: skip
    folded = fold(block)
    rows.append((np.asarray(folded.user_factors), np.asarray(folded.user_bias)))
  return params._replace(
    user_factors=jnp.asarray(np.concatenate([f for f, _ in rows])[:n_new]),
    user_bias=jnp.asarray(np.concatenate([b for _, b in rows])[:n_new]),
  )


def _check_confidence_weights(ratings: Ratings, objective) -> None:
  """Each pair's ``1 + confidence·g(r)`` must be >= 0, and a count of a
  ``"log"`` model >= 0 (checked where the values are on the host): a negative
  weight has no minimiser to solve for."""
  values = validation.host_values(ratings.values)
  confidence = objective.confidence
  if objective.transform not in objectives.CONFIDENCE_TRANSFORMS:
    raise ValueError(
      "fold_in needs the confidence transform the model was fitted with, "
      f"'linear' or 'log'; got {objective.transform!r}."
    )
  if values is None or not len(values):
    return
  lowest = float(np.min(values))
  if objective.transform == "log" and lowest < 0:
    raise ValueError(
      f"the model weighs counts (confidence transform 'log'); a rating is "
      f"{lowest:g}: fold in counts >= 0."
    )
  if confidence is None:
    confidence = objectives.CONFIDENCE_TRANSFORMS[objective.transform]
  if objective.transform == "linear" and confidence and 1 + confidence * lowest < 0:
    raise ValueError(
      f"a rating of {lowest:g} with confidence {confidence:g} gives the pair a "
      "negative weight (1 + confidence·r < 0); fold in ratings >= "
      f"{-1 / confidence:g}, or a model fitted with confidence 0."
    )


def _check_ranking_fold_in(objective, l2_bias, density) -> float:
  """Host checks of a ranking fold-in; returns the effective all-pairs weight."""
  if not isinstance(objective, objectives.Ranking):
    raise TypeError(
      "objective must be None (a rating model) or mfjax.core.objectives.Ranking; "
      f"got {validation.describe(objective)}."
    )
  if objective.biases:
    raise ValueError(
      "fold_in solves ranking models without biases (as fit(objective='ranking') "
      "trains them); this objective has biases=True."
    )
  if l2_bias is not None:
    raise ValueError("a ranking model has no biases: leave out l2_bias.")
  if not objective.per_density:
    if density is not None:
      raise ValueError("density applies to a per_density ranking objective only.")
    return objective.alpha0
  if density is None:
    raise ValueError(
      "a per_density ranking objective needs density= (the training data's "
      "n_ratings / (n_users * n_items))."
    )
  density = validation.check_positive_float("density", density)
  if density > 1:
    raise ValueError(f"density must be in (0, 1]; got {density}.")
  return objective.alpha0 * density
