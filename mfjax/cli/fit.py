"""``mfjax fit``: train on a ratings file, score a test set, save the model.

One process, or several joined together (:mod:`mfjax.cli.launch`): then every
process computes the fit and only process 0 prints its report and saves.
"""

from __future__ import annotations

import contextlib
import os
import sys

from mfjax.cli import common, launch, options

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
  """Registers ``mfjax fit``."""
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
    type=options.fraction,
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
  options.add_scale(fit)
  options.add_solver(fit)
  options.add_settings(fit, d)
  options.add_gibbs_settings(fit)
  options.add_ranking_settings(fit)
  fit.add_argument(
    "--threshold",
    type=options.finite_float,
    default=None,
    help="ranking: a test rating >= this is relevant (default 4, or the one "
    "value when every test rating holds it)",
  )
  fit.add_argument(
    "--seed", type=options.seed, default=0, help="random seed (default 0)"
  )
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
  options.add_allow_divergence(fit)
  fit.add_argument(
    "--json", action="store_true", help="print only one JSON object on stdout"
  )
  options.add_distributed(fit)


def run(args) -> int:
  """``fit``, after joining the other processes if asked: only process 0
  prints its report and saves the model; every process computes it."""
  with contextlib.ExitStack() as stack:
    stack.enter_context(launch.runtime_log_held_back(args))
    if launch.asks_to_join(args) and args.json:  # After: fd 1 to the filter too.
      stack.enter_context(_json_on_its_own_stdout(args))
    return _joined_fit(args)


def _joined_fit(args) -> int:
  """``fit`` in this process alone, or joined to the others."""
  if not launch.join(args):
    return _fit_here(args)
  import jax

  from mfjax.distributed import runtime as distributed

  try:
    exchange = distributed.ProcessExchange()
    launch.check_same_command(args, exchange)
    first = jax.process_index() == 0
    distributed.first_failure(
      lambda: common.check_output_path(
        "--save", args.save if first else None, _inputs(args)
      ),
      exchange,
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


@contextlib.contextmanager
def _json_on_its_own_stdout(args):
  """Keeps stdout for the JSON document alone: the runtime's C++ code (gloo's
  "[Gloo] Rank 0 is connected ..." line) writes to file descriptor 1, so that
  descriptor goes to stderr meanwhile and the JSON to a copy of the real
  stdout; both are put back at the end."""
  sys.stdout.flush()
  try:
    real = os.dup(1)
    os.dup2(2, 1)
  except OSError:  # No descriptors (an embedded interpreter): as it was.
    yield
    return
  before, args.stdout = args.stdout, os.fdopen(real, "w", buffering=1, closefd=False)
  try:
    yield
  finally:
    with contextlib.suppress(OSError, ValueError):
      args.stdout.flush()
    sys.stdout.flush()
    os.dup2(real, 1)
    os.close(real)
    args.stdout = before


def _fit_here(args) -> int:
  import numpy as np

  import mfjax
  from mfjax.core import training
  from mfjax.fitting.plan import kept_rank

  common.check_output_path("--save", args.save, _inputs(args))
  ranking = args.objective == "ranking"
  common.check_objective_options(args)
  parts = _reads_parts(args)
  train, test, maps, n_unknown = _fit_data(args, parts)
  n_train, n_test = (len(r) - r.n_padding for r in (train, test))
  fit_plan = _plan(args, train, maps)
  settings = fit_plan.settings._asdict()
  fitted, compile_seconds, fit_seconds = _timed(fit_plan, args.progress)
  results, params = fitted.members, fitted.best_params
  failure = training.failure(results)
  report = {"objective": args.objective, "solver": common.solver(args)}
  facts = dict(
    fit_seconds=fit_seconds,
    compile_seconds=compile_seconds,
    n_train=n_train,
    n_test=n_test,
    n_unknown_test=int(n_unknown),
    n_users=train.n_users,
    n_items=train.n_items,
    n_duplicates=maps.n_duplicates,
    **settings,
    diverged=bool(np.any(np.asarray(results.diverged_step) >= 0)),
    failure=failure,
  )

  def scores() -> dict:
    if ranking:
      threshold = common.relevance_threshold(args.threshold, test)
      found = common.ranking_report(params, train, test, threshold)
      return found | {"threshold": threshold}
    return dict(
      train_rmse=float(mfjax.rmse(params, train, scale=maps.scale)),
      test_rmse=float(mfjax.rmse(params, test, scale=maps.scale)),
      test_mae=float(mfjax.mae(params, test, scale=maps.scale)),
    )

  # Saved before anything is scored: a model that trained is kept even when
  # scoring it fails (out of memory on a large test file, say).
  saved = {}
  if args.save and (failure is None or args.allow_divergence):
    try:
      saved = _save(args, fitted, train, maps, settings, n_train, parts)
    except (OSError, ValueError):  # Still show what the training found.
      report.update(scores(), **facts)
      common.print_report(report)
      if args.json:
        common.emit_json(args, report)
      raise
  report.update(scores())
  threshold = report.get("threshold", args.threshold)
  effective_rank, collapsed = kept_rank(params, fit_plan.settings, "--l2")
  report.update(facts, effective_rank=effective_rank, **saved)
  common.print_report(report)
  common.note_unranked(report, threshold)
  if collapsed and failure is None:  # Else the failure's advice stands alone.
    print(f"warning: {collapsed}")
  if args.json:
    common.emit_json(args, report)
  common.check_training(args, failure)
  return 0


def _save(args, fitted, train, maps, settings, n_train, parts) -> dict:
  """Saves the fitted model to ``--save``; the report's lines about it."""
  import mfjax

  params = fitted.best_params
  saved = dict(settings, n_train=n_train, seed=args.seed)
  saved["train"] = os.path.basename(args.train)
  # Several processes: no process holds the training pairs to save.
  if args.no_rated or parts:
    model = mfjax.Model(
      params, id_maps=maps, settings=saved, objective=fitted.objective
    )
  else:
    model = fitted.model(train, maps, settings=saved)
  with common.sigterm_removes_partial_files():
    mfjax.save(args.save, model)
  return {
    "saved": args.save,
    "saved_rank": int(params.user_factors.shape[1]),
    "saved_bytes": os.path.getsize(args.save),
  }


def _inputs(args):
  """The files ``fit`` reads, by flag: ``--save`` may be none of them."""
  return (("TRAIN", args.train), ("--test", args.test))


def _fit_data(args, parts: bool):
  """``(train, test, maps, n_unknown)`` of ``fit``: the files, or a split."""
  import mfjax

  train, maps = common.load_ratings(
    args.train, scale=args.scale, columns=args.columns, show_columns=True, parts=parts
  )
  if args.test:
    test, test_maps = common.load_ratings(
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
  if not launch.asks_to_join(args):
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


def _plan(args, train, maps):
  """The plan of ``mfjax.fit`` for the command's settings
  (:func:`mfjax.fitting.plan.plan`): the same objectives, defaults, buckets
  and devices."""
  import jax

  from mfjax.fitting import plan
  from mfjax.settings import SETTINGS

  solver = common.solver(args)
  # Every process's devices: the ratings sharded (each process's part already
  # is, when read in parts), the model replicated.
  return plan.plan(
    jax.random.key(args.seed),
    train,
    objective=args.objective,
    solver=solver,
    scale=maps.scale,  # Rating fits only: the ranking plan takes none.
    progress=args.progress,
    one_device=args.one_device,
    **{name: getattr(args, name, None) for name in SETTINGS[solver]._fields},
  )


def _timed(fit_plan, progress: bool):
  """``(FitResult, compile seconds, fit seconds)`` of a plan, compiled apart
  (or read back compiled: :mod:`mfjax.cli.programs`)."""
  import time

  import jax

  from mfjax.cli import programs
  from mfjax.fitting import ensemble

  # Without --progress, a line on a terminal says what runs, after 3 s.
  quiet = contextlib.nullcontext
  working = (lambda what: quiet()) if progress else common.still_working
  start = time.perf_counter()
  with working("mfjax fit: compiling"):
    if progress:  # Its host callbacks are this run's: nothing kept.
      compiled = ensemble.compile_program(fit_plan.program, fit_plan.inputs)
    else:
      recipe = (type(fit_plan.settings).__name__, tuple(fit_plan.settings))
      recipe += (fit_plan.objective,)
      compiled = programs.compile_or_load(fit_plan.program, fit_plan.inputs, recipe)
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  with working("mfjax fit: fitting"):
    outputs = jax.block_until_ready(compiled(*fit_plan.inputs))
  fitted = fit_plan.finish(outputs)
  return fitted, compile_seconds, time.perf_counter() - start
