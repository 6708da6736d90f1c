"""What several commands share: reading ratings, models and item titles,
checking an output path, printing a report or JSON, and judging a fit.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import signal
import sys
import threading

__all__ = [
  "load_ratings",
  "load_model",
  "raw_id",
  "shown",
  "titles_of",
  "check_output_path",
  "emit_json",
  "print_report",
  "check_objective_options",
  "TrainingFailed",
  "check_training",
  "ranking_report",
  "note_unranked",
  "Terminated",
  "sigterm_removes_partial_files",
  "still_working",
]


def load_ratings(
  path: str, *, show_columns: bool = False, parts: bool = False, **options
):
  """``mfjax.load_ratings``, its warnings (a rating far off the others) on one
  line each on stderr, and, for a file with a header, which column is which.
  With ``parts``, every process reads its own part
  (:func:`mfjax.distributed.read_ratings`)."""
  import warnings

  import mfjax
  from mfjax.data.loaders import ScaleWarning
  from mfjax.data.textparse import IdSpellingWarning

  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ScaleWarning)
    warnings.simplefilter("always", IdSpellingWarning)
    if parts:  # Each process its own part, assembled into one sharded array.
      from mfjax.distributed import runtime as distributed

      ratings, maps = distributed.read_ratings(path, **options)
    else:  # A bar of the bytes read on a terminal, once a read takes 2 s.
      options.setdefault("progress", _on_a_terminal())
      ratings, maps = mfjax.load_ratings(path, **options)
  for warning in caught:
    if issubclass(warning.category, ScaleWarning):
      print(
        f"mfjax: warning: {shown(warning.message)} (--scale LO,HI)", file=sys.stderr
      )
    elif issubclass(warning.category, IdSpellingWarning):
      print(f"mfjax: warning: {shown(warning.message)}", file=sys.stderr)
    else:  # Not ours to word: shown as Python shows it.
      warnings.warn_explicit(
        warning.message, warning.category, warning.filename, warning.lineno
      )
  if show_columns and maps.header:
    named = zip(maps.columns, maps.header, strict=False)
    print(shown(f"{path}: columns " + ", ".join(f"{r}={n}" for r, n in named if r)))
  return ratings, maps


def _on_a_terminal() -> bool:
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):  # Replaced or closed.
    return False


def load_model(path: str):
  """A saved :class:`mfjax.Model` with id maps, or a one-line error."""
  import mfjax

  model = mfjax.load(path)
  if not isinstance(model, mfjax.Model) or model.id_maps is None:
    raise ValueError(
      f"{path} holds bare parameters without id maps; save a model with "
      "`mfjax fit --save` (or mfjax.Model(params, id_maps=...))."
    )
  return model


def raw_id(ids, text: str):
  """``text`` as an id of the kind in ``ids`` (int64 or str)."""
  import numpy as np

  if np.issubdtype(ids.dtype, np.integer):
    try:
      return int(text)
    except ValueError:
      return None  # Not an integer, so not one of these ids.
  return text


# Control characters (C0, DEL, C1) and the Unicode line and paragraph
# separators: in an id, a title, a path or an error's text they could start a
# new line (a forged "mfjax ...: error:" line) or steer the terminal (ANSI
# escapes), so they are shown escaped.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def shown(value) -> str:
  """``str(value)`` for a terminal: control characters escaped (``\\n``,
  ``\\x1b``), so that text from a file (an id, a title) or a path stays on
  its line and cannot steer the terminal."""
  return _UNPRINTABLE.sub(_escaped, str(value))


def _escaped(match) -> str:
  return match.group().encode("unicode_escape").decode("ascii")


def titles_of(path, raw_items):
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


def _item_titles(path: str) -> dict[str, str]:
  """Raw item id (as text) to title, from MovieLens u.item or movies.csv."""
  import csv

  from mfjax.data.textparse import RatingsFileError
  from mfjax.io.npzread import open_regular

  try:  # A FIFO would block the command, a device feed it endless bytes.
    file, _ = open_regular(path, "an item file", RatingsFileError)
    with file:
      raw = file.read()
  except OSError as e:
    raise ValueError(f"{path}: cannot read the item file ({e.strerror}).") from None
  if b"\0" in raw[:65536]:
    raise RatingsFileError(f"{path}: looks like a binary file (NUL bytes), not titles.")
  try:  # movies.csv (ml-latest) is UTF-8; MovieLens 100k's u.item is Latin-1.
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError:
    text = raw.decode("latin-1")
  if not text.strip():
    raise RatingsFileError(f"{path}: the item file is empty.")
  first = text.split("\n", 1)[0]
  sep = "|" if "|" in first else ","
  # A csv reader over the text, not over its lines: a quoted title may hold a
  # line break (movies.csv quotes such fields).
  # u.item is not CSV-quoted (a title may start with a quote mark); movies.csv
  # quotes titles that hold commas or line breaks.
  quoting = csv.QUOTE_NONE if sep == "|" else csv.QUOTE_MINIMAL
  rows = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting)
  try:
    return _titles_of_rows(path, rows, sep)
  except csv.Error as e:  # An unclosed quote running past the field limit.
    raise RatingsFileError(f"{path}:{rows.line_num}: {e}.") from None


def _titles_of_rows(path, rows, sep) -> dict[str, str]:
  from mfjax.data.textparse import RatingsFileError

  titles = {}
  for number, row in enumerate(rows, 1):
    if number == 1 and sep == "," and row[:2] == ["movieId", "title"]:
      continue  # The movies.csv header.
    if not row:
      continue  # A blank line.
    if len(row) < 2 or not row[0].strip():
      got = sep.join(row)
      raise RatingsFileError(
        f"{path}:{rows.line_num}: expected 'id{sep}title{sep}...'; got {got!r}"
      )
    titles[row[0].strip()] = row[1]
  return titles


def check_output_path(flag: str, path: str | None, inputs=()) -> None:
  """Refuses, before any work, an output path that cannot be written whole, or
  that would destroy what the command reads: one of its ``inputs`` (the same
  file by inode, under any name or link), a device, a FIFO, a socket or a
  directory (:func:`mfjax.io.atomic.check_target`)."""
  if path is None:
    return
  from mfjax.io.atomic import check_target

  try:
    check_target(path)
  except (OSError, ValueError) as e:
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    raise ValueError(f"{flag} {path}: {reason}") from None
  directory = os.path.dirname(os.path.abspath(path))
  if not os.access(directory, os.W_OK):
    raise ValueError(f"{flag} {path}: the directory {directory} is not writable.")
  for input_flag, input_path in inputs:
    if input_path is not None and _same_file(path, input_path):
      raise ValueError(
        f"{flag} {path} is {input_flag} {input_path}, which this command reads; "
        "writing there would destroy it. Choose another name."
      )


def _same_file(a: str, b: str) -> bool:
  """Whether two paths name one existing file (the same inode)."""
  try:
    return os.path.samefile(a, b)
  except (OSError, ValueError):  # One is missing: not the same file.
    return False


def emit_json(args, report: dict) -> None:
  """``report`` as the one JSON document on the real stdout (``main`` sends the
  human text to stderr under ``--json``); NaN and inf become null."""
  import json

  print(json.dumps(_json_safe(report), allow_nan=False), file=args.stdout)
  args.stdout.flush()  # Before any os._exit of a joined process.


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


def print_report(report: dict) -> None:
  """``report`` as aligned ``name  value`` lines, the None values left out."""
  report = {name: value for name, value in report.items() if value is not None}
  width = max(map(len, report))
  for name, value in report.items():
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    print(f"{name:<{width}}  {shown}")


# The flags of the settings that one solver refuses (mfjax.settings.REFUSED).
_FLAGS = {
  "steps": "--steps",
  "l2": "--l2",
  "samples": "--samples",
  "burn_in": "--burn-in",
  "max_rank": "--max-rank",
  "implicit": "--implicit",
  "learning_rate": "--lr",
  "l2_bias": "--l2-bias",
  "batch_size": "--batch-size",
  "ensemble": "--ensemble",
  "alpha0": "--alpha0",
  "confidence": "--confidence",
  "confidence_transform": "--confidence-transform",
}


def solver(args) -> str:
  """The solver of ``fit`` and ``cv``: ``--solver``, or the objective's
  default (:func:`mfjax.settings.solver_for`; a ValueError for a solver that
  cannot fit the objective, by its flags)."""
  from mfjax.settings import SOLVERS, solver_for

  if args.solver is not None and args.solver not in SOLVERS[args.objective]:
    raise ValueError(
      f"--solver {args.solver} cannot fit --objective {args.objective}; it "
      f"takes {', '.join(SOLVERS[args.objective])}."
    )
  return solver_for(args.objective, args.solver)


def check_objective_options(args) -> None:
  """Refuses (``fit``, ``cv``) a setting that the chosen objective and
  solver do not take, by its flag: the settings ``mfjax.fit`` refuses."""
  from mfjax.settings import GibbsSettings, refused

  chosen = solver(args)
  name = refused(chosen, vars(args))
  if name is None:
    return
  if chosen == "als":
    raise ValueError(f"{_FLAGS[name]} does not apply to --objective ranking.")
  if chosen == "gibbs":
    raise ValueError(f"{_FLAGS[name]} does not apply to --solver gibbs.")
  if name in GibbsSettings._fields:
    raise ValueError(f"{_FLAGS[name]} applies to --solver gibbs only.")
  raise ValueError(f"{_FLAGS[name]} applies to --objective ranking only.")


class TrainingFailed(Exception):
  """A fit that diverged or made no progress (exit 1, unless --allow-divergence)."""


def check_training(args, failure: str | None) -> None:
  """Fails the command on a diverged fit, unless ``--allow-divergence``."""
  if failure is None:
    return
  rating = args.objective == "rating"
  if solver(args) == "gibbs":
    advice = "a smaller --rank, or ratings on a smaller scale"
  elif "no progress" in failure:
    advice = "another --lr or more --steps" if rating else "more --steps"
  else:
    advice = "a smaller --lr or a larger --l2" if rating else "a larger --l2"
  if args.command == "cv":
    anyway, kept = "score the folds anyway", "the folds were scored as they are"
  else:
    anyway, kept = "keep the best parameters anyway", "the best parameters were kept"
  if not args.allow_divergence:
    saved = f"{args.save} was not written; " if getattr(args, "save", None) else ""
    raise TrainingFailed(
      f"{failure}; {saved}try {advice}, or pass --allow-divergence to {anyway}."
    )
  print(f"warning: {failure}; {kept} (--allow-divergence).")


def ranking_report(params, train, test, threshold, k=10, prefix="test_"):
  """Top-``k`` metrics of ``params`` on ``test``, training items left out."""
  from mfjax.fitting import crossval

  scores = crossval.ranking_scores(params, train, test, k=k, threshold=threshold)
  n_users = scores.pop("n_users")
  report = {f"{prefix}{name}_at_{k}": value for name, value in scores.items()}
  return report | {"n_users_ranked": n_users}


def relevance_threshold(given: float | None, ratings) -> float:
  """``--threshold``: as given, else 4, or the one value every (weighted)
  rating of ``ratings`` holds (implicit feedback: every "rating" 1), so that
  relevant means rated. Ratings this process holds only a part of (several
  processes) give 4 (:func:`mfjax.validation.single_value`)."""
  from mfjax import validation

  if given is not None:
    return given
  value = validation.single_value(ratings)
  return 4.0 if value is None else value


def note_unranked(report: dict, threshold: float) -> None:
  """Says why the ranking metrics are NaN when no test user could be ranked."""
  if report.get("n_users_ranked", 1):
    return
  if report.get("n_unknown_test") == report.get("n_test"):
    why = "none of the test ratings is of a user and an item in the model"
  else:
    why = f"no test user in the model has a rating >= {threshold:g} (relevant)"
  print(f"note: {why}, so the ranking metrics are undefined (nan; null in --json).")


class Terminated(BaseException):
  """SIGTERM while a file is written, raised so that the writer removes its
  temporary file."""


@contextlib.contextmanager
def sigterm_removes_partial_files():
  """Turns SIGTERM into :class:`Terminated` while a command writes a file (a
  saved model, the lists of ``--all``), then dies of it as SIGTERM would have
  killed the process, the temporary file removed.

  The command line is the program, so it may take the signal; the library
  (``mfjax.save``, ``atomic_write``) installs no handler. Only around writes:
  a Python handler runs between bytecodes, so one held during a long compiled
  fit would delay SIGTERM until the fit ends. Only where SIGTERM would kill the
  process outright (its default action), and in the main thread, where Python
  runs signal handlers.
  """
  try:
    default = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
  except (AttributeError, ValueError):  # No SIGTERM here.
    default = False
  if not default or threading.current_thread() is not threading.main_thread():
    yield
    return

  def terminate(signum, frame):
    raise Terminated

  signal.signal(signal.SIGTERM, terminate)
  try:
    yield
  except Terminated:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # Dies as it would have, files removed.
    raise
  finally:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def still_working(what: str, stream=None, delay: float = 3.0, every: float = 1.0):
  """On a terminal, a line on ``stream`` (stderr) saying ``what`` is under way
  and for how long, once it has taken ``delay`` seconds, updated every
  ``every`` seconds and cleared at the end: long fits without ``--progress``
  (whose bar costs a kept program) are not silent. A thread prints it while
  the compiled program runs (JAX releases the GIL)."""
  import time

  stream = sys.stderr if stream is None else stream
  try:
    terminal = stream.isatty()
  except (AttributeError, ValueError):
    terminal = False
  if not terminal:
    yield
    return
  done, start, shown = threading.Event(), time.monotonic(), []

  def show():
    if done.wait(delay):
      return
    while not done.is_set():
      text = f"{what}... {time.monotonic() - start:.0f} s"
      stream.write("\r" + text)
      stream.flush()
      shown[:] = [len(text)]
      done.wait(every)

  thread = threading.Thread(target=show, daemon=True)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()
    if shown:  # Cleared, so that the report starts on a clean line.
      stream.write("\r" + " " * shown[0] + "\r")
      stream.flush()
