"""The numerical kernels: traced array code with no host checks.

Internal API: every public function of mfjax checks its arguments on the host
(:mod:`mfjax.validation`) and then calls these. They are pure functions of arrays,
safe under ``jit``, ``vmap`` and ``grad``; they assume valid inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mfjax.types import UNKNOWN, Params, Ratings

__all__ = [
  "gather",
  "dense_dot",
  "combine",
  "predict_pairs",
  "predict_matrix",
  "penalty",
  "positive",
  "rating_weights",
  "ratings_mean",
  "observed_mean",
  "weighted_mean",
  "rmse",
]

# XLA's CPU dot has a fixed cost of microseconds; below this many multiply-adds
# (n_users·n_items·rank) a fused broadcast-multiply-and-sum is faster, above it
# far slower. Measured on CPU (benchmarks/RESULTS.md, "dense kernel crossover").
FUSED_DOT_MAX = 2500


def gather(table: jax.Array, index: jax.Array) -> jax.Array:
  """Rows ``table[index]``; an unknown index (-1) reads zeros, others out of range NaN.

  An unknown id has no bias and no factors, so its prediction falls back to the
  mean plus whatever is known, as Surprise does. Under jit indices cannot be
  checked; other out-of-range ones read NaN rather than a clamped, plausible row.
  """
  unknown = (index == UNKNOWN).reshape(index.shape + (1,) * (table.ndim - 1))
  if table.shape[0] == 0:  # No rows (a model of no users): every index is unknown
    rows = jnp.full(index.shape + table.shape[1:], jnp.nan, table.dtype)  # or out.
  else:
    rows = table.at[index].get(
      mode="fill", fill_value=jnp.nan, wrap_negative_indices=False
    )
  return jnp.where(unknown, jnp.zeros((), table.dtype), rows)


def dense_dot(user_factors: jax.Array, item_factors: jax.Array) -> jax.Array:
  """``user_factors @ item_factors.T``, with the faster kernel for the size."""
  n_users, rank = user_factors.shape
  if n_users * item_factors.shape[0] * rank <= FUSED_DOT_MAX:
    return jnp.sum(user_factors[:, None, :] * item_factors[None, :, :], axis=-1)
  return user_factors @ item_factors.T


def combine(mean, user_bias, item_bias, dot):
  """The biased-MF prediction from its parts: ``mean + b_u + b_i + p_u·q_i``."""
  return mean + user_bias + item_bias + dot


def predict_pairs(params: Params, users: jax.Array, items: jax.Array) -> jax.Array:
  """One prediction per ``(users[j], items[j])`` pair."""
  dot = jnp.sum(
    gather(params.user_factors, users) * gather(params.item_factors, items), axis=-1
  )
  return combine(
    params.mean, gather(params.user_bias, users), gather(params.item_bias, items), dot
  )


def predict_matrix(
  params: Params, users: jax.Array | None = None, items: jax.Array | None = None
) -> jax.Array:
  """The ``[users, items]`` block of predictions (all rows or columns for None)."""
  uf, ub = params.user_factors, params.user_bias
  itf, ib = params.item_factors, params.item_bias
  if users is not None:
    uf, ub = gather(uf, users), gather(ub, users)
  if items is not None:
    itf, ib = gather(itf, items), gather(ib, items)
  return combine(params.mean, ub[:, None], ib[None, :], dense_dot(uf, itf))


def penalty(params: Params, l2, l2_bias) -> jax.Array:
  """``l2·(‖P‖² + ‖Q‖²) + l2_bias·(‖b_u‖² + ‖b_i‖²)``, in the params' dtype."""
  dtype = params.user_factors.dtype
  factors = jnp.sum(params.user_factors**2) + jnp.sum(params.item_factors**2)
  biases = jnp.sum(params.user_bias**2) + jnp.sum(params.item_bias**2)
  # A float64 or float32 weight must not promote the loss.
  return jnp.asarray(l2, dtype) * factors + jnp.asarray(l2_bias, dtype) * biases


def positive(total):
  """``total``, or 1 where it is 0 (an empty sum divides by 1, not by 0)."""
  if isinstance(total, int):
    return max(total, 1)
  return jnp.where(total > 0, total, jnp.ones((), total.dtype))


def rating_weights(ratings: Ratings, dtype) -> tuple[jax.Array, jax.Array | int]:
  """``(weights [n], weight sum)``; ones and the static count when weights is None."""
  n = ratings.values.shape[0]
  if ratings.weights is None:
    return jnp.ones((n,), dtype), n
  weights = jnp.asarray(ratings.weights, dtype)
  return weights, weights.sum()


def ratings_mean(ratings: Ratings, dtype) -> jax.Array:
  """The (weighted) mean rating: the ``mean`` that training fixes."""
  values = jnp.asarray(ratings.values, dtype)
  if ratings.weights is None:
    return jnp.mean(values)
  weights = jnp.asarray(ratings.weights, dtype)
  return jnp.sum(weights * values) / positive(weights.sum())


def observed_mean(data: jax.Array) -> jax.Array:
  """The mean of the non-zero entries of a dense matrix, as the notebook's ``mu``."""
  data = jnp.asarray(data, jnp.result_type(float))
  return data.sum() / jnp.maximum(jnp.count_nonzero(data), 1)


def weighted_mean(ratings: Ratings, x: jax.Array) -> jax.Array:
  """The mean of ``x`` (one value per rating) weighted by ``ratings.weights``.

  Weight-0 entries are left out even where ``x`` is NaN or inf; with no weight
  at all the mean is NaN, as the mean of nothing.
  """
  if ratings.weights is None:
    return jnp.mean(x)
  weights = jnp.asarray(ratings.weights, x.dtype)
  total = jnp.sum(jnp.where(weights > 0, weights * x, jnp.zeros((), x.dtype)))
  return total / weights.sum()


def rmse(predictions: jax.Array, ratings: Ratings, scale=None) -> jax.Array:
  """The (weighted) RMSE of ``predictions`` of ``ratings``, clipped to ``scale``."""
  if scale is not None:
    predictions = jnp.clip(predictions, scale[0], scale[1])
  return jnp.sqrt(weighted_mean(ratings, (predictions - ratings.values) ** 2))
