"""``mfjax evaluate``: a saved model's RMSE, MAE and top-k metrics on a test
file, next to a most-popular baseline.
"""

from __future__ import annotations

from mfjax.cli import common, options

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
  """Registers ``mfjax evaluate``."""
  ev = sub.add_parser(
    "evaluate",
    help="score a saved model on a test file",
    description=(
      "RMSE and MAE of a saved model's predictions on TEST, and precision, recall, "
      "NDCG, MAP and hit rate of its top-k lists (an item is relevant when its "
      "test rating is >= --threshold), next to a most-popular baseline when "
      "--train is given."
    ),
  )
  ev.add_argument("model", metavar="MODEL", help="a model file from fit --save")
  ev.add_argument("test", metavar="TEST", help="the test ratings file")
  ev.add_argument(
    "--train",
    metavar="FILE",
    help="the training file: its items are left out of each user's list, and "
    "it gives the most-popular baseline",
  )
  ev.add_argument(
    "-k", type=options.positive, default=10, help="list length (default 10)"
  )
  ev.add_argument(
    "--threshold",
    type=options.finite_float,
    default=4.0,
    help="a test rating >= this is relevant (default 4)",
  )
  ev.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )


def run(args) -> int:
  """``mfjax evaluate``: a saved model's scores on a test file."""
  import mfjax

  model = common.load_model(args.model)
  maps = model.id_maps
  scale = model.scale
  test, test_maps = common.load_ratings(args.test, id_maps=maps)
  if len(test) == 0:
    raise ValueError(f"{args.test} has no ratings to score.")
  if args.k > len(maps.items):
    raise ValueError(f"-k must be at most the model's {len(maps.items)} items.")
  train = common.load_ratings(args.train, id_maps=maps)[0] if args.train else None
  report = {"objective": model.objective}
  if model.objective == "rating":
    report.update(
      test_rmse=float(mfjax.rmse(model.params, test, scale=scale)),
      test_mae=float(mfjax.mae(model.params, test, scale=scale)),
    )
  report.update(n_test=len(test), n_unknown_test=int(test_maps.n_unknown))
  models = {"": model.params}
  if train is not None:
    models["popularity_"] = mfjax.popularity_params(train)
  for prefix, params in models.items():
    report.update(
      common.ranking_report(params, train, test, args.threshold, args.k, prefix)
    )
  report["train_excluded"] = train is not None
  common.print_report(report)
  common.note_unranked(report, args.threshold)
  if model.objective == "ranking":
    print(
      "RMSE and MAE do not apply: a ranking model's scores order items, they "
      "are not ratings."
    )
  if args.json:
    common.emit_json(args, report)
  return 0
