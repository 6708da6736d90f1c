"""Several processes and hosts: the runtime, the rendezvous before JAX's, the
exchange between processes, each process's part of a ratings file, and launch.

Owns: :mod:`~mfjax.distributed.runtime`. This face also re-exports what
``mfjax.distributed`` held in 0.2.

May import: :mod:`mfjax.data`, :mod:`mfjax.fitting`, :mod:`mfjax.core` and
the top-level leaves. Not ``cli``.
"""

from mfjax.distributed.runtime import (
  TIMEOUT_SECONDS,
  DistributedError,
  ProcessExchange,
  check_coordinator,
  first_failure,
  free_port,
  global_mesh,
  initialize,
  launch,
  read_ratings,
)

__all__ = [
  "TIMEOUT_SECONDS",
  "DistributedError",
  "check_coordinator",
  "initialize",
  "global_mesh",
  "ProcessExchange",
  "first_failure",
  "read_ratings",
  "free_port",
  "launch",
]
