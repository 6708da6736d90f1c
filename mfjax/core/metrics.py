"""Accuracy of predictions: RMSE and MAE of ratings; ranking metrics of top-k lists.

Also the most-popular baseline (:func:`popularity_params`) for the ranking metrics,
and how many of a model's factor dimensions carry weight (:func:`effective_rank`).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import kernels
from mfjax.types import Params, Ratings

__all__ = [
  "rmse",
  "mae",
  "RankingMetrics",
  "ranking_metrics",
  "popularity_params",
  "effective_rank",
]


def _checked(params, ratings, scale):
  """Host checks; returns the checked ``scale``."""
  n_users, n_items, _ = validation.check_params(params)
  validation.check_ratings(
    "ratings", ratings, allow_unknown=True, shape=(n_users, n_items)
  )
  if len(ratings) == 0:
    raise ValueError("ratings is empty; there is nothing to score.")
  return None if scale is None else validation.check_scale("scale", scale)


@jax.jit
def _errors(params, ratings, scale):
  """``(root mean squared error, mean absolute error)``, weighted.

  Jitted, though the library leaves jitting to its users elsewhere: the host
  checks stay outside, in :func:`rmse` and :func:`mae`, and one program per shape
  replaces the dozen eager operations that each compiled a program of their own
  on a first call (about 2 s of a first ``mfjax fit``, benchmarks/RESULTS.md).
  Under a user's jit it is inlined like any function.
  """
  pred = kernels.predict_pairs(params, ratings.users, ratings.items)
  if scale is not None:
    pred = jnp.clip(pred, scale[0], scale[1])
  errors = pred - ratings.values
  return (
    jnp.sqrt(kernels.weighted_mean(ratings, errors**2)),
    kernels.weighted_mean(ratings, jnp.abs(errors)),
  )


def rmse(
  params: Params,
  ratings: Ratings,
  *,
  scale: tuple[float, float] | None = None,
) -> jax.Array:
  """Root mean squared error of the predictions of ``ratings``.

  Args:
    params: model parameters.
    ratings: held-out ratings, indexed like the training data. Unknown users or
      items (index -1) are predicted from the mean and the known bias.
    scale: the rating scale ``(lo, hi)``: clip predictions to it first, as
      Surprise does (``id_maps.scale`` from :func:`mfjax.load_ratings`).

  Returns:
    A scalar. With ``ratings.weights``, the weighted root mean square (ratings of
    weight 0, such as padding, are left out).
  """
  scale = _checked(params, ratings, scale)
  return _errors(params, ratings, scale)[0]


def mae(
  params: Params,
  ratings: Ratings,
  *,
  scale: tuple[float, float] | None = None,
) -> jax.Array:
  """Mean absolute error of the predictions of ``ratings``; see :func:`rmse`.

  With ``ratings.weights``, the weighted mean (weight-0 ratings are left out).
  """
  scale = _checked(params, ratings, scale)
  return _errors(params, ratings, scale)[1]


class RankingMetrics(NamedTuple):
  """Top-k ranking quality, averaged over the counted users; a pytree.

  See :func:`ranking_metrics` for the exact definitions.

  Attributes:
    precision: mean precision@k.
    recall: mean recall@k.
    ndcg: mean NDCG@k with binary gains.
    map: mean average precision@k (MAP@k).
    hit_rate: share of counted users with at least one relevant item in the top k.
    n_users: how many rows (users) were counted: those with a relevant test item.
  """

  precision: jax.Array  # shape=()
  recall: jax.Array  # shape=()
  ndcg: jax.Array  # shape=()
  map: jax.Array  # shape=()
  hit_rate: jax.Array  # shape=()
  n_users: jax.Array  # shape=(), int32


def _check_top_items(top_items, n_items):
  top_items = validation.as_array("top_items", top_items)
  if not jnp.issubdtype(top_items.dtype, jnp.integer):
    raise TypeError(
      f"top_items must hold integer item indices; got dtype {top_items.dtype}."
    )
  if top_items.ndim != 2 or top_items.shape[0] == 0 or top_items.shape[1] == 0:
    raise ValueError(
      "top_items must be a 2-D array [n_users_scored, k] with at least one row and "
      f"one column; got shape {tuple(top_items.shape)}."
    )
  if validation.is_concrete(top_items):
    with jax.ensure_compile_time_eval():
      rows = np.asarray(top_items)
    lo, hi = int(rows.min()), int(rows.max())
    if lo < -1 or hi >= n_items:
      raise ValueError(
        f"top_items must lie in [0, {n_items}) ({n_items} items of test), or be -1 "
        f"for an empty slot; got index {lo if lo < -1 else hi}."
      )
    ordered = np.sort(rows, axis=1)
    repeat = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeat.any():
      row = int(np.argmax(repeat.any(axis=1)))
      item = int(ordered[row, 1:][repeat[row]][0])
      raise ValueError(
        f"top_items must not list an item twice in a row; row {row} lists item "
        f"{item} more than once."
      )
  return top_items


def _lower_bound(sorted_users, sorted_items, users, items):
  """First position whose (user, item) pair is >= the query's, lexicographically.

  A binary search over two int32 keys, so that no ``user * n_items + item`` key
  can overflow int32 (ML-20M's 138k × 27k already would).
  """
  size = sorted_users.shape[0]

  def halve(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) // 2
    at = jnp.minimum(mid, size - 1)
    mid_user, mid_item = sorted_users[at], sorted_items[at]
    less = (mid_user < users) | ((mid_user == users) & (mid_item < items))
    active = lo < hi
    return (
      jnp.where(active & less, mid + 1, lo),
      jnp.where(active & ~less, mid, hi),
    )

  lo = jnp.zeros(users.shape, jnp.int32)
  hi = jnp.full(users.shape, size, jnp.int32)
  lo, _ = jax.lax.fori_loop(0, size.bit_length(), halve, (lo, hi))
  return lo


def _ranking_metrics_unchecked(top_items, users, test, k, threshold):
  """:func:`ranking_metrics` without the host checks."""
  top_items = jnp.asarray(top_items)[:, :k].astype(jnp.int32)
  users = jnp.asarray(users).astype(jnp.int32)
  n_users = test.n_users

  # The relevant test pairs, sorted; the others become (-1, -1), which no query
  # (a user >= 0) can match.
  relevant = (
    (test.users >= 0)
    & (test.items >= 0)
    & (test.values >= jnp.asarray(threshold, test.values.dtype))
  )
  if test.weights is not None:
    relevant = relevant & (test.weights > 0)  # Weight 0 (padding) is no rating.
  pair_users = jnp.where(relevant, test.users, -1).astype(jnp.int32)
  pair_items = jnp.where(relevant, test.items, -1).astype(jnp.int32)
  pair_users, pair_items = jax.lax.sort((pair_users, pair_items), num_keys=2)
  # A pair rated twice in test counts once.
  new = (
    jnp.ones(pair_users.shape, bool)
    .at[1:]
    .set((pair_users[1:] != pair_users[:-1]) | (pair_items[1:] != pair_items[:-1]))
  )
  first = new & (pair_users >= 0)
  n_relevant_of = (
    jnp.zeros(n_users, jnp.int32)
    .at[jnp.where(first, pair_users, n_users)]
    .add(1, mode="drop")
  )
  n_relevant = n_relevant_of.at[users].get(
    mode="fill", fill_value=0, wrap_negative_indices=False
  )

  row_users = jnp.broadcast_to(users[:, None], top_items.shape)
  valid = (top_items >= 0) & (row_users >= 0)
  if pair_users.shape[0]:
    at = _lower_bound(pair_users, pair_items, row_users, top_items)
    at = jnp.minimum(at, pair_users.shape[0] - 1)
    found = (pair_users[at] == row_users) & (pair_items[at] == top_items)
  else:
    found = jnp.zeros(top_items.shape, bool)
  # Under jit, rows cannot be checked for repeats; a repeated item counts only at
  # its first rank (sort by item then rank, mark repeats, sort back by rank).
  ranks = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), top_items.shape)
  by_item, by_item_rank = jax.lax.sort((top_items, ranks), dimension=1, num_keys=2)
  first_seen = (
    jnp.ones(top_items.shape, bool).at[:, 1:].set(by_item[:, 1:] != by_item[:, :-1])
  )
  _, first_seen = jax.lax.sort((by_item_rank, first_seen), dimension=1, num_keys=1)
  hits = (found & valid & first_seen).astype(jnp.float32)

  n_hits = hits.sum(axis=1)
  n_rel = n_relevant.astype(jnp.float32)
  counted = n_relevant > 0
  safe_rel = jnp.maximum(n_rel, 1.0)
  position = jnp.arange(1, k + 1, dtype=jnp.float32)
  discount = 1.0 / jnp.log2(position + 1.0)
  dcg = (hits * discount[None, :]).sum(axis=1)
  n_ideal = jnp.clip(n_relevant, 1, k)
  idcg = jnp.cumsum(discount)[n_ideal - 1]
  precision_at = jnp.cumsum(hits, axis=1) / position[None, :]
  average_precision = (hits * precision_at).sum(axis=1) / n_ideal.astype(jnp.float32)

  n_counted = counted.sum()

  def mean(per_user):
    return jnp.where(counted, per_user, 0.0).sum() / n_counted.astype(jnp.float32)

  return RankingMetrics(
    precision=mean(n_hits / k),
    recall=mean(n_hits / safe_rel),
    ndcg=mean(dcg / idcg),
    map=mean(average_precision),
    hit_rate=mean((n_hits > 0).astype(jnp.float32)),
    n_users=n_counted.astype(jnp.int32),
  )


def ranking_metrics(
  top_items: ArrayLike,
  users: ArrayLike,
  test: Ratings,
  *,
  k: int | None = None,
  threshold: ArrayLike = 4.0,
) -> RankingMetrics:
  """Precision, recall, NDCG, MAP and hit rate at ``k`` of top-k recommendations.

  Row ``r`` of ``top_items`` is the ranked list recommended to user ``users[r]``
  (e.g. from :func:`mfjax.recommend`, with the training ratings excluded). An item
  is *relevant* to a user when the user rated it ``>= threshold`` in ``test``. With
  ``hit_j = 1`` when the item at rank ``j`` (1-based) is relevant and ``R`` the
  user's number of relevant test items, each user's scores are:

  - precision@k = ``Σ_j hit_j / k`` (empty slots count as misses, so a short list
    is not rewarded);
  - recall@k = ``Σ_j hit_j / R``;
  - NDCG@k = ``DCG / IDCG`` with binary gains: ``DCG = Σ_{j=1..k} hit_j /
    log2(j + 1)`` and ``IDCG`` the DCG of ``min(k, R)`` hits at ranks ``1..min(k,
    R)``;
  - AP@k = ``Σ_j hit_j · precision@j / min(k, R)``;
  - hit rate = 1 if ``Σ_j hit_j >= 1``, else 0.

  Each is averaged over the rows whose user has ``R >= 1``; rows of users with no
  relevant test item are not counted (their recall and NDCG are undefined) and
  ``n_users`` says how many rows were. A user listed in two rows counts twice.

  Relevance is looked up on the device without a users × items matrix: the
  relevant test pairs are sorted and each recommended pair is found by binary
  search. Test ratings with an unknown user or item (index -1), or of weight 0,
  are never relevant (other weights do not matter here),
  and a pair rated twice in ``test`` is one relevant item (relevant if either
  rating reaches ``threshold``). An item index of -1 in ``top_items`` is an empty
  slot and never a hit.

  Args:
    top_items: integer item indices ``[n_rows, width]``, best first; -1 marks an
      empty slot. A row must not list an item twice.
    users: the user index of each row, ``[n_rows]``, in ``[0, test.n_users)``.
    test: held-out :class:`mfjax.Ratings`, indexed like the training data.
    k: the cut-off, a static int in ``[1, width]``: the first ``k`` columns are
      scored. None means ``width``.
    threshold: the rating at or above which a test item is relevant; a real
      scalar, may be traced.

  Returns:
    A :class:`RankingMetrics` of scalars. If no row is counted (``n_users ==
    0``), the averages are NaN.

  Shapes, dtypes and ``k`` are always checked on the host; so are concrete values
  (indices in range, no repeated item in a row, a finite ``threshold``). Under
  ``jit`` the values are tracers: a row's repeated item then counts only at its
  first rank, a user index out of range counts as a user with no relevant items,
  and an item index out of range is never a hit.

  Examples:
    >>> import jax.numpy as jnp, mfjax
    >>> from mfjax.core import metrics
    >>> test = mfjax.Ratings(
    ...   users=jnp.array([0, 0, 0], jnp.int32),
    ...   items=jnp.array([1, 3, 4], jnp.int32),
    ...   values=jnp.array([5.0, 4.0, 2.0]),
    ...   n_users=1,
    ...   n_items=5,
    ... )
    >>> m = metrics.ranking_metrics(jnp.array([[1, 2, 3]]), jnp.array([0]), test)
    >>> round(float(m.precision), 4), float(m.recall), round(float(m.map), 4)
    (0.6667, 1.0, 0.8333)
  """
  validation.check_ratings("test", test, allow_unknown=True)
  top_items = _check_top_items(top_items, test.n_items)
  users = validation.check_index_array("users", users, test.n_users, axis_name="users")
  if users.shape[0] != top_items.shape[0]:
    raise ValueError(
      "users must give one user per row of top_items; got "
      f"{users.shape[0]} users for {top_items.shape[0]} rows."
    )
  width = top_items.shape[1]
  if k is None:
    k = width
  k = validation.check_positive_int("k", k)
  if k > width:
    raise ValueError(f"k must be at most the width of top_items, {width}; got {k}.")
  threshold = validation.check_real_scalar("threshold", threshold)
  return _ranking_metrics_unchecked(top_items, users, test, k, threshold)


def popularity_params(train: Ratings, *, rank: int = 1) -> Params:
  """The most-popular baseline of ranking metrics, as ``Params``.

  Every prediction for item ``i`` is the number of ratings of ``i`` in ``train``
  (the factors, user biases and mean are zero and ``item_bias`` holds the counts),
  so any top-k of these parameters, e.g. :func:`mfjax.recommend` with the training
  ratings excluded, ranks the items a user has not rated by popularity. Score it
  with :func:`ranking_metrics` next to a trained model. Its predicted *ratings* are
  meaningless; do not score it with :func:`rmse`.

  Args:
    train: the training :class:`mfjax.Ratings`. Ratings with an unknown user or
      item (index -1), or of weight 0, are not counted.
    rank: the (static) rank of the zero factor tables, >= 1.

  Returns:
    A float32 :class:`Params` of ``train``'s shape.

  Examples:
    >>> import jax.numpy as jnp, mfjax
    >>> from mfjax.core import metrics
    >>> train = mfjax.ratings_from_dense(jnp.array([[5.0, 0, 1], [3, 0, 2]]))
    >>> metrics.popularity_params(train).item_bias.tolist()
    [2.0, 0.0, 2.0]
  """
  validation.check_ratings("train", train, allow_unknown=True)
  rank = validation.check_positive_int("rank", rank)
  known = (train.users >= 0) & (train.items >= 0)
  if train.weights is not None:
    known = known & (train.weights > 0)
  counts = (
    jnp.zeros(train.n_items, jnp.float32)
    .at[jnp.where(known, train.items, train.n_items)]
    .add(1.0, mode="drop")
  )
  return Params(
    user_factors=jnp.zeros((train.n_users, rank), jnp.float32),
    item_factors=jnp.zeros((train.n_items, rank), jnp.float32),
    user_bias=jnp.zeros(train.n_users, jnp.float32),
    item_bias=counts,
    mean=jnp.zeros((), jnp.float32),
  )


def effective_rank(params: Params, *, rtol: float = 0.01) -> jax.Array:
  """How many dimensions of a model's factors carry weight.

  The number of singular values of ``P Qᵀ`` (the factor part of every user ×
  item score, ``P`` the user and ``Q`` the item factors) at least ``rtol``
  times the largest; 0 when the factors are all zero. A large L2 shrinks
  dimensions to zero one by one: a model of rank 32 whose effective rank is 1
  gives every user the same order of items up to sign, a list that only looks
  personal. ``mfjax fit`` reports it and :func:`mfjax.fit` warns at 1 or 0.

  ``P Qᵀ`` is never formed: its singular values are those of ``Sp Vpᵀ Vq Sq``
  (``k × k``), from the eigendecompositions ``PᵀP = Vp Sp² Vpᵀ`` and ``QᵀQ =
  Vq Sq² Vqᵀ``. Works on sharded factors and inside ``jit``.

  Args:
    params: the model's :class:`mfjax.Params` (an ensemble's concatenated
      factors count together).
    rtol: the relative size below which a singular value does not count, in
      ``(0, 1)``.

  Returns:
    An int32 scalar in ``[0, rank]``; -1 when the factors hold NaN or inf.

  Examples:
    >>> import jax, mfjax
    >>> from mfjax.core import metrics
    >>> p = mfjax.init_params(jax.random.key(0), 30, 20, rank=4)
    >>> int(metrics.effective_rank(p))
    4
    >>> one = p._replace(item_factors=p.item_factors.at[:, 1:].set(0.0))
    >>> int(metrics.effective_rank(one))
    1
  """
  validation.check_params(params)
  if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real):
    raise TypeError(f"rtol must be a number in (0, 1); got {rtol!r}.")
  if not 0 < rtol < 1:
    raise ValueError(f"rtol must be in (0, 1); got {rtol!r}.")
  users, items = params.user_factors, params.item_factors
  if users.shape[1] == 0:
    return jnp.asarray(0, jnp.int32)
  if not all(
    validation.is_concrete(x) and getattr(x, "is_fully_addressable", True)
    for x in (users, items)
  ):
    return _traced_effective_rank(users, items, float(rtol))
  # On the host, no program to compile (an eigh and an SVD cost 0.3 s): the
  # k x k Grams in float64, a block of rows at a time (no float64 table).
  grams = []
  for table in (np.asarray(users), np.asarray(items)):
    gram = np.zeros((table.shape[1],) * 2)
    for start in range(0, table.shape[0], 1 << 16):
      block = table[start : start + (1 << 16)].astype(np.float64)
      gram += block.T @ block
    grams.append(gram)
  return jnp.asarray(_rank_of_grams(np, *grams, float(rtol)))


def _rank_of_grams(xp, user_gram, item_gram, rtol):
  """:func:`effective_rank` from ``PᵀP`` and ``QᵀQ``, in ``xp`` (NumPy or
  ``jax.numpy``); -1 where they hold NaN or inf."""

  def root(gram):  # Sp Vpᵀ of the factor table whose Gram this is.
    # NumPy's eigh raises on NaN: a finite stand-in, answered -1 below.
    finite = xp.where(xp.isfinite(gram), gram, 0)
    values, vectors = xp.linalg.eigh(finite)
    return xp.sqrt(xp.maximum(values, 0))[:, None] * vectors.T

  singular = xp.linalg.svd(root(user_gram) @ root(item_gram).T, compute_uv=False)
  # Rounding in float32 Grams leaves under 1e-3 of the largest where a
  # dimension is 0: below rtol's useful range.
  kept = xp.sum(singular >= rtol * singular[0]) * (singular[0] > 0)
  finite = xp.isfinite(user_gram).all() & xp.isfinite(item_gram).all()
  return xp.where(finite, kept, -1).astype(xp.int32)


@jax.jit
def _traced_effective_rank(users, items, rtol):
  wide = lambda x: x.astype(jnp.promote_types(x.dtype, jnp.float32))
  users, items = wide(users), wide(items)
  return _rank_of_grams(jnp, users.T @ users, items.T @ items, rtol)
