"""``mfjax recommend``: a user's top items from a saved model, or with ``--all``
every user's, written to a CSV file.
"""

from __future__ import annotations

import sys

from mfjax.cli import common, options

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
  """Registers ``mfjax recommend``."""
  rec = sub.add_parser(
    "recommend",
    help="a user's top items from a saved model",
    description=(
      "List the N items with the highest predicted rating for one user of a model "
      "saved by `mfjax fit --save`, in raw ids, with titles when an item file is "
      "given."
    ),
  )
  rec.add_argument("model", metavar="MODEL", help="a model file from fit --save")
  who = rec.add_mutually_exclusive_group(required=True)
  who.add_argument("--user", metavar="RAW_ID", help="the user's id")
  who.add_argument(
    "--all",
    action="store_true",
    help="every user of the model: write user,item,rank,score rows to --output",
  )
  rec.add_argument(
    "--output",
    metavar="FILE",
    help="with --all: the CSV file to write (replaced atomically when complete)",
  )
  rec.add_argument(
    "-n",
    type=options.positive,
    default=None,
    help="how many items (default 10, or all when the model has fewer)",
  )
  rec.add_argument(
    "--items",
    metavar="FILE",
    help="item titles: MovieLens u.item or movies.csv",
  )
  rec.add_argument(
    "--rated",
    metavar="FILE",
    help="a ratings file (usually the training file); the user's items in it "
    "are left out, instead of the training pairs saved in the model",
  )
  rec.add_argument(
    "--ratings",
    metavar="FILE",
    help="ratings of new users (user,item,rating): folded into the model "
    "(no retraining) before --user's list is made",
  )
  rec.add_argument(
    "--fallback",
    choices=("popularity", "none"),
    default="popularity",
    help="a user not in the model gets the most-rated items (popularity, the "
    "default) or an error (none)",
  )
  rec.add_argument(
    "--popularity-weight",
    type=options.nonnegative_float,
    default=None,
    metavar="W",
    help="rating models: order items by predicted rating + W x the scale's width x "
    "log(1 + the item's training ratings), so that an item rated once cannot top "
    "every list (default 0.5; 0: by rating alone)",
  )
  rec.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )


def run(args) -> int:
  """``mfjax recommend``: one user's top items, or every user's with ``--all``."""
  if args.all:
    return _recommend_all(args)
  from mfjax.serving.model import POPULARITY_WEIGHT

  if args.output:
    raise ValueError("--output goes with --all; one user's list is printed.")
  model = _serving_model(args)
  maps = model.id_maps
  raw = common.raw_id(maps.users, args.user)
  known = raw is not None and int(maps.user_index([raw])[0]) >= 0
  if not known and args.fallback == "none":
    raise ValueError(
      f"user {args.user!r} is not in the model {args.model} "
      f"({_id_range(maps.users)}; --fallback none)."
    )
  if not known and model.rated is None:
    raise ValueError(
      f"user {args.user!r} is not in the model, and the popularity fallback needs "
      "the training pairs: pass --rated TRAIN (the model was saved --no-rated)."
    )
  n_items = len(maps.items)
  if args.n is None:
    args.n = min(10, n_items)
  if args.n > n_items:
    raise ValueError(f"-n must be at most the model's {n_items} items; got {args.n}.")
  if known and model.rated is None:  # Said, not silently skipped.
    print(
      "note: the model has no training pairs (saved --no-rated): items the user "
      "rated are not left out, and a rating model's list is by rating alone; "
      "pass --rated TRAIN.",
      file=sys.stderr,
    )
  bonus = _popularity_bonus(model, args.popularity_weight)  # Checked up front.
  weight = 0.0
  if bonus is not None:
    weight = args.popularity_weight or POPULARITY_WEIGHT
  items, scores = model.recommend(
    raw if raw is not None else args.user,
    args.n,
    exclude_rated=model.rated is not None,
    popularity_weight=args.popularity_weight,
  )
  raw_items = [i.item() for i in items]
  scores = [float(v) for v in scores]
  titles = common.titles_of(args.items, raw_items)
  width = max([len(common.shown(i)) for i in raw_items] + [4])
  # A rating model's list shows predicted ratings on the model's scale, as
  # predict gives them (the raw score of a list's first item can pass the top
  # of the scale); a ranking model's scores only order items: said so.
  shown, column = scores, "score"
  if known and model.objective == "rating":  # Model.predict's scale.
    lo, hi = model.scale if model.scale is not None else model.id_maps.scale
    shown = [min(max(v, lo), hi) for v in scores]
    column = "rating"
  _print_heading(args, model, known, len(raw_items), weight)
  header = f"{'rank':>4}  {'item':>{width}}  {column:>6}  {'title' if titles else ''}"
  print(header.rstrip())
  for rank, (item, value) in enumerate(zip(raw_items, shown, strict=True), 1):
    title = common.shown(titles[str(item)]) if titles else ""
    item = common.shown(item)
    print(f"{rank:>4}  {item:>{width}}  {value:6.2f}  {title}".rstrip())
  if args.json:
    report = {"user": raw if known else args.user, "items": raw_items}
    report |= {"scores": scores, "fallback": not known}
    if known and model.objective == "rating":
      report["popularity_weight"] = weight
    if column == "rating":
      report["ratings"] = shown
    if titles:
      report["titles"] = [titles[str(i)] for i in raw_items]
    common.emit_json(args, report)
  return 0


def _popularity_bonus(model, weight):
  """:func:`mfjax.serving.model.popularity_bonus`, its errors worded with the
  flag's name."""
  from mfjax.serving.model import popularity_bonus

  try:
    return popularity_bonus(model, weight)
  except ValueError as e:
    raise ValueError(
      str(e).replace("popularity_weight", "--popularity-weight")
    ) from None


def _print_heading(args, model, known: bool, n: int, weight: float) -> None:
  """The lines above a user's list: whose, and what orders it."""
  if not known:
    print(
      f"user {common.shown(args.user)} is not in the model: the {n} most-rated "
      "items instead (score = training ratings; --fallback none refuses)"
    )
    return
  print(
    f"top {n} items for user {common.shown(args.user)} ({common.shown(args.model)})"
  )
  if model.objective == "ranking":
    print("(a ranking model: its raw scores order the items; they are not ratings)")
  elif weight:
    print(
      f"(ordered by predicted rating + {weight:g} x scale width x log(1 + the "
      "item's training ratings); --popularity-weight 0 orders by rating alone)"
    )


# Users per block of `recommend --all`: memory is bounded by one block's
# [block, n_items] scores, whatever the number of users.
_ALL_BLOCK = 1024
# Users per call of mfjax.recommend (it scores them _ALL_BLOCK at a time): the
# lists of 16,384 users are 1.3 MB at -n 10. Each call's users and excluded
# pairs are padded to a size of few kinds, so that a few compiled programs
# serve every call.
_ALL_CHUNK = 16 * _ALL_BLOCK


def _id_range(ids) -> str:
  """``"943 users, ids 1..943"``, or ``"no users"``."""
  if len(ids) == 0:
    return "no users"
  return f"{len(ids)} users, ids {common.shown(ids[0])}..{common.shown(ids[-1])}"


def _inputs(args):
  """The files ``recommend`` reads, by flag: an output may be none of them."""
  return (
    ("MODEL", args.model),
    ("--rated", args.rated),
    ("--ratings", args.ratings),
    ("--items", args.items),
  )


def _csv_fields(ids) -> list[str]:
  """Raw ids as CSV fields, quoted as the csv module quotes (minimally)."""
  fields = []
  for raw in ids.tolist():
    text = str(raw)
    if any(c in text for c in ',"\r\n'):
      text = '"' + text.replace('"', '""') + '"'
    fields.append(text)
  return fields


def _recommend_all(args) -> int:
  import numpy as np

  from mfjax.io.atomic import atomic_write

  if not args.output:
    raise ValueError("--all needs --output FILE (the CSV of every user's list).")
  if args.items or args.json:
    raise ValueError(
      "--all writes raw ids to --output; --items and --json do not apply."
    )
  common.check_output_path("--output", args.output, _inputs(args))
  model = _serving_model(args)  # --rated replaces the saved pairs; --ratings adds.
  maps = model.id_maps
  n_users, n_items = len(maps.users), len(maps.items)
  n = min(10, n_items) if args.n is None else args.n
  if n > n_items:
    raise ValueError(f"-n must be at most the model's {n_items} items; got {n}.")
  bonus = _popularity_bonus(model, args.popularity_weight)
  params = model.params
  if bonus is not None:  # Ordered with it; the predicted ratings written.
    params = params._replace(item_bias=params.item_bias + bonus)
  rated = None  # The training pairs by user, on the host.
  if model.rated is not None:
    rated = model.rated[np.argsort(model.rated[:, 0], kind="stable")]
  rows = 0
  with (
    common.sigterm_removes_partial_files(),
    atomic_write(args.output, text=True) as file,
  ):
    file.write("user,item,rank,score\n")
    raw_users, raw_items = _csv_fields(maps.users), _csv_fields(maps.items)
    for start in range(0, n_users, _ALL_CHUNK):
      stop = min(start + _ALL_CHUNK, n_users)
      items, scores = _chunk_lists(params, start, stop, n, rated)
      if bonus is not None:
        scores = scores - np.where(items >= 0, bonus[items], 0)
      lines = []
      for row, user in enumerate(raw_users[start:stop]):
        for rank in range(n):
          if items[row, rank] < 0:
            break  # Fewer items left than n after the exclusion.
          item = raw_items[items[row, rank]]
          lines.append(f"{user},{item},{rank + 1},{scores[row, rank]:.6g}\n")
      file.write("".join(lines))
      rows += len(lines)
  print(f"wrote {rows} rows ({n_users} users, top {n}) to {common.shown(args.output)}")
  return 0


def _chunk_lists(params, start: int, stop: int, n: int, rated):
  """The top ``n`` of users ``start .. stop - 1``, their pairs of ``rated``
  (``[m, 2]`` sorted by user, or None) left out: ``(items, scores)`` on the
  host. The users are padded to whole blocks and the excluded pairs to a power
  of two, so that every chunk but a few runs a program already compiled."""
  import numpy as np

  import mfjax
  from mfjax.serving.model import pairs_as_ratings

  n_users, n_items = params.user_factors.shape[0], params.item_factors.shape[0]
  size = -(-(stop - start) // _ALL_BLOCK) * _ALL_BLOCK  # Whole blocks.
  users = np.arange(start, start + size, dtype=np.int32)
  users[stop - start :] = start  # Padding: scored, then dropped.
  exclude = None
  if rated is not None:  # The chunk's pairs, from the sorted host copy.
    lo, hi = np.searchsorted(rated[:, 0], [start, stop])
    size = 1 << max(10, int(hi - lo).bit_length())
    exclude = pairs_as_ratings(rated[lo:hi], n_users, n_items, size)
  items, scores = mfjax.recommend(
    params, users, n, exclude=exclude, block_size=_ALL_BLOCK
  )
  return np.asarray(items)[: stop - start], np.asarray(scores)[: stop - start]


def _serving_model(args):
  """The model of ``recommend``: its rated pairs from --rated if given, and the
  users of --ratings folded in."""
  import numpy as np

  from mfjax.serving.model import rated_pairs

  model = common.load_model(args.model)
  maps = model.id_maps
  if args.rated:
    rated, _ = common.load_ratings(args.rated, id_maps=maps)
    model = model._replace(rated=rated_pairs(rated))
  if args.ratings:
    new, new_maps = common.load_ratings(args.ratings)
    users = new_maps.users[np.asarray(new.users)]
    items = new_maps.items[np.asarray(new.items)]
    model = model.fold_in(users, items, np.asarray(new.values))
  return model
