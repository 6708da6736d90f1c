"""``mfjax similar``: the items nearest an item in a saved model."""

from __future__ import annotations

from mfjax.cli import common, options

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
  """Registers ``mfjax similar``."""
  sim = sub.add_parser(
    "similar",
    help="the items nearest an item in a saved model",
    description=(
      "List the N items whose factors are closest to ITEM's (cosine similarity) "
      "in a model saved by `mfjax fit --save`, in raw ids, with titles when an "
      "item file is given."
    ),
  )
  sim.add_argument("model", metavar="MODEL", help="a model file from fit --save")
  sim.add_argument("--item", metavar="RAW_ID", required=True, help="the item's id")
  sim.add_argument(
    "-n",
    type=options.positive,
    default=None,
    help="how many items (default 10, or all the others when the model has fewer)",
  )
  sim.add_argument(
    "--items", metavar="FILE", help="item titles: MovieLens u.item or movies.csv"
  )
  sim.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )


def run(args) -> int:
  """``mfjax similar``: the items nearest an item, by cosine of their factors."""
  model = common.load_model(args.model)
  raw = common.raw_id(model.id_maps.items, args.item)
  if raw is None or int(model.id_maps.item_index([raw])[0]) < 0:
    raise ValueError(f"item {args.item!r} is not in the model {args.model}.")
  n = min(10, len(model.id_maps.items) - 1) if args.n is None else args.n
  if n < 1:
    raise ValueError(f"the model {args.model} has no item but {args.item!r}.")
  items, cosines = model.similar_items(raw, n)
  raw_items = [i.item() for i in items]
  titles = common.titles_of(args.items, [raw, *raw_items])
  width = max([len(common.shown(i)) for i in raw_items] + [4])
  about = f" ({common.shown(titles[str(raw)])})" if titles else ""
  print(
    f"the {len(raw_items)} items nearest item {common.shown(args.item)}{about} "
    f"({common.shown(args.model)})"
  )
  print(f"{'rank':>4}  {'item':>{width}}  cosine  {'title' if titles else ''}".rstrip())
  for rank, (item, cosine) in enumerate(zip(raw_items, cosines, strict=True), 1):
    title = common.shown(titles[str(item)]) if titles else ""
    item = common.shown(item)
    print(f"{rank:>4}  {item:>{width}}  {cosine:6.3f}  {title}".rstrip())
  if args.json:
    report = {"item": raw, "items": raw_items, "cosines": [float(c) for c in cosines]}
    if titles:
      report["titles"] = [titles[str(i)] for i in raw_items]
    common.emit_json(args, report)
  return 0
