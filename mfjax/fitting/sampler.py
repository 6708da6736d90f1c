"""The Bayesian rating fit: ``fit(..., solver="gibbs")``, a jitted program.

:func:`gibbs_program` runs :func:`mfjax.core.gibbs.sample` and reports it as
the other fits do: ``(members, best_params)``, ``members`` a
:class:`mfjax.TrainResult` with a leading axis of one model whose ``losses``
are each sweep's training mean squared error, so that
:func:`mfjax.core.training.failure`, ``mfjax fit`` and
:func:`mfjax.cross_validate` read it unchanged. :class:`GibbsSettings` holds
the defaults, chosen on MovieLens 100k validation splits
(``benchmarks/bayesian_movielens.py``, ``benchmarks/RESULTS.md``, "Gibbs").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mfjax import validation
from mfjax.core import gibbs, kernels
from mfjax.core.progress import ProgressBar
from mfjax.core.training import TrainResult
from mfjax.settings import GibbsSettings
from mfjax.types import Params, Ratings

__all__ = [
  "check_gibbs_settings",
  "gibbs_program",
  "cached_gibbs_program",
]

_DEFAULTS = GibbsSettings()


def check_gibbs_settings(
  settings: GibbsSettings, n_users: int, n_items: int
) -> GibbsSettings:
  """Host checks of :class:`GibbsSettings` for a ratings matrix of ``n_users``
  × ``n_items`` (the implicit terms' size bound,
  :func:`mfjax.core.gibbs.check_implicit`)."""
  ints = {
    name: validation.check_positive_int(name, getattr(settings, name))
    for name in ("rank", "samples", "max_rank")
  }
  burn_in = validation.check_nonnegative_int("burn_in", settings.burn_in)
  if not isinstance(settings.implicit, str):
    raise TypeError(
      f"implicit must be a str, one of {', '.join(map(repr, gibbs.IMPLICIT))}; "
      f"got {type(settings.implicit).__name__}."
    )
  gibbs.check_implicit(settings.implicit, n_users, n_items)
  return settings._replace(burn_in=burn_in, **ints)


@functools.lru_cache(maxsize=16)
def cached_gibbs_program(settings: GibbsSettings, progress: bool):
  return gibbs_program(settings, progress=progress)


def gibbs_program(settings: GibbsSettings = _DEFAULTS, *, progress: bool = False):
  """A jitted ``(key, ratings) -> (members, best_params)`` Gibbs fit.

  ``best_params`` is the posterior mean (:func:`mfjax.core.gibbs.sample`);
  ``members`` a :class:`mfjax.TrainResult` of one model: ``params`` the last
  draw, ``losses`` each sweep's training MSE, ``diverged_step`` the first
  sweep whose draw was NaN or inf (a precision matrix that float32 could not
  factor) or -1, ``best_step`` the number of sweeps.
  """
  total = settings.burn_in + settings.samples
  bar = ProgressBar(total, "mfjax gibbs") if progress else None

  def run(key, ratings: Ratings):
    result = gibbs.sample(
      key,
      ratings,
      rank=settings.rank,
      samples=settings.samples,
      burn_in=settings.burn_in,
      max_rank=settings.max_rank,
      implicit=settings.implicit,
      progress=None if bar is None else bar.update,
    )
    losses = jnp.square(result.rmse)
    bad = ~jnp.isfinite(losses)
    diverged = jnp.where(jnp.any(bad), jnp.argmax(bad), -1).astype(jnp.int32)
    mean = result.params.mean
    initial = kernels.weighted_mean(ratings, jnp.square(ratings.values - mean))
    best_loss = _mse(result.params, ratings)
    members = TrainResult(
      params=result.state.params,
      best_params=result.params,
      best_loss=best_loss,
      losses=losses,
      diverged_step=diverged,
      validation_rmse=jnp.full(total, jnp.nan, jnp.float32),
      stopped_step=jnp.int32(-1),
      initial_loss=initial,
      best_step=jnp.int32(total),
    )
    return jax.tree.map(lambda x: x[None], members), result.params

  return jax.jit(run)


def _mse(params: Params, ratings: Ratings) -> jax.Array:
  error = ratings.values - kernels.predict_pairs(params, ratings.users, ratings.items)
  return kernels.weighted_mean(ratings, jnp.square(error))
