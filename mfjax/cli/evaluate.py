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
      "test rating is >= --threshold), next to a most-popular baseline. Each "
      "user's training items are left out of its list: those of --train, else "
      "the training pairs saved in the model, as recommend leaves them out."
    ),
  )
  ev.add_argument("model", metavar="MODEL", help="a model file from fit --save")
  ev.add_argument("test", metavar="TEST", help="the test ratings file")
  ev.add_argument(
    "--train",
    metavar="FILE",
    help="the training file: its items are left out of each user's list, and "
    "it gives the most-popular baseline (default: the model's saved training "
    "pairs, if it has them)",
  )
  ev.add_argument(
    "-k",
    type=options.positive,
    default=None,
    help="list length (default 10, or all items when the model has fewer)",
  )
  ev.add_argument(
    "--threshold",
    type=options.finite_float,
    default=None,
    help="a test rating >= this is relevant (default 4, or the one value when "
    "every test rating holds it)",
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
  if len(maps.users) == 0:
    raise ValueError(f"the model {args.model} has no users, so no rating to score.")
  test, test_maps = common.load_ratings(args.test, id_maps=maps)
  if len(test) == 0:
    raise ValueError(f"{args.test} has no ratings to score.")
  if args.k is None:
    args.k = min(10, len(maps.items))
  if args.k > len(maps.items):
    raise ValueError(f"-k must be at most the model's {len(maps.items)} items.")
  if args.train:
    train, source = common.load_ratings(args.train, id_maps=maps)[0], args.train
  elif model.rated is not None:  # As recommend: the saved training pairs.
    from mfjax.serving.model import pairs_as_ratings

    n_users, n_items = len(maps.users), len(maps.items)
    train, source = pairs_as_ratings(model.rated, n_users, n_items), "model"
  else:
    train = source = None
  threshold = common.relevance_threshold(args.threshold, test)
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
    report.update(common.ranking_report(params, train, test, threshold, args.k, prefix))
  report["threshold"] = threshold
  report["train_excluded"] = train is not None
  report["train_source"] = source
  common.print_report(report)
  if train is None:
    print(
      "note: the model has no training pairs (saved --no-rated) and no --train "
      "was given, so users' training items are not left out of their lists."
    )
  common.note_unranked(report, threshold)
  if model.objective == "ranking":
    print(
      "RMSE and MAE do not apply: a ranking model's scores order items, they "
      "are not ratings."
    )
  if args.json:
    common.emit_json(args, report)
  return 0
