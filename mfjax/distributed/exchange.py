"""How the processes of one job share small arrays and their failures.

:class:`Exchange` is the interface (``allgather``, ``broadcast``);
:class:`ProcessExchange` is the one over JAX's processes, and a test can run
several "processes" as threads with another. :func:`first_failure` runs a step
in every process and makes each raise the first failure, so that no process
waits for the others after one has failed.
"""

from __future__ import annotations

from typing import Protocol

import jax
import numpy as np

__all__ = ["Exchange", "ProcessExchange", "first_failure", "os_text"]


class Exchange(Protocol):
  """How the processes of a job (:func:`mfjax.distributed.parts.load_ratings_part`)
  share small arrays.

  :class:`ProcessExchange` is the one over JAX's processes; a
  test can run the parts as threads with another.

  Attributes:
    index: this process's place, in ``[0, count)``; parts follow it.
    count: how many processes read the file.
  """

  index: int
  count: int

  def allgather(self, x: np.ndarray) -> list[np.ndarray]:
    """Every process's 1-D ``x`` (one dtype kind in all, any lengths), in order."""
    ...

  def broadcast(self, x: np.ndarray, root: int) -> np.ndarray:
    """Process ``root``'s 1-D ``x``; the others pass an array of its dtype."""
    ...


class ProcessExchange:
  """:class:`Exchange` over JAX's processes (after
  :func:`mfjax.distributed.initialize`).

  Arrays travel as bytes through ``jax.experimental.multihost_utils``
  (``process_allgather``, ``broadcast_one_to_all``): gloo on CPU, NCCL on GPU,
  so 64-bit values need no ``jax_enable_x64``. Text arrays are widened to the
  longest of the processes' string widths first.
  """

  def __init__(self):
    self.index, self.count = jax.process_index(), jax.process_count()

  def _sizes(self, x: np.ndarray) -> np.ndarray:
    """``[count, 2]``: each process's length and item size."""
    from jax.experimental import multihost_utils

    mine = np.array([x.size, x.dtype.itemsize], np.int64)
    return multihost_utils.process_allgather(mine.view(np.uint8)).view(np.int64)

  def _wide(self, x: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "U":
      x = x.astype(f"<U{int(sizes[:, 1].max()) // 4}")
    return np.ascontiguousarray(x).ravel()

  def allgather(self, x: np.ndarray) -> list[np.ndarray]:
    """Every process's 1-D ``x``, in process order."""
    from jax.experimental import multihost_utils

    x = np.asarray(x)
    sizes = self._sizes(x)
    x = self._wide(x, sizes)
    raw = np.zeros(_width(int(sizes[:, 0].max()) * x.dtype.itemsize), np.uint8)
    raw[: x.nbytes] = x.view(np.uint8)
    everything = multihost_utils.process_allgather(raw)
    return [
      everything[i, : int(n) * x.dtype.itemsize].view(x.dtype).copy()
      for i, n in enumerate(sizes[:, 0])
    ]

  def broadcast(self, x: np.ndarray, root: int) -> np.ndarray:
    """Process ``root``'s 1-D ``x``."""
    from jax.experimental import multihost_utils

    x = np.asarray(x)
    sizes = self._sizes(x)
    x = self._wide(x, sizes)
    n = int(sizes[root, 0])
    raw = np.zeros(_width(n * x.dtype.itemsize), np.uint8)
    if self.index == root:
      raw[: x.nbytes] = x.view(np.uint8)
    out = multihost_utils.broadcast_one_to_all(raw, is_source=self.index == root)
    return np.asarray(out)[: n * x.dtype.itemsize].view(x.dtype).copy()


def first_failure(step, exchange: Exchange | None = None, *, error=ValueError):
  """Runs ``step()`` in every process; if it failed in any, every process
  raises that failure (the first, in process order), so that none goes on to
  wait for the others.

  Args:
    step: a function of no arguments; a ``ValueError``, ``TypeError`` or
      ``OSError`` from it is shared with the other processes.
    exchange: how the processes talk (default a :class:`ProcessExchange`).
    error: the exception class every process raises, with the failure's text
      and, in the other processes, ``(in process i)``.

  Returns:
    What ``step`` returned here.
  """
  exchange = ProcessExchange() if exchange is None else exchange
  try:
    result, failure = step(), ""
  except (ValueError, TypeError, OSError) as e:
    result = None
    failure = os_text(e) if isinstance(e, OSError) else str(e) or type(e).__name__
  for index, text in enumerate(exchange.allgather(np.array([failure]))):
    if text[0]:
      where = "" if index == exchange.index else f" (in process {index})"
      raise error(f"{text[0]}{where}")
  return result


def _width(n_bytes: int) -> int:
  """The bytes sent for ``n_bytes``: a power of 2, so that a few shapes (each a
  compiled collective) serve every exchange."""
  return 1 << max(n_bytes - 1, 4095).bit_length()


def os_text(e: OSError) -> str:
  """An ``OSError`` as one line: ``file: reason`` where it names a file."""
  return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
