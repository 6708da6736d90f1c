"""The option types and option groups that several commands share.

The argparse ``type=`` functions turn an argument's text into its value or
raise :class:`argparse.ArgumentTypeError` with the one line that ``mfjax``
prints. The ``add_*`` functions add a group of options to a command's parser.
"""

from __future__ import annotations

import argparse

__all__ = [
  "integer",
  "seed",
  "positive",
  "finite_float",
  "positive_float",
  "nonnegative_float",
  "rating_scale",
  "column_roles",
  "fraction",
  "add_scale",
  "add_settings",
  "add_ranking_settings",
  "add_allow_divergence",
  "add_distributed",
]


def integer(text: str) -> int:
  """An int, for argparse."""
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def seed(text: str) -> int:
  """A random seed, an int in [0, 2**32), for argparse."""
  value = integer(text)
  if not 0 <= value < 2**32:
    raise argparse.ArgumentTypeError(f"must be in [0, 2**32); got {value}")
  return value


def positive(text: str) -> int:
  """An int >= 1, for argparse."""
  value = integer(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an int >= 1; got {value}")
  return value


def nonnegative(text: str) -> int:
  """An int >= 0, for argparse."""
  value = integer(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be an int >= 0; got {value}")
  return value


def finite_float(text: str) -> float:
  """A finite float, for argparse."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
  if value != value or value in (float("inf"), float("-inf")):
    raise argparse.ArgumentTypeError(f"must be finite; got {text}")
  return value


def positive_float(text: str) -> float:
  """A finite float > 0, for argparse."""
  value = finite_float(text)
  if value <= 0:
    raise argparse.ArgumentTypeError(f"must be > 0; got {text}")
  return value


def nonnegative_float(text: str) -> float:
  """A finite float >= 0, for argparse."""
  value = finite_float(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be >= 0; got {text}")
  return value


def rating_scale(text: str) -> tuple[float, float]:
  """``LO,HI`` (``--scale``) as a pair of floats, LO < HI, for argparse."""
  parts = text.split(",")
  if len(parts) != 2:
    raise argparse.ArgumentTypeError(f"must be LO,HI (e.g. 1,5); got {text!r}")
  lo, hi = (finite_float(part) for part in parts)
  if not lo < hi:
    raise argparse.ArgumentTypeError(f"must have LO < HI; got {text!r}")
  return lo, hi


def column_roles(text: str) -> tuple[str | None, ...]:
  """``--columns``: a role (or None, skipped) for each column, for argparse."""
  from mfjax.data.textparse import ROLES

  roles = tuple(None if part in ("-", "") else part for part in text.split(","))
  unknown = [r for r in roles if r is not None and r not in ROLES]
  if unknown:
    raise argparse.ArgumentTypeError(
      f"{unknown[0]!r} is not a role; give {', '.join(ROLES)} or - (skip) for "
      f"each column, in file order; got {text!r}"
    )
  return roles


def fraction(text: str) -> float:
  """A float in (0, 1), for argparse."""
  value = finite_float(text)
  if not 0 < value < 1:
    raise argparse.ArgumentTypeError(f"must lie in (0, 1); got {text}")
  return value


def add_scale(parser) -> None:
  """How to read the ratings files: the options ``--scale`` and ``--columns``."""
  parser.add_argument(
    "--scale",
    type=rating_scale,
    metavar="LO,HI",
    help="the rating scale: a rating outside it is an error naming its line "
    "(default: the lowest and highest ratings of the training file; a negative "
    "LO as --scale -10,10 or --scale=-10,10)",
  )
  parser.add_argument(
    "--columns",
    type=column_roles,
    metavar="ROLES",
    help="what each column of the ratings files is, in file order: user, item, "
    "rating, timestamp or - (skipped), e.g. item,user,rating (default: by the "
    "header's names, else user,item,rating[,timestamp])",
  )


def add_settings(fit, d) -> None:
  """The :class:`mfjax.settings.FitSettings` options of ``fit`` and ``cv``.

  Each defaults to None: the fit's own default, which its help shows.
  """
  from mfjax.settings import RankingSettings

  options = (
    (("--rank",), "rank", positive, "latent factors"),
    (("--steps", "--epochs"), "steps", positive, "passes over the data"),
    (("--lr",), "learning_rate", positive_float, "Adam learning rate"),
    (("--l2",), "l2", nonnegative_float, "L2 weight of the factors"),
    (("--l2-bias",), "l2_bias", nonnegative_float, "L2 weight of the biases"),
    (("--batch-size",), "batch_size", positive, "mini-batch size"),
    (
      ("--ensemble", "--seeds"),
      "ensemble",
      positive,
      "models averaged, trained in one vmap",
    ),
  )
  ranking = RankingSettings()
  for flags, name, kind, text in options:
    default = f"{getattr(d, name)}"
    if name == "batch_size":
      default += ", or 1/24 of the ratings padded to their bucket if more"
    if name in ranking._fields:
      default += f"; ranking {getattr(ranking, name)}"
    fit.add_argument(
      *flags, dest=name, type=kind, default=None, help=f"{text} (default {default})"
    )


def add_solver(parser) -> None:
  """``--solver``, of ``fit`` and ``cv``."""
  from mfjax.settings import DEFAULT_SOLVER, SOLVERS

  parser.add_argument(
    "--solver",
    choices=sorted({s for names in SOLVERS.values() for s in names}),
    default=None,
    help="how to fit: adam (an ensemble of Adam fits) or gibbs (Bayesian MF by "
    "Gibbs sampling, no learning rate or L2 to tune) for ratings, als for "
    f"ranking (default {DEFAULT_SOLVER['rating']}; ranking "
    f"{DEFAULT_SOLVER['ranking']})",
  )


def add_gibbs_settings(parser) -> None:
  """The options of ``fit`` and ``cv`` that only ``--solver gibbs`` takes."""
  from mfjax.settings import GibbsSettings

  d = GibbsSettings()
  parser.add_argument(
    "--samples",
    type=positive,
    default=None,
    help=f"gibbs: sweeps averaged into the model (default {d.samples}); "
    f"--rank defaults to {d.rank}",
  )
  parser.add_argument(
    "--burn-in",
    dest="burn_in",
    type=nonnegative,
    default=None,
    help=f"gibbs: sweeps discarded first (default {d.burn_in})",
  )
  parser.add_argument(
    "--max-rank",
    dest="max_rank",
    type=positive,
    default=None,
    help="gibbs: bound on the saved model's rank: the posterior mean's "
    f"truncated SVD beyond it (default {d.max_rank})",
  )
  from mfjax.core.gibbs import IMPLICIT

  parser.add_argument(
    "--implicit",
    choices=IMPLICIT,
    default=None,
    help="gibbs: implicit-feedback terms: users (SVD++: a factor per item a user "
    "rated), items (per user an item was rated by), both, or none "
    f"(default {d.implicit})",
  )


def add_ranking_settings(parser) -> None:
  """The options of ``fit`` and ``cv`` that only the ranking objective takes."""
  from mfjax.settings import RankingSettings

  parser.add_argument(
    "--alpha0",
    type=nonnegative_float,
    default=None,
    help="ranking: weight of the all-pairs term per unit of density, about ALPHA0 "
    f"times the number of ratings (default {RankingSettings().alpha0})",
  )
  parser.add_argument(
    "--confidence",
    type=nonnegative_float,
    default=None,
    help="ranking: an observed pair weighs 1 + CONFIDENCE x g(rating) (default "
    "1 for ratings, 0 for counts)",
  )
  parser.add_argument(
    "--confidence-transform",
    choices=("auto", "linear", "log"),
    default=None,
    help="ranking: g: linear (g(r) = r), log (log(1 + r), for play counts, clicks) "
    "or auto (the default: log when no rating is below 0 and one is above 10)",
  )


def add_allow_divergence(parser) -> None:
  """``--allow-divergence``, of ``fit`` and ``cv``."""
  parser.add_argument(
    "--allow-divergence",
    action="store_true",
    help="a fit that diverges (its loss NaN, inf or 1000x the initial) or never "
    "improves on its initial params exits 1 and saves nothing; with this flag it "
    "keeps the best params, saves them and exits 0",
  )


def add_distributed(parser) -> None:
  """The options that join several processes (``mfjax.distributed``)."""
  parser.add_argument(
    "--coordinator",
    metavar="HOST:PORT",
    help="process 0's address: join --num-processes processes (jax.distributed)",
  )
  parser.add_argument(
    "--num-processes", type=positive, metavar="N", help="how many processes"
  )
  parser.add_argument(
    "--process-id", type=integer, metavar="I", help="this process's index, 0 to N-1"
  )
  parser.add_argument(
    "--distributed",
    choices=("auto",),
    help="auto: join the processes that SLURM, Open MPI or Kubernetes started "
    "(JAX reads them from the environment)",
  )
  parser.add_argument(
    "--process-timeout",
    type=positive,
    metavar="S",
    help="seconds to wait for the other processes to join, and for a silent one "
    "before the others fail (default 60)",
  )
  parser.add_argument(
    "--one-device",
    action="store_true",
    help="train on the first device only (default: all devices of all "
    "processes, the ratings sharded over them)",
  )
