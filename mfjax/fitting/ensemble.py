"""The jitted programs of the tuned fits, and how they are compiled and placed.

For ratings (``objective="rating"``), an ensemble of mini-batch Adam fits in one
jitted ``vmap``; :class:`FitSettings` holds its defaults, tuned on MovieLens 100k
validation splits carved from the base files (``benchmarks/tune_movielens.py``).
For top-N lists (``objective="ranking"``), the iALS loss
(:class:`mfjax.core.objectives.Ranking`) solved by alternating least squares;
:class:`RankingSettings` holds its defaults, tuned the same way
(``benchmarks/ranking_movielens.py``). Both in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mfjax import validation
from mfjax.core import model, objectives, solvers, training
from mfjax.settings import FitSettings, RankingSettings
from mfjax.types import Params

__all__ = [
  "fit_program",
  "ranking_program",
  "check_settings",
  "check_ranking_settings",
  "ensemble_params",
  "spread",
  "compiler_options",
  "compile_program",
  "compiled",
  "cached_fit_program",
  "cached_ranking_program",
]

_DEFAULTS = FitSettings()
_RANKING = RankingSettings()


_SPREAD: dict = {}


def spread(program, inputs: tuple, *, one_device: bool = False):
  """A :func:`fit_program` and its inputs over every device.

  With more than one device in ``jax.devices()`` (all processes' devices after
  ``jax.distributed.initialize``), the ratings (``inputs[1]``) are sharded over
  a one-axis mesh of them (:func:`mfjax.core.sharding.shard_ratings`; ratings that
  are already spread over devices stay as they are) and the program's outputs
  are replicated: every device holds the model, each step all-reduces its
  gradient. With one device, or ``one_device``, both are returned unchanged.

  Args:
    program: a jitted fit, e.g. :func:`fit_program`'s.
    inputs: its arguments, ``(key, ratings, ...)``.
    one_device: keep the default device.

  Returns:
    ``(program, inputs)``.
  """
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  from mfjax.core import sharding

  devices = jax.devices()
  if one_device or len(devices) == 1:
    return program, inputs
  mesh = Mesh(np.array(devices), ("data",))
  ratings = inputs[1]
  if not isinstance(ratings.users, jax.Array) or len(ratings.users.devices()) == 1:
    ratings = sharding.shard_ratings(ratings, mesh)
  key = (program, tuple(devices))
  if key not in _SPREAD:
    if len(_SPREAD) >= 16:
      _SPREAD.pop(next(iter(_SPREAD)))
    _SPREAD[key] = jax.jit(program, out_shardings=NamedSharding(mesh, PartitionSpec()))
  return _SPREAD[key], (inputs[0], ratings, *inputs[2:])


_COMPILED: dict = {}


def compiled(program, inputs):
  """``program`` compiled for ``inputs``' shapes with :func:`compiler_options`,
  kept per program, shapes and placement (``jax.jit`` takes compiler options
  only where it is not nested in another jit, so they are given here, when fit
  compiles). Arrays the caller sharded otherwise get another program."""
  leaves, tree = jax.tree.flatten(inputs)
  shapes = tuple(
    (np.shape(x), str(getattr(x, "dtype", type(x))), getattr(x, "sharding", None))
    for x in leaves
  )
  key = (program, tree, shapes)
  if key not in _COMPILED:
    if len(_COMPILED) >= 16:
      _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = compile_program(program, inputs)
  return _COMPILED[key]


def compile_program(program, inputs: tuple):
  """``program`` (a jitted function) lowered for ``inputs`` and compiled with
  :func:`compiler_options`, or XLA's defaults where this XLA lacks one of them:
  what :func:`fit`, ``mfjax fit`` and :func:`mfjax.cross_validate` run.

  Args:
    program: a ``jax.jit`` function, e.g. from :func:`fit_program`.
    inputs: the arguments to lower it for.

  Returns:
    The compiled program (``jax.stages.Compiled``): call it with arguments of
    the same shapes.
  """
  lowered = program.lower(*inputs)
  options = compiler_options()
  if options:
    try:
      return lowered.compile(options)
    except jax.errors.JaxRuntimeError:  # An XLA without one of the options.
      pass
  return lowered.compile()


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
    if name != "confidence" or settings.confidence is not None
  }
  transform = settings.confidence_transform
  if transform not in ("auto", *objectives.CONFIDENCE_TRANSFORMS):
    raise ValueError(
      f"confidence_transform must be 'auto', 'linear' or 'log'; got {transform!r}."
    )
  return settings._replace(**ints, **floats)


@functools.lru_cache(maxsize=16)
def cached_ranking_program(settings, progress):
  return ranking_program(settings, progress=progress)


def ranking_program(settings: RankingSettings = _RANKING, *, progress: bool = False):
  """A jitted ``(key, ratings, l2)`` ranking fit: what ``fit(objective="ranking")``
  runs (its ``settings.l2`` is ignored: ``l2`` is traced).

  Returns ``(members, best_params)`` as :func:`fit_program` does, ``members``
  with a leading axis of one model.
  """
  objective = objectives.fitted_ranking(settings)
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
def cached_fit_program(settings, patience, progress):
  return fit_program(settings, patience=patience, progress=progress)


def fit_program(
  settings: FitSettings = _DEFAULTS,
  *,
  patience: int | None = None,
  progress: bool = False,
):
  """A jitted ``(key, ratings, l2, l2_bias, validation, scale, sizes)`` ensemble fit.

  What :func:`fit` runs (its ``l2`` settings are ignored here: they are the
  traced arguments), for callers that compile it apart, as ``mfjax fit`` does
  to report compile and fit times. Returns ``(members, best_params)``: the
  stacked :class:`mfjax.TrainResult` of the models and their merge by
  :func:`ensemble_params`.

  ``sizes`` is None, or the traced ``[n_data, n_users, n_items]`` of ratings
  padded by :func:`pad_to_buckets` (``Bucketed.sizes``): the program then
  trains only the data and its users' and items' rows (the padded rows stay 0;
  :func:`trim` cuts them off), exactly as the unpadded ratings would train, and
  one compiled program serves every size in the same buckets.
  """

  def one(keys, shuffle_key, ratings, l2, l2_bias, validation_data, scale, sizes):
    init_key, order_key = keys
    params = model.init_params(
      init_key, ratings.n_users, ratings.n_items, settings.rank
    )
    n_data = None
    if sizes is not None:
      # The first rows of a padded draw are the unpadded draw (threefry counts
      # elements): zero the rest, and no step moves them (no data, no penalty).
      params = _zero_rows(params, sizes[1], sizes[2])
      n_data = sizes[0]
    return training.train(
      params,
      ratings,
      optimizer=optax.adam(settings.learning_rate),
      steps=settings.steps,
      l2=l2,
      l2_bias=l2_bias,
      key=shuffle_key,
      validation_data=validation_data,
      patience=patience,
      scale=scale,
      progress=progress,
      solver=solvers.MiniBatch(settings.batch_size, n_data, order_key),
    )

  def run(key, ratings, l2, l2_bias, validation_data, scale, sizes=None):
    # Each model its own init and order of the data; the epochs' windows shared,
    # so that every batch is a slice of each model's ordered copy.
    shuffle_key, key = jax.random.split(key)
    keys = jax.random.split(key, (settings.ensemble, 2))
    in_axes = (0, *[None] * 7)
    results = jax.vmap(one, in_axes=in_axes)(
      (keys[:, 0], keys[:, 1]), shuffle_key, ratings, l2, l2_bias,
      validation_data, scale, sizes,
    )  # fmt: skip
    return results, ensemble_params(results.best_params)

  return jax.jit(run)


def _zero_rows(params: Params, n_users, n_items) -> Params:
  """``params`` with the user rows from ``n_users`` on and the item rows from
  ``n_items`` on set to 0."""
  keep = lambda x, n: jnp.where(
    (jnp.arange(x.shape[0]) < n).reshape((-1,) + (1,) * (x.ndim - 1)), x, 0
  )
  return params._replace(
    user_factors=keep(params.user_factors, n_users),
    item_factors=keep(params.item_factors, n_items),
    user_bias=keep(params.user_bias, n_users),
    item_bias=keep(params.item_bias, n_items),
  )


def compiler_options() -> dict | None:
  """The XLA options that :func:`fit`, ``mfjax fit`` and
  :func:`mfjax.cross_validate` compile their programs with
  (:func:`compile_program`).

  On CPU, LLVM's optimisation level 1 instead of 3: it compiles the default
  fit of MovieLens 100k in 0.56× the time (2.07 s against 3.72 s) and runs it
  as fast (0.345 s against 0.350 s; ``benchmarks/compile_once.py``,
  ``benchmarks/RESULTS.md``, "Compiling once"). None elsewhere: GPU programs
  keep XLA's defaults. (``jax.jit`` takes compiler options only at the top
  level, so :func:`fit_program` does not bake them in: it stays usable inside
  your own jit.)

  Returns:
    A dict of XLA options, or None.
  """
  if jax.default_backend() != "cpu":
    return None
  return {"xla_backend_optimization_level": 1}


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
