"""The tuned default fit: an ensemble of mini-batch Adam fits in one jitted ``vmap``.

What ``mfjax fit`` runs. :class:`FitSettings` holds the defaults, tuned on
MovieLens 100k validation splits carved from the base files
(``benchmarks/tune_movielens.py``; ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from mfjax import model, training, validation
from mfjax.training import TrainResult
from mfjax.types import Params, Ratings

__all__ = ["FitSettings", "FitResult", "fit", "fit_program", "ensemble_params"]


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
  rank: int = _DEFAULTS.rank,
  steps: int = _DEFAULTS.steps,
  learning_rate: float = _DEFAULTS.learning_rate,
  l2: ArrayLike = _DEFAULTS.l2,
  l2_bias: ArrayLike = _DEFAULTS.l2_bias,
  batch_size: int = _DEFAULTS.batch_size,
  ensemble: int = _DEFAULTS.ensemble,
  validation_data: Ratings | None = None,
  patience: int | None = None,
  scale: tuple[float, float] | None = None,
  progress: bool = False,
) -> FitResult:
  """Fits the tuned default model to ``ratings``, jitted: what ``mfjax fit`` runs.

  ``ensemble`` models of rank ``rank`` train in one ``vmap`` with Adam
  (``learning_rate``) for ``steps`` shuffled mini-batch epochs, and their best
  params are averaged (:func:`ensemble_params`). The defaults,
  :class:`FitSettings`, were tuned on MovieLens 100k validation splits
  (``benchmarks/RESULTS.md``). The compiled program is cached per settings and
  shapes, so repeated calls do not retrace.

  Args:
    key: a PRNG key for the inits and the shuffles.
    ratings: the training :class:`mfjax.Ratings`.
    rank, steps, learning_rate, batch_size, ensemble: static settings (see
      :class:`FitSettings`); ``steps`` counts passes over the data.
    l2: L2 weight of the factors, ``>= 0`` (traced: no recompile per value).
    l2_bias: L2 weight of the biases, ``>= 0``.
    validation_data: optional ``Ratings``: each model keeps its params of lowest
      validation RMSE, with early stopping after ``patience`` epochs if given.
    scale: ``(lo, hi)``: predictions clipped to it when scoring validation.
    progress: a tqdm bar per epoch.

  Returns:
    A :class:`FitResult`.

  Examples:
    >>> import jax, mfjax
    >>> ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 60, 40, 2000, 3)
    >>> fitted = mfjax.fit(jax.random.key(1), ratings, rank=4, ensemble=2, steps=3)
    >>> fitted.best_params.user_factors.shape, fitted.members.losses.shape
    ((60, 8), (2, 3))
  """
  validation.check_key("key", key)
  validation.check_ratings("ratings", ratings)
  settings = check_settings(
    FitSettings(rank, steps, learning_rate, l2, l2_bias, batch_size, ensemble)
  )
  if patience is not None:
    patience = validation.check_positive_int("patience", patience)
  program = _cached_fit_program(
    settings._replace(l2=0.0, l2_bias=0.0), patience, bool(progress)
  )
  # train() repeats the remaining checks (validation data, patience, scale).
  dtype = jnp.float32
  results, params = program(
    key,
    ratings,
    jnp.asarray(l2, dtype),
    jnp.asarray(l2_bias, dtype),
    validation_data,
    scale,
  )
  return FitResult(params, results)


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
