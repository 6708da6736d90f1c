"""Hyperparameter grids: many ``train`` runs in one vmapped program.

:func:`train_grid` trains ``N`` configurations (learning rate, L2 weights, seed)
at once with ``jax.vmap`` over :func:`mfjax.train`, so that one compiled program
and one pass over the data per step serve them all, and picks the best by
validation RMSE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import objectives
from mfjax.core.objectives import Objective
from mfjax.core.training import TrainResult, train
from mfjax.types import Params, Ratings

__all__ = ["GridResult", "train_grid"]


class GridResult(NamedTuple):
  """What :func:`train_grid` returns; a pytree.

  Attributes:
    results: the :class:`mfjax.TrainResult` of every configuration, each leaf
      stacked along a leading axis of ``n_configs``.
    learning_rate: the learning rate of each configuration.
    l2: the factors' L2 weight of each configuration.
    l2_bias: the biases' L2 weight of each configuration.
    scores: what the configurations are ranked by: the lowest validation RMSE
      of each (that of its ``best_params``), or without validation data its
      ``best_loss`` (the training loss). NaN scores rank last.
    best_index: the index of the lowest score.
    best_params: ``results.best_params`` of that configuration.
  """

  results: TrainResult
  learning_rate: jax.Array  # shape=(n_configs,)
  l2: jax.Array  # shape=(n_configs,)
  l2_bias: jax.Array  # shape=(n_configs,)
  scores: jax.Array  # shape=(n_configs,)
  best_index: jax.Array  # shape=(), int32
  best_params: Params


def _config_length(name: str, value: Any) -> int | None:
  """None for a scalar, else the length of a 1-D array of reals."""
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return None
  array = validation.check_real_array(name, value)
  if array.ndim == 0:
    return None
  if array.ndim != 1:
    raise ValueError(
      f"{name} must be a scalar or a 1-D array, one value per configuration; "
      f"got shape {tuple(array.shape)}."
    )
  return int(array.shape[0])


def _check_config(name: str, value: Any, n: int, dtype) -> jax.Array:
  """``value`` broadcast to ``[n]``; concrete values must be finite and >= 0."""
  array = jnp.asarray(value, dtype)
  if validation.is_concrete(array):
    with jax.ensure_compile_time_eval():
      bad = bool(jnp.any(~jnp.isfinite(array) | (array < 0)))
    if bad:
      raise ValueError(f"{name} must hold finite numbers >= 0; got {value!r}.")
  return jnp.broadcast_to(array, (n,))


def _count_configs(params, learning_rate, l2, l2_bias, keys, formula):
  """Checks the per-configuration arguments; ``(stacked, n, keys_per_config)``."""
  if not isinstance(params, Params):
    raise TypeError(
      f"params must be mfjax.Params (one, or a stack); got {type(params).__name__}."
    )
  stacked = getattr(params.user_factors, "ndim", 0) == 3
  lengths = {}
  if stacked:
    validation.check_params(jax.tree.map(lambda x: x[0], params), formula=formula)
    lengths["params"] = int(params.user_factors.shape[0])
  else:
    validation.check_params(params, formula=formula)
  for name, value in (("learning_rate", learning_rate), ("l2", l2)) + (
    (("l2_bias", l2_bias),) if l2_bias is not None else ()
  ):
    length = _config_length(name, value)
    if length is not None:
      lengths[name] = length
  if keys is not None:
    keys = jnp.asarray(keys) if not hasattr(keys, "dtype") else keys
    typed = jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
    one_key = keys.shape == () if typed else keys.shape == (2,)
    if not one_key:
      if keys.ndim != (1 if typed else 2):
        raise TypeError(
          "keys must be one PRNG key or a 1-D array of them (jax.random.split(key, "
          f"n)); got shape {tuple(keys.shape)} and dtype {keys.dtype}."
        )
      lengths["keys"] = int(keys.shape[0])
    else:
      validation.check_key("keys", keys)
  sizes = set(lengths.values())
  if len(sizes) > 1:
    listed = ", ".join(f"{k} {v}" for k, v in lengths.items())
    raise ValueError(
      f"the configurations must agree on their number; got lengths {listed}."
    )
  n = sizes.pop() if sizes else 1
  if n < 1:
    raise ValueError("train_grid needs at least one configuration; got 0.")
  return stacked, n, "keys" in lengths


def train_grid(
  params: Params,
  data: Ratings | ArrayLike,
  *,
  learning_rate: ArrayLike,
  l2: ArrayLike = 0.0,
  l2_bias: ArrayLike | None = None,
  keys: ArrayLike | None = None,
  make_optimizer: Callable[..., optax.GradientTransformation] = optax.adam,
  steps: int = 100,
  batch_size: int | None = None,
  validation_data: Ratings | None = None,
  patience: int | None = None,
  scale: tuple[float, float] | None = None,
  chunk_size: int | None = None,
  objective: Objective | None = None,
) -> GridResult:
  """Trains ``N`` configurations at once (``jax.vmap`` of :func:`mfjax.train`).

  Configuration ``j`` is ``train(params_j, data, optimizer=make_optimizer(
  learning_rate[j]), l2=l2[j], l2_bias=l2_bias[j], key=keys[j], ...)``: the same
  result as that call, up to float rounding. The learning rate is made a traced
  argument with ``optax.inject_hyperparams``, so every configuration shares one
  compiled program. Each of ``learning_rate``, ``l2``, ``l2_bias`` and ``keys``
  is one value for all configurations or one per configuration; ``N`` is their
  common length.

  ``train_grid`` is not jitted; wrap it in ``jax.jit`` with ``make_optimizer``,
  ``steps``, ``batch_size``, ``patience``, ``objective`` and ``chunk_size``
  static.
  The ``N`` runs hold ``N`` copies of the tables and optimizer state, and of a
  step's temporaries (see :func:`mfjax.core.memory.memory_estimate`).

  Args:
    params: initial parameters: one :class:`mfjax.Params` for every
      configuration, or a stack of ``N`` (leaves with a leading axis, e.g.
      ``jax.vmap(init_params)`` over keys: one initialisation per seed).
    data: the training data, as for :func:`mfjax.train`.
    learning_rate: scalar or ``[N]``, > 0.
    l2: the factors' L2 weight, scalar or ``[N]``.
    l2_bias: the biases' L2 weight, scalar or ``[N]``; None means ``l2``.
    keys: PRNG keys for the mini-batch shuffles: ``[N]`` keys (e.g.
      ``jax.random.split(key, N)``), or one key whose shuffles all
      configurations share (computed once: cheaper); needed with
      ``batch_size``.
    make_optimizer: a function of ``learning_rate`` that returns the optax
      optimizer, such as ``optax.adam`` (the default) or ``optax.sgd``.
    steps: epochs, a static int.
    batch_size: mini-batch size, or None for full-batch steps.
    validation_data: :class:`mfjax.Ratings` scored each epoch; the configurations
      are ranked by their lowest validation RMSE.
    patience: early stopping, as in :func:`mfjax.train`.
    scale: ``(lo, hi)``: clip validation predictions to it.
    objective: what to minimise, as in :func:`mfjax.train`.
    chunk_size: chunked full-batch steps, as in :func:`mfjax.train`.

  Returns:
    A :class:`GridResult`.

  Shapes and settings are checked on the host; concrete hyperparameters must be
  finite and >= 0 (``learning_rate`` > 0). Under ``jit`` they are tracers and
  are not checked.

  Examples:
    >>> import jax, jax.numpy as jnp, mfjax
    >>> from mfjax.fitting.grid import train_grid
    >>> ratings = mfjax.ratings_from_dense(jnp.array([[5.0, 3, 0], [4, 0, 1]]))
    >>> params = mfjax.init_params(jax.random.key(0), 2, 3, rank=2)
    >>> grid = train_grid(params, ratings, learning_rate=jnp.array([0.01, 0.1]),
    ...                   l2=0.01, steps=20)
    >>> grid.results.losses.shape, int(grid.best_index)
    ((2, 20), 1)
  """
  objective = objectives.check_objective(objective)
  params = objectives.adopt(objective, params)
  stacked, n, keys_per_config = _count_configs(
    params, learning_rate, l2, l2_bias, keys, objective.params_type.formula
  )
  if not callable(make_optimizer) or isinstance(
    make_optimizer, optax.GradientTransformation
  ):
    raise TypeError(
      "make_optimizer must be a function of learning_rate that builds an optax "
      f"optimizer, such as optax.adam (not an optimizer); got {make_optimizer!r}."
    )
  if batch_size is not None and keys is None:
    raise ValueError("batch_size needs keys= (PRNG keys for the shuffles).")

  dtype = params.user_factors.dtype
  learning_rates = _check_config("learning_rate", learning_rate, n, dtype)
  if validation.is_concrete(learning_rates):
    with jax.ensure_compile_time_eval():
      if bool(jnp.any(learning_rates <= 0)):
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}.")
  l2s = _check_config("l2", l2, n, dtype)
  l2_biases = l2s if l2_bias is None else _check_config("l2_bias", l2_bias, n, dtype)

  def one(params, learning_rate, l2, l2_bias, key):
    return train(
      params,
      data,
      optimizer=optax.inject_hyperparams(make_optimizer)(learning_rate=learning_rate),
      steps=steps,
      l2=l2,
      l2_bias=l2_bias,
      objective=objective,
      batch_size=batch_size,
      key=key,
      validation_data=validation_data,
      patience=patience,
      scale=scale,
      chunk_size=chunk_size,
    )

  # One key for all: the shuffles are computed once and shared, not vmapped.
  in_axes = (0 if stacked else None, 0, 0, 0, 0 if keys_per_config else None)
  results = jax.vmap(one, in_axes=in_axes)(params, learning_rates, l2s, l2_biases, keys)
  if validation_data is not None:
    rmse = results.validation_rmse
    scores = jnp.min(jnp.where(jnp.isnan(rmse), jnp.inf, rmse), axis=1)
  else:
    scores = results.best_loss
  ranked = jnp.where(jnp.isnan(scores), jnp.inf, scores)
  best_index = jnp.argmin(ranked).astype(jnp.int32)
  best_params = jax.tree.map(lambda x: x[best_index], results.best_params)
  return GridResult(
    results, learning_rates, l2s, l2_biases, scores, best_index, best_params
  )
