"""The tuned default fits: what ``mfjax fit`` runs.

For ratings (``objective="rating"``), an ensemble of mini-batch Adam fits in one
jitted ``vmap``; :class:`FitSettings` holds its defaults, tuned on MovieLens 100k
validation splits carved from the base files (``benchmarks/tune_movielens.py``).
For top-N lists (``objective="ranking"``), the iALS loss
(:class:`mfjax.core.objectives.Ranking`) solved by alternating least squares;
:class:`RankingSettings` holds its defaults, tuned the same way
(``benchmarks/ranking_movielens.py``). Both in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import model, objectives, solvers, training
from mfjax.core.training import TrainResult
from mfjax.serving.model import Model, rated_pairs
from mfjax.settings import OBJECTIVES, FitSettings, RankingSettings
from mfjax.types import IdMaps, Params, Ratings

# OBJECTIVES, FitSettings and RankingSettings live in mfjax.settings since 0.3
# and are still reachable here.
__all__ = [
  "FitResult",
  "fit",
  "fit_program",
  "spread",
  "ranking_program",
  "ensemble_params",
  "batch_size_for",
  "MIN_BATCH_SIZE",
  "BATCHES_PER_EPOCH",
  "bucket",
  "Bucketed",
  "pad_to_buckets",
  "pad_entries",
  "trim",
  "compiler_options",
  "compile_program",
]

_DEFAULTS = FitSettings()

MIN_BATCH_SIZE = 4096
"""The smallest default mini-batch (:func:`batch_size_for`)."""
BATCHES_PER_EPOCH = 24
"""About this many default mini-batches per epoch (:func:`batch_size_for`)."""


def batch_size_for(n_entries: int, *, minimum: int = MIN_BATCH_SIZE) -> int:
  """The mini-batch size :func:`fit` takes when given none, for ``n_entries``.

  The defaults were tuned on MovieLens 100k with 4,096 ratings a batch, about
  20 batches of its 80,000 training ratings (24 of their bucket, 98,304
  entries: :func:`fit` passes the padded length). A fixed number of batches per
  epoch keeps the number of Adam steps, each of which updates the whole tables,
  the same on larger data: on a synthetic file of 810,000 training ratings the
  fit took 5.7 s instead of 11.9 s at a validation RMSE of 0.6156 instead of
  0.6174 (``benchmarks/RESULTS.md``, "Compiling once").

  Args:
    n_entries: the number of entries (the padded length).
    minimum: the smallest size to return.

  Returns:
    ``max(minimum, n_entries // 24)``.

  Examples:
    >>> from mfjax.fitting import ensemble
    >>> ensemble.batch_size_for(98304), ensemble.batch_size_for(1048576)
    (4096, 43690)
  """
  return max(int(minimum), int(n_entries) // BATCHES_PER_EPOCH)


_RANKING = RankingSettings()


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=["best_params", "members"],
  meta_fields=["objective"],
)
@dataclasses.dataclass(frozen=True)
class FitResult:
  """What :func:`fit` returns: a pytree (``jit`` and ``vmap`` pass it through).

  Attributes:
    best_params: the ensemble: the models' best params merged by
      :func:`ensemble_params` into one model of rank ``ensemble·rank``.
    members: the stacked :class:`mfjax.TrainResult` of the models (leading axis
      ``ensemble``).
    objective: what was fitted, ``"rating"`` or ``"ranking"`` (static).

  :meth:`model` makes the :class:`mfjax.Model` that answers in raw ids, with
  the objective and the training pairs it needs. ``best_params, members =
  result`` unpacks as in 0.2.
  """

  best_params: Params
  members: TrainResult
  objective: str = "rating"

  def __iter__(self):
    return iter((self.best_params, self.members))

  def _replace(self, **changes) -> FitResult:
    return dataclasses.replace(self, **changes)

  def model(
    self,
    ratings: Ratings,
    id_maps: IdMaps | None = None,
    *,
    scale: tuple[float, float] | None = None,
    settings: dict | None = None,
  ) -> Model:
    """The fitted model as a :class:`mfjax.Model`, ready for raw ids and files.

    It carries the objective (a ranking model refuses to predict ratings) and
    the training pairs of ``ratings`` (:meth:`mfjax.Model.recommend` leaves out
    what each user rated, and knows the most popular items).

    Args:
      ratings: the training ratings that :func:`fit` was given (concrete:
        call this outside ``jit``).
      id_maps: their raw-id maps (:func:`mfjax.load_ratings` and the
        ``ratings_from_*`` constructors return them), or None for a model that
        answers by index only.
      scale: ``(lo, hi)`` to clip predicted ratings to; None takes
        ``id_maps.scale``.
      settings: a JSON-serialisable dict saved with the model (``l2`` and
        ``l2_bias`` there are what :meth:`mfjax.Model.fold_in` regularises
        with).

    Examples:
      >>> import jax, mfjax
      >>> train, maps = mfjax.ratings_from_arrays(
      ...   ["ann", "ann", "bob", "cat"], ["x", "y", "x", "y"], [5.0, 3.0, 4.0, 1.0])
      >>> fitted = mfjax.fit(jax.random.key(0), train, rank=2, ensemble=1, steps=2)
      >>> model = fitted.model(train, maps)
      >>> model.objective, model.rated.shape
      ('rating', (4, 2))
    """
    validation.check_ratings("ratings", ratings)
    if not validation.is_concrete(ratings.users):
      raise TypeError(
        "ratings is traced; FitResult.model needs the concrete training ratings "
        "(call it outside jit and vmap)."
      )
    shape = (
      self.best_params.user_factors.shape[0],
      self.best_params.item_factors.shape[0],
    )
    if (ratings.n_users, ratings.n_items) != shape:
      raise ValueError(
        f"ratings must be the fit's training ratings, {shape[0]} users x "
        f"{shape[1]} items; got {ratings.n_users} x {ratings.n_items}."
      )
    if id_maps is not None and (len(id_maps.users), len(id_maps.items)) != shape:
      raise ValueError(
        f"id_maps must map the fit's {shape[0]} users and {shape[1]} items; got "
        f"{len(id_maps.users)} and {len(id_maps.items)}."
      )
    return Model(
      self.best_params,
      id_maps=id_maps,
      settings=settings,
      scale=scale,
      objective=self.objective,
      rated=rated_pairs(ratings),
    )


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
  one_device: bool = False,
) -> FitResult:
  """Fits the tuned default model to ``ratings``, jitted: what ``mfjax fit`` runs.

  ``objective="rating"`` (the default) learns to predict ratings: ``ensemble``
  models of rank ``rank`` train in one ``vmap`` with Adam (``learning_rate``)
  for ``steps`` shuffled mini-batch epochs, and their best params are averaged
  (:func:`ensemble_params`). Defaults: :class:`FitSettings`.

  ``objective="ranking"`` learns which items each user picks, for top-N lists:
  one model of rank ``rank`` minimises the iALS loss
  (:class:`mfjax.core.objectives.Ranking`, weight ``alpha0`` on all user × item
  pairs) by ``steps`` passes of alternating least squares
  (:class:`mfjax.core.solvers.Alternating`). Its scores order items; they are not
  ratings. Defaults: :class:`RankingSettings`. ``learning_rate``, ``l2_bias``,
  ``batch_size``, ``ensemble``, ``validation_data`` and ``patience`` do not
  apply to it.

  Every setting left as None takes the objective's default, tuned on MovieLens
  100k validation splits (``benchmarks/RESULTS.md``); ``batch_size`` left as
  None is :func:`batch_size_for` the padded ratings (4096 up to MovieLens 100k's
  size, 1/24 of the ratings beyond). The rating fit pads the ratings to bucket
  sizes (:func:`pad_to_buckets`), so that one compiled program, cached per
  settings and bucket, serves every file of nearby size; the result is the
  unpadded one's up to float rounding. With several devices (GPUs, or every
  process's devices after ``jax.distributed.initialize``), the rating fit
  shards the padded ratings over all of them and replicates the model
  (:func:`spread`), unless ``one_device``. Called inside a ``jit`` or ``vmap``,
  or with ratings sharded over devices, it trains the ratings as they are.

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
    one_device: train the rating fit on the default device only, even when
      there are several.

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
  # train() repeats the remaining checks (validation data, patience, scale).
  if validation_data is not None:
    validation.check_ratings(
      "validation_data", validation_data, allow_unknown=True,
      shape=(ratings.n_users, ratings.n_items),
    )  # fmt: skip
  dtype = jnp.float32
  l2s = (jnp.asarray(settings.l2, dtype), jnp.asarray(settings.l2_bias, dtype))
  # Traced (inside someone's jit or vmap) or spread over devices: the data as it
  # is, in the caller's program and placement. Else padded to its bucket.
  padded = None
  if _bucketable(key, settings.l2, settings.l2_bias, ratings, validation_data):
    padded = pad_to_buckets(ratings, validation_data)
  if batch_size is None:  # The default: 24 batches of the (padded) length.
    n = len(padded.ratings) if padded else len(ratings) - ratings.n_padding
    settings = settings._replace(
      batch_size=batch_size_for(n, minimum=settings.batch_size)
    )
  program = _cached_fit_program(
    settings._replace(l2=0.0, l2_bias=0.0), patience, bool(progress)
  )
  if padded is None:
    results, params = program(key, ratings, *l2s, validation_data, scale)
    return FitResult(params, results)
  inputs = (key, padded.ratings, *l2s, padded.validation, scale, padded.sizes)
  program, inputs = spread(program, inputs, one_device=bool(one_device))
  results, params = _compiled(program, inputs)(*inputs)
  return FitResult(*trim((params, results), padded))


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


def _compiled(program, inputs):
  """``program`` compiled for ``inputs``' shapes with :func:`compiler_options`,
  kept per program and shapes (``jax.jit`` takes compiler options only where it
  is not nested in another jit, so they are given here, when fit compiles)."""
  leaves, tree = jax.tree.flatten(inputs)
  shapes = tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)
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


def _fit_ranking(key, ratings, *, progress, **given) -> FitResult:
  settings = check_ranking_settings(
    _RANKING._replace(**{k: v for k, v in given.items() if v is not None})
  )
  program = _cached_ranking_program(settings._replace(l2=0.0), progress)
  inputs = (key, ratings, jnp.asarray(settings.l2, jnp.float32))
  if all(validation.is_concrete(x) for x in jax.tree.leaves(inputs)):
    program = _compiled(program, inputs)  # With compiler_options().
  results, params = program(*inputs)
  return FitResult(params, results, objective="ranking")


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


def bucket(n: int, *, per_octave: int = 2) -> int:
  """The padded size of ``n``: the next of ``per_octave`` sizes per doubling.

  With 2 per octave the sizes are ``2**e`` and ``1.5·2**e`` (..., 64k, 96k,
  128k, ...): at most half again as large, and MovieLens 100k's u1 to u5 and
  ua/ub training files all land in one bucket. At least 8.

  Args:
    n: a size (entries, users or items).
    per_octave: sizes per doubling; a power of 2.

  Returns:
    The smallest size of the grid that holds ``n``.

  Examples:
    >>> from mfjax.fitting import ensemble
    >>> ensemble.bucket(80000), ensemble.bucket(90570), ensemble.bucket(5)
    (98304, 98304, 8)
    >>> ensemble.bucket(1650, per_octave=4)
    1792
  """
  n = max(int(n), 8)
  e = (n - 1).bit_length() - 1  # 2**e < n <= 2**(e+1), for n > 1.
  step = max(2**e // per_octave, 1)
  return -(-n // step) * step


def _bucketable(*trees) -> bool:
  """Whether :func:`fit` pads these inputs on the host: concrete arrays, each
  NumPy or on one device (sharded ones keep the caller's placement), and few
  enough entries that a bucket stays within int32 indices."""
  for tree in trees:
    for x in jax.tree.leaves(tree):
      if not validation.is_concrete(x):
        return False
      if isinstance(x, jax.Array) and len(x.devices()) != 1:
        return False
      if np.ndim(x) and bucket(np.shape(x)[0]) >= 2**31 - 1:
        return False
  return True


class Bucketed(NamedTuple):
  """Ratings padded to bucket sizes by :func:`pad_to_buckets`.

  Attributes:
    ratings: the training ratings, ``bucket(max(n, min_entries))`` entries (the
      padding of weight 0 at the end), ``n_users`` and ``n_items`` rounded up
      with :func:`bucket` at 4 sizes per octave (the factor tables grow with
      them).
    validation: the validation ratings likewise, or None.
    sizes: int32 ``[n_data, n_users, n_items]`` of the unpadded training
      ratings: what :func:`fit_program` takes.
    n_users: the unpadded number of users (static, for :func:`trim`).
    n_items: the unpadded number of items.
  """

  ratings: Ratings
  validation: Ratings | None
  sizes: np.ndarray
  n_users: int
  n_items: int


def pad_to_buckets(
  ratings: Ratings,
  validation_data: Ratings | None = None,
  *,
  min_entries: int = 0,
) -> Bucketed:
  """Pads ``ratings`` (and ``validation_data``) to shared bucket sizes, on the host.

  Files of nearby sizes then give one shape, so that one compiled
  :func:`fit_program` (and the persistent compilation cache) serves them all.
  Padding entries have weight 0 and index 0; padding users and items have no
  ratings. Any ``n_padding`` of the input is dropped first.

  Args:
    ratings: the training ratings (concrete: NumPy or on one device).
    validation_data: optional ratings scored during training, padded likewise.
    min_entries: pad to the bucket of at least this many entries (the largest
      of several training sets that are to share one program).

  Returns:
    A :class:`Bucketed`.
  """
  tables = dict(
    n_users=bucket(ratings.n_users, per_octave=4),
    n_items=bucket(ratings.n_items, per_octave=4),
  )
  n_data = len(ratings) - ratings.n_padding
  train = pad_entries(ratings, bucket(max(n_data, min_entries)), **tables)
  valid = None
  if validation_data is not None:
    n_valid = len(validation_data) - validation_data.n_padding
    valid = pad_entries(validation_data, bucket(n_valid), **tables)
  sizes = np.array([n_data, ratings.n_users, ratings.n_items], np.int32)
  return Bucketed(train, valid, sizes, ratings.n_users, ratings.n_items)


def pad_entries(
  ratings: Ratings,
  size: int,
  *,
  n_users: int | None = None,
  n_items: int | None = None,
) -> Ratings:
  """``ratings`` with weight-0 entries (index 0) up to ``size``, on the host.

  Any ``n_padding`` of the input is dropped first; the result marks none (its
  padding is told by the weights, and by ``n_data`` where a program needs it).
  Weight-0 entries change no loss and no gradient, in any objective.

  Args:
    ratings: concrete ratings.
    size: the number of entries of the result, at least the data's.
    n_users, n_items: the result's table sizes (default the input's), at least
      the input's.

  Returns:
    :class:`mfjax.Ratings` of NumPy arrays, with weights.

  Examples:
    >>> import numpy as np, mfjax
    >>> from mfjax.fitting import ensemble
    >>> r = mfjax.Ratings([0, 1], [1, 0], [4.0, 2.0], 2, 2)
    >>> p = ensemble.pad_entries(r, 4, n_users=3)
    >>> len(p), p.n_users, p.weights.tolist()
    (4, 3, [1.0, 1.0, 0.0, 0.0])
  """
  n = len(ratings) - ratings.n_padding
  if size < n:
    raise ValueError(f"size must be at least the {n} entries; got {size}.")
  for name, given, least in (
    ("n_users", n_users, ratings.n_users),
    ("n_items", n_items, ratings.n_items),
  ):
    if given is not None and given < least:
      raise ValueError(f"{name} must be at least the ratings' {least}; got {given}.")
  weights = np.ones(n, np.float32) if ratings.weights is None else ratings.weights
  extend = lambda x, dtype: np.concatenate(
    [np.asarray(x, dtype)[:n], np.zeros(size - n, dtype)]
  )
  values = np.asarray(ratings.values)
  return Ratings(
    extend(ratings.users, np.int32),
    extend(ratings.items, np.int32),
    extend(values, values.dtype),
    ratings.n_users if n_users is None else n_users,
    ratings.n_items if n_items is None else n_items,
    weights=extend(weights, np.float32),
  )


def trim(tree, bucketed: Bucketed):
  """Every :class:`mfjax.Params` in ``tree`` cut to the unpadded users and items.

  On the host (NumPy slices of the fitted tables, then back on the default
  device), so that no program is compiled per data size.

  Args:
    tree: outputs of the program, e.g. ``(members, best_params)``; Params with a
      leading ensemble axis are cut along their row axis.
    bucketed: what :func:`pad_to_buckets` returned for the program's inputs.

  Returns:
    ``tree`` with every Params cut.
  """

  def cut(params: Params) -> Params:
    # device_put, not jnp.asarray: that compiles a small program per shape.
    first = lambda x, n, axis: jax.device_put(
      np.take(np.asarray(x), np.arange(n), axis=axis)
    )
    return params._replace(
      user_factors=first(params.user_factors, bucketed.n_users, -2),
      item_factors=first(params.item_factors, bucketed.n_items, -2),
      user_bias=first(params.user_bias, bucketed.n_users, -1),
      item_bias=first(params.item_bias, bucketed.n_items, -1),
    )

  return jax.tree.map(
    lambda x: cut(x) if isinstance(x, Params) else x,
    tree,
    is_leaf=lambda x: isinstance(x, Params),
  )


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
