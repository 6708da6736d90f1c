"""Accuracy of predicted ratings: RMSE and MAE on held-out ``Ratings``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mfjax import model, validation
from mfjax.data import Ratings, check_ratings
from mfjax.model import Params

__all__ = ["rmse", "mae"]


def _errors(params, ratings, clip, bias):
  n_users, n_items, _ = validation.check_params(params)
  check_ratings("ratings", ratings, allow_unknown=True)
  if ratings.shape != (n_users, n_items):
    raise ValueError(
      f"ratings must have n_users, n_items = {(n_users, n_items)} to match params; "
      f"got {ratings.shape}. Load test files with the training file's id_maps."
    )
  if len(ratings) == 0:
    raise ValueError("ratings is empty; there is nothing to score.")
  validation.check_choice("bias", bias, model.BIASES)
  if clip is not None:
    clip = validation.check_clip("clip", clip)
  return _errors_unchecked(params, ratings, clip, bias)


def _errors_unchecked(params, ratings, clip, bias):
  """Prediction minus rating for each of ``ratings``; no host checks."""
  pred = model._predict_pairs(params, ratings.users, ratings.items, bias)
  if clip is not None:
    pred = jnp.clip(pred, clip[0], clip[1])
  return pred - ratings.values


def rmse(
  params: Params,
  ratings: Ratings,
  *,
  clip: tuple[float, float] | None = None,
  bias: str = "additive",
) -> jax.Array:
  """Root mean squared error of the predictions of ``ratings``.

  Args:
    params: model parameters.
    ratings: held-out ratings, indexed like the training data. Unknown users or
      items (index -1) are predicted from the mean and the known bias.
    clip: ``(lo, hi)``: clip predictions to the rating scale first, as Surprise
      does (``id_maps.scale`` from :func:`mfjax.load_ratings`).
    bias: ``"additive"`` or ``"notebook"``.

  Returns:
    A scalar.
  """
  return jnp.sqrt(jnp.mean(_errors(params, ratings, clip, bias) ** 2))


def mae(
  params: Params,
  ratings: Ratings,
  *,
  clip: tuple[float, float] | None = None,
  bias: str = "additive",
) -> jax.Array:
  """Mean absolute error of the predictions of ``ratings``; see :func:`rmse`."""
  return jnp.mean(jnp.abs(_errors(params, ratings, clip, bias)))
