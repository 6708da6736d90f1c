"""``mfjax cv``: k-fold cross-validation of the tuned fit on a ratings file."""

from __future__ import annotations

from mfjax.cli import common, options

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
  """Registers ``mfjax cv``."""
  from mfjax.settings import FitSettings

  cv = sub.add_parser(
    "cv",
    help="cross-validate the tuned fit on a ratings file",
    description=(
      "Split FILE into --folds parts; fit the tuned default on all parts but one "
      "and score the one held out, for each part in turn. Prints per-fold RMSE "
      "and MAE (or, with --objective ranking, precision, recall, NDCG, MAP, hit "
      "rate and coverage at 10) with fit and compile seconds, mean and std."
    ),
  )
  cv.add_argument("train", metavar="FILE", help="the ratings file")
  cv.add_argument(
    "--folds", type=options.positive, default=5, help="how many folds, >= 2 (default 5)"
  )
  cv.add_argument(
    "--objective",
    choices=("rating", "ranking"),
    default="rating",
    help="rating: RMSE and MAE; ranking: top-10 list metrics (default rating)",
  )
  options.add_scale(cv)
  options.add_solver(cv)
  options.add_settings(cv, FitSettings())
  options.add_gibbs_settings(cv)
  options.add_ranking_settings(cv)
  cv.add_argument(
    "--threshold",
    type=options.finite_float,
    default=None,
    help="ranking: a held-out rating >= this is relevant (default 4, or the "
    "one value when every rating holds it)",
  )
  cv.add_argument(
    "--seed",
    type=options.seed,
    default=0,
    help="seed of the split and fits (default 0)",
  )
  options.add_allow_divergence(cv)
  cv.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )


def run(args) -> int:
  """``mfjax cv``: the tuned fit, cross-validated on a ratings file."""
  import mfjax
  from mfjax.settings import SETTINGS

  ranking = args.objective == "ranking"
  common.check_objective_options(args)
  if args.folds < 2:
    raise ValueError(f"--folds must be at least 2; got {args.folds}.")
  ratings, maps = common.load_ratings(
    args.train, scale=args.scale, columns=args.columns, show_columns=True
  )
  if args.folds > len(ratings):
    raise ValueError(
      f"--folds must be at most the {len(ratings)} ratings of {args.train}."
    )
  names = SETTINGS[common.solver(args)]._fields
  settings = {n: getattr(args, n, None) for n in names}
  settings = {n: v for n, v in settings.items() if v is not None}
  threshold = common.relevance_threshold(args.threshold, ratings)
  extra = {"threshold": threshold} if ranking else {"scale": maps.scale}
  with common.still_working(f"mfjax cv: fitting {args.folds} folds"):
    result = mfjax.cross_validate(
      ratings, folds=args.folds, seed=args.seed, objective=args.objective,
      solver=args.solver, **extra, **settings,
    )  # fmt: skip
  print(
    f"{args.folds}-fold cross-validation of the {args.objective} fit on "
    f"{args.train} ({len(ratings)} ratings)"
  )
  print(result.table())
  if args.json:
    report = {"objective": args.objective, "folds": args.folds}
    for name, values in result.metrics.items():
      report[name] = [float(v) for v in values]
      report[f"{name}_mean"] = float(values.mean())
      report[f"{name}_std"] = float(values.std())
    report["fit_seconds"] = [float(v) for v in result.fit_seconds]
    report["compile_seconds"] = [float(v) for v in result.compile_seconds]
    report["settings"] = result.settings
    report["failures"] = list(result.failures)
    common.emit_json(args, report)
  failed = [(j, f) for j, f in enumerate(result.failures, 1) if f is not None]
  if failed:
    j, failure = failed[0]
    more = f" (and {len(failed) - 1} more folds)" if len(failed) > 1 else ""
    common.check_training(args, f"fold {j}{more}: {failure}")
  return 0
