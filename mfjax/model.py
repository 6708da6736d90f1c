"""The biased matrix-factorisation model: parameters, prediction and loss.

A rating is predicted as ``mean + user_bias[u] + item_bias[i] + user_factors[u] @
item_factors[i]`` (Koren, Bell & Volinsky 2009). The seed notebook's names map as
``P = user_factors``, ``Q = item_factors``, ``bu = user_bias``, ``bi = item_bias`` and
``mu = mean``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from mfjax import data as data_lib
from mfjax import validation

__all__ = ["Params", "init_params", "predict", "loss", "BIASES", "INITS", "UNKNOWN"]

BIASES = ("additive", "notebook")
INITS = ("normal", "uniform")


class Params(NamedTuple):
  """Parameters of a biased matrix factorisation; a pytree.

  Attributes:
    user_factors: the notebook's ``P``.
    item_factors: the notebook's ``Q``.
    user_bias: the notebook's ``bu`` (flattened).
    item_bias: the notebook's ``bi`` (flattened).
    mean: the global mean rating, the notebook's ``mu``. ``train`` sets it from the
      data and never trains it.
  """

  user_factors: jax.Array  # shape=(n_users, rank)
  item_factors: jax.Array  # shape=(n_items, rank)
  user_bias: jax.Array  # shape=(n_users,)
  item_bias: jax.Array  # shape=(n_items,)
  mean: jax.Array  # shape=()


def init_params(
  key: ArrayLike,
  n_users: int,
  n_items: int,
  rank: int,
  *,
  init: str = "normal",
  scale: float = 0.1,
  dtype: jnp.dtype = jnp.float32,
) -> Params:
  """Draws initial parameters.

  Args:
    key: a JAX PRNG key.
    n_users: number of users (rows), static.
    n_items: number of items (columns), static.
    rank: number of latent factors ``k``, static.
    init: ``"normal"`` draws the factors from ``N(0, scale²)`` and sets the biases
      to zero (Surprise's SVD does the same). ``"uniform"`` draws factors and biases
      from ``U[0, scale)``; with ``scale=1`` that is the notebook's ``torch.rand``.
    scale: standard deviation (``"normal"``) or upper bound (``"uniform"``).
    dtype: floating dtype of the parameters.

  Returns:
    A :class:`Params` with ``mean`` set to 0 (``train`` sets it from the data).

  Examples:
    >>> import jax, mfjax
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> params.user_factors.shape, params.item_bias.shape
    ((4, 3), (6,))
  """
  validation.check_key("key", key)
  n_users = validation.check_positive_int("n_users", n_users)
  n_items = validation.check_positive_int("n_items", n_items)
  rank = validation.check_positive_int("rank", rank)
  validation.check_choice("init", init, INITS)
  validation.check_nonnegative("scale", scale)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be a floating dtype; got {dtype!r}.")

  k_user, k_item, k_ubias, k_ibias = jax.random.split(key, 4)
  if init == "normal":
    draw = lambda k, shape: scale * jax.random.normal(k, shape, dtype)
    user_bias = jnp.zeros((n_users,), dtype)
    item_bias = jnp.zeros((n_items,), dtype)
  else:
    draw = lambda k, shape: scale * jax.random.uniform(k, shape, dtype)
    user_bias = draw(k_ubias, (n_users,))
    item_bias = draw(k_ibias, (n_items,))
  return Params(
    user_factors=draw(k_user, (n_users, rank)),
    item_factors=draw(k_item, (n_items, rank)),
    user_bias=user_bias,
    item_bias=item_bias,
    mean=jnp.zeros((), dtype),
  )


def _combine(mean, user_bias, item_bias, dot, bias):
  if bias == "additive":
    return mean + user_bias + item_bias + dot
  # The notebook's `mu + [bu, 1] @ [bi, 1].T`: a product of the biases, plus one.
  return mean + user_bias * item_bias + 1.0 + dot


# XLA's CPU dot has a fixed cost of microseconds; below this many multiply-adds
# (n_users·n_items·rank) a fused broadcast-multiply-and-sum is faster, above it
# far slower. Measured on CPU (benchmarks/RESULTS.md, "dense kernel crossover").
_FUSED_DOT_MAX = 2500


def _dense_dot(user_factors: jax.Array, item_factors: jax.Array) -> jax.Array:
  """``user_factors @ item_factors.T``, with the faster kernel for the size."""
  n_users, rank = user_factors.shape
  if n_users * item_factors.shape[0] * rank <= _FUSED_DOT_MAX:
    return jnp.sum(user_factors[:, None, :] * item_factors[None, :, :], axis=-1)
  return user_factors @ item_factors.T


UNKNOWN = data_lib.UNKNOWN  # The index of an id the training data did not have.


def _gather(table: jax.Array, index: jax.Array) -> jax.Array:
  # An unknown id (-1) reads zeros: no bias, no factors, so its prediction falls
  # back to the mean plus whatever is known, as Surprise does. Under jit indices
  # cannot be checked; other out-of-range ones read NaN rather than a clamped,
  # plausible-looking row.
  rows = table.at[index].get(
    mode="fill", fill_value=jnp.nan, wrap_negative_indices=False
  )
  unknown = (index == UNKNOWN).reshape(index.shape + (1,) * (table.ndim - 1))
  return jnp.where(unknown, jnp.zeros((), table.dtype), rows)


def _predict_pairs(params: Params, users, items, bias: str) -> jax.Array:
  """One prediction per (user, item) pair; no host checks."""
  dot = jnp.sum(
    _gather(params.user_factors, users) * _gather(params.item_factors, items), axis=-1
  )
  return _combine(
    params.mean,
    _gather(params.user_bias, users),
    _gather(params.item_bias, items),
    dot,
    bias,
  )


def predict(
  params: Params,
  users: ArrayLike | None = None,
  items: ArrayLike | None = None,
  *,
  bias: str = "additive",
  clip: tuple[float, float] | None = None,
  unknown: str = "fallback",
) -> jax.Array:
  """Predicts ratings.

  Args:
    params: model parameters.
    users: integer user indices, ``[n]``, or None.
    items: integer item indices, ``[n]``, or None.
    bias: ``"additive"`` gives ``mean + b_u + b_i + p_u·q_i``; ``"notebook"`` gives
      the seed notebook's ``mean + b_u·b_i + 1 + p_u·q_i``.
    clip: optional ``(lo, hi)``; predictions are clipped to it. The pair may be
      traced; ``lo <= hi`` is checked only when both are concrete.
    unknown: what an index of -1 (an id the training data did not have, see
      :func:`mfjax.load_ratings`) means. ``"fallback"`` predicts the mean plus
      whatever bias is known, as Surprise does; ``"raise"`` rejects it.

  Returns:
    With neither ``users`` nor ``items``, the full ``[n_users, n_items]`` matrix. With
    both, one prediction per ``(users[j], items[j])`` pair, ``[n]``. With only
    ``users``, their full rows ``[n, n_items]``; with only ``items``, their columns
    ``[n_users, n]``.

  Indices are checked on the host. Under ``jit`` they are tracers and cannot be
  checked; an out-of-range or negative index there yields NaN.

  Examples:
    >>> import jax, mfjax
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> mfjax.predict(params).shape
    (4, 6)
    >>> mfjax.predict(params, users=[0, 3], items=[5, 5]).shape
    (2,)
  """
  n_users, n_items, _ = validation.check_params(params)
  validation.check_choice("bias", bias, BIASES)
  validation.check_choice("unknown", unknown, ("fallback", "raise"))
  if clip is not None:
    clip = validation.check_clip("clip", clip)
  if users is not None:
    users = validation.check_index_array(
      "users", users, n_users, axis_name="users", allow_unknown=unknown == "fallback"
    )
  if items is not None:
    items = validation.check_index_array(
      "items", items, n_items, axis_name="items", allow_unknown=unknown == "fallback"
    )
  if users is not None and items is not None and users.shape != items.shape:
    raise ValueError(
      "users and items must have the same length (one prediction per pair); got "
      f"{users.shape[0]} users and {items.shape[0]} items."
    )

  if users is not None and items is not None:
    out = _predict_pairs(params, users, items, bias)
  else:
    uf, ub = params.user_factors, params.user_bias
    itf, ib = params.item_factors, params.item_bias
    if users is not None:
      uf, ub = _gather(uf, users), _gather(ub, users)
    if items is not None:
      itf, ib = _gather(itf, items), _gather(ib, items)
    out = _combine(params.mean, ub[:, None], ib[None, :], _dense_dot(uf, itf), bias)
  if clip is not None:
    out = jnp.clip(out, clip[0], clip[1])
  return out


def _penalty(params: Params, l2, l2_bias) -> jax.Array:
  dtype = params.user_factors.dtype
  factors = jnp.sum(params.user_factors**2) + jnp.sum(params.item_factors**2)
  biases = jnp.sum(params.user_bias**2) + jnp.sum(params.item_bias**2)
  # A float64 or float32 weight must not promote the loss.
  return jnp.asarray(l2, dtype) * factors + jnp.asarray(l2_bias, dtype) * biases


def _loss(params: Params, data: jax.Array, mask, l2, l2_bias, bias: str):
  """The dense ``loss`` without the host checks; ``data``, ``mask`` are arrays."""
  dtype = params.user_factors.dtype
  data = jnp.asarray(data, dtype)
  observed = (data != 0) if mask is None else (jnp.asarray(mask) != 0)
  weight = observed.astype(dtype)
  n_observed = jnp.maximum(weight.sum(), 1.0)
  residual = predict(params, bias=bias) - data
  mse = jnp.sum(weight * residual**2) / n_observed
  return mse + _penalty(params, l2, l2_bias) / n_observed


def _sparse_loss(
  params: Params, users, items, values, weight, n_total, l2, l2_bias, bias: str
):
  """Weighted mean squared error of the pairs plus the penalty over ``n_total``.

  A mini-batch (``weight`` 0 on padding) gives an unbiased estimate of the
  full-batch loss and its gradient. All-zero weights give a zero error term.
  """
  dtype = params.user_factors.dtype
  weight = jnp.asarray(weight, dtype)
  residual = _predict_pairs(params, users, items, bias) - jnp.asarray(values, dtype)
  return _weighted_sse(weight, residual) / _positive(weight.sum()) + _penalty(
    params, l2, l2_bias
  ) / _positive(n_total)


def _weighted_sse(weight, residual):
  return jnp.sum(weight * residual**2)


def _positive(total):
  """``total``, or 1 where it is 0 (an empty sum divides by 1, not by 0)."""
  if isinstance(total, int):
    return max(total, 1)
  return jnp.where(total > 0, total, jnp.ones((), total.dtype))


def _rating_weights(ratings, dtype):
  """``(weights [n], weight sum)``; ones and the static count when weights is None."""
  n = ratings.values.shape[0]
  if ratings.weights is None:
    return jnp.ones((n,), dtype), n
  weights = jnp.asarray(ratings.weights, dtype)
  return weights, weights.sum()


def check_data(params: Params, data, mask) -> tuple[object, object]:
  """Host checks of training data, dense or :class:`mfjax.Ratings`, against params."""
  n_users, n_items, _ = validation.check_params(params)
  if isinstance(data, data_lib.Ratings):
    if mask is not None:
      raise ValueError(
        "mask applies to a dense matrix only; Ratings list what is "
        "observed. Drop the ratings you don't want instead."
      )
    data_lib.check_ratings("data", data, shape=(n_users, n_items))
    return data, None
  return validation.check_dense(data, mask, (n_users, n_items))


def _any_loss(params, data, mask, l2, l2_bias, bias):
  if isinstance(data, data_lib.Ratings):
    weights, n_total = _rating_weights(data, params.user_factors.dtype)
    return _sparse_loss(
      params, data.users, data.items, data.values, weights, n_total, l2, l2_bias, bias
    )
  return _loss(params, data, mask, l2, l2_bias, bias)


def loss(
  params: Params,
  data,
  *,
  mask: ArrayLike | None = None,
  l2: ArrayLike = 0.0,
  l2_bias: ArrayLike | None = None,
  bias: str = "additive",
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
    bias: ``"additive"`` or ``"notebook"``, as in :func:`predict`.

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
  data, mask = check_data(params, data, mask)
  validation.check_nonnegative("l2", l2)
  l2_bias = l2 if l2_bias is None else validation.check_nonnegative("l2_bias", l2_bias)
  validation.check_choice("bias", bias, BIASES)
  return _any_loss(params, data, mask, l2, l2_bias, bias)
