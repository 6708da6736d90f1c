"""The ``mfjax`` command line: the top-level parser, ``main`` and its exit codes.

``mfjax demo [--seed N]`` runs the seed notebook in JAX and then the corrected model.
``mfjax fit TRAIN ...`` trains on a ratings file (``--save MODEL`` keeps the model),
``mfjax recommend MODEL --user ID`` lists a user's top items, ``mfjax evaluate
MODEL TEST`` scores a saved model on held-out ratings, ``mfjax similar MODEL
--item ID`` lists an item's nearest items, ``mfjax cv FILE`` cross-validates the
fit and ``mfjax launch -n N -- fit ...`` runs a fit in N joined processes.

Each command is a module of :mod:`mfjax.cli` with ``add_parser(sub)``, which
registers it, and ``run(args)``, which runs it and returns the exit code.

Bad arguments exit with code 2 and one line on stderr saying what is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Sequence

from mfjax.cli import common, cv, demo, evaluate, fit, launch, recommend, similar

__all__ = ["main"]


_CACHE_ENV = "MFJAX_COMPILATION_CACHE"

# Each command's module, in the order of `mfjax --help`: its add_parser(sub)
# registers the subcommand, its run(args) runs it (looked up at each call).
_COMMANDS = {
  "demo": demo,
  "fit": fit,
  "recommend": recommend,
  "evaluate": evaluate,
  "similar": similar,
  "cv": cv,
  "launch": launch,
}


class _UsageError(Exception):
  """A bad command line; reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
  """A parser that raises :class:`_UsageError` instead of exiting."""

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


def _parser() -> argparse.ArgumentParser:
  """The ``mfjax`` parser, with a subparser for each command."""
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
  for command in _COMMANDS.values():
    command.add_parser(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit code."""
  try:
    return _main(argv)
  except KeyboardInterrupt:  # Ctrl-C before a command ran (importing jax).
    print("mfjax: interrupted.", file=sys.stderr)
    return 130


def _main(argv: Sequence[str] | None) -> int:
  argv = _negative_values_joined(sys.argv[1:] if argv is None else list(argv))
  try:
    args = _parser().parse_args(argv)
  except _UsageError as e:
    print(f"mfjax: error: {common.shown(e)}", file=sys.stderr)
    return 2
  _enable_compilation_cache()
  args.stdout = sys.stdout  # The JSON's; human text goes to stderr under --json.
  human = sys.stderr if getattr(args, "json", False) else sys.stdout
  try:
    with contextlib.redirect_stdout(human):
      code = _COMMANDS[args.command].run(args)
    sys.stdout.flush()  # A closed pipe shows here, not at exit.
    return code
  except BrokenPipeError:  # `mfjax ... | head`: stop quietly, as cat would.
    _stdout_to_devnull()
    return 141  # 128 + SIGPIPE: what a shell shows for `cat big | head`.
  except (ValueError, TypeError) as e:  # RatingsFileError is a ValueError.
    print(f"mfjax {args.command}: error: {common.shown(e)}", file=sys.stderr)
    return 2
  except common.TrainingFailed as e:
    print(f"mfjax {args.command}: error: {common.shown(e)}", file=sys.stderr)
    return 1
  except OSError as e:  # A model file that is missing or unreadable.
    print(f"mfjax {args.command}: error: {common.shown(_os_error(e))}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:  # Ctrl-C: files being written were removed whole.
    print(
      f"mfjax {args.command}: interrupted; a file being written was left as it was.",
      file=sys.stderr,
    )
    return 130  # 128 + SIGINT, as a shell shows it.
  except Exception as e:  # Every other class: one line too, never a traceback.
    code, text = _unforeseen(e)
    print(f"mfjax {args.command}: {common.shown(text)}", file=sys.stderr)
    return code


def _unforeseen(e: Exception) -> tuple[int, str]:
  """The exit code and the one line of an exception no command turned into a
  ValueError, TypeError or OSError: 2 for what the input or the machine's
  resources caused, 1 for a failure of mfjax itself."""
  first = (str(e).strip().splitlines() or [""])[0][:300]
  distributed = sys.modules.get("mfjax.distributed")
  if distributed is not None and isinstance(e, distributed.DistributedError):
    return 2, f"error: {first}"
  if isinstance(e, MemoryError):
    return 2, "error: out of memory on the host; try a smaller input or option."
  if "RESOURCE_EXHAUSTED" in first:  # XLA's out-of-memory, on any device.
    return 2, f"error: out of memory on the device ({first})."
  if isinstance(e, RecursionError):
    return 2, "error: an input nested too deeply to read."
  return 1, f"internal error: {type(e).__name__}: {first} (please report it)"


# Options whose value may start with "-" (a negative number): argparse would
# take "--scale -10,10"'s value for an option of its own.
_SIGNED_VALUES = ("--scale",)


def _negative_values_joined(argv: list[str]) -> list[str]:
  """``--scale -10,10`` as ``--scale=-10,10``, so that argparse parses it."""
  out = []
  for arg in argv:
    if out and out[-1] in _SIGNED_VALUES and re.match(r"-\.?\d", arg):
      out[-1] = f"{out[-1]}={arg}"
    else:
      out.append(arg)
  return out


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
