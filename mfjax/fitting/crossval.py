"""Cross-validation: the tuned fit on ``k`` folds, with per-fold metrics and times.

:func:`cross_validate` splits the ratings with :func:`mfjax.kfold`, runs
:func:`mfjax.fit`'s plan (:func:`mfjax.fitting.plan.plan`) on each training
part and scores the held-out part:
RMSE and MAE for the rating objective, precision, recall, NDCG, MAP, hit rate
and coverage at ``k`` for the ranking objective. The training parts are padded
with weight-0 entries to one size, so the program compiles once for all folds
(the first fold's ``compile_seconds``; the others' are 0).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import numpy as np

from mfjax import validation
from mfjax.core import metrics, objectives, training
from mfjax.data import splits as data_splits
from mfjax.fitting import buckets, ensemble, plan
from mfjax.serving import topk
from mfjax.settings import OBJECTIVES, RankingSettings, check_names, solver_for
from mfjax.types import Ratings

__all__ = ["CVResult", "cross_validate", "padded", "ranking_scores"]

_RATING_METRICS = ("rmse", "mae")
_RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")


class CVResult(NamedTuple):
  """What :func:`cross_validate` returns.

  Attributes:
    objective: ``"rating"`` or ``"ranking"``.
    metrics: metric name to a ``[folds]`` NumPy array of its per-fold values
      (``rmse``, ``mae``; or ``precision``, ``recall``, ``ndcg``, ``map``,
      ``hit_rate``, ``coverage`` at ``k``).
    fit_seconds: ``[folds]``: each fold's fit, compiled program run only.
    compile_seconds: ``[folds]``: the first fold's compilation, then 0.
    n_train, n_test: ``[folds]`` ratings in each part.
    settings: the fit's settings (a dict).
    failures: ``[folds]``: what went wrong in each fold's fit
      (:func:`mfjax.core.training.failure`: a divergence, or no progress), or None.
  """

  objective: str
  metrics: dict
  fit_seconds: np.ndarray
  compile_seconds: np.ndarray
  n_train: np.ndarray
  n_test: np.ndarray
  settings: dict
  failures: tuple = ()

  def table(self) -> str:
    """Per-fold values with their mean and std, as Surprise prints them."""
    rows = {name.upper().replace("_", " "): v for name, v in self.metrics.items()}
    rows |= {"Fit time (s)": self.fit_seconds, "Compile (s)": self.compile_seconds}
    folds = len(self.fit_seconds)
    head = ["", *(f"Fold {j + 1}" for j in range(folds)), "Mean", "Std"]
    lines = ["  ".join(f"{h:>12}" for h in head)]
    for label, values in rows.items():
      cells = [*values, np.mean(values), np.std(values)]
      lines.append(f"{label:>12}  " + "  ".join(f"{v:>12.4f}" for v in cells))
    return "\n".join(lines)


def padded(train: Ratings, size: int) -> Ratings:
  """``train`` with weight-0 entries up to ``size`` ratings: the same loss in
  every objective, and one shape for training parts of different sizes
  (:func:`mfjax.fitting.buckets.pad_entries`, its arrays then on the default
  device)."""
  return jax.device_put(buckets.pad_entries(train, size))


def ranking_scores(params, train, test, *, k: int = 10, threshold: float = 4.0):
  """Top-``k`` metrics of ``params`` on ``test``, ``train``'s items left out.

  Every user of ``test`` with an index (unknown users, -1, have no factors) gets
  a list from :func:`mfjax.recommend`; returns ``{name: float}`` of precision,
  recall, NDCG, MAP and hit rate (:func:`mfjax.ranking_metrics`), ``coverage``
  (distinct items listed / items) and ``n_users`` (users with a relevant item).
  With no such user the metrics are NaN and ``n_users`` is 0.
  """
  users = np.unique(np.asarray(test.users))
  users = users[users >= 0].astype(np.int32)
  if not users.size:  # No test user is known: no list to score.
    return {name: float("nan") for name in _RANKING_METRICS[:-1]} | {
      "coverage": 0.0,
      "n_users": 0,
    }
  top, _ = topk.recommend(params, users, k, exclude=train)
  ranked = metrics.ranking_metrics(top, users, test, k=k, threshold=threshold)
  top = np.asarray(top)
  out = {name: float(getattr(ranked, name)) for name in _RANKING_METRICS[:-1]}
  n_items = params.item_factors.shape[0]
  out["coverage"] = len(np.unique(top[top >= 0])) / n_items
  return out | {"n_users": int(ranked.n_users)}


def _scores(objective, params, train, test, scale, k, threshold) -> dict:
  if objective == "rating":
    return {
      "rmse": float(metrics.rmse(params, test, scale=scale)),
      "mae": float(metrics.mae(params, test, scale=scale)),
    }
  scores = ranking_scores(params, train, test, k=k, threshold=threshold)
  return {name: scores[name] for name in _RANKING_METRICS}


def cross_validate(
  ratings: Ratings,
  *,
  folds: int = 5,
  seed: int = 0,
  objective: str = "rating",
  solver: str | None = None,
  scale: tuple[float, float] | None = None,
  k: int = 10,
  threshold: float = 4.0,
  **settings: Any,
) -> CVResult:
  """``k``-fold cross-validation of :func:`mfjax.fit`.

  Args:
    ratings: all the ratings (:class:`mfjax.Ratings`).
    folds: how many folds (``>= 2``): each rating is held out once.
    seed: seed of the split (:func:`mfjax.kfold`) and of each fit's key.
    objective: ``"rating"`` (RMSE, MAE) or ``"ranking"`` (ranking metrics).
    solver: as :func:`mfjax.fit`: None for the objective's default.
    scale: ``(lo, hi)`` predictions are clipped to for RMSE and MAE (rating).
    k, threshold: ranking: list length, and the held-out rating that counts as
      relevant; each list leaves out the fold's training items.
    **settings: fit settings (``rank``, ``steps``, ``l2``, ...: the fields of
      :class:`mfjax.FitSettings`, :class:`mfjax.settings.GibbsSettings` or
      :class:`mfjax.settings.RankingSettings`, by the solver);
      the rest take the tuned defaults.

  Returns:
    A :class:`CVResult`; ``print(result.table())`` shows it.
  """
  validation.check_choice("objective", objective, OBJECTIVES)
  validation.check_ratings("ratings", ratings)
  validation.check_something_to_train("ratings", ratings)
  check_names(solver_for(objective, solver), settings)  # Before any split or fit.
  if objective == "ranking":  # Decided once, on all the ratings: one program
    # (compiled for the first fold) serves every fold.
    given = {n: settings.get(n) for n in ("confidence", "confidence_transform")}
    chosen = objectives.resolve_confidence(
      RankingSettings()._replace(**{n: v for n, v in given.items() if v is not None}),
      ratings,
    )
    settings = dict(
      settings,
      confidence=chosen.confidence,
      confidence_transform=chosen.confidence_transform,
    )
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  k = validation.check_positive_int("k", k)
  if k > ratings.n_items:
    raise ValueError(f"k must be at most n_items = {ratings.n_items}; got {k}.")
  # One fold at a time: the list of every fold's copy of the ratings took
  # folds × ratings memory (40,000 folds of 80k ratings: out of memory).
  folds = validation.check_positive_int("folds", folds)
  splits = data_splits.kfold(ratings, folds, seed=seed)
  # The largest training part: all but the smallest fold (array_split's parts
  # hold n // folds or one more).
  n = len(ratings) - ratings.n_padding
  size = n - n // folds
  compiled = None
  rows, fit_s, compile_s, failures, n_train, n_test = [], [], [], [], [], []
  for j, (train, test) in enumerate(splits):
    n_train.append(len(train))
    n_test.append(len(test))
    key = jax.random.fold_in(jax.random.key(seed), j)
    # The plan mfjax.fit and mfjax fit run, padded to one shape for every fold.
    fold = plan.plan(
      key,
      train,
      objective=objective,
      solver=solver,
      scale=scale,
      min_entries=size,
      **settings,
    )
    start = time.perf_counter()
    if compiled is None:
      compiled = ensemble.compile_program(fold.program, fold.inputs)
      compile_s.append(time.perf_counter() - start)
    else:
      compile_s.append(0.0)
    start = time.perf_counter()
    result = fold.finish(jax.block_until_ready(compiled(*fold.inputs)))
    fit_s.append(time.perf_counter() - start)
    failures.append(training.failure(result.members))
    rows.append(
      _scores(objective, result.best_params, train, test, scale, k, threshold)
    )
  used = fold.settings._asdict()
  return CVResult(
    objective=objective,
    metrics={name: np.array([r[name] for r in rows]) for name in rows[0]},
    fit_seconds=np.array(fit_s),
    compile_seconds=np.array(compile_s),
    n_train=np.array(n_train),
    n_test=np.array(n_test),
    settings=used,
    failures=tuple(failures),
  )
