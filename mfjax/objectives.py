"""Training objectives: pure losses over the :class:`mfjax.Params` pytree.

An objective says how params score a (user, item) pair and what loss a batch of
ratings gives; the solvers (:mod:`mfjax.solvers`) differentiate that loss with
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

from mfjax import kernels, validation
from mfjax.types import Params, Ratings

__all__ = [
  "Penalty",
  "Pairs",
  "Dense",
  "batch_of",
  "Objective",
  "SquaredError",
  "RATING",
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
      (:func:`mfjax.solvers.chunked`) adds up chunk by chunk.
  """

  params_type: type[Params] = Params
  takes_dense: bool = False
  chunkable: bool = False

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


def check_objective(objective: Any) -> Objective:
  """``objective``, or :data:`RATING` for None; a ``TypeError`` for anything else."""
  if objective is None:
    return RATING
  if not isinstance(objective, Objective):
    raise TypeError(
      "objective must be an mfjax.objectives.Objective such as "
      f"mfjax.objectives.RATING; got {validation.describe(objective)}."
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


def check_takes(objective: Objective, data: Any, chunk_size: Any = None) -> None:
  """Refuses data (or chunking) that ``objective`` does not declare it takes."""
  name = type(objective).__name__
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
