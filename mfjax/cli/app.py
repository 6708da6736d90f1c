"""The ``mfjax`` command line.

``mfjax demo [--seed N]`` runs the seed notebook in JAX and then the corrected model.
``mfjax fit TRAIN ...`` trains on a ratings file (``--save MODEL`` keeps the model),
``mfjax recommend MODEL --user ID`` lists a user's top items, ``mfjax evaluate
MODEL TEST`` scores a saved model on held-out ratings and ``mfjax similar MODEL
--item ID`` lists an item's nearest items.

Bad arguments exit with code 2 and one line on stderr saying what is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

_CACHE_ENV = "MFJAX_COMPILATION_CACHE"
# XLA options that trade run time for compile time, for tiny one-off programs.
_FAST_COMPILE = {
  "xla_backend_optimization_level": 0,
  "xla_cpu_use_fusion_emitters": False,
}


class _UsageError(Exception):
  """A bad command line; reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    raise _UsageError(message)


def _version() -> str:
  """``mfjax X (jax Y, jaxlib Z)``, from the installed metadata: jax is not imported."""
  from importlib import metadata

  from mfjax.version import __version__

  def installed(name):
    try:
      return metadata.version(name)
    except metadata.PackageNotFoundError:
      return "not installed"

  return f"mfjax {__version__} (jax {installed('jax')}, jaxlib {installed('jaxlib')})"


def _int(text: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def _seed(text: str) -> int:
  value = _int(text)
  if not 0 <= value < 2**32:
    raise argparse.ArgumentTypeError(f"must be in [0, 2**32); got {value}")
  return value


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(
    prog="mfjax",
    description="Explicit-feedback recommenders by biased matrix factorisation.",
  )
  parser.add_argument(
    "--version",
    action="version",
    version=_version(),
    help="print the versions of mfjax, jax and jaxlib, and exit",
  )
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
  sub.required = True
  for add in (
    _add_demo,
    _add_fit,
    _add_recommend,
    _add_evaluate,
    _add_similar,
    _add_cv,
    _add_launch,
  ):
    add(sub)
  return parser


def _add_demo(sub) -> None:
  demo = sub.add_parser(
    "demo",
    help="run the seed notebook in JAX, then the corrected model",
    description=(
      "Reproduce the seed PyTorch notebook (notebook bias formula, loss over all "
      "24 entries, lr 0.008, gradients never zeroed, best-loss carry), then train "
      "the same matrix with mfjax's defaults and show how the two differ."
    ),
  )
  demo.add_argument(
    "--seed", type=_seed, default=0, help="random seed for the init (default 0)"
  )
  demo.add_argument(
    "--progress", action="store_true", help="show progress bars while training"
  )


def _add_fit(sub) -> None:
  from mfjax.settings import FitSettings

  d = FitSettings()
  fit = sub.add_parser(
    "fit",
    help="train on a ratings file and score a test set",
    description=(
      "Train a biased matrix factorisation on TRAIN (MovieLens u.data/ratings.dat/"
      "ratings.csv or any user,item,rating[,timestamp] file) and report RMSE and "
      "MAE on a test file or a held-out fraction."
    ),
  )
  fit.add_argument("train", metavar="TRAIN", help="the training ratings file")
  held_out = fit.add_mutually_exclusive_group()
  held_out.add_argument("--test", metavar="TEST", help="a test ratings file")
  held_out.add_argument(
    "--test-fraction",
    type=_fraction,
    metavar="F",
    help="hold out this fraction of TRAIN (in (0, 1)) as the test set",
  )
  fit.add_argument(
    "--objective",
    choices=("rating", "ranking"),
    default="rating",
    help="rating: predict ratings (RMSE); ranking: top-N lists by the iALS loss "
    "and alternating least squares (default rating)",
  )
  _add_scale(fit)
  _add_settings(fit, d)
  _add_ranking_settings(fit)
  fit.add_argument(
    "--threshold",
    type=_float,
    default=4.0,
    help="ranking: a test rating >= this is relevant (default 4)",
  )
  fit.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
  fit.add_argument("--progress", action="store_true", help="show a progress bar")
  fit.add_argument(
    "--save", metavar="MODEL", help="save the trained model to this .npz file"
  )
  fit.add_argument(
    "--no-rated",
    action="store_true",
    help="with --save: leave the training pairs out of the model file (they "
    "cost 8 bytes per rating; recommend then needs --rated to leave out rated "
    "items)",
  )
  _add_allow_divergence(fit)
  fit.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )
  _add_distributed(fit)


def _add_distributed(parser) -> None:
  """The options that join several processes (``mfjax.distributed``)."""
  parser.add_argument(
    "--coordinator",
    metavar="HOST:PORT",
    help="process 0's address: join --num-processes processes (jax.distributed)",
  )
  parser.add_argument(
    "--num-processes", type=_positive, metavar="N", help="how many processes"
  )
  parser.add_argument(
    "--process-id", type=_int, metavar="I", help="this process's index, 0 to N-1"
  )
  parser.add_argument(
    "--distributed",
    choices=("auto",),
    help="auto: join the processes that SLURM, Open MPI or Kubernetes started "
    "(JAX reads them from the environment)",
  )
  parser.add_argument(
    "--process-timeout",
    type=_positive,
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


def _add_launch(sub) -> None:
  launch = sub.add_parser(
    "launch",
    help="run an mfjax command in N local processes joined together",
    description=(
      "Start N processes of `mfjax COMMAND ...` on this machine, each given "
      "--coordinator, --num-processes and --process-id, and forward their output "
      "prefixed [I]. Exits with the worst exit code."
    ),
  )
  launch.add_argument("-n", "--processes", type=_positive, required=True, metavar="N")
  launch.add_argument(
    "--devices",
    type=_positive,
    metavar="D",
    help="simulated CPU devices per process (XLA_FLAGS); default the platform's",
  )
  launch.add_argument(
    "--grace",
    type=_positive,
    default=60,
    metavar="S",
    help="seconds the others may run on after one process failed (default 60)",
  )
  launch.add_argument(
    "mfjax_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
    help="the mfjax command to run, e.g. -- fit u1.base --test u1.test",
  )  # fmt: skip


def _add_allow_divergence(parser) -> None:
  parser.add_argument(
    "--allow-divergence",
    action="store_true",
    help="a fit that diverges (its loss NaN, inf or 1000x the initial) or never "
    "improves on its initial params exits 1 and saves nothing; with this flag it "
    "keeps the best params, saves them and exits 0",
  )


def _add_settings(fit, d) -> None:
  """The :class:`mfjax.fitting.ensemble.FitSettings` options of ``fit`` (None: default)."""
  from mfjax.settings import RankingSettings

  options = (
    (("--rank",), "rank", _positive, "latent factors"),
    (("--steps", "--epochs"), "steps", _positive, "passes over the data"),
    (("--lr",), "learning_rate", _positive_float, "Adam learning rate"),
    (("--l2",), "l2", _nonnegative_float, "L2 weight of the factors"),
    (("--l2-bias",), "l2_bias", _nonnegative_float, "L2 weight of the biases"),
    (("--batch-size",), "batch_size", _positive, "mini-batch size"),
    (
      ("--ensemble", "--seeds"),
      "ensemble",
      _positive,
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


def _add_ranking_settings(parser) -> None:
  """The options of ``fit`` and ``cv`` that only the ranking objective takes."""
  from mfjax.settings import RankingSettings

  parser.add_argument(
    "--alpha0",
    type=_nonnegative_float,
    default=None,
    help="ranking: weight of the all-pairs term per unit of density, about ALPHA0 "
    f"times the number of ratings (default {RankingSettings().alpha0})",
  )
  parser.add_argument(
    "--confidence",
    type=_nonnegative_float,
    default=None,
    help="ranking: an observed pair weighs 1 + CONFIDENCE x rating "
    f"(default {RankingSettings().confidence})",
  )


def _add_recommend(sub) -> None:
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
    type=_positive,
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
    "--json", action="store_true", help="print only one JSON object on stdout"
  )


def _add_evaluate(sub) -> None:
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
  ev.add_argument("-k", type=_positive, default=10, help="list length (default 10)")
  ev.add_argument(
    "--threshold",
    type=_float,
    default=4.0,
    help="a test rating >= this is relevant (default 4)",
  )
  ev.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )


def _positive(text: str) -> int:
  value = _int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an int >= 1; got {value}")
  return value


def _float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
  if value != value or value in (float("inf"), float("-inf")):
    raise argparse.ArgumentTypeError(f"must be finite; got {text}")
  return value


def _positive_float(text: str) -> float:
  value = _float(text)
  if value <= 0:
    raise argparse.ArgumentTypeError(f"must be > 0; got {text}")
  return value


def _nonnegative_float(text: str) -> float:
  value = _float(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be >= 0; got {text}")
  return value


def _scale(text: str) -> tuple[float, float]:
  parts = text.split(",")
  if len(parts) != 2:
    raise argparse.ArgumentTypeError(f"must be LO,HI (e.g. 1,5); got {text!r}")
  lo, hi = (_float(part) for part in parts)
  if not lo < hi:
    raise argparse.ArgumentTypeError(f"must have LO < HI; got {text!r}")
  return lo, hi


def _columns(text: str) -> tuple[str | None, ...]:
  from mfjax.data.loaders import ROLES

  roles = tuple(None if part in ("-", "") else part for part in text.split(","))
  unknown = [r for r in roles if r is not None and r not in ROLES]
  if unknown:
    raise argparse.ArgumentTypeError(
      f"{unknown[0]!r} is not a role; give {', '.join(ROLES)} or - (skip) for "
      f"each column, in file order; got {text!r}"
    )
  return roles


def _add_scale(parser) -> None:
  parser.add_argument(
    "--scale",
    type=_scale,
    metavar="LO,HI",
    help="the rating scale: a rating outside it is an error naming its line "
    "(default: the lowest and highest ratings of the training file; a negative "
    "LO needs the = form, --scale=-10,10)",
  )
  parser.add_argument(
    "--columns",
    type=_columns,
    metavar="ROLES",
    help="what each column of the ratings files is, in file order: user, item, "
    "rating, timestamp or - (skipped), e.g. item,user,rating (default: by the "
    "header's names, else user,item,rating[,timestamp])",
  )


def _fraction(text: str) -> float:
  value = _float(text)
  if not 0 < value < 1:
    raise argparse.ArgumentTypeError(f"must lie in (0, 1); got {text}")
  return value


def _fit(args) -> int:
  """``fit``, after joining the other processes if asked: only process 0
  prints its report and saves the model; every process computes it."""
  if not _join(args):
    return _fit_here(args)
  import jax

  from mfjax.distributed import runtime as distributed

  try:
    exchange = distributed.ProcessExchange()
    _check_same_command(args, exchange)
    first = jax.process_index() == 0
    distributed.first_failure(
      lambda: _check_output_path("--save", args.save if first else None), exchange
    )
    if first:
      return _fit_here(args)
    args.save = None
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
      args.stdout = quiet
      return _fit_here(args)
  except jax.errors.JaxRuntimeError as e:
    # A peer died or hung (its heartbeat stopped): one line, and out at once,
    # before JAX's shutdown barrier waits for the missing process and aborts.
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    if args.progress:  # After the bar's line, not on it.
      print(file=sys.stderr)
    print(
      f"mfjax fit: error: process {jax.process_index()} stopped: another process "
      f"failed or stopped answering ({first})",
      file=sys.stderr,
      flush=True,
    )
    sys.stdout.flush()
    os._exit(1)


# What may differ between the processes of one fit: their place, and the paths
# of the files (mounted elsewhere on other machines; their bytes are compared).
_PER_PROCESS = {"process_id", "train", "test", "stdout"}


def _check_same_command(args, exchange) -> None:
  """Refuses, in every process, processes started with other options."""
  import json

  import numpy as np

  mine = {
    name: value
    for name, value in sorted(vars(args).items())
    if name not in _PER_PROCESS and isinstance(value, str | int | float | tuple | None)
  }
  text = json.dumps(mine, default=str)
  mine = json.loads(text)  # As the others' read back (tuples become lists).
  for index, theirs in enumerate(exchange.allgather(np.array([text]))):
    other = json.loads(str(theirs[0]))
    if other == mine:
      continue
    name = next(
      n for n in sorted(set(mine) | set(other)) if mine.get(n) != other.get(n)
    )
    flag = "--" + name.replace("_", "-")
    raise ValueError(
      f"process {index} was started with {flag} {other.get(name)} and process "
      f"{exchange.index} with {mine.get(name)}: give every process the same command."
    )


def _join(args) -> bool:
  """Joins the processes that ``--coordinator ...`` or ``--distributed auto``
  name (before any JAX computation); returns whether it did."""
  named = (args.coordinator, args.num_processes, args.process_id)
  if all(v is None for v in named) and args.distributed is None:
    return False
  from mfjax.distributed import runtime as distributed

  if args.distributed and any(v is not None for v in named):
    raise ValueError(
      "--distributed auto reads the cluster from the environment; leave out "
      "--coordinator, --num-processes and --process-id."
    )
  if not args.distributed and any(v is None for v in named):
    raise ValueError(
      "give --coordinator, --num-processes and --process-id together (or "
      "--distributed auto)."
    )
  timeout = args.process_timeout or distributed.TIMEOUT_SECONDS
  distributed.initialize(*named, auto=args.distributed == "auto", timeout=timeout)
  return True


def _launch(args) -> int:
  from mfjax.distributed import runtime as distributed

  command = list(args.mfjax_command)
  if command[:1] == ["--"]:
    command = command[1:]
  if not command:
    raise ValueError("give the command to run after --, e.g. -- fit u1.base")
  if command[0] != "fit":
    raise ValueError(f"only fit runs over several processes; got {command[0]!r}.")
  for flag in ("--coordinator", "--num-processes", "--process-id", "--distributed"):
    if any(word.split("=")[0] == flag for word in command):
      raise ValueError(f"launch gives each process {flag}; leave it out.")
  return distributed.launch(
    command, args.processes, devices=args.devices, grace=args.grace
  )


def _fit_here(args) -> int:
  import numpy as np

  import mfjax
  from mfjax.serving import rawids
  from mfjax.core import training

  _check_output_path("--save", args.save)
  ranking = args.objective == "ranking"
  _check_objective_options(args)
  parts = _reads_parts(args)
  train, test, maps, n_unknown = _fit_data(args, parts)
  n_train, n_test = (len(r) - r.n_padding for r in (train, test))
  settings, program, inputs, trim = (_ranking_fit if ranking else _rating_fit)(
    args, train, maps
  )
  results, params, compile_seconds, fit_seconds = _timed(program, inputs, trim)
  report = {"objective": args.objective}
  if ranking:
    report.update(_ranking_report(params, train, test, args.threshold))
  else:
    report.update(
      train_rmse=float(mfjax.rmse(params, train, scale=maps.scale)),
      test_rmse=float(mfjax.rmse(params, test, scale=maps.scale)),
      test_mae=float(mfjax.mae(params, test, scale=maps.scale)),
    )
  report.update(
    fit_seconds=fit_seconds,
    compile_seconds=compile_seconds,
    n_train=n_train,
    n_test=n_test,
    n_unknown_test=int(n_unknown),
    n_users=train.n_users,
    n_items=train.n_items,
    n_duplicates=maps.n_duplicates,
    **{name: settings[name] for name in ("rank", "l2", "steps")},
    **{
      n: settings[n]
      for n in ("l2_bias", "batch_size", "ensemble", "alpha0", "confidence")
      if n in settings
    },
    diverged=bool(np.any(np.asarray(results.diverged_step) >= 0)),
  )
  failure = training.failure(results)
  report["failure"] = failure
  if args.save and (failure is None or args.allow_divergence):
    saved = dict(settings, n_train=n_train, seed=args.seed)
    saved["train"] = os.path.basename(args.train)
    # Several processes: no process holds the training pairs to save.
    rated = None if args.no_rated or parts else rawids.rated_pairs(train)
    model = mfjax.Model(
      params, id_maps=maps, settings=saved, objective=args.objective, rated=rated
    )
    try:
      mfjax.save(args.save, model)
    except (OSError, ValueError):  # Still show what the training found.
      _print_report(report)
      if args.json:
        _emit_json(args, report)
      raise
    report["saved"] = args.save
    report["saved_rank"] = int(params.user_factors.shape[1])
    report["saved_bytes"] = os.path.getsize(args.save)
  _print_report(report)
  _note_unranked(report, args.threshold)
  if args.json:
    _emit_json(args, report)
  _check_training(args, failure)
  return 0


def _fit_data(args, parts: bool):
  """``(train, test, maps, n_unknown)`` of ``fit``: the files, or a split."""
  import mfjax

  train, maps = _load_ratings(
    args.train, scale=args.scale, columns=args.columns, show_columns=True, parts=parts
  )
  if args.test:
    test, test_maps = _load_ratings(
      args.test, id_maps=maps, columns=args.columns, parts=parts
    )
    n_unknown = test_maps.n_unknown
  else:
    train, test = mfjax.train_test_split(
      train, test_fraction=args.test_fraction or 0.2, seed=args.seed
    )
    n_unknown = 0
  if len(train) == train.n_padding or len(test) == test.n_padding:
    raise ValueError("the training or test set is empty.")
  return train, test, maps, n_unknown


def _reads_parts(args) -> bool:
  """Whether each process reads its own part of the files: a rating fit over
  several processes' devices (the ranking fit, sharded too, and ``--one-device``
  read the whole files in each process)."""
  if getattr(args, "num_processes", None) is None and not getattr(
    args, "distributed", None
  ):
    return False
  import jax

  if jax.process_count() == 1 or args.objective == "ranking" or args.one_device:
    return False
  if not args.test:
    raise ValueError(
      "a fit over several processes needs --test FILE: a random split would need "
      "every rating in one process."
    )
  return True


def _check_training(args, failure: str | None) -> None:
  """Fails the command on a diverged fit, unless ``--allow-divergence``."""
  if failure is None:
    return
  rating = args.objective == "rating"
  if "no progress" in failure:
    advice = "another --lr or more --steps" if rating else "more --steps"
  else:
    advice = "a smaller --lr or a larger --l2" if rating else "a larger --l2"
  if args.command == "cv":
    anyway, kept = "score the folds anyway", "the folds were scored as they are"
  else:
    anyway, kept = "keep the best parameters anyway", "the best parameters were kept"
  if not args.allow_divergence:
    saved = f"{args.save} was not written; " if getattr(args, "save", None) else ""
    raise _TrainingFailed(
      f"{failure}; {saved}try {advice}, or pass --allow-divergence to {anyway}."
    )
  print(f"warning: {failure}; {kept} (--allow-divergence).")


# Options of the rating fit that the ranking fit refuses.
_RATING_ONLY = {
  "--lr": "learning_rate",
  "--l2-bias": "l2_bias",
  "--batch-size": "batch_size",
  "--ensemble": "ensemble",
}
_RANKING_ONLY = {"--alpha0": "alpha0", "--confidence": "confidence"}


def _check_objective_options(args) -> None:
  """Refuses (``fit``, ``cv``) a setting that the chosen objective does not take."""
  if args.objective == "ranking":
    refused, why = _RATING_ONLY, "does not apply to --objective ranking"
  else:
    refused, why = _RANKING_ONLY, "applies to --objective ranking only"
  for flag, name in refused.items():
    if getattr(args, name) is not None:
      raise ValueError(f"{flag} {why}.")


def _rating_fit(args, train, maps):
  """``(settings, program, inputs)`` of the tuned rating fit."""
  import jax
  import numpy as np

  from mfjax.fitting import ensemble

  d = ensemble.FitSettings()
  settings = d._replace(
    **{
      name: getattr(args, name) for name in d._fields if getattr(args, name) is not None
    }
  )
  # Read in parts by several processes: padded and sharded already.
  parts = isinstance(train.users, jax.Array) and not train.users.is_fully_addressable
  padded = _as_bucketed(train) if parts else ensemble.pad_to_buckets(train)
  if args.batch_size is None:  # fit's default: about 24 batches an epoch.
    size = ensemble.batch_size_for(len(padded.ratings), minimum=settings.batch_size)
    settings = settings._replace(batch_size=size)
  program = ensemble.fit_program(settings, progress=args.progress)
  key = jax.random.key(args.seed)
  inputs = (
    key, padded.ratings, np.float32(settings.l2), np.float32(settings.l2_bias),
    None, maps.scale, padded.sizes,
  )  # fmt: skip
  # Every device of every process: the ratings sharded (each process's part
  # already is), the model replicated.
  program, inputs = ensemble.spread(program, inputs, one_device=args.one_device)
  trim = lambda outputs: ensemble.trim(outputs, padded)
  return settings._asdict(), program, inputs, trim


def _as_bucketed(train):
  """An ``ensemble.Bucketed`` of ratings that :func:`distributed.read_ratings`
  padded and sharded already: only the tables are padded to their buckets."""
  import dataclasses

  import numpy as np

  from mfjax.fitting import ensemble

  n_users, n_items = train.n_users, train.n_items
  ratings = dataclasses.replace(
    train,
    n_users=ensemble.bucket(n_users, per_octave=4),
    n_items=ensemble.bucket(n_items, per_octave=4),
    n_padding=0,
  )
  sizes = np.array([len(train) - train.n_padding, n_users, n_items], np.int32)
  return ensemble.Bucketed(ratings, None, sizes, n_users, n_items)


def _ranking_fit(args, train, maps):
  """``(settings, program, inputs)`` of the tuned ranking fit (iALS)."""
  import jax
  import numpy as np

  from mfjax.fitting import ensemble

  d = ensemble.RankingSettings()
  given = {n: getattr(args, n) for n in ("rank", "steps", "l2", "alpha0", "confidence")}
  settings = d._replace(**{n: v for n, v in given.items() if v is not None})
  program = ensemble.ranking_program(settings, progress=args.progress)
  inputs = (jax.random.key(args.seed), train, np.float32(settings.l2))
  # Every device of every process (each holding the whole files): the ratings
  # sharded, the model replicated.
  program, inputs = ensemble.spread(program, inputs, one_device=args.one_device)
  return settings._asdict(), program, inputs, lambda outputs: outputs


def _timed(program, inputs, trim):
  """``(results, params, compile seconds, fit seconds)`` of a jitted fit whose
  outputs ``trim`` cuts to the data's size."""
  import time

  import jax

  from mfjax.fitting import ensemble

  start = time.perf_counter()
  compiled = ensemble.compile_program(program, inputs)
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  params, results = trim(jax.block_until_ready(compiled(*inputs))[::-1])
  return results, params, compile_seconds, time.perf_counter() - start


def _note_unranked(report: dict, threshold: float) -> None:
  """Says why the ranking metrics are NaN when no test user could be ranked."""
  if report.get("n_users_ranked", 1):
    return
  if report.get("n_unknown_test") == report.get("n_test"):
    why = "none of the test ratings is of a user and an item in the model"
  else:
    why = f"no test user in the model has a rating >= {threshold:g} (relevant)"
  print(f"note: {why}, so the ranking metrics are undefined (nan; null in --json).")


def _ranking_report(params, train, test, threshold, k=10, prefix="test_"):
  """Top-``k`` metrics of ``params`` on ``test``, training items left out."""
  from mfjax.fitting import crossval

  scores = crossval.ranking_scores(params, train, test, k=k, threshold=threshold)
  n_users = scores.pop("n_users")
  report = {f"{prefix}{name}_at_{k}": value for name, value in scores.items()}
  return report | {"n_users_ranked": n_users}


def _check_output_path(flag: str, path: str | None) -> None:
  """Refuses, before any work, an output path that cannot be written."""
  if path is None:
    return
  directory = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path):
    raise ValueError(f"{flag} {path}: is a directory.")
  if not os.path.isdir(directory):
    raise ValueError(f"{flag} {path}: the directory {directory} does not exist.")
  if not os.access(directory, os.W_OK):
    raise ValueError(f"{flag} {path}: the directory {directory} is not writable.")


def _emit_json(args, report: dict) -> None:
  """``report`` as the one JSON document on the real stdout (``main`` sends the
  human text to stderr under ``--json``); NaN and inf become null."""
  import json

  print(json.dumps(_json_safe(report), allow_nan=False), file=args.stdout)


def _json_safe(value):
  """``value`` with every non-finite float as None and NumPy scalars as Python's."""
  if isinstance(value, dict):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if hasattr(value, "item") and getattr(value, "shape", None) == ():
    value = value.item()  # A NumPy or JAX scalar.
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _print_report(report: dict) -> None:
  report = {name: value for name, value in report.items() if value is not None}
  width = max(map(len, report))
  for name, value in report.items():
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    print(f"{name:<{width}}  {shown}")


def _load_ratings(
  path: str, *, show_columns: bool = False, parts: bool = False, **options
):
  """``mfjax.load_ratings``, its warnings (a rating far off the others) on one
  line each on stderr, and, for a file with a header, which column is which.
  With ``parts``, every process reads its own part
  (:func:`mfjax.distributed.read_ratings`)."""
  import warnings

  import mfjax
  from mfjax.data.loaders import ScaleWarning

  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ScaleWarning)
    if parts:  # Each process its own part, assembled into one sharded array.
      from mfjax.distributed import runtime as distributed

      ratings, maps = distributed.read_ratings(path, **options)
    else:
      ratings, maps = mfjax.load_ratings(path, **options)
  for warning in caught:
    if issubclass(warning.category, ScaleWarning):
      print(f"mfjax: warning: {warning.message} (--scale LO,HI)", file=sys.stderr)
    else:  # Not ours to word: shown as Python shows it.
      warnings.warn_explicit(
        warning.message, warning.category, warning.filename, warning.lineno
      )
  if show_columns and maps.header:
    named = zip(maps.columns, maps.header, strict=False)
    print(f"{path}: columns " + ", ".join(f"{r}={n}" for r, n in named if r))
  return ratings, maps


def _load_model(path: str):
  """A saved :class:`mfjax.Model` with id maps, or a one-line error."""
  import mfjax

  model = mfjax.load(path)
  if not isinstance(model, mfjax.Model) or model.id_maps is None:
    raise ValueError(
      f"{path} holds bare parameters without id maps; save a model with "
      "`mfjax fit --save` (or mfjax.Model(params, id_maps=...))."
    )
  return model


def _raw_id(ids, text: str):
  """``text`` as an id of the kind in ``ids`` (int64 or str)."""
  import numpy as np

  if np.issubdtype(ids.dtype, np.integer):
    try:
      return int(text)
    except ValueError:
      return None  # Not an integer, so not one of these ids.
  return text


def _item_titles(path: str) -> dict[str, str]:
  """Raw item id (as text) to title, from MovieLens u.item or movies.csv."""
  import csv

  from mfjax.data.loaders import RatingsFileError

  try:
    with open(path, "rb") as file:
      raw = file.read()
  except OSError as e:
    raise ValueError(f"{path}: cannot read the item file ({e.strerror}).") from None
  try:  # movies.csv (ml-latest) is UTF-8; MovieLens 100k's u.item is Latin-1.
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError:
    text = raw.decode("latin-1")
  lines = text.splitlines()
  if not lines:
    raise RatingsFileError(f"{path}: the item file is empty.")
  sep = "|" if "|" in lines[0] else ","
  rows = csv.reader(lines, delimiter=sep)
  titles = {}
  for number, row in enumerate(rows, 1):
    if number == 1 and sep == "," and row[:2] == ["movieId", "title"]:
      continue  # The movies.csv header.
    if len(row) < 2 or not row[0].strip():
      raise RatingsFileError(
        f"{path}:{number}: expected 'id{sep}title{sep}...'; got {lines[number - 1]!r}"
      )
    titles[row[0].strip()] = row[1]
  return titles


def _recommend(args) -> int:
  if args.all:
    return _recommend_all(args)
  if args.output:
    raise ValueError("--output goes with --all; one user's list is printed.")
  model = _serving_model(args)
  maps = model.id_maps
  raw = _raw_id(maps.users, args.user)
  known = raw is not None and int(maps.user_index([raw])[0]) >= 0
  if not known and args.fallback == "none":
    raise ValueError(
      f"user {args.user!r} is not in the model {args.model} "
      f"({len(maps.users)} users, ids {maps.users[0]}..{maps.users[-1]}; "
      "--fallback none)."
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
  items, scores = model.recommend(raw if raw is not None else args.user, args.n)
  raw_items = [i.item() for i in items]
  scores = [float(v) for v in scores]
  titles = _titles_of(args.items, raw_items)
  width = max([len(str(i)) for i in raw_items] + [4])
  if known:
    print(f"top {len(raw_items)} items for user {args.user} ({args.model})")
  else:
    print(
      f"user {args.user} is not in the model: the {len(raw_items)} most-rated "
      "items instead (score = training ratings; --fallback none refuses)"
    )
  print(f"{'rank':>4}  {'item':>{width}}  score  {'title' if titles else ''}".rstrip())
  for rank, (item, score) in enumerate(zip(raw_items, scores, strict=True), 1):
    title = titles[str(item)] if titles else ""
    print(f"{rank:>4}  {item!s:>{width}}  {score:5.2f}  {title}".rstrip())
  if args.json:
    report = {"user": raw if known else args.user, "items": raw_items}
    report |= {"scores": scores, "fallback": not known}
    if titles:
      report["titles"] = [titles[str(i)] for i in raw_items]
    _emit_json(args, report)
  return 0


def _serving_model(args):
  """The model of ``recommend``: its rated pairs from --rated if given, and the
  users of --ratings folded in."""
  import numpy as np

  from mfjax.serving import rawids

  model = _load_model(args.model)
  maps = model.id_maps
  if args.rated:
    rated, _ = _load_ratings(args.rated, id_maps=maps)
    model = model._replace(rated=rawids.rated_pairs(rated))
  if args.ratings:
    new, new_maps = _load_ratings(args.ratings)
    users = new_maps.users[np.asarray(new.users)]
    items = new_maps.items[np.asarray(new.items)]
    model = model.fold_in(users, items, np.asarray(new.values))
  return model


def _titles_of(path, raw_items):
  """Titles of ``raw_items`` from the item file at ``path`` (None: no file)."""
  if path is None:
    return None
  titles = _item_titles(path)
  missing = [i for i in raw_items if str(i) not in titles]
  if missing:
    raise ValueError(
      f"{path} has no title for item {missing[0]!r} of the model; is it "
      "the item file of the same data set?"
    )
  return titles


def _add_cv(sub) -> None:
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
    "--folds", type=_positive, default=5, help="how many folds, >= 2 (default 5)"
  )
  cv.add_argument(
    "--objective",
    choices=("rating", "ranking"),
    default="rating",
    help="rating: RMSE and MAE; ranking: top-10 list metrics (default rating)",
  )
  _add_scale(cv)
  _add_settings(cv, FitSettings())
  _add_ranking_settings(cv)
  cv.add_argument(
    "--threshold",
    type=_float,
    default=4.0,
    help="ranking: a held-out rating >= this is relevant (default 4)",
  )
  cv.add_argument(
    "--seed", type=_seed, default=0, help="seed of the split and fits (default 0)"
  )
  _add_allow_divergence(cv)
  cv.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )


def _cv(args) -> int:
  import mfjax

  ranking = args.objective == "ranking"
  _check_objective_options(args)
  if args.folds < 2:
    raise ValueError(f"--folds must be at least 2; got {args.folds}.")
  ratings, maps = _load_ratings(
    args.train, scale=args.scale, columns=args.columns, show_columns=True
  )
  if args.folds > len(ratings):
    raise ValueError(
      f"--folds must be at most the {len(ratings)} ratings of {args.train}."
    )
  names = ("rank", "steps", "l2", "learning_rate", "l2_bias", "batch_size")
  names += ("ensemble", "alpha0", "confidence")
  settings = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
  extra = {"threshold": args.threshold} if ranking else {"scale": maps.scale}
  result = mfjax.cross_validate(
    ratings, folds=args.folds, seed=args.seed, objective=args.objective,
    **extra, **settings,
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
    _emit_json(args, report)
  failed = [(j, f) for j, f in enumerate(result.failures, 1) if f is not None]
  if failed:
    j, failure = failed[0]
    more = f" (and {len(failed) - 1} more folds)" if len(failed) > 1 else ""
    _check_training(args, f"fold {j}{more}: {failure}")
  return 0


def _add_similar(sub) -> None:
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
  sim.add_argument("-n", type=_positive, default=10, help="how many items (default 10)")
  sim.add_argument(
    "--items", metavar="FILE", help="item titles: MovieLens u.item or movies.csv"
  )
  sim.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )


def _similar(args) -> int:
  model = _load_model(args.model)
  raw = _raw_id(model.id_maps.items, args.item)
  if raw is None or int(model.id_maps.item_index([raw])[0]) < 0:
    raise ValueError(f"item {args.item!r} is not in the model {args.model}.")
  items, cosines = model.similar_items(raw, args.n)
  raw_items = [i.item() for i in items]
  titles = _titles_of(args.items, [raw, *raw_items])
  width = max([len(str(i)) for i in raw_items] + [4])
  about = f" ({titles[str(raw)]})" if titles else ""
  print(f"the {len(raw_items)} items nearest item {args.item}{about} ({args.model})")
  print(f"{'rank':>4}  {'item':>{width}}  cosine  {'title' if titles else ''}".rstrip())
  for rank, (item, cosine) in enumerate(zip(raw_items, cosines, strict=True), 1):
    title = titles[str(item)] if titles else ""
    print(f"{rank:>4}  {item!s:>{width}}  {cosine:6.3f}  {title}".rstrip())
  if args.json:
    report = {"item": raw, "items": raw_items, "cosines": [float(c) for c in cosines]}
    if titles:
      report["titles"] = [titles[str(i)] for i in raw_items]
    _emit_json(args, report)
  return 0


# Users per block of `recommend --all`: memory is bounded by one block's
# [block, n_items] scores, whatever the number of users.
_ALL_BLOCK = 1024


def _recommend_all(args) -> int:
  import csv

  import numpy as np

  import mfjax
  from mfjax.io import checkpoint
  from mfjax.serving import rawids

  if not args.output:
    raise ValueError("--all needs --output FILE (the CSV of every user's list).")
  if args.items or args.json:
    raise ValueError(
      "--all writes raw ids to --output; --items and --json do not apply."
    )
  _check_output_path("--output", args.output)
  model = _serving_model(args)  # --rated replaces the saved pairs; --ratings adds.
  maps = model.id_maps
  n_users, n_items = len(maps.users), len(maps.items)
  n = min(10, n_items) if args.n is None else args.n
  if n > n_items:
    raise ValueError(f"-n must be at most the model's {n_items} items; got {n}.")
  rated_users = rated = None
  if model.rated is not None:
    pairs = model.rated[np.argsort(model.rated[:, 0], kind="stable")]
    rated = rawids.pairs_as_ratings(pairs, n_users, n_items)
    rated_users = pairs[:, 0]
  rows = 0
  with checkpoint.atomic_write(args.output, text=True) as file:
    writer = csv.writer(file)
    writer.writerow(["user", "item", "rank", "score"])
    for start in range(0, n_users, _ALL_BLOCK):
      users = np.arange(start, min(start + _ALL_BLOCK, n_users), dtype=np.int32)
      exclude = None
      if rated is not None:
        lo, hi = np.searchsorted(rated_users, [users[0], users[-1] + 1])
        exclude = rated.subset(np.arange(lo, hi))
      items, scores = mfjax.recommend(model.params, users, n, exclude=exclude)
      items, scores = np.asarray(items), np.asarray(scores)
      for row, user in enumerate(users):
        raw_user = maps.users[user].item()
        for rank in range(n):
          if items[row, rank] < 0:
            break  # Fewer items left than n after the exclusion.
          item = maps.items[items[row, rank]].item()
          writer.writerow([raw_user, item, rank + 1, f"{scores[row, rank]:.6g}"])
          rows += 1
  print(f"wrote {rows} rows ({n_users} users, top {n}) to {args.output}")
  return 0


def _evaluate(args) -> int:
  import mfjax

  model = _load_model(args.model)
  maps = model.id_maps
  scale = model.scale
  test, test_maps = _load_ratings(args.test, id_maps=maps)
  if len(test) == 0:
    raise ValueError(f"{args.test} has no ratings to score.")
  if args.k > len(maps.items):
    raise ValueError(f"-k must be at most the model's {len(maps.items)} items.")
  train = _load_ratings(args.train, id_maps=maps)[0] if args.train else None
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
    report.update(_ranking_report(params, train, test, args.threshold, args.k, prefix))
  report["train_excluded"] = train is not None
  _print_report(report)
  _note_unranked(report, args.threshold)
  if model.objective == "ranking":
    print(
      "RMSE and MAE do not apply: a ranking model's scores order items, they "
      "are not ratings."
    )
  if args.json:
    _emit_json(args, report)
  return 0


def _enable_compilation_cache() -> None:
  """Keeps compiled programs on disk so later runs skip XLA compilation.

  Set ``MFJAX_COMPILATION_CACHE=0`` to turn it off, or to a directory to move it
  (default ``~/.cache/mfjax/jax``). An explicit ``JAX_COMPILATION_CACHE_DIR`` wins.
  """
  import jax

  setting = os.environ.get(_CACHE_ENV, "")
  if setting == "0" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  path = setting or os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mfjax", "jax"
  )
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return  # A read-only home only costs compile time.
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _format_matrix(matrix, fmt: str) -> list[str]:
  return [" ".join(fmt.format(v) for v in row) for row in matrix]


def _side_by_side(left: list[str], right: list[str], titles: tuple[str, str]) -> str:
  width = max(len(titles[0]), *(len(line) for line in left)) + 4
  lines = [titles[0].ljust(width) + titles[1]]
  lines += [a.ljust(width) + b for a, b in zip(left, right, strict=True)]
  return "\n".join("  " + line for line in lines)


def _loss_table(losses, per_row: int = 10) -> str:
  rows = []
  for start in range(0, len(losses), per_row):
    chunk = losses[start : start + per_row]
    label = f"{start:>3}-{start + len(chunk) - 1:<3}"
    rows.append(f"  {label} " + " ".join(f"{v:7.4f}" for v in chunk))
  return "\n".join(rows)


def _demo(args) -> int:
  import jax

  import mfjax
  from mfjax import notebook

  matrix = notebook.MATRIX
  n_users, n_items = matrix.shape
  key = jax.random.key(args.seed)

  def both_runs(key):
    reproduced = mfjax.reproduce_notebook(key, progress=args.progress)
    params = mfjax.init_params(key, n_users, n_items, notebook.RANK)
    defaults = mfjax.train(params, matrix, progress=args.progress)
    return (
      reproduced,
      notebook.predict(reproduced.best_params, scale=(1, 5)),
      defaults,
      mfjax.predict(defaults.best_params, scale=(1, 5)),
    )

  # One program for the whole demo. At this size compilation is most of the run
  # time, so it is compiled for speed of compilation (0.19 s against 0.78 s with
  # XLA's defaults, benchmarks/RESULTS.md); the persistent cache then makes later
  # runs skip it.
  lowered = jax.jit(both_runs).lower(key)
  try:
    compiled = lowered.compile(_FAST_COMPILE)
  except jax.errors.JaxRuntimeError:  # An XLA that lacks one of these options.
    compiled = lowered.compile()
  nb, nb_pred, ours, ours_pred = jax.device_get(compiled(key))
  _print_notebook_run(args.seed, nb, nb_pred, matrix)
  _print_defaults_run(nb_pred, ours, ours_pred, matrix)
  return 0


def _print_notebook_run(seed, nb, nb_pred, matrix) -> None:
  import numpy as np

  from mfjax import notebook

  nb_losses = np.asarray(nb.losses)
  printed = notebook.PRINTED

  print(f"mfjax demo: the seed notebook, reproduced in JAX (seed {seed})")
  print(
    "  prediction mu + bu·biᵀ + 1 + P Qᵀ; MSE over all 24 entries, the missing 0"
    " included;\n  uniform [0, 1) init; 100 steps of p -= 0.008·grad with the"
    " gradients never zeroed."
  )
  print("\nloss at each step (before its update):")
  print(_loss_table(nb_losses))
  best_step = int(np.argmin(nb_losses))
  print(
    f"\nbest loss {float(nb.best_loss):.4f} at step {best_step} "
    f"(the notebook printed {printed['best_loss']:.4f} from its own random init)"
  )
  if bool(nb.diverged):
    print(f"warning: the loss became non-finite at step {int(nb.diverged_step)}")
  print()
  print(
    _side_by_side(
      _format_matrix(nb_pred, "{:5.2f}"),
      _format_matrix(matrix, "{:2.0f}"),
      ("predicted from the best params, clipped to [1, 5]", "input (0 = missing)"),
    )
  )


def _print_defaults_run(nb_pred, ours, ours_pred, matrix) -> None:
  import numpy as np

  print("\nmfjax defaults: mu + bu + bi + P Qᵀ, the missing 0 left out of the loss")
  print(
    f"  best loss {float(ours.best_loss):.3g} over the 23 observed ratings "
    f"(rmse {float(ours.best_loss) ** 0.5:.3g})"
  )
  print(
    _side_by_side(
      _format_matrix(ours_pred, "{:5.2f}"),
      _format_matrix(matrix, "{:2.0f}"),
      ("predicted, clipped to [1, 5]", "input (0 = missing)"),
    )
  )
  (missing_user,), (missing_item,) = np.nonzero(matrix == 0)
  print(
    f"\nThe difference: the notebook fits the missing rating "
    f"(user {missing_user}, item {missing_item}) as a 0 and predicts "
    f"{nb_pred[missing_user, missing_item]:.2f} for it; the defaults leave it out "
    f"and predict {ours_pred[missing_user, missing_item]:.2f} from that user's and "
    "item's other ratings."
  )


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit code."""
  try:
    args = _parser().parse_args(argv)
  except _UsageError as e:
    print(f"mfjax: error: {e}", file=sys.stderr)
    return 2
  _enable_compilation_cache()
  args.stdout = sys.stdout  # The JSON's; human text goes to stderr under --json.
  human = sys.stderr if getattr(args, "json", False) else sys.stdout
  try:
    commands = {
      "demo": _demo,
      "fit": _fit,
      "recommend": _recommend,
      "evaluate": _evaluate,
      "similar": _similar,
      "cv": _cv,
      "launch": _launch,
    }
    with contextlib.redirect_stdout(human):
      code = commands[args.command](args)
    sys.stdout.flush()  # A closed pipe shows here, not at exit.
    return code
  except BrokenPipeError:  # `mfjax ... | head`: stop quietly, as cat would.
    _stdout_to_devnull()
    return 141  # 128 + SIGPIPE: what a shell shows for `cat big | head`.
  except (ValueError, TypeError) as e:  # RatingsFileError is a ValueError.
    print(f"mfjax {args.command}: error: {e}", file=sys.stderr)
    return 2
  except _TrainingFailed as e:
    print(f"mfjax {args.command}: error: {e}", file=sys.stderr)
    return 1
  except OSError as e:  # A model file that is missing or unreadable.
    print(f"mfjax {args.command}: error: {_os_error(e)}", file=sys.stderr)
    return 2
  except RuntimeError as e:
    distributed = sys.modules.get("mfjax.distributed")
    if distributed is None or not isinstance(e, distributed.DistributedError):
      raise
    print(f"mfjax {args.command}: error: {e}", file=sys.stderr)
    return 2


class _TrainingFailed(Exception):
  """A fit that diverged or made no progress (exit 1, unless --allow-divergence)."""


def _os_error(e: OSError) -> str:
  """An OS error in one line, naming the file when it has one."""
  reason = e.strerror or str(e) or type(e).__name__
  return f"{e.filename}: {reason}" if e.filename else reason


def _stdout_to_devnull() -> None:
  """Points stdout at /dev/null, so that the interpreter's last flush of a
  closed pipe raises nothing."""
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
  except (OSError, ValueError):  # No file descriptor (stdout replaced): nothing to do.
    pass
