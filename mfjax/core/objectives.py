"""Training objectives: pure losses over the :class:`mfjax.Params` pytree.

An objective says how params score a (user, item) pair and what loss a batch of
ratings gives; the solvers (:mod:`mfjax.core.solvers`) differentiate that loss with
``jax.grad`` and step with optax, and :func:`mfjax.train` drives them. The rating
objective, :data:`RATING`, is the regularised mean squared error of biased MF;
the seed notebook's variant lives with the notebook (:mod:`mfjax.notebook`).

A batch is :class:`Pairs` (sparse ratings, all of them or a mini-batch) or
:class:`Dense` (a matrix and the weight of each entry); :func:`batch_of` makes
one from what a user passes. An objective is a frozen dataclass, hashable, so
it can be a static argument of ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import kernels
from mfjax.settings import RankingSettings
from mfjax.types import Params, Ratings

__all__ = [
  "Penalty",
  "Pairs",
  "Dense",
  "batch_of",
  "Objective",
  "SquaredError",
  "RATING",
  "Ranking",
  "RowTerms",
  "RANKING",
  "CONFIDENCE_TRANSFORMS",
  "COUNTS_ABOVE",
  "looks_like_counts",
  "resolve_confidence",
  "gramian_sum",
  "loss",
  "pairs_of",
  "check_objective",
  "adopt",
  "check_takes",
  "check_penalty",
]


class Penalty(NamedTuple):
  """L2 weights: ``l2`` of the factors, ``l2_bias`` of the biases (may be traced)."""

  l2: ArrayLike
  l2_bias: ArrayLike


class Pairs(NamedTuple):
  """Ratings as a loss sees them: ``[n]`` arrays and the whole data's weight sum.

  ``total`` normalises the penalty, so that a mini-batch's loss is an unbiased
  estimate of the full-batch loss; weight-0 entries (padding) change nothing.
  """

  users: jax.Array
  items: jax.Array
  values: jax.Array
  weights: jax.Array
  total: jax.Array | int


class Dense(NamedTuple):
  """A dense ``[n_users, n_items]`` matrix and the weight (0 or 1) of each entry."""

  values: jax.Array
  weights: jax.Array


def pairs_of(ratings: Ratings, dtype) -> Pairs:
  """All of ``ratings`` as one :class:`Pairs` batch."""
  weights, total = kernels.rating_weights(ratings, dtype)
  return Pairs(
    ratings.users, ratings.items, jnp.asarray(ratings.values, dtype), weights, total
  )


def batch_of(data: Any, mask: Any, dtype) -> Pairs | Dense:
  """``data`` (checked: :class:`mfjax.Ratings` or a dense matrix) as a batch.

  A dense entry counts where ``mask`` is non-zero, or by default where it is.
  """
  if isinstance(data, Ratings):
    return pairs_of(data, dtype)
  values = jnp.asarray(data, dtype)
  observed = (values != 0) if mask is None else (jnp.asarray(mask) != 0)
  return Dense(values, observed.astype(dtype))


class Objective:
  """The protocol of a training objective.

  Attributes:
    params_type: the ``Params`` class the objective's params are, which says how
      they predict; :func:`mfjax.train` returns params of this class.
    takes_dense: whether ``loss`` takes a :class:`Dense` batch (a dense matrix);
      every objective takes :class:`Pairs`.
    chunkable: whether the loss is ``sse(params, pairs) / Σ w + penalty / total``
      with ``sse`` a sum over ratings, which the chunked solver
      (:func:`mfjax.core.solvers.chunked`) adds up chunk by chunk.
    batchable: whether a mini-batch's loss estimates the full loss, so that
      ``batch_size`` may be used.
    scores_ratings: whether the model's scores are ratings (RMSE applies) or
      only orderings of items (a ranking objective's).
  """

  params_type: type[Params] = Params
  takes_dense: bool = False
  chunkable: bool = False
  batchable: bool = True
  scores_ratings: bool = True

  def start(self, params: Params) -> Params:
    """The initial params as this objective trains them (``mean`` already set).

    ``train`` calls it once, before the first step; the default keeps them.
    """
    return params

  def loss(self, params: Params, batch: Pairs | Dense, penalty: Penalty) -> jax.Array:
    """The scalar loss of ``batch``, pure and differentiable in ``params``."""
    raise NotImplementedError

  def predict_pairs(self, params: Params, users, items) -> jax.Array:
    """The model's score of each ``(users[j], items[j])`` pair."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class SquaredError(Objective):
  """Weighted mean squared error of the predicted ratings, plus an L2 penalty.

  ``loss = (Σ w·(r̂ - r)² / Σ w) + penalty / total``. Full-batch, ``total`` is
  ``Σ w`` too: the classic regularised least squares divided by the number of
  ratings. A dense matrix counts its weighted entries the same way.

  A subclass may change the prediction (``predict_pairs``/``predict_matrix``, as
  the notebook's does). One that overrides ``loss`` is no longer chunkable
  unless it overrides ``sse`` too (the chunked solver would add up the wrong
  loss), and takes no dense matrix unless it says so (``takes_dense = True``):
  ``train`` then refuses ``chunk_size`` or a matrix on the host.
  """

  takes_dense = True
  chunkable = True

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if "loss" in cls.__dict__:
      if "sse" not in cls.__dict__:
        cls.chunkable = False
      if "takes_dense" not in cls.__dict__:
        cls.takes_dense = False

  def predict_pairs(self, params, users, items):
    return kernels.predict_pairs(params, users, items)

  def predict_matrix(self, params: Params) -> jax.Array:
    """The full ``[n_users, n_items]`` matrix of predictions."""
    return kernels.predict_matrix(params)

  def sse(self, params: Params, pairs: Pairs) -> jax.Array:
    """The weighted sum of squared errors of ``pairs`` (the part chunks add up)."""
    residual = self.predict_pairs(params, pairs.users, pairs.items) - pairs.values
    return jnp.sum(pairs.weights * residual**2)

  def loss(self, params, batch, penalty):
    reg = kernels.penalty(params, penalty.l2, penalty.l2_bias)
    if isinstance(batch, Dense):
      n_observed = jnp.maximum(batch.weights.sum(), 1.0)
      residual = self.predict_matrix(params) - batch.values
      return jnp.sum(batch.weights * residual**2) / n_observed + reg / n_observed
    weight_sum = kernels.positive(batch.weights.sum())
    return self.sse(params, batch) / weight_sum + reg / kernels.positive(batch.total)


RATING = SquaredError()
"""The rating objective: biased MF's regularised mean squared error."""


def gramian_sum(left: jax.Array, right: jax.Array) -> jax.Array:
  """``Σ_ui (left_u · right_i)²`` through the Gramians, ``tr((LᵀL)(RᵀR))``.

  ``O((n_left + n_right)·k²)`` instead of ``O(n_left·n_right·k)``: the sum of
  every squared score of a factorisation without forming the score matrix.
  """
  return jnp.sum((left.T @ left) * (right.T @ right))


@dataclasses.dataclass(frozen=True)
class Ranking(Objective):
  """The iALS loss: learn which items a user picks from all user × item pairs.

  Every observed pair (whatever its rating) is pulled toward a score of 1, and
  every pair, observed or not, toward 0 with weight ``alpha0`` (Hu, Koren &
  Volinsky 2008; in the form of Rendle, Krichene, Zhang & Koren 2021)::

    loss = (Σ_observed c_ui·(s_ui - 1)² + alpha0·Σ_all s_ui² + penalty) / total

  with ``c_ui = w_ui·(1 + confidence·g(r_ui))`` (``w`` the ratings' weights,
  ``g`` the ``transform``, :meth:`pair_confidence`) and ``total = Σ w``. The
  all-pairs sum is never formed: it is
  :func:`gramian_sum` of the factors, ``O((users + items)·k²)``. The L2 penalty
  is frequency-scaled as in Rendle et al.: a user's rows weigh
  ``(n_u + alpha0·n_items)^nu`` (``n_u`` the user's number of ratings), an
  item's ``(n_i + alpha0·n_users)^nu``. It is quadratic in each side's rows, so
  :class:`mfjax.core.solvers.Alternating` solves it row by row.

  The scores are ``s_ui = p_u·q_i``, plus the biases when ``biases`` is true
  (the ``mean`` is 0: a ranking model has no rating scale). They order items
  for a user; they are not ratings, and RMSE does not apply to them.

  Attributes:
    alpha0: weight of the all-pairs term (the "unobserved weight"), ``>= 0``.
    nu: exponent of the frequency scaling of the L2 penalty; 0 gives plain L2.
    confidence: how much a higher rating counts more (``c = 1 +
      confidence·g(r)``); 0 treats every observed pair alike. None: the
      transform's default (:data:`CONFIDENCE_TRANSFORMS`).
    transform: ``g``: ``"linear"`` (``g(r) = r``, for ratings), ``"log"``
      (``g(r) = log(1 + r)``, for counts: a play count of 350,000 weighs 13.8
      at confidence 1, not 350,001; the default confidence for counts is 0),
      or ``"auto"``: ``"log"`` where
      :func:`looks_like_counts`, else ``"linear"``, decided on the device from
      the observed values (a fit with concrete ratings decides on the host
      instead, :func:`resolve_confidence`, and reports its choice).
    biases: train the biases too (as part of the score); else they stay 0.
    per_density: scale ``alpha0`` by the data's density, ``n_ratings /
      (n_users·n_items)``: the all-pairs term then weighs about ``alpha0`` times
      the number of ratings, and the penalty's ``alpha0·n_items`` is ``alpha0``
      times a user's mean number of ratings, whatever the catalogue size. The
      tuned defaults (:class:`mfjax.settings.RankingSettings`) use it.
  """

  alpha0: float = 0.1
  nu: float = 1.0
  confidence: float | None = 0.0
  biases: bool = False
  per_density: bool = False
  transform: str = "linear"

  scores_ratings = False
  takes_dense = True  # A matrix's non-zero entries are the observed pairs.
  batchable = False  # The frequency counts and the all-pairs term are global.

  def __post_init__(self):
    validation.check_nonnegative("alpha0", self.alpha0)
    validation.check_nonnegative("nu", self.nu)
    if self.confidence is not None:
      validation.check_nonnegative("confidence", self.confidence)
    if self.transform not in (*CONFIDENCE_TRANSFORMS, "auto"):
      raise ValueError(
        f"transform must be 'auto', 'linear' or 'log'; got {self.transform!r}."
      )
    for name in ("biases", "per_density"):
      if not isinstance(getattr(self, name), bool):
        raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}.")

  def start(self, params):
    zero = lambda x: jnp.zeros_like(x)
    if self.biases:
      return params._replace(mean=zero(params.mean))
    return params._replace(
      mean=zero(params.mean),
      user_bias=zero(params.user_bias),
      item_bias=zero(params.item_bias),
    )

  def predict_pairs(self, params, users, items):
    if self.biases:
      return kernels.predict_pairs(params, users, items)
    left = kernels.gather(params.user_factors, users)
    return jnp.sum(left * kernels.gather(params.item_factors, items), axis=-1)

  def _augmented(self, params):
    """Factors whose dot products are the scores (with the biases, two wider)."""
    user, item = params.user_factors, params.item_factors
    if not self.biases:
      return user, item
    ones_u = jnp.ones_like(params.user_bias)
    ones_i = jnp.ones_like(params.item_bias)
    user_extra = jnp.stack([params.user_bias + params.mean, ones_u], axis=1)
    item_extra = jnp.stack([ones_i, params.item_bias], axis=1)
    return (
      jnp.concatenate([user, user_extra], axis=1),
      jnp.concatenate([item, item_extra], axis=1),
    )

  def pair_confidence(self, values, present) -> jax.Array:
    """``1 + confidence·g(r)`` of each observed pair, before its weight.

    Args:
      values: the ratings ``r``.
      present: where a rating is observed (weight > 0); ``"auto"`` looks at
        these only.
    """
    values = jnp.asarray(values)
    if self.transform == "auto":
      counts = looks_like_counts(values, present)
      as_log = self._replace_transform("log").pair_confidence(values, present)
      as_linear = self._replace_transform("linear").pair_confidence(values, present)
      return jnp.where(counts, as_log, as_linear)
    confidence = self.confidence
    if confidence is None:
      confidence = CONFIDENCE_TRANSFORMS[self.transform]
    if self.transform == "log":  # A count below 0 counts as 0.
      values = jnp.log1p(jnp.maximum(values, 0))
    return 1 + jnp.asarray(confidence, values.dtype) * values

  def _replace_transform(self, transform: str) -> Ranking:
    return dataclasses.replace(self, transform=transform)

  def row_terms(self, batch: Pairs, n_users: int, n_items: int, dtype) -> RowTerms:
    """The data's part of the loss on ``batch``, fixed through a fit.

    What :func:`mfjax.core.solvers.alternating` needs to set up each row's
    least squares without differentiating the loss: per pair the weight
    ``c_ui``, the all-pairs weight after ``per_density``, and each row's
    frequency scale of the L2.
    """
    weights, counted = self._observed(batch, dtype)
    user_count = jax.ops.segment_sum(counted, batch.users, n_users)
    item_count = jax.ops.segment_sum(counted, batch.items, n_items)
    alpha0, user_scale, item_scale = self._scales(
      counted.sum(), user_count, item_count, dtype
    )
    return RowTerms(weights, alpha0, user_scale, item_scale, batch.total)

  def _observed(self, batch, dtype):
    """``(c_ui, counted)``: each pair's weight, and 1 where it is observed."""
    values = jnp.asarray(batch.values, dtype)
    weights = batch.weights * self.pair_confidence(values, batch.weights > 0)
    # A rating counts once in its row's frequency, whatever its confidence.
    return weights, (batch.weights > 0).astype(dtype)

  def _scales(self, n_observed, user_count, item_count, dtype):
    """``(alpha0, user_scale, item_scale)``: the all-pairs weight and the L2's
    frequency scale of each row."""
    n_users, n_items = user_count.shape[0], item_count.shape[0]
    alpha0 = jnp.asarray(self.alpha0, dtype)
    if self.per_density:
      # A float: 200k users x 100k items overflow int32 (2e10 cells).
      alpha0 = alpha0 * n_observed / float(n_users * n_items)
    nu = jnp.asarray(self.nu, dtype)
    user_scale = (user_count + alpha0 * n_items) ** nu
    item_scale = (item_count + alpha0 * n_users) ** nu
    return alpha0, user_scale, item_scale

  def loss(self, params, batch, penalty):
    dtype = params.user_factors.dtype
    n_users, n_items = params.user_factors.shape[0], params.item_factors.shape[0]
    if isinstance(batch, Pairs) and self.scores_pairs(
      n_users, n_items, batch.values.shape[0]
    ):
      terms = self.row_terms(batch, n_users, n_items, dtype)
      scores = self.predict_pairs(params, batch.users, batch.items)
      observed = jnp.sum(terms.weights * (scores - 1) ** 2)
      return self.loss_of_terms(params, terms, observed, penalty)
    weights, counted = self._observed(batch, dtype)
    if isinstance(batch, Pairs):  # Few cells: every cell scored at once.
      cells = (batch.users, batch.items)
      dense = lambda x: jnp.zeros((n_users, n_items), dtype).at[cells].add(x)
      weights, counted, total = dense(weights), dense(counted), batch.total
    else:
      total = batch.weights.sum()
    scores = kernels.dense_dot(*self._augmented(params))
    terms = RowTerms(
      weights,
      *self._scales(counted.sum(), counted.sum(1), counted.sum(0), dtype),
      total,
    )
    observed = jnp.sum(weights * (scores - 1) ** 2)
    return self.loss_of_terms(params, terms, observed, penalty)

  def loss_of_terms(
    self, params: Params, terms: RowTerms, observed: jax.Array, penalty: Penalty
  ) -> jax.Array:
    """The loss from the data's terms and ``observed``, the observed pairs'
    ``Σ c_ui·(s_ui - 1)²`` under ``params``: the all-pairs term and the
    frequency-scaled penalty added, divided by the weight sum. (The
    alternating solver scores the observed pairs its own way.)"""
    dtype = params.user_factors.dtype
    every_pair = terms.alpha0 * gramian_sum(*self._augmented(params))
    l2 = jnp.asarray(penalty.l2, dtype)
    reg = l2 * (
      terms.user_scale @ jnp.sum(params.user_factors**2, axis=1)
      + terms.item_scale @ jnp.sum(params.item_factors**2, axis=1)
    )
    if self.biases:
      l2_bias = jnp.asarray(penalty.l2_bias, dtype)
      reg = reg + l2_bias * (
        terms.user_scale @ params.user_bias**2 + terms.item_scale @ params.item_bias**2
      )
    return (observed + every_pair + reg) / kernels.positive(terms.total)

  def scores_pairs(self, n_users: int, n_items: int, n_pairs: int) -> bool:
    """Whether the loss over ``n_pairs`` ratings scores them pair by pair (else
    it scores every cell of the users × items matrix at once)."""
    return n_users * n_items > DENSE_CELLS_PER_RATING * n_pairs


class RowTerms(NamedTuple):
  """The data's part of :class:`Ranking`'s loss (:meth:`Ranking.row_terms`).

  Attributes:
    weights: ``[n]`` each pair's ``c_ui`` (0 for padding).
    alpha0: the all-pairs weight, after ``per_density``.
    user_scale: ``[n_users]`` the frequency scale of each user's L2.
    item_scale: ``[n_items]`` the same for the items.
    total: the ratings' weight sum, by which the loss is divided.
  """

  weights: jax.Array
  alpha0: jax.Array
  user_scale: jax.Array
  item_scale: jax.Array
  total: jax.Array | int


# Up to this many user × item cells per rating, the ranking loss scores every
# cell with one matrix product rather than gathering factor rows per rating: on
# CPU a gather of rows costs about as much as a product over ~20 cells per
# rating (benchmarks/RESULTS.md). Duplicate pairs add up either way.
DENSE_CELLS_PER_RATING = 32

CONFIDENCE_TRANSFORMS = {"linear": 1.0, "log": 0.0}
"""Each confidence transform ``g`` of :class:`Ranking` and its default
confidence: ``1 + 1·r`` for ratings (tuned on MovieLens 100k); for counts,
every observed pair alike (0), a confidence set by hand weighing ``1 + c·log(1
+ r)``. Chosen on validation splits of synthetic play counts
(``benchmarks/ranking_counts.py``, RESULTS.md "Counts"): recall@20 fell as the
confidence grew, 0 to 1, on all six files, and the raw count (linear) lost a
third of it."""

COUNTS_ABOVE = 10.0
"""Observed values that are all ``>= 0`` with one above this look like counts
(plays, clicks, purchases) rather than ratings (1–5, 1–10, 0.5–5 stars)."""


RANKING = Ranking()
"""The ranking objective at its defaults (see :class:`Ranking`)."""


def looks_like_counts(values, present) -> jax.Array:
  """Whether the observed ``values`` (where ``present``) look like counts:
  none below 0 and the largest above :data:`COUNTS_ABOVE`. A boolean array;
  works on concrete and traced values alike.

  Examples:
    >>> import jax.numpy as jnp
    >>> ones = jnp.ones(3, bool)
    >>> bool(looks_like_counts(jnp.array([1.0, 3.0, 5.0]), ones))
    False
    >>> bool(looks_like_counts(jnp.array([1.0, 2.0, 352698.0]), ones))
    True
  """
  return _counts_rule(*_value_range(jnp.asarray(values), jnp.asarray(present, bool)))


def _counts_rule(lowest, highest):
  """The rule of :func:`looks_like_counts` on the observed range (Python
  floats or arrays alike)."""
  return (lowest >= 0) & (highest > COUNTS_ABOVE)


def _value_range(values, present):
  """The lowest and highest observed value, with 0 counted in (0 and 0 for
  none)."""
  return (
    jnp.min(jnp.where(present, values, 0), initial=0),
    jnp.max(jnp.where(present, values, 0), initial=0),
  )


def resolve_confidence(settings: RankingSettings, ratings: Ratings) -> RankingSettings:
  """``settings`` with ``confidence_transform="auto"`` decided from the
  ratings' observed values (the rule of :func:`looks_like_counts`) and
  ``confidence=None`` set to the transform's default
  (:data:`CONFIDENCE_TRANSFORMS`). Values on the host are read with NumPy;
  others (an accelerator's, or spread over processes) by one small jitted
  reduction, alike in every process. Traced values leave ``settings`` as they
  are: the fit decides on the device. A ``ValueError`` for an unknown
  transform, and for ``"log"`` of values below 0.

  Examples:
    >>> import mfjax
    >>> from mfjax.settings import RankingSettings
    >>> plays, _ = mfjax.ratings_from_arrays([1, 1, 2], [7, 8, 7], [3, 250, 1])
    >>> s = resolve_confidence(RankingSettings(), plays)
    >>> s.confidence_transform, s.confidence
    ('log', 0.0)
  """
  transform = settings.confidence_transform
  if transform not in ("auto", *CONFIDENCE_TRANSFORMS):
    raise ValueError(
      f"confidence_transform must be 'auto', 'linear' or 'log'; got {transform!r}."
    )
  found = _observed_range(ratings)
  if found is None:
    return settings
  lowest, highest = found
  if transform == "auto":
    transform = "log" if _counts_rule(lowest, highest) else "linear"
  elif transform == "log" and lowest < 0:
    raise ValueError(
      f"confidence_transform='log' is for counts, >= 0; a rating is {lowest:g}. "
      "Use 'linear' (or 'auto')."
    )
  confidence = settings.confidence
  if confidence is None:
    confidence = CONFIDENCE_TRANSFORMS[transform]
  return settings._replace(confidence_transform=transform, confidence=confidence)


def _observed_range(ratings: Ratings) -> tuple[float, float] | None:
  """The lowest and highest observed value (weight > 0; 0 and 0 for none), or
  None for traced ratings."""
  values, weights = ratings.values, ratings.weights
  if not all(validation.is_concrete(x) for x in (values, weights) if x is not None):
    return None
  host = validation.host_values(values)
  host_weights = None if weights is None else validation.host_values(weights)
  if host is not None and (weights is None or host_weights is not None):
    if host_weights is not None:
      host = host[host_weights > 0]
    if not host.size:
      return 0.0, 0.0
    return min(float(host.min()), 0.0), max(float(host.max()), 0.0)
  low, high = _device_range(values, weights)
  return float(low), float(high)


@jax.jit
def _device_range(values, weights):
  present = jnp.ones(values.shape, bool) if weights is None else weights > 0
  return _value_range(values, present)


def fitted_ranking(settings: RankingSettings) -> Ranking:
  """The objective ``fit(objective="ranking")`` trains with ``settings``: its
  ``alpha0`` per unit of density (``per_density``), no biases. Fold-in of a
  ranking model solves the same one."""
  return Ranking(
    alpha0=settings.alpha0,
    nu=settings.nu,
    confidence=settings.confidence,
    per_density=True,
    transform=settings.confidence_transform,
  )


def check_objective(objective: Any) -> Objective:
  """``objective``, or :data:`RATING` for None; a ``TypeError`` for anything else."""
  if objective is None:
    return RATING
  if not isinstance(objective, Objective):
    raise TypeError(
      "objective must be an mfjax.core.objectives.Objective such as "
      f"mfjax.core.objectives.RATING; got {validation.describe(objective)}."
    )
  return objective


def loss(
  params: Params,
  data,
  *,
  mask: ArrayLike | None = None,
  l2: ArrayLike = 0.0,
  l2_bias: ArrayLike | None = None,
  objective: Objective | None = None,
) -> jax.Array:
  """Mean squared error over the observed ratings, plus an optional L2 penalty.

  ``loss = (Σ_observed (r̂ - r)² + l2·(‖P‖² + ‖Q‖²) + l2_bias·(‖b_u‖² + ‖b_i‖²))
  / n_observed``: the classic regularised least-squares objective divided by the
  number of observed ratings, so its minimiser does not change with the data size.
  For :class:`mfjax.Ratings` with ``weights``, each squared error is weighted and
  ``n_observed`` is the weight sum; ratings of weight 0 (padding) change nothing.

  Args:
    params: model parameters.
    data: dense ratings ``[n_users, n_items]`` (0 marks a missing rating), or
      :class:`mfjax.Ratings`.
    mask: dense data only: optional ``[n_users, n_items]``; non-zero (True) marks
      the entries the loss counts. By default those are the non-zero ratings. The
      notebook counts all entries (``mask = ones``).
    l2: L2 weight of the factors, ``>= 0``; may be traced (``vmap`` over it).
    l2_bias: L2 weight of the biases; None means the same as ``l2``.
    objective: the loss to take; None means :data:`RATING` (this docstring's).
      Plain ``Params`` are taken as the objective's ``params_type``.

  Returns:
    A scalar.

  Shapes and dtypes are always checked. NaN/inf ratings and a negative ``l2`` are
  caught on the host; under ``jit`` they are tracers: NaN/inf ratings give a
  non-finite loss and a negative ``l2`` is not detected.

  Examples:
    >>> import jax, jax.numpy as jnp, mfjax
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> float(mfjax.loss(params, jnp.ones((4, 6)))) >= 0
    True
  """
  objective = check_objective(objective)
  params = adopt(objective, params)
  shape = validation.check_params(params, formula=objective.params_type.formula)[:2]
  data, mask = validation.check_data(data, mask, shape)
  check_takes(objective, data)
  penalty = check_penalty(l2, l2_bias)
  return objective.loss(
    params, batch_of(data, mask, params.user_factors.dtype), penalty
  )


def adopt(objective: Objective, params: Any) -> Any:
  """Plain :class:`mfjax.Params` (as ``init_params`` makes) as the objective's type.

  ``train`` and ``loss`` take plain params for any objective: an objective with
  its own formula (the notebook's) starts from them. Other params pass as given.
  """
  if type(params) is Params and objective.params_type is not Params:
    return objective.params_type(*params)
  return params


def check_takes(
  objective: Objective, data: Any, chunk_size: Any = None, batch_size: Any = None
) -> None:
  """Refuses data, chunking or mini-batches that ``objective`` does not take."""
  name = type(objective).__name__
  if batch_size is not None and not objective.batchable:
    raise ValueError(
      f"the objective {name} takes the whole data at each step (its loss is not "
      "a sum over ratings); leave batch_size out."
    )
  if not isinstance(data, Ratings) and not objective.takes_dense:
    raise ValueError(
      f"the objective {name} takes mfjax.Ratings, not a dense matrix; convert it "
      "with mfjax.ratings_from_dense."
    )
  if chunk_size is not None and not objective.chunkable:
    raise ValueError(
      f"chunk_size needs an objective whose loss adds up over ratings (chunkable); "
      f"{name} is not. Use batch_size, or full-batch steps."
    )


def check_penalty(l2: Any, l2_bias: Any) -> Penalty:
  """Checks the L2 weights (``l2_bias`` None means ``l2``) on the host."""
  validation.check_nonnegative("l2", l2)
  if l2_bias is None:
    return Penalty(l2, l2)
  return Penalty(l2, validation.check_nonnegative("l2_bias", l2_bias))
