"""Several processes and hosts: the runtime, the rendezvous before JAX's, the
exchange between processes, each process's part of a ratings file, and launch.

Owns: :mod:`~mfjax.distributed.runtime` (start-up, rendezvous, mesh, reading
the ratings over processes, launch), :mod:`~mfjax.distributed.exchange` (the
exchange between processes and their first failure) and
:mod:`~mfjax.distributed.parts` (each process's part of a ratings file) and
:mod:`~mfjax.distributed.logfilter` (JAX's C++ log held back on a joined
process's stderr, one line instead). This
face also re-exports what ``mfjax.distributed`` held in 0.2.

May import: :mod:`mfjax.data`, :mod:`mfjax.fitting`, :mod:`mfjax.core` and
the top-level leaves. Not ``cli``.
"""

from mfjax.distributed.exchange import Exchange, ProcessExchange, first_failure
from mfjax.distributed.parts import load_ratings_part
from mfjax.distributed.runtime import (
  JOIN_TOKEN_ENV,
  RAW_LOG_ENV,
  STOPPED_SECONDS,
  TIMEOUT_SECONDS,
  DistributedError,
  check_coordinator,
  free_port,
  global_mesh,
  initialize,
  launch,
  read_ratings,
)

__all__ = [
  "TIMEOUT_SECONDS",
  "JOIN_TOKEN_ENV",
  "STOPPED_SECONDS",
  "RAW_LOG_ENV",
  "DistributedError",
  "check_coordinator",
  "initialize",
  "global_mesh",
  "ProcessExchange",
  "first_failure",
  "read_ratings",
  "free_port",
  "launch",
  "Exchange",
  "load_ratings_part",
]
