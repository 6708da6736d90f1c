"""The tuned default fits: what ``mfjax fit`` runs.

For ratings (``objective="rating"``), an ensemble of mini-batch Adam fits in one
jitted ``vmap``; :class:`FitSettings` holds its defaults, tuned on MovieLens 100k
validation splits carved from the base files (``benchmarks/tune_movielens.py``).
For top-N lists (``objective="ranking"``), the iALS loss
(:class:`mfjax.objectives.Ranking`) solved by alternating least squares;
:class:`RankingSettings` holds its defaults, tuned the same way
(``benchmarks/ranking_movielens.py``). Both in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from mfjax import model, objectives, solvers, training, validation
from mfjax.training import TrainResult
from mfjax.types import Params, Ratings

__all__ = [
  "OBJECTIVES",
  "FitSettings",
  "RankingSettings",
  "FitResult",
  "fit",
  "fit_program",
  "ranking_program",
  "ensemble_params",
]

OBJECTIVES = ("rating", "ranking")
"""What :func:`fit` can learn: ratings (RMSE) or top-N lists (ranking)."""


class FitSettings(NamedTuple):
  """The settings of :func:`fit`; the defaults are the tuned ones.

  Attributes:
    rank: factors per model.
    steps: passes over the data (epochs).
    learning_rate: Adam's learning rate.
    l2: L2 weight of the factors.
    l2_bias: L2 weight of the biases.
    batch_size: ratings per mini-batch.
    ensemble: models averaged; the fitted model has rank ``ensemble·rank``.
  """

  rank: int = 12
  steps: int = 10
  learning_rate: float = 0.02
  l2: float = 8.0
  l2_bias: float = 1.0
  batch_size: int = 4096
  ensemble: int = 8


_DEFAULTS = FitSettings()


class RankingSettings(NamedTuple):
  """The settings of ``fit(..., objective="ranking")``; the defaults are tuned.

  Attributes:
    rank: factors of the model.
    steps: alternating passes (each solves every user's, then every item's row).
    l2: L2 weight of the factors, frequency-scaled
      (:class:`mfjax.objectives.Ranking`).
    alpha0: weight of the all-pairs term per unit of density
      (``objectives.Ranking(per_density=True)``): about ``alpha0`` times the
      number of ratings in all, whatever the number of items.
    nu: exponent of the frequency scaling of the L2.
    confidence: a higher rating counts ``1 + confidence·r`` (0: all alike).
    cg_steps: conjugate-gradient steps per row and half pass.
  """

  rank: int = 32
  # 8 passes of 3 CG steps: within 0.001 NDCG@10 of 10 passes on MovieLens
  # validation splits, in 0.6 of the time (benchmarks/RESULTS.md, "Ranking").
  steps: int = 8
  l2: float = 0.01
  # Per unit of density (Ranking.per_density): 60 x MovieLens 100k's 0.05 is the
  # 3 tuned there, and the same 60 carries to 10x the items (RESULTS.md).
  alpha0: float = 60.0
  nu: float = 1.0
  confidence: float = 1.0
  cg_steps: int = 3


_RANKING = RankingSettings()


class FitResult(NamedTuple):
  """What :func:`fit` returns.

  Attributes:
    best_params: the ensemble: the models' best params merged by
      :func:`ensemble_params` into one model of rank ``ensemble·rank``.
    members: the stacked :class:`mfjax.TrainResult` of the models (leading axis
      ``ensemble``).
  """

  best_params: Params
  members: TrainResult


def fit(
  key: ArrayLike,
  ratings: Ratings,
  *,
  objective: str = "rating",
  rank: int | None = None,
  steps: int | None = None,
  learning_rate: float | None = None,
  l2: ArrayLike | None = None,
  l2_bias: ArrayLike | None = None,
  batch_size: int | None = None,
  ensemble: int | None = None,
  alpha0: float | None = None,
  confidence: float | None = None,
  validation_data: Ratings | None = None,
  patience: int | None = None,
  scale: tuple[float, float] | None = None,
  progress: bool = False,
) -> FitResult:
  """Fits the tuned default model to ``ratings``, jitted: what ``mfjax fit`` runs.

  ``objective="rating"`` (the default) learns to predict ratings: ``ensemble``
  models of rank ``rank`` train in one ``vmap`` with Adam (``learning_rate``)
  for ``steps`` shuffled mini-batch epochs, and their best params are averaged
  (:func:`ensemble_params`). Defaults: :class:`FitSettings`.

  ``objective="ranking"`` learns which items each user picks, for top-N lists:
  one model of rank ``rank`` minimises the iALS loss
  (:class:`mfjax.objectives.Ranking`, weight ``alpha0`` on all user × item
  pairs) by ``steps`` passes of alternating least squares
  (:class:`mfjax.solvers.Alternating`). Its scores order items; they are not
  ratings. Defaults: :class:`RankingSettings`. ``learning_rate``, ``l2_bias``,
  ``batch_size``, ``ensemble``, ``validation_data`` and ``patience`` do not
  apply to it.

  Every setting left as None takes the objective's default, tuned on MovieLens
  100k validation splits (``benchmarks/RESULTS.md``). The compiled program is
  cached per settings and shapes, so repeated calls do not retrace.

  Args:
    key: a PRNG key for the inits and the shuffles.
    ratings: the training :class:`mfjax.Ratings`.
    objective: ``"rating"`` or ``"ranking"`` (:data:`OBJECTIVES`).
    rank, steps, learning_rate, batch_size, ensemble: static settings (see
      :class:`FitSettings`); ``steps`` counts passes over the data.
    l2: L2 weight of the factors, ``>= 0`` (traced: no recompile per value).
    l2_bias: L2 weight of the biases, ``>= 0``.
    alpha0: ranking only: the weight of the all-pairs term per unit of density
      (:class:`RankingSettings`), ``>= 0``.
    confidence: ranking only: an observed pair weighs ``1 + confidence·rating``,
      ``>= 0`` (0: every observed pair alike).
    validation_data: optional ``Ratings``: each model keeps its params of lowest
      validation RMSE, with early stopping after ``patience`` epochs if given.
    scale: ``(lo, hi)``: predictions clipped to it when scoring validation.
    progress: a tqdm bar per epoch.

  Returns:
    A :class:`FitResult`; for ranking, ``members`` has one model.

  Examples:
    >>> import jax, mfjax
    >>> ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 60, 40, 2000, 3)
    >>> fitted = mfjax.fit(jax.random.key(1), ratings, rank=4, ensemble=2, steps=3)
    >>> fitted.best_params.user_factors.shape, fitted.members.losses.shape
    ((60, 8), (2, 3))
    >>> ranker = mfjax.fit(jax.random.key(1), ratings, objective="ranking", rank=4)
    >>> ranker.best_params.user_factors.shape
    (60, 4)
  """
  validation.check_key("key", key)
  validation.check_choice("objective", objective, OBJECTIVES)
  validation.check_ratings("ratings", ratings)
  validation.check_something_to_train("ratings", ratings)
  if patience is not None:
    patience = validation.check_positive_int("patience", patience)
  given = dict(rank=rank, steps=steps, l2=l2, progress=bool(progress))
  if objective == "ranking":
    for name, value in [
      ("learning_rate", learning_rate), ("l2_bias", l2_bias),
      ("batch_size", batch_size), ("ensemble", ensemble),
      ("validation_data", validation_data), ("patience", patience),
    ]:  # fmt: skip
      if value is not None:
        raise ValueError(
          f"{name} does not apply to objective='ranking' (one model, solved by "
          "alternating least squares); leave it out."
        )
    return _fit_ranking(key, ratings, alpha0=alpha0, confidence=confidence, **given)
  for name, value in (("alpha0", alpha0), ("confidence", confidence)):
    if value is not None:
      raise ValueError(f"{name} applies to objective='ranking' only.")
  pick = lambda value, default: default if value is None else value
  settings = check_settings(
    FitSettings(
      pick(rank, _DEFAULTS.rank),
      pick(steps, _DEFAULTS.steps),
      pick(learning_rate, _DEFAULTS.learning_rate),
      pick(l2, _DEFAULTS.l2),
      pick(l2_bias, _DEFAULTS.l2_bias),
      pick(batch_size, _DEFAULTS.batch_size),
      pick(ensemble, _DEFAULTS.ensemble),
    )
  )
  program = _cached_fit_program(
    settings._replace(l2=0.0, l2_bias=0.0), patience, bool(progress)
  )
  # train() repeats the remaining checks (validation data, patience, scale).
  dtype = jnp.float32
  results, params = program(
    key,
    ratings,
    jnp.asarray(settings.l2, dtype),
    jnp.asarray(settings.l2_bias, dtype),
    validation_data,
    scale,
  )
  return FitResult(params, results)


def _fit_ranking(key, ratings, *, progress, **given) -> FitResult:
  settings = check_ranking_settings(
    _RANKING._replace(**{k: v for k, v in given.items() if v is not None})
  )
  program = _cached_ranking_program(settings._replace(l2=0.0), progress)
  results, params = program(key, ratings, jnp.asarray(settings.l2, jnp.float32))
  return FitResult(params, results)


def check_ranking_settings(settings: RankingSettings) -> RankingSettings:
  """Host checks of :class:`RankingSettings`; ``l2`` may be traced."""
  ints = {
    name: validation.check_positive_int(name, getattr(settings, name))
    for name in ("rank", "steps", "cg_steps")
  }
  validation.check_nonnegative("l2", settings.l2)
  floats = {
    name: float(validation.check_nonnegative(name, getattr(settings, name)))
    for name in ("alpha0", "nu", "confidence")
  }
  return settings._replace(**ints, **floats)


@functools.lru_cache(maxsize=16)
def _cached_ranking_program(settings, progress):
  return ranking_program(settings, progress=progress)


def ranking_program(settings: RankingSettings = _RANKING, *, progress: bool = False):
  """A jitted ``(key, ratings, l2)`` ranking fit: what ``fit(objective="ranking")``
  runs (its ``settings.l2`` is ignored: ``l2`` is traced).

  Returns ``(members, best_params)`` as :func:`fit_program` does, ``members``
  with a leading axis of one model.
  """
  objective = objectives.Ranking(
    alpha0=settings.alpha0,
    nu=settings.nu,
    confidence=settings.confidence,
    per_density=True,
  )
  solver = solvers.Alternating(settings.cg_steps)

  def run(key, ratings, l2):
    # Small rows: the all-pairs term makes the first solve set the scale.
    params = model.init_params(
      key,
      ratings.n_users,
      ratings.n_items,
      settings.rank,
      init_scale=0.1 / settings.rank**0.5,
    )
    result = training.train(
      params,
      ratings,
      steps=settings.steps,
      l2=l2,
      objective=objective,
      solver=solver,
      progress=progress,
    )
    members = jax.tree.map(lambda x: x[None], result)
    return members, result.best_params

  return jax.jit(run)


def check_settings(settings: FitSettings) -> FitSettings:
  """Host checks of :class:`FitSettings`; ``l2`` and ``l2_bias`` may be traced."""
  ints = {
    name: validation.check_positive_int(name, getattr(settings, name))
    for name in ("rank", "steps", "batch_size", "ensemble")
  }
  learning_rate = validation.check_positive_float(
    "learning_rate", settings.learning_rate
  )
  validation.check_nonnegative("l2", settings.l2)
  validation.check_nonnegative("l2_bias", settings.l2_bias)
  return settings._replace(learning_rate=learning_rate, **ints)


@functools.lru_cache(maxsize=16)
def _cached_fit_program(settings, patience, progress):
  return fit_program(settings, patience=patience, progress=progress)


def fit_program(
  settings: FitSettings = _DEFAULTS,
  *,
  patience: int | None = None,
  progress: bool = False,
):
  """A jitted ``(key, ratings, l2, l2_bias, validation, scale)`` ensemble fit.

  What :func:`fit` runs (its ``l2`` settings are ignored here: they are the
  traced arguments), for callers that compile it apart, as ``mfjax fit`` does
  to report compile and fit times. Returns ``(members, best_params)``: the
  stacked :class:`mfjax.TrainResult` of the models and their merge by
  :func:`ensemble_params`.
  """

  def one(key, ratings, l2, l2_bias, validation_data, scale):
    init_key, shuffle_key = jax.random.split(key)
    params = model.init_params(
      init_key, ratings.n_users, ratings.n_items, settings.rank
    )
    return training.train(
      params,
      ratings,
      optimizer=optax.adam(settings.learning_rate),
      steps=settings.steps,
      l2=l2,
      l2_bias=l2_bias,
      batch_size=settings.batch_size,
      key=shuffle_key,
      validation_data=validation_data,
      patience=patience,
      scale=scale,
      progress=progress,
    )

  def run(key, ratings, l2, l2_bias, validation_data, scale):
    keys = jax.random.split(key, settings.ensemble)
    results = jax.vmap(one, in_axes=(0, None, None, None, None, None))(
      keys, ratings, l2, l2_bias, validation_data, scale
    )
    return results, ensemble_params(results.best_params)

  return jax.jit(run)


def ensemble_params(stacked: Params) -> Params:
  """One ``Params`` that predicts the average of a stack of models (a vmap batch).

  The mean of ``S`` biased factorisations of rank ``k`` is itself one of rank
  ``S·k``: average the biases and the means, and concatenate the factors scaled by
  ``1/sqrt(S)`` each, so that ``p_u·q_i`` becomes the mean of the ``S`` dot products.

  Args:
    stacked: ``Params`` whose leaves have a leading axis of ``S`` models.

  Returns:
    ``Params`` of rank ``S·k``.
  """
  validation.check_stacked_params("stacked", stacked)
  n_models = stacked.user_factors.shape[0]
  scale = 1.0 / jnp.sqrt(jnp.asarray(n_models, stacked.user_factors.dtype))

  def concat(x):
    return jnp.concatenate(list(x * scale), axis=-1)

  return Params(
    user_factors=concat(stacked.user_factors),
    item_factors=concat(stacked.item_factors),
    user_bias=stacked.user_bias.mean(0),
    item_bias=stacked.item_bias.mean(0),
    mean=stacked.mean.mean(0),
  )
