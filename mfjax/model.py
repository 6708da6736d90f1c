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

from mfjax import validation

__all__ = ["Params", "init_params", "predict", "loss", "BIASES", "INITS"]

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


def _gather(table: jax.Array, index: jax.Array) -> jax.Array:
  # Under jit indices cannot be checked; out-of-range or negative ones read NaN
  # rather than a clamped, plausible-looking row.
  return table.at[index].get(
    mode="fill", fill_value=jnp.nan, wrap_negative_indices=False
  )


def predict(
  params: Params,
  users: ArrayLike | None = None,
  items: ArrayLike | None = None,
  *,
  bias: str = "additive",
  clip: tuple[float, float] | None = None,
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
  if clip is not None:
    clip = validation.check_clip("clip", clip)
  if users is not None:
    users = validation.check_index_array("users", users, n_users, axis_name="users")
  if items is not None:
    items = validation.check_index_array("items", items, n_items, axis_name="items")
  if users is not None and items is not None and users.shape != items.shape:
    raise ValueError(
      "users and items must have the same length (one prediction per pair); got "
      f"{users.shape[0]} users and {items.shape[0]} items."
    )

  uf, ub = params.user_factors, params.user_bias
  itf, ib = params.item_factors, params.item_bias
  if users is not None:
    uf, ub = _gather(uf, users), _gather(ub, users)
  if items is not None:
    itf, ib = _gather(itf, items), _gather(ib, items)
  if users is not None and items is not None:
    out = _combine(params.mean, ub, ib, jnp.sum(uf * itf, axis=-1), bias)
  else:
    out = _combine(params.mean, ub[:, None], ib[None, :], _dense_dot(uf, itf), bias)
  if clip is not None:
    out = jnp.clip(out, clip[0], clip[1])
  return out


def _loss(params: Params, data: jax.Array, mask: jax.Array | None, l2, bias: str):
  """``loss`` without the host checks; ``data`` and ``mask`` already arrays."""
  dtype = params.user_factors.dtype
  data = jnp.asarray(data, dtype)
  l2 = jnp.asarray(l2, dtype)  # A float64 or float32 l2 must not promote the loss.
  observed = (data != 0) if mask is None else (jnp.asarray(mask) != 0)
  weight = observed.astype(dtype)
  n_observed = jnp.maximum(weight.sum(), 1.0)
  residual = predict(params, bias=bias) - data
  mse = jnp.sum(weight * residual**2) / n_observed
  squares = sum(
    jnp.sum(x**2)
    for x in (
      params.user_factors,
      params.item_factors,
      params.user_bias,
      params.item_bias,
    )
  )
  return mse + l2 * squares / n_observed


def loss(
  params: Params,
  data: ArrayLike,
  *,
  mask: ArrayLike | None = None,
  l2: ArrayLike = 0.0,
  bias: str = "additive",
) -> jax.Array:
  """Mean squared error over the observed ratings, plus an optional L2 penalty.

  ``loss = (Σ_observed (r̂ - r)² + l2 · (‖P‖² + ‖Q‖² + ‖b_u‖² + ‖b_i‖²)) / n_observed``:
  the classic regularised least-squares objective divided by the number of observed
  ratings, so its minimiser does not change with the data size.

  Args:
    params: model parameters.
    data: dense ratings ``[n_users, n_items]``; 0 marks a missing rating.
    mask: optional ``[n_users, n_items]``; non-zero (True) marks the entries the loss
      counts. By default those are the non-zero ratings. The notebook counts all
      entries (``mask = ones``).
    l2: L2 weight ``>= 0``; may be traced (``vmap`` over it).
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
  n_users, n_items, _ = validation.check_params(params)
  data, mask = validation.check_dense(data, mask, (n_users, n_items))
  validation.check_nonnegative("l2", l2)
  validation.check_choice("bias", bias, BIASES)
  return _loss(params, data, mask, l2, bias)
