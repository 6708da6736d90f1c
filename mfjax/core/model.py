"""The biased matrix-factorisation model: initial parameters and predictions.

A rating is predicted as ``mean + user_bias[u] + item_bias[i] + user_factors[u] @
item_factors[i]`` (Koren, Bell & Volinsky 2009). The seed notebook's names map as
``P = user_factors``, ``Q = item_factors``, ``bu = user_bias``, ``bi = item_bias`` and
``mu = mean``. The loss is in :mod:`mfjax.core.objectives`; the array code in
:mod:`mfjax.core.kernels`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import eager, kernels
from mfjax.types import Params

__all__ = ["init_params", "predict", "INITS"]

INITS = ("normal", "uniform")


def init_params(
  key: ArrayLike,
  n_users: int,
  n_items: int,
  rank: int,
  *,
  init: str = "normal",
  init_scale: float = 0.1,
  dtype: jnp.dtype = jnp.float32,
) -> Params:
  """Draws initial parameters.

  Args:
    key: a JAX PRNG key.
    n_users: number of users (rows), static.
    n_items: number of items (columns), static.
    rank: number of latent factors ``k``, static.
    init: ``"normal"`` draws the factors from ``N(0, init_scale²)`` and sets the biases
      to zero (Surprise's SVD does the same). ``"uniform"`` draws factors and biases
      from ``U[0, init_scale)``; with ``init_scale=1`` that is the notebook's
      ``torch.rand``.
    init_scale: standard deviation (``"normal"``) or upper bound (``"uniform"``).
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
  validation.check_nonnegative("init_scale", init_scale)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be a floating dtype; got {dtype!r}.")

  return eager.call(_draw, (n_users, n_items, rank, init, init_scale, dtype), key)


def _draw(settings, key) -> Params:
  """:func:`init_params` after its host checks."""
  n_users, n_items, rank, init, init_scale, dtype = settings
  k_user, k_item, k_ubias, k_ibias = jax.random.split(key, 4)
  if init == "normal":
    draw = lambda k, shape: init_scale * jax.random.normal(k, shape, dtype)
    user_bias = jnp.zeros((n_users,), dtype)
    item_bias = jnp.zeros((n_items,), dtype)
  else:
    draw = lambda k, shape: init_scale * jax.random.uniform(k, shape, dtype)
    user_bias = draw(k_ubias, (n_users,))
    item_bias = draw(k_ibias, (n_items,))
  return Params(
    user_factors=draw(k_user, (n_users, rank)),
    item_factors=draw(k_item, (n_items, rank)),
    user_bias=user_bias,
    item_bias=item_bias,
    mean=jnp.zeros((), dtype),
  )


def predict(
  params: Params,
  users: ArrayLike | None = None,
  items: ArrayLike | None = None,
  *,
  scale: tuple[float, float] | None = None,
  unknown: str = "fallback",
) -> jax.Array:
  """Predicts ratings.

  Args:
    params: model parameters.
    users: integer user indices, ``[n]``, or None.
    items: integer item indices, ``[n]``, or None.
    scale: optional rating scale ``(lo, hi)``; predictions are clipped to it. The
      pair may be traced; ``lo <= hi`` is checked only when both are concrete.
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
  validation.check_choice("unknown", unknown, ("fallback", "raise"))
  if scale is not None:
    scale = validation.check_scale("scale", scale)
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

  return eager.call(_predict, None, params, users, items, scale)


def _predict(_, params: Params, users, items, scale) -> jax.Array:
  """:func:`predict` after its host checks."""
  if users is not None and items is not None:
    out = kernels.predict_pairs(params, users, items)
  else:
    out = kernels.predict_matrix(params, users, items)
  if scale is not None:
    out = jnp.clip(out, scale[0], scale[1])
  return out
