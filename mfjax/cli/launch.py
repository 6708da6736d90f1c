"""``mfjax launch``, and the joining of the processes of one ``fit``.

``mfjax launch -n N -- fit ...`` starts N local processes of ``fit``, each given
``--coordinator``, ``--num-processes`` and ``--process-id``; :func:`join` is how
``fit`` joins them (or the processes of a cluster, ``--distributed auto``), and
:func:`check_same_command` refuses processes started with different options.
"""

from __future__ import annotations

import argparse

from mfjax.cli import options

__all__ = ["add_parser", "run", "asks_to_join", "join", "check_same_command"]


def add_parser(sub) -> None:
  """Registers ``mfjax launch``."""
  launch = sub.add_parser(
    "launch",
    help="run an mfjax command in N local processes joined together",
    description=(
      "Start N processes of `mfjax COMMAND ...` on this machine, each given "
      "--coordinator, --num-processes and --process-id, and forward their output "
      "prefixed [I]. Exits with the worst exit code."
    ),
  )
  launch.add_argument(
    "-n", "--processes", type=options.positive, required=True, metavar="N"
  )
  launch.add_argument(
    "--devices",
    type=options.positive,
    metavar="D",
    help="simulated CPU devices per process (XLA_FLAGS); default the platform's",
  )
  launch.add_argument(
    "--grace",
    type=options.positive,
    default=60,
    metavar="S",
    help="seconds the others may run on after one process failed (default 60)",
  )
  launch.add_argument(
    "mfjax_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
    help="the mfjax command to run, e.g. -- fit u1.base --test u1.test",
  )  # fmt: skip


def run(args) -> int:
  """``mfjax launch``: ``fit`` in N local processes joined together."""
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


def asks_to_join(args) -> bool:
  """Whether the command line names other processes to join (``--coordinator``,
  ``--num-processes``, ``--process-id`` or ``--distributed``)."""
  names = ("coordinator", "num_processes", "process_id", "distributed")
  return any(getattr(args, name, None) is not None for name in names)


def join(args) -> bool:
  """Joins the processes that ``--coordinator ...`` or ``--distributed auto``
  name (before any JAX computation); returns whether it did."""
  named = (args.coordinator, args.num_processes, args.process_id)
  if not asks_to_join(args):
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
  _sigterm_ends_the_process()
  return True


def runtime_log_held_back(args):
  """A context in which JAX's C++ log on stderr is held back, when the command
  line joins other processes: JAX's runtime may abort this process with a
  stack trace when a peer dies, and one line says so instead
  (:mod:`mfjax.distributed.logfilter`)."""
  import contextlib

  if not asks_to_join(args) or (args.num_processes or 2) < 2:
    return contextlib.nullcontext()
  from mfjax.distributed import logfilter

  who = "this process" if args.process_id is None else f"process {args.process_id}"
  # Once JAX's runtime has started, the filter stays until the process ends:
  # the runtime shuts down at exit, after mfjax's last line, and may abort there.
  return logfilter.held_back(f"mfjax fit: error: {who}", until_exit=_runtime_started)


def _runtime_started() -> bool:
  import jax

  started = getattr(jax.distributed, "is_initialized", None)
  return bool(started and started())


def _sigterm_ends_the_process() -> None:
  """SIGTERM ends ``fit`` again, as it ends any command: JAX's distributed
  runtime installs a preemption notifier that catches SIGTERM and only logs
  it, so a fit told to stop ran on (and ``mfjax launch`` could not end it)."""
  import signal
  import threading

  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# What may differ between the processes of one fit: their place, and the paths
# of the files (mounted elsewhere on other machines; their bytes are compared).
_PER_PROCESS = {"process_id", "train", "test", "stdout"}


def check_same_command(args, exchange) -> None:
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
