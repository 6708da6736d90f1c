"""The settings of the tuned fits and their defaults, in one place.

:class:`FitSettings` (the rating ensemble, solver ``"adam"``),
:class:`GibbsSettings` (the Bayesian rating fit, solver ``"gibbs"``) and
:class:`RankingSettings` (the iALS ranking fit, solver ``"als"``) are plain
NamedTuples with no code behind them, so that the
fit (:mod:`mfjax.fitting`), serving (fold-in regularises as the fit does), the
model files and the command line read the same defaults without importing one
another. The defaults were tuned on MovieLens 100k validation splits carved
from the base files (``benchmarks/tune_movielens.py``,
``benchmarks/ranking_movielens.py``; figures in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
  "OBJECTIVES",
  "SOLVERS",
  "DEFAULT_SOLVER",
  "FitSettings",
  "GibbsSettings",
  "RankingSettings",
  "SETTINGS",
  "REFUSED",
  "solver_for",
  "refused",
  "check_names",
]

OBJECTIVES = ("rating", "ranking")
"""What :func:`fit` can learn: ratings (RMSE) or top-N lists (ranking)."""

SOLVERS = {"rating": ("adam", "gibbs"), "ranking": ("als",)}
"""How each objective can be fitted: ``"adam"`` an ensemble of mini-batch Adam
fits, ``"gibbs"`` Bayesian MF by Gibbs sampling, ``"als"`` alternating least
squares."""

DEFAULT_SOLVER = {"rating": "adam", "ranking": "als"}
"""The solver of each objective when none is named."""


class FitSettings(NamedTuple):
  """The settings of :func:`fit`; the defaults are the tuned ones.

  Attributes:
    rank: factors per model.
    steps: passes over the data (epochs).
    learning_rate: Adam's learning rate.
    l2: L2 weight of the factors.
    l2_bias: L2 weight of the biases.
    batch_size: ratings per mini-batch. :func:`mfjax.fit` given no
      ``batch_size`` takes ``mfjax.fitting.buckets.batch_size_for(n,
      minimum=batch_size)``: this one up to ``24·batch_size`` (padded)
      ratings, as on MovieLens 100k, and 1/24 of the padded ratings beyond.
    ensemble: models averaged; the fitted model has rank ``ensemble·rank``.
  """

  rank: int = 12
  steps: int = 10
  learning_rate: float = 0.02
  l2: float = 8.0
  l2_bias: float = 1.0
  batch_size: int = 4096
  ensemble: int = 8


class RankingSettings(NamedTuple):
  """The settings of ``fit(..., objective="ranking")``; the defaults are tuned.

  Attributes:
    rank: factors of the model.
    steps: alternating passes (each solves every user's, then every item's row).
    l2: L2 weight of the factors, frequency-scaled
      (:class:`mfjax.core.objectives.Ranking`).
    alpha0: weight of the all-pairs term per unit of density
      (``objectives.Ranking(per_density=True)``): about ``alpha0`` times the
      number of ratings in all, whatever the number of items.
    nu: exponent of the frequency scaling of the L2.
    confidence: a higher rating counts ``1 + confidence·g(r)`` (0: all
      alike); None: the transform's default, 1 for ratings and 0 for counts
      (:data:`mfjax.core.objectives.CONFIDENCE_TRANSFORMS`).
    cg_steps: conjugate-gradient steps per row and half pass.
    confidence_transform: ``g``: ``"linear"`` (``g(r) = r``), ``"log"``
      (``log(1 + r)``, for counts) or ``"auto"``: ``"log"`` when the training
      values look like counts (none below 0, one above 10:
      :func:`mfjax.core.objectives.looks_like_counts`), else ``"linear"``.
      ``mfjax fit`` reports what it chose.
  """

  rank: int = 32
  # 8 passes of 3 CG steps: within 0.001 NDCG@10 of 10 passes on MovieLens
  # validation splits, in 0.6 of the time (benchmarks/RESULTS.md, "Ranking").
  steps: int = 8
  l2: float = 0.01
  # Per unit of density (Ranking.per_density): 60 x MovieLens 100k's 0.05 is the
  # 3 tuned there, and the same 60 carries to 10x the items (RESULTS.md).
  alpha0: float = 60.0
  nu: float = 1.0
  confidence: float | None = None
  cg_steps: int = 3
  confidence_transform: str = "auto"


class GibbsSettings(NamedTuple):
  """The settings of ``fit(..., solver="gibbs")``: Bayesian MF by Gibbs sampling
  (:mod:`mfjax.core.gibbs`); no learning rate and no L2 to tune, the priors
  are sampled. The defaults were chosen on MovieLens 100k validation splits
  (``benchmarks/tune_gibbs.py``; ``benchmarks/RESULTS.md``, "Gibbs"): rank 6
  to 8 validated best (10 and 16 worse); the implicit terms are off by default
  because their size is bounded, though ``implicit="both"`` validated 0.014
  better at twice the time.

  Attributes:
    rank: factors per draw.
    samples: sweeps averaged into the model, after ``burn_in``.
    burn_in: sweeps discarded first.
    max_rank: bound on the saved model's rank: while ``samples·rank`` fits,
      the draws' factors side by side (exact); beyond, the rank-``max_rank``
      truncated SVD of the posterior mean, from a sketch
      (:func:`mfjax.core.gibbs.sample`).
    implicit: the implicit-feedback terms: ``"none"``, ``"users"`` (SVD++: a
      user's row plus a factor per item it rated), ``"items"`` (the same for
      an item over its raters, "flipped") or ``"both"``
      (:data:`mfjax.core.gibbs.IMPLICIT`; at most
      :data:`mfjax.core.gibbs.IMPLICIT_MAX` rated rows per term).
  """

  rank: int = 8
  samples: int = 200
  burn_in: int = 20
  max_rank: int = 64
  implicit: str = "none"


SETTINGS = {"adam": FitSettings, "gibbs": GibbsSettings, "als": RankingSettings}
"""The settings (and their defaults) of each solver."""

REFUSED = {
  "als": (
    "learning_rate",
    "l2_bias",
    "batch_size",
    "ensemble",
    "validation_data",
    "patience",
    "samples",
    "burn_in",
    "max_rank",
    "implicit",
  ),
  "adam": (
    "alpha0",
    "confidence",
    "confidence_transform",
    "samples",
    "burn_in",
    "max_rank",
    "implicit",
  ),
  "gibbs": (
    "steps",
    "learning_rate",
    "l2",
    "l2_bias",
    "batch_size",
    "ensemble",
    "validation_data",
    "patience",
    "alpha0",
    "confidence",
    "confidence_transform",
  ),
}
"""The settings each solver does not take: given, they are an error."""


def solver_for(objective: str, solver: str | None) -> str:
  """The solver named, or the objective's default; a ValueError for a solver
  that cannot fit the objective.

  Examples:
    >>> solver_for("ranking", None), solver_for("rating", "gibbs")
    ('als', 'gibbs')
  """
  if solver is None:
    return DEFAULT_SOLVER[objective]
  if solver not in SOLVERS[objective]:
    every = sorted({s for names in SOLVERS.values() for s in names})
    if solver not in every:
      raise ValueError(f"solver must be one of {every}; got {solver!r}.")
    raise ValueError(
      f"solver={solver!r} cannot fit objective={objective!r}; it takes "
      f"{', '.join(map(repr, SOLVERS[objective]))}."
    )
  return solver


def refused(solver: str, given: dict) -> str | None:
  """The first name of :data:`REFUSED` ``[solver]`` given (not None) in
  ``given``, or None: what :func:`mfjax.fitting.plan.plan` refuses and the
  command line names as a flag.

  Examples:
    >>> refused("als", {"rank": 8, "batch_size": 512})
    'batch_size'
    >>> refused("adam", {"rank": 8}) is None
    True
  """
  return next((n for n in REFUSED[solver] if given.get(n) is not None), None)


def check_names(solver: str, names, *, also=()) -> None:
  """Raises a ``TypeError`` naming the first of ``names`` that is not a setting
  of ``solver`` (a field of :data:`SETTINGS` ``[solver]``), nor one of ``also``.

  Examples:
    >>> check_names("adam", ["rank", "l2"])
    >>> try:
    ...   check_names("adam", ["nu"])
    ... except TypeError as e:
    ...   print(str(e).split(";")[0])
    'nu' is not a setting of solver='adam'
  """
  fields = SETTINGS[solver]._fields
  unknown = sorted(set(names) - set(fields) - set(also))
  if unknown:
    raise TypeError(
      f"{unknown[0]!r} is not a setting of solver={solver!r}; they are "
      f"{', '.join(fields)}."
    )
