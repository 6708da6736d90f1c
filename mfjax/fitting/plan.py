"""One fit plan for every way in: :func:`mfjax.fit`, ``mfjax fit`` and
:func:`mfjax.cross_validate`.

:func:`plan` decides, once, what a fit of an objective does with the given
settings: which settings apply (:data:`mfjax.settings.REFUSED` lists the rest,
an error), their
tuned defaults, the default mini-batch, the padding to buckets, the jitted
program and its placement over every device. Each caller then runs the plan's
program on its inputs (:meth:`FitPlan.run`, or compiled and timed as the
command line and cross-validation do) and :meth:`FitPlan.finish` turns the
outputs into a :class:`FitResult`.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import memory, metrics, objectives
from mfjax.core.training import TrainResult
from mfjax.fitting import buckets
from mfjax.fitting.ensemble import (
  cached_fit_program,
  cached_ranking_program,
  check_ranking_settings,
  check_settings,
  compiled,
  spread,
)
from mfjax.fitting.sampler import cached_gibbs_program, check_gibbs_settings
from mfjax.serving.model import Model, rated_pairs
from mfjax.settings import (
  OBJECTIVES,
  REFUSED,
  SETTINGS,
  FitSettings,
  GibbsSettings,
  RankingSettings,
  check_names,
  refused,
  solver_for,
)
from mfjax.types import IdMaps, Params, Ratings

__all__ = ["FitResult", "FitPlan", "plan", "fit", "kept_rank"]


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
      :func:`mfjax.fitting.ensemble.ensemble_params` into one model of rank
      ``ensemble·rank``.
    members: the stacked :class:`mfjax.TrainResult` of the models (leading axis
      ``ensemble``).
    objective: what was fitted, ``"rating"`` or ``"ranking"`` (static).

  :meth:`model` makes the :class:`mfjax.Model` that answers in raw ids, with
  the objective and the training pairs it needs. ``best_params, members =
  result`` unpacks, and ``result[0]``, ``len(result)`` work, as in 0.2; it is
  no longer a tuple (no ``_fields`` or ``_asdict``).
  """

  best_params: Params
  members: TrainResult
  objective: str = "rating"

  def __iter__(self):
    return iter((self.best_params, self.members))

  def __len__(self) -> int:
    return 2

  def __getitem__(self, index):
    return (self.best_params, self.members)[index]

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
        with). For a ranking fit, a ``confidence_transform`` missing here is
        the one a fit at the defaults chose for ``ratings`` (and a missing
        ``confidence`` its default;
        :func:`mfjax.core.objectives.resolve_confidence`): pass both when the
        fit was given others.

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
    if self.objective == "ranking" and "confidence_transform" not in (settings or {}):
      # What a fit at the defaults chose for these ratings, unless said.
      chosen = objectives.resolve_confidence(RankingSettings(), ratings)
      settings = dict(settings or {})
      settings.setdefault("confidence", chosen.confidence)
      settings["confidence_transform"] = chosen.confidence_transform
    return Model(
      self.best_params,
      id_maps=id_maps,
      settings=settings,
      scale=scale,
      objective=self.objective,
      rated=rated_pairs(ratings),
    )


class FitPlan(NamedTuple):
  """What a fit runs, decided by :func:`plan`.

  Attributes:
    objective: ``"rating"`` or ``"ranking"``.
    settings: the :class:`mfjax.FitSettings`,
      :class:`mfjax.settings.GibbsSettings` or
      :class:`mfjax.settings.RankingSettings` (by the solver), defaults and
      the mini-batch filled in.
    program: the jitted fit, over every device unless ``one_device``.
    inputs: its arguments: the key, the (padded) ratings, the L2 weights, ...
    bucketed: the padding (:func:`mfjax.fitting.buckets.pad_to_buckets`) that
      :meth:`finish` cuts off, or None for ratings trained as they are.
    gathered: whether :meth:`finish` brings the model back to the default
      device (the plan spread unpadded ratings over several devices itself).
  """

  objective: str
  settings: FitSettings | GibbsSettings | RankingSettings
  program: Any
  inputs: tuple
  bucketed: buckets.Bucketed | None
  gathered: bool = False

  def finish(self, outputs) -> FitResult:
    """The program's outputs ``(members, params)`` as a :class:`FitResult`,
    cut to the data's users and items, on the default device."""
    members, params = outputs
    if self.bucketed is not None:
      params, members = buckets.trim((params, members), self.bucketed)
    elif self.gathered:  # Replicated over the devices (and processes) the plan
      # spread over: this process's copy, on its default device, as trim does.
      params, members = jax.tree.map(
        lambda x: jax.device_put(np.asarray(x)), (params, members)
      )
    return FitResult(params, members, objective=self.objective)

  def run(self) -> FitResult:
    """Runs the program (compiled with the fit's compiler options where the
    inputs are concrete) and finishes."""
    if all(validation.is_concrete(x) for x in jax.tree.leaves(self.inputs)):
      return self.finish(compiled(self.program, self.inputs)(*self.inputs))
    return self.finish(self.program(*self.inputs))


def _is_parts(ratings: Ratings) -> bool:
  """Ratings that several processes read in parts (``read_ratings``): padded
  and sharded over every process's devices already."""
  users = ratings.users
  return (
    isinstance(users, jax.Array)
    and validation.is_concrete(users)
    and not users.is_fully_addressable
  )


def plan(
  key: ArrayLike,
  ratings: Ratings,
  *,
  objective: str = "rating",
  solver: str | None = None,
  validation_data: Ratings | None = None,
  patience: int | None = None,
  scale: tuple[float, float] | None = None,
  progress: bool = False,
  one_device: bool = False,
  min_entries: int = 0,
  **settings: Any,
) -> FitPlan:
  """The plan of a fit: :func:`fit`'s arguments, checked and decided once.

  Args:
    key, ratings, objective, solver, validation_data, patience, scale,
      progress, one_device: as :func:`fit`.
    min_entries: pad the ratings to at least this many entries (the largest of
      several training sets that are to share one compiled program, as the
      folds of :func:`mfjax.cross_validate`).
    **settings: the settings of :func:`fit` (``rank``, ``steps``, ``l2``, ...),
      None for the tuned default.

  Returns:
    A :class:`FitPlan`.

  Raises:
    ValueError: a setting the objective does not take
      (:data:`mfjax.settings.REFUSED`), or one out of range.
    TypeError: a setting that is no setting of the objective.
  """
  validation.check_key("key", key)
  validation.check_choice("objective", objective, OBJECTIVES)
  validation.check_ratings("ratings", ratings)
  validation.check_something_to_train("ratings", ratings)
  if objective == "rating":
    validation.check_ratings_vary("ratings", ratings)
  solver = solver_for(objective, solver)
  # A name the solver refuses (REFUSED) is a ValueError below, saying why.
  check_names(solver, settings, also=REFUSED[solver])
  given = dict(settings, validation_data=validation_data, patience=patience)
  name = refused(solver, given)
  if name is not None:
    raise ValueError(_refusal(name, solver))
  if patience is not None:
    patience = validation.check_positive_int("patience", patience)
  if solver == "als":
    return _ranking_plan(key, ratings, settings, progress, one_device, min_entries)
  if solver == "gibbs":
    return _gibbs_plan(key, ratings, settings, progress, min_entries)
  return _rating_plan(
    key, ratings, settings, validation_data, patience, scale, progress,
    one_device, min_entries,
  )  # fmt: skip


# Parameter-sized arrays a fit holds at once, at the least (float32): an Adam
# member its params, best params, gradient, update and two moments
# (mfjax.core.memory's table copies); an ALS or Gibbs fit its params, the next
# ones and an accumulator (the best params; the posterior sums).
_ADAM_TABLES, _ALS_TABLES, _GIBBS_TABLES = 6, 3, 3


def _check_room(ratings, rank, tables, one_device, advice) -> None:
  """Refuses a fit whose parameter tables and ratings cannot fit the memory of
  a device (:func:`mfjax.core.memory.check_room`), before anything is
  allocated: 10**7 users or a rank of 10**4 were an XLA out-of-memory error
  after minutes. A lower bound: the per-step arrays come on top. Ratings that
  are traced or read in parts are the caller's to size."""
  if _is_parts(ratings) or not all(
    validation.is_concrete(x) for x in jax.tree.leaves(ratings)
  ):
    return
  n = len(ratings) - ratings.n_padding
  table = ((ratings.n_users + ratings.n_items) * (rank + 1) + 1) * 4
  devices = 1 if one_device else jax.device_count()
  need = tables * table + 12 * n // devices  # Two int32 indices and a value.
  what = (
    f"this fit ({n} ratings, {ratings.n_users} users, {ratings.n_items} items, "
    f"rank {rank})"
  )
  memory.check_room(need, what, advice)


def _refusal(name: str, solver: str) -> str:
  """Why ``solver`` refuses the setting ``name``, and who takes it."""
  if solver == "als":
    return (
      f"{name} does not apply to objective='ranking' (one model, solved by "
      "alternating least squares); leave it out."
    )
  if solver == "gibbs":
    return (
      f"{name} does not apply to solver='gibbs' (Bayesian MF by Gibbs sampling: "
      "no learning rate, L2 or epochs, the priors are sampled; its settings are "
      f"{', '.join(GibbsSettings._fields)}); leave it out."
    )
  if name in SETTINGS["gibbs"]._fields:
    return f"{name} applies to solver='gibbs' only."
  return f"{name} applies to objective='ranking' only."


def _gibbs_plan(key, ratings, given, progress, min_entries) -> FitPlan:
  settings = check_gibbs_settings(
    GibbsSettings()._replace(**{n: v for n, v in given.items() if v is not None}),
    ratings.n_users,
    ratings.n_items,
  )
  _check_room(ratings, settings.rank, _GIBBS_TABLES, True, "try a smaller rank.")
  program = cached_gibbs_program(settings, bool(progress))
  if min_entries and all(
    validation.is_concrete(x) for x in jax.tree.leaves((key, ratings))
  ):  # Weight-0 entries: one shape (and tree) for every fold.
    size = max(min_entries, len(ratings) - ratings.n_padding)
    ratings = jax.device_put(buckets.pad_entries(ratings, size))
  return FitPlan("rating", settings, program, (key, ratings), None)


def _rating_plan(
  key, ratings, given, validation_data, patience, scale, progress, one_device,
  min_entries,
) -> FitPlan:  # fmt: skip
  defaults = FitSettings()
  settings = check_settings(
    defaults._replace(**{n: v for n, v in given.items() if v is not None})
  )
  # train() repeats the remaining checks (validation data, patience, scale).
  if validation_data is not None:
    validation.check_ratings(
      "validation_data", validation_data, allow_unknown=True,
      shape=(ratings.n_users, ratings.n_items),
    )  # fmt: skip
  l2s = (
    jnp.asarray(settings.l2, jnp.float32),
    jnp.asarray(settings.l2_bias, jnp.float32),
  )
  # Read in parts: padded and spread already. Traced (inside someone's jit or
  # vmap) or spread over devices by the caller: the data as it is, in the
  # caller's program and placement. Else padded to its bucket.
  bucketed = None
  if _is_parts(ratings):
    if validation_data is not None:
      raise ValueError(
        "validation_data is not supported with ratings read in parts by several "
        "processes; score the held-out ratings after the fit."
      )
    bucketed = buckets.as_bucketed(ratings)
  elif buckets.bucketable(key, settings.l2, settings.l2_bias, ratings, validation_data):
    bucketed = buckets.pad_to_buckets(ratings, validation_data, min_entries=min_entries)
  n = len(bucketed.ratings) if bucketed else len(ratings) - ratings.n_padding
  if given.get("batch_size") is None:  # About 24 batches of the padded length.
    size = buckets.batch_size_for(n, minimum=settings.batch_size)
    settings = settings._replace(batch_size=size)
  elif settings.batch_size > max(n, buckets.MIN_BATCH_SIZE):
    # One batch of all the data: no larger one (1e9 asked XLA for 264 GB). Not
    # below the default's smallest, so that spelling out a default changes
    # nothing.
    settings = settings._replace(batch_size=max(n, buckets.MIN_BATCH_SIZE))
  _check_room(
    ratings, settings.rank, settings.ensemble * _ADAM_TABLES, one_device,
    "try a smaller rank or ensemble, or more devices.",
  )  # fmt: skip
  program = cached_fit_program(
    settings._replace(l2=0.0, l2_bias=0.0), patience, bool(progress)
  )
  if bucketed is None:
    inputs = (key, ratings, *l2s, validation_data, scale)
    return FitPlan("rating", settings, program, inputs, None)
  inputs = (key, bucketed.ratings, *l2s, bucketed.validation, scale, bucketed.sizes)
  program, inputs = spread(program, inputs, one_device=bool(one_device))
  return FitPlan("rating", settings, program, inputs, bucketed)


def _ranking_plan(key, ratings, given, progress, one_device, min_entries) -> FitPlan:
  settings = check_ranking_settings(
    RankingSettings()._replace(**{n: v for n, v in given.items() if v is not None})
  )
  # "auto" decided here where the values are at hand: the fit reports it.
  settings = objectives.resolve_confidence(settings, ratings)
  _check_room(ratings, settings.rank, _ALS_TABLES, one_device, "try a smaller rank.")
  program = cached_ranking_program(settings._replace(l2=0.0), bool(progress))
  inputs = (key, ratings, jnp.asarray(settings.l2, jnp.float32))
  if not all(validation.is_concrete(x) for x in jax.tree.leaves(inputs)):
    return FitPlan("ranking", settings, program, inputs, None)
  if min_entries:  # Weight-0 entries: one shape (and tree) for every fold.
    size = max(min_entries, len(ratings) - ratings.n_padding)
    ratings = jax.device_put(buckets.pad_entries(ratings, size))
    inputs = (key, ratings, inputs[2])
  spread_program, inputs = spread(program, inputs, one_device=bool(one_device))
  gathered = spread_program is not program
  return FitPlan("ranking", settings, spread_program, inputs, None, gathered)


def fit(
  key: ArrayLike,
  ratings: Ratings,
  *,
  objective: str = "rating",
  solver: str | None = None,
  rank: int | None = None,
  steps: int | None = None,
  learning_rate: float | None = None,
  l2: ArrayLike | None = None,
  l2_bias: ArrayLike | None = None,
  batch_size: int | None = None,
  ensemble: int | None = None,
  alpha0: float | None = None,
  confidence: float | None = None,
  confidence_transform: str | None = None,
  samples: int | None = None,
  burn_in: int | None = None,
  max_rank: int | None = None,
  implicit: str | None = None,
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
  (:func:`mfjax.fitting.ensemble.ensemble_params`). Defaults:
  :class:`mfjax.FitSettings`.

  ``solver="gibbs"`` fits ratings the Bayesian way instead
  (:mod:`mfjax.core.gibbs`): one model of rank ``rank`` sampled by
  ``burn_in + samples`` Gibbs sweeps, with the noise and the priors sampled
  too (no learning rate, no L2 to tune), and served as the posterior mean of
  the ``samples`` draws, of rank at most ``max_rank``. Defaults:
  :class:`mfjax.settings.GibbsSettings`.

  ``objective="ranking"`` learns which items each user picks, for top-N lists:
  one model of rank ``rank`` minimises the iALS loss
  (:class:`mfjax.core.objectives.Ranking`, weight ``alpha0`` on all user × item
  pairs) by ``steps`` passes of alternating least squares
  (:class:`mfjax.core.solvers.Alternating`). Its scores order items; they are not
  ratings. Defaults: :class:`mfjax.settings.RankingSettings`.
  ``learning_rate``, ``l2_bias``, ``batch_size``, ``ensemble``,
  ``validation_data`` and ``patience`` do not apply to it
  (:data:`mfjax.settings.REFUSED`).

  Every setting left as None takes the objective's default, tuned on MovieLens
  100k validation splits (``benchmarks/RESULTS.md``); ``batch_size`` left as
  None is :func:`mfjax.fitting.buckets.batch_size_for` the padded ratings
  (4096 up to MovieLens 100k's size, 1/24 of the ratings beyond). The rating
  fit pads the ratings to bucket sizes
  (:func:`mfjax.fitting.buckets.pad_to_buckets`), so that one compiled program,
  cached per settings and bucket, serves every file of nearby size; the result is the
  unpadded one's up to float rounding. With several devices (GPUs, or every
  process's devices after ``jax.distributed.initialize``), either objective's
  fit shards the ratings over all of them and replicates the model
  (:func:`mfjax.fitting.ensemble.spread`), unless ``one_device``. Called inside
  a ``jit`` or ``vmap``, or with ratings sharded over devices by the caller, it
  trains the ratings as they are. :func:`plan` makes these decisions; ``mfjax
  fit`` and :func:`mfjax.cross_validate` run the same plans.

  Args:
    key: a PRNG key for the inits and the shuffles.
    ratings: the training :class:`mfjax.Ratings`.
    objective: ``"rating"`` or ``"ranking"`` (:data:`mfjax.settings.OBJECTIVES`).
    solver: how: ``"adam"`` (rating, the default), ``"gibbs"`` (rating) or
      ``"als"`` (ranking, its default); :data:`mfjax.settings.SOLVERS`.
    rank, steps, learning_rate, batch_size, ensemble: static settings (see
      :class:`FitSettings`); ``steps`` counts passes over the data.
    l2: L2 weight of the factors, ``>= 0`` (traced: no recompile per value).
    l2_bias: L2 weight of the biases, ``>= 0``.
    alpha0: ranking only: the weight of the all-pairs term per unit of density
      (:class:`RankingSettings`), ``>= 0``.
    confidence: ranking only: an observed pair weighs ``1 +
      confidence·g(rating)``, ``>= 0`` (0: every observed pair alike); None:
      1 for ratings, 0 for counts.
    confidence_transform: ranking only: ``g``, ``"linear"`` (``g(r) = r``),
      ``"log"`` (``log(1 + r)``, for counts) or ``"auto"`` (the default:
      ``"log"`` when the values look like counts, none below 0 and one above
      10); :class:`RankingSettings`.
    samples, burn_in, max_rank, implicit: ``solver="gibbs"`` only: sweeps
      averaged, sweeps discarded first, the saved model's rank bound, the
      implicit-feedback terms (:class:`mfjax.settings.GibbsSettings`).
    validation_data: optional ``Ratings``: each model keeps its params of lowest
      validation RMSE, with early stopping after ``patience`` epochs if given.
    scale: ``(lo, hi)``: predictions clipped to it when scoring validation.
    progress: a tqdm bar per epoch.
    one_device: train on the default device only, even when there are several.

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
    >>> bayes = mfjax.fit(jax.random.key(1), ratings, solver="gibbs", rank=4,
    ...                   samples=5, burn_in=2)
    >>> bayes.best_params.user_factors.shape, bayes.members.losses.shape
    ((60, 20), (1, 7))
  """
  settings = dict(
    rank=rank, steps=steps, learning_rate=learning_rate, l2=l2, l2_bias=l2_bias,
    batch_size=batch_size, ensemble=ensemble, alpha0=alpha0, confidence=confidence,
    confidence_transform=confidence_transform, samples=samples, burn_in=burn_in,
    max_rank=max_rank, implicit=implicit,
  )  # fmt: skip
  fit_plan = plan(
    key, ratings, objective=objective, solver=solver, validation_data=validation_data,
    patience=patience, scale=scale, progress=progress, one_device=one_device,
    **settings,
  )  # fmt: skip
  result = fit_plan.run()
  if validation.is_concrete(result.best_params.user_factors):
    _, note = kept_rank(result.best_params, fit_plan.settings)
    if note:
      warnings.warn(note, UserWarning, stacklevel=2)
  return result


def kept_rank(
  params: Params, settings: Any, l2_name: str = "l2"
) -> tuple[int, str | None]:
  """``(effective rank, note)`` of a fit's params: how many factor dimensions
  carry weight (:func:`mfjax.core.metrics.effective_rank`), and what to tell
  the user when that is 1 or 0 of a larger rank (else None). :func:`fit` warns
  with the note and ``mfjax fit`` reports both. Fits without an ``l2`` (Gibbs)
  get no note, nor do factors that hold NaN (effective rank -1) or a fit
  asked for rank 1.

  Args:
    params: the fitted (concrete) :class:`mfjax.Params`.
    settings: the fit's settings (``FitPlan.settings``).
    l2_name: how the caller spells the setting (``--l2`` on the command line).
  """
  rank = params.user_factors.shape[1]  # An ensemble's: rank times ensemble.
  kept = int(metrics.effective_rank(params))
  asked = getattr(settings, "rank", rank)
  if not 0 <= kept <= 1 or asked < 2 or not hasattr(settings, "l2"):
    return kept, None
  return kept, (
    f"the fitted factors keep {kept} of their {rank} dimensions: the others "
    f"shrank to zero, so every user's list is nearly the same. A smaller "
    f"{l2_name} keeps more (this fit's is {float(settings.l2):g}, the default "
    f"{type(settings)().l2:g}), unless the data hold no more structure."
  )
