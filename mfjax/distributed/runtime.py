"""Several processes: JAX's multi-controller runtime, checked and bounded.

mfjax does not run its own cluster code. :func:`initialize` calls
``jax.distributed.initialize`` (which also knows SLURM, Open MPI and Kubernetes
environments when given nothing) after checking its arguments, with gloo
collectives on CPU (so that a test can run several processes on one machine)
and with timeouts that bound how long a process waits for a missing peer.
:func:`launch` starts ``n`` local processes of an ``mfjax`` command, each told
its place, and forwards their output with a ``[i]`` prefix.

After :func:`initialize`, ``jax.devices()`` lists every process's devices, and
:func:`global_mesh` is a one-axis mesh over them. :func:`read_ratings` has
each process read its own part of a ratings file
(:func:`mfjax.distributed.parts.load_ratings_part`, through a :class:`ProcessExchange`)
and assembles the parts into one ratings array sharded over the mesh, in the
file's order, as ``jax.make_array_from_process_local_data``; ``mfjax fit``
trains one replicated model on it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
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
from mfjax.distributed import parts
from mfjax.distributed.exchange import Exchange, ProcessExchange, first_failure
from mfjax.distributed.logfilter import (
  RAW_LOG_ENV,
  RUNTIME_LOG,
  last_words,
  said_an_error,
)
from mfjax.fitting import buckets
from mfjax.types import IdMaps, Ratings

__all__ = [
  "TIMEOUT_SECONDS",
  "JOIN_TOKEN_ENV",
  "DistributedError",
  "check_coordinator",
  "initialize",
  "global_mesh",
  "ProcessExchange",
  "first_failure",
  "read_ratings",
  "free_port",
  "launch",
  "STOPPED_SECONDS",
  "RAW_LOG_ENV",
]

TIMEOUT_SECONDS = 60
"""How long a process waits for the others to join, and how long a silent peer
may go unheard before the others fail (``jax.distributed.initialize``'s
``initialization_timeout`` and ``heartbeat_timeout_seconds``)."""


JOIN_TOKEN_ENV = "MFJAX_JOIN_TOKEN"
"""An environment variable: a secret that the processes of one run share
(:func:`launch` sets a random one for its processes). When process 0 has one,
it accepts only joins that give it; set it alike on every machine of a
cluster to keep other programs from joining the rendezvous."""


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
  if not auto:  # JAX aborts on a missing peer; find it first, in one line.
    _rendezvous(coordinator, num_processes, int(process_id), timeout)
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


def _host_port(coordinator: str) -> tuple[str, int]:
  host, _, port = coordinator.rpartition(":")
  return host.strip("[]"), int(port)


def _rendezvous(coordinator: str, n: int, index: int, timeout: float) -> None:
  """Meets the other processes on the coordinator's port before JAX does.

  JAX aborts a process (a stack dump, exit 134) whose peers do not all
  register in time; here each process says its id and count to process 0,
  which answers every one once all have come, so that a missing process, a
  wrong count or a used id is a one-line :class:`DistributedError` in each
  process instead. Then the port is free again for JAX's coordination service.
  """
  if n == 1:
    return
  if index == 0:
    _gather(_host_port(coordinator)[1], n, timeout)
    return
  token = os.environ.get(JOIN_TOKEN_ENV, "")
  with _connect(coordinator, timeout) as conn:
    conn.sendall(f"mfjax {index} {n} {token}".strip().encode() + b"\n")
    conn.settimeout(timeout + 10)  # Process 0 answers when all have come.
    try:
      reply = _line(conn)
    except OSError:
      reply = ""
  if reply == "ok":
    return
  if not reply:
    raise DistributedError(
      f"the coordinator {coordinator} stopped answering while the processes joined."
    )
  if reply.startswith("error "):  # Process 0's own words.
    raise DistributedError(reply.removeprefix("error "))
  # Another service on the port (a web server, a gRPC one): its bytes are not
  # shown, only that it is not process 0.
  raise DistributedError(
    f"the coordinator {coordinator} answered as no mfjax process 0 does: is "
    "another service listening on that port?"
  )


def _line(conn: socket.socket) -> str:
  """One line from ``conn`` (at most 1 KiB), without its newline."""
  data = b""
  while not data.endswith(b"\n") and len(data) < 1024:
    chunk = conn.recv(1024)
    if not chunk:
      break
    data += chunk
  return data.decode(errors="replace").strip()


def _connect(coordinator: str, timeout: float) -> socket.socket:
  """A connection to process 0, tried until ``timeout`` seconds have passed."""
  host, port = _host_port(coordinator)
  deadline = time.monotonic() + timeout
  while True:
    try:
      return socket.create_connection((host, port), timeout=1)
    except OSError as e:
      if time.monotonic() > deadline:
        raise DistributedError(
          f"could not reach the coordinator {coordinator} within {timeout} s "
          f"({e.strerror or e}): is process 0 running there, with this address?"
        ) from None
      time.sleep(0.25)


def _gather(port: int, n: int, timeout: float) -> None:
  """Process 0: waits for processes 1 to n - 1, then answers each."""
  dual = socket.has_dualstack_ipv6()  # IPv6 and IPv4 peers, as JAX serves.
  try:
    server = socket.create_server(
      ("", port),
      family=socket.AF_INET6 if dual else socket.AF_INET,
      backlog=n,
      reuse_port=False,
      dualstack_ipv6=dual,
    )
  except OSError as e:
    raise DistributedError(
      f"process 0 cannot serve the coordinator on port {port}: "
      f"{e.strerror or e}; choose another --coordinator port."
    ) from None
  with server:
    joined, problem = {}, None
    try:
      problem = _accept_all(server, n, timeout, joined)
      reply = "ok" if problem is None else f"error {problem}"
      for conn in joined.values():
        conn.sendall(f"{reply}\n".encode())
      for conn in joined.values():  # They close first: the port stays free.
        conn.settimeout(5)
        with contextlib.suppress(OSError):
          conn.recv(1)
    finally:
      for conn in joined.values():
        conn.close()
  if problem is not None:
    raise DistributedError(problem)


def _a_join(words: list[str]) -> bool:
  """Whether a line has the form of a join: ``mfjax INDEX COUNT [TOKEN]``."""
  return (
    len(words) in (3, 4)
    and words[0] == "mfjax"
    and all(word.isascii() and word.isdigit() for word in words[1:3])
  )


def _one_of_ours(words: list[str]) -> bool:
  """Whether a join line carries this process's token (:data:`JOIN_TOKEN_ENV`),
  or none when there is none: a process that does not know it is not one of
  this run's."""
  import hmac

  token = os.environ.get(JOIN_TOKEN_ENV, "")
  if not _a_join(words) or len(words) != 3 + bool(token):
    return False
  return not token or hmac.compare_digest(words[3].encode(), token.encode())


def _accept_all(server: socket.socket, n: int, timeout: float, joined: dict):
  """Fills ``joined`` (id -> connection) until all came; returns what went
  wrong, or None."""
  deadline = time.monotonic() + timeout
  while len(joined) < n - 1:
    left = deadline - time.monotonic()
    if left <= 0:
      break
    server.settimeout(left)
    try:
      conn, _ = server.accept()
    except TimeoutError:
      break
    conn.settimeout(min(max(left, 1), 5))  # A peer says who it is at once.
    try:
      words = _line(conn).split()
    except OSError:
      words = []
    if not _one_of_ours(words):  # A stray or spoofed connection: ignored.
      if _a_join(words):  # Ours in form, but not of this run's token.
        with contextlib.suppress(OSError):
          conn.sendall(
            b"error process 0 and this process were given different tokens "
            b"(MFJAX_JOIN_TOKEN): start every process alike.\n"
          )
      conn.close()
      continue
    index, count = int(words[1]), int(words[2])
    joined[index] = conn if index not in joined else joined[index]
    if count != n:
      return (
        f"process {index} was started with --num-processes {count} and "
        f"process 0 with {n}: give every process the same command."
      )
    if index in joined and joined[index] is not conn:
      conn.close()
      return f"two processes were started with --process-id {index}."
  missing = [str(i) for i in range(1, n) if i not in joined]
  if missing:
    return (
      f"process {', '.join(missing)} of {n} did not join within {timeout} s: "
      "start all of them, with ids 0 to N-1 and the same --coordinator."
    )
  return None


def global_mesh() -> Mesh:
  """A one-axis mesh, ``("data",)``, over every process's devices."""
  return Mesh(np.array(jax.devices()), ("data",))


def read_ratings(
  path: str,
  *,
  mesh: Mesh | None = None,
  bucket: bool = True,
  exchange: Exchange | None = None,
  **options,
) -> tuple[Ratings, IdMaps]:
  """A ratings file read by every process, each its own part, as one array.

  Each process reads the lines in its share of the bytes
  (:func:`mfjax.distributed.parts.load_ratings_part`: the processes agree on one id map,
  the scale and the duplicates), and the parts are moved by at most the rows
  that cross a block boundary so that each process holds the block of the
  whole that its devices hold: no process ever reads or holds the whole file.
  The result is ``load_ratings(path)``'s ratings, in the file's order, padded
  with weight-0 entries and sharded over ``mesh``'s first axis
  (``jax.make_array_from_process_local_data``).

  Args:
    path: an uncompressed ratings file that every process can read.
    mesh: the devices (default :func:`global_mesh`); each process's devices
      must be consecutive along its first axis.
    bucket: pad to :func:`mfjax.fitting.buckets.bucket`'s size (so that files of
      nearby sizes share one compiled fit), else to the next multiple of the
      number of devices.
    exchange: how the processes talk (default a :class:`ProcessExchange`).
    **options: ``load_ratings``' options (``format``, ``sep``, ``columns``,
      ``id_maps``, ``scale``, ``duplicates``).

  Returns:
    ``(ratings, id_maps)``: ``ratings`` with ``n_padding`` weight-0 entries at
    the end, sharded; the maps of the whole file, the same in every process.
  """
  exchange = ProcessExchange() if exchange is None else exchange
  mesh = global_mesh() if mesh is None else mesh
  part, maps, offset = parts.load_ratings_part(path, exchange, **options)
  n = maps.n_lines - maps.n_duplicates
  n_devices = mesh.devices.size
  size = buckets.bucket(n) if bucket else n
  size = -(-max(size, 1) // n_devices) * n_devices
  # A mesh without this process's devices would leave the others waiting.
  block = first_failure(lambda: _block_of_process(mesh, size), exchange)
  tables = {"n_users": part.n_users, "n_items": part.n_items}
  columns = [part.users, part.items, part.values]
  del part
  local = _rebalanced(columns, offset, block, n, exchange)
  spec = jax.sharding.PartitionSpec(mesh.axis_names[0])
  sharding = jax.sharding.NamedSharding(mesh, spec)
  if size == n:  # No padding: no weights (all ones) to place.
    local.pop()
  placed = []
  while local:  # One column at a time: host and device copies overlap least.
    column = local.pop(0)
    placed.append(jax.make_array_from_process_local_data(sharding, column, (size,)))
    del column
  users, items, values, *weights = placed
  weights = weights[0] if weights else None
  ratings = Ratings(users, items, values, **tables, weights=weights, n_padding=size - n)
  return ratings, maps


def _block_of_process(mesh: Mesh, size: int) -> tuple[int, int]:
  """``[start, stop)`` of the rows this process's devices hold."""
  flat = list(mesh.devices.flat)
  mine = [k for k, d in enumerate(flat) if d.process_index == jax.process_index()]
  per_device = size // len(flat)
  if not mine or mine != list(range(mine[0], mine[-1] + 1)):
    raise ValueError(
      "each process's devices must be in the mesh, consecutive; build it over "
      "jax.devices() (distributed.global_mesh())."
    )
  return mine[0] * per_device, (mine[-1] + 1) * per_device


def _rebalanced(columns: list, offset: int, block, n: int, exchange) -> list:
  """``[users, items, values, weights]`` of rows ``block`` of the whole: this
  part's rows there, the other parts' rows that fall there, padding past ``n``.

  ``columns`` (this part's users, items and ratings, rows ``offset`` on) is
  emptied as they are copied. The rows outside this process's block travel,
  one part's at a time (each process keeps those of its block), so a process
  holds its part, its block and at most one other part's moving rows.
  """
  start, stop = block
  end = offset + len(columns[0])
  lo, hi = max(offset, start), min(end, stop)  # Rows that stay here.
  ranges = np.array([offset, min(end, start), max(offset, stop), end], np.int64)
  away = np.r_[np.arange(*ranges[:2]), np.arange(*ranges[2:])] - offset
  local = [np.zeros(stop - start, c.dtype) for c in columns]
  for out, column in zip(local, columns, strict=True):
    if hi > lo:
      out[lo - start : hi - start] = column[lo - offset : hi - offset]
  covered = max(0, hi - lo)
  for root in range(exchange.count):
    theirs = exchange.broadcast(ranges, root)
    places = np.r_[np.arange(*theirs[:2]), np.arange(*theirs[2:])]
    wanted = (places >= start) & (places < stop)
    for out, column in zip(local, columns, strict=True):
      sent = exchange.broadcast(column[away], root)
      if root != exchange.index:
        out[places[wanted] - start] = sent[wanted]
    if root != exchange.index:
      covered += int(wanted.sum())
  columns.clear()
  if covered != max(0, min(stop, n) - start):
    raise RuntimeError("the parts do not cover this block: a bug, please report.")
  weights = np.zeros(stop - start, np.float32)
  weights[:covered] = 1
  return [*local, weights]


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
  env[JOIN_TOKEN_ENV] = secrets.token_hex(16)  # Only these processes join.
  lock = threading.Lock()
  running, threads, hidden, said = [], [], [], []
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
    hidden.append([])
    said.append([])
    thread = threading.Thread(
      target=_forward, args=(child, index, out, lock, hidden[index], said[index])
    )
    thread.start()
    threads.append(thread)
  with _signals_forwarded() as received:
    codes = _wait(running, grace, received)
  for thread in threads:
    thread.join()
  for index, (code, lines) in enumerate(zip(codes, hidden, strict=True)):
    if said[index] and (code >= 0 or code == -signal.SIGABRT):
      continue  # The process said why it ended, in its own line (its log
      # filter's included, where JAX's runtime aborted it).
    # One line for a process that ended without one of its own: killed by a
    # signal, or aborted by JAX's runtime (its log held back).
    logged = [x for x in lines if x[:1] in ("E", "F")]
    if code < 0 or (code != 0 and logged):
      runtime = ""
      if logged:
        runtime = (
          f"; JAX's runtime said: {last_words(logged)} ({len(lines)} lines "
          f"of its log held back; {RAW_LOG_ENV}=1 shows them)"
        )
      out.write(
        f"[{index}] mfjax launch: process {index} ended ({_ending(code)}){runtime}\n"
      )
  out.flush()
  if received:  # The launcher was told to stop: it says so, as a shell would.
    return 128 + received[0]
  bad = [c if c >= 0 else 128 - c for c in codes if c != 0]
  return bad[0] if bad else 0


@contextlib.contextmanager
def _signals_forwarded():
  """Records SIGTERM, SIGINT and SIGHUP (in the main thread, where Python
  runs handlers) for :func:`_wait` to pass to the processes, which it then
  reaps: none is left running when the launcher is stopped."""
  received = []
  names = ("SIGTERM", "SIGINT", "SIGHUP")
  kinds = [getattr(signal, name) for name in names if hasattr(signal, name)]
  if threading.current_thread() is not threading.main_thread():
    yield received
    return
  old = {
    kind: signal.signal(kind, lambda sig, frame: received.append(sig)) for kind in kinds
  }
  try:
    yield received
  finally:
    for kind, handler in old.items():
      signal.signal(kind, handler)


STOPPED_SECONDS = 5
"""How long :func:`launch` lets a process stay stopped (SIGSTOP, a debugger)
before it counts as failed: the others cannot go on without it."""


def _stopped(child: subprocess.Popen) -> bool:
  """Whether ``child`` is stopped (Linux's /proc; elsewhere never known)."""
  try:
    with open(f"/proc/{child.pid}/stat") as stat:
      return stat.read().rpartition(") ")[2][:1] in ("T", "t")
  except OSError:
    return False


def _forward(
  child: subprocess.Popen, index: int, out: IO[str], lock, hidden: list, said: list
) -> None:
  """Forwards a process's lines prefixed ``[index] ``; holds back the
  runtime's log in ``hidden``; notes in ``said`` an error line of mfjax's."""
  raw = os.environ.get(RAW_LOG_ENV) == "1"
  for line in child.stdout:
    if not raw and RUNTIME_LOG.match(line):
      hidden.append(line.rstrip("\n"))
      continue
    if said_an_error(line):
      said.append(True)
    with lock:
      out.write(f"[{index}] {line}")
      out.flush()


def _ending(code: int) -> str:
  if code < 0:
    try:
      return f"by {signal.Signals(-code).name}"
    except ValueError:
      return f"by signal {-code}"
  return f"exit code {code}"


def _wait(
  running: list[subprocess.Popen], grace: float, received: list | None = None
) -> list[int]:
  """Exit codes of ``running``; after the first failure, the rest get ``grace``
  seconds, then SIGTERM, then SIGKILL. A process stopped for
  :data:`STOPPED_SECONDS` is killed, and counts as failed; a signal the
  launcher ``received`` goes to every process at once."""
  deadline, stopped_since = None, {}
  received = [] if received is None else received
  while True:
    codes = [child.poll() for child in running]
    if all(code is not None for code in codes):
      return codes
    now = time.monotonic()
    for index, child in enumerate(running):
      if codes[index] is None and _stopped(child):
        since = stopped_since.setdefault(index, now)
        if now - since > STOPPED_SECONDS:
          print(
            f"mfjax launch: process {index} was stopped for {STOPPED_SECONDS} s; "
            "ending it and the others.",
            file=sys.stderr,
            flush=True,
          )
          child.kill()
          deadline = now  # The others cannot go on without it.
      else:
        stopped_since.pop(index, None)
    if received:
      deadline = now
    if deadline is None and any(code not in (None, 0) for code in codes):
      deadline = now + grace
    if deadline is not None and now >= deadline:
      # SIGTERM whatever the launcher got: a terminal's SIGINT or SIGHUP has
      # reached the processes already (one process group); a second SIGINT
      # would interrupt their clean-up with a traceback.
      return _end(running, signal.SIGTERM)
    time.sleep(0.05)


def _end(running: list[subprocess.Popen], kind) -> list[int]:
  """Sends ``kind`` to every process still running (and SIGCONT, so that a
  stopped one gets it), waits 10 s, kills what is left; the exit codes."""
  for child in running:
    if child.poll() is None:
      with contextlib.suppress(OSError):
        child.send_signal(kind)
        child.send_signal(getattr(signal, "SIGCONT", kind))
  try:
    for child in running:
      child.wait(timeout=10)
  except subprocess.TimeoutExpired:
    for child in running:
      if child.poll() is None:
        child.kill()
  return [child.wait() for child in running]
