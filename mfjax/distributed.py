"""Several processes: JAX's multi-controller runtime, checked and bounded.

mfjax does not run its own cluster code. :func:`initialize` calls
``jax.distributed.initialize`` (which also knows SLURM, Open MPI and Kubernetes
environments when given nothing) after checking its arguments, with gloo
collectives on CPU (so that a test can run several processes on one machine)
and with timeouts that bound how long a process waits for a missing peer.
:func:`launch` starts ``n`` local processes of an ``mfjax`` command, each told
its place, and forwards their output with a ``[i]`` prefix.

After :func:`initialize`, ``jax.devices()`` lists every process's devices, and
:func:`global_mesh` is a one-axis mesh over them; ``mfjax fit`` shards its
ratings over it and trains one replicated model.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

import jax
import numpy as np
from jax.sharding import Mesh

from mfjax import validation

__all__ = [
  "TIMEOUT_SECONDS",
  "DistributedError",
  "check_coordinator",
  "initialize",
  "global_mesh",
  "free_port",
  "launch",
]

TIMEOUT_SECONDS = 60
"""How long a process waits for the others to join, and how long a silent peer
may go unheard before the others fail (``jax.distributed.initialize``'s
``initialization_timeout`` and ``heartbeat_timeout_seconds``)."""


class DistributedError(RuntimeError):
  """The processes could not start or keep running together (one line)."""


def check_coordinator(text: str) -> str:
  """Checks ``HOST:PORT`` (a port in 1-65535) and returns it.

  Args:
    text: the coordinator's address.

  Returns:
    ``text``.

  Examples:
    >>> from mfjax import distributed
    >>> distributed.check_coordinator("127.0.0.1:4000")
    '127.0.0.1:4000'
  """
  if not isinstance(text, str):
    raise TypeError(f"coordinator must be a str HOST:PORT; got {text!r}.")
  host, _, port = text.rpartition(":")
  if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise ValueError(
      f"coordinator must be HOST:PORT with a port in 1-65535; got {text!r}."
    )
  return text


def initialize(
  coordinator: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  auto: bool = False,
  timeout: int = TIMEOUT_SECONDS,
) -> None:
  """Joins this process to the others: ``jax.distributed.initialize``, checked.

  Call it first, before any JAX computation, in every process. Give the three
  of ``coordinator``, ``num_processes`` and ``process_id``, or ``auto=True`` to
  let JAX read them from the environment (SLURM, Open MPI, Kubernetes).

  Args:
    coordinator: ``HOST:PORT`` of process 0's coordination service.
    num_processes: how many processes, >= 1.
    process_id: this process's index, in ``[0, num_processes)``.
    auto: read the cluster from the environment instead.
    timeout: seconds to wait for every process to join, and for a silent
      peer before the others fail (:data:`TIMEOUT_SECONDS`).

  Raises:
    ValueError, TypeError: bad arguments, before anything starts.
    DistributedError: the processes could not join (unreachable coordinator,
      a timeout, JAX already running), in one line.
  """
  given = [v is not None for v in (coordinator, num_processes, process_id)]
  timeout = validation.check_positive_int("timeout", timeout)
  if auto and any(given):
    raise ValueError(
      "auto=True reads the cluster from the environment; leave out coordinator, "
      "num_processes and process_id."
    )
  if not auto:
    if not all(given):
      raise ValueError(
        "give coordinator, num_processes and process_id together (or auto=True)."
      )
    check_coordinator(coordinator)
    num_processes = validation.check_positive_int("num_processes", num_processes)
    if isinstance(process_id, bool) or not isinstance(process_id, int | np.integer):
      raise TypeError(f"process_id must be an int; got {process_id!r}.")
    if not 0 <= process_id < num_processes:
      raise ValueError(
        f"process_id must lie in [0, {num_processes}) for num_processes = "
        f"{num_processes}; got {process_id}."
      )
  # Gloo: JAX's CPU collectives across processes (GPUs use NCCL regardless).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
      coordinator,
      num_processes,
      None if process_id is None else int(process_id),
      initialization_timeout=timeout,
      heartbeat_timeout_seconds=timeout,
    )
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DistributedError(f"could not join the other processes: {first}") from e


def global_mesh() -> Mesh:
  """A one-axis mesh, ``("data",)``, over every process's devices."""
  return Mesh(np.array(jax.devices()), ("data",))


def free_port() -> int:
  """A TCP port on 127.0.0.1 that was free a moment ago (for a local launch)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(
  command: Sequence[str],
  processes: int,
  *,
  devices: int | None = None,
  grace: float = TIMEOUT_SECONDS,
  out: IO[str] | None = None,
) -> int:
  """Runs ``mfjax COMMAND`` in ``processes`` local processes, joined together.

  Each process gets ``--coordinator 127.0.0.1:PORT --num-processes N
  --process-id I`` appended (a free port), and with ``devices``, that many
  simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count``).
  Their output lines are forwarded as they come, prefixed ``[I] ``. When a
  process fails, the others get ``grace`` seconds to notice (their own
  timeouts) before they are terminated.

  Args:
    command: the mfjax command and its arguments, e.g. ``["fit", "u1.base"]``.
    processes: how many processes, >= 1.
    devices: CPU devices per process, or None for the platform's.
    grace: seconds the others may run on after one failed.
    out: where the lines go (default ``sys.stdout``).

  Returns:
    The worst exit code: the first non-zero one in process order (a signal
    ``s`` counts as ``128 + s``), else 0.
  """
  processes = validation.check_positive_int("processes", processes)
  if devices is not None:
    devices = validation.check_positive_int("devices", devices)
  out = sys.stdout if out is None else out
  port = free_port()
  env = dict(os.environ)
  if devices is not None:
    flag = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
  lock = threading.Lock()
  running, threads = [], []
  for index in range(processes):
    argv = [
      sys.executable, "-m", "mfjax", *command,
      "--coordinator", f"127.0.0.1:{port}",
      "--num-processes", str(processes), "--process-id", str(index),
    ]  # fmt: skip
    child = subprocess.Popen(
      argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    running.append(child)
    thread = threading.Thread(target=_forward, args=(child, index, out, lock))
    thread.start()
    threads.append(thread)
  codes = _wait(running, grace)
  for thread in threads:
    thread.join()
  bad = [c if c >= 0 else 128 - c for c in codes if c != 0]
  return bad[0] if bad else 0


def _forward(child: subprocess.Popen, index: int, out: IO[str], lock) -> None:
  for line in child.stdout:
    with lock:
      out.write(f"[{index}] {line}")
      out.flush()


def _wait(running: list[subprocess.Popen], grace: float) -> list[int]:
  """Exit codes of ``running``; after the first failure, the rest get ``grace``
  seconds, then SIGTERM, then SIGKILL."""
  deadline = None
  while True:
    codes = [child.poll() for child in running]
    if all(code is not None for code in codes):
      return codes
    if deadline is None and any(code not in (None, 0) for code in codes):
      deadline = time.monotonic() + grace
    if deadline is not None and time.monotonic() > deadline:
      for child in running:
        if child.poll() is None:
          child.send_signal(signal.SIGTERM)
      try:
        for child in running:
          child.wait(timeout=10)
      except subprocess.TimeoutExpired:
        for child in running:
          if child.poll() is None:
            child.kill()
      return [child.wait() for child in running]
    time.sleep(0.05)
