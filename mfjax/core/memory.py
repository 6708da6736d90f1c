"""Device memory: what training needs, estimated before anything is traced.

:func:`memory_estimate` gives the bytes ``train`` needs for a shape and a
solver; ``train`` calls :func:`warn_if_too_big` before tracing and warns with
:class:`MemoryWarning` when the device reports less. See :mod:`mfjax.core.sharding`
for what to do then, and ``docs/scaling.md`` for the tables.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mfjax import validation
from mfjax.types import Params, Ratings

__all__ = [
  "MemoryWarning",
  "memory_estimate",
  "device_bytes_limit",
  "bytes_limit",
  "CGROUP_LIMITS",
  "check_room",
  "warn_if_too_big",
]


class MemoryWarning(UserWarning):
  """``train`` expects to need more memory than the device has.

  A ``UserWarning`` (a ``ResourceWarning`` would be hidden by Python's default
  filters), so it is shown once per place by default.
  """


# Calibrated against XLA's own buffer assignment (compiled.memory_analysis()) of
# jax.jit(mfjax.train) on CPU, 1M and 10M ratings, ranks 32 and 128
# (benchmarks/memory_fit.py; benchmarks/RESULTS.md).
_TABLE_COPIES = 4  # params, best params, gradient, new params.


_ROW_COPIES = 4  # per rating of a step: gathered user and item rows, their gradients.


_SCALARS = 3  # per rating of a step: prediction, residual, weight (in dtype units).


_ORDER_BYTES = 4  # per rating, mini-batch epochs: the fit's int32 order of the data.


def _optimizer_slots(optimizer: Any, shapes: Params) -> float:
  """Param-sized arrays of an optax optimizer's state, by ``jax.eval_shape``."""
  if optimizer is None:
    optimizer = optax.adam(1e-2)
  if not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(
      "optimizer must be an optax.GradientTransformation such as optax.adam(1e-2), "
      f"or None for Adam (mfjax's default for Ratings); got {optimizer!r}."
    )
  state = jax.eval_shape(optimizer.init, shapes)
  size = lambda tree: sum(
    math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
  )
  return size(state) / max(size(shapes), 1)


def memory_estimate(
  n_ratings: int,
  n_users: int,
  n_items: int,
  rank: int,
  *,
  optimizer: optax.GradientTransformation | None = None,
  batch_size: int | None = None,
  chunk_size: int | None = None,
  weights: bool = False,
  n_validation: int = 0,
  dtype: Any = jnp.float32,
) -> int:
  """Bytes of device memory that ``train`` on sparse ratings needs, about.

  With ``s`` the dtype's size, ``T = ((n_users + n_items)·(rank + 1) + 1)·s``
  the bytes of one copy of the parameters and ``o`` the optimizer's
  param-sized state arrays (Adam 2, SGD with momentum 1, SGD 0)::

    ratings      n_ratings · (8 + s (+ s with weights))
    tables       (4 + o) · T              params, best params, gradient, new params
    per step     m · (4 · rank + 3) · s   gathered user and item rows, their
                                          gradients; prediction, residual, weight
    validation   n_validation · (8 + s + (2 · rank + 2) · s)

  where ``m``, the ratings one step works on at once, is ``n_ratings``
  full-batch, ``chunk_size`` with it, and ``batch_size`` with it; with
  ``batch_size`` the fit's shuffled copy of the ratings and its order add
  ``(12 + s (+ s)) · n_ratings`` bytes, with
  ``chunk_size`` the chunked copy of the ratings adds the ratings' bytes again.
  The constants were fitted to XLA's buffer assignment on CPU
  (``compiled.memory_analysis()``: within 10 % from 1M to 100M ratings when the
  per-rating part dominates, up to 20 % over when the tables do;
  ``benchmarks/memory_fit.py``). A GPU's fusions may keep fewer per-rating
  temporaries, so the estimate errs on the safe side there. It covers what
  ``train`` allocates, not other arrays the caller holds.

  At rank 128 with ``n_users = n/50`` and ``n_items = n/200`` (the throughput
  benchmark's shapes), a rating costs about 2.1 kB full-batch, so 80 GB holds
  about 37M ratings; with ``chunk_size`` (or ``batch_size``) about 100 bytes
  plus one chunk's temporaries, so 80 GB holds about 700M ratings with
  ``chunk_size=4_000_000``.

  Args:
    n_ratings: number of training ratings.
    n_users: rows of the user table.
    n_items: rows of the item table.
    rank: number of factors.
    optimizer: the optax ``GradientTransformation`` (its state is sized with
      ``jax.eval_shape``); None means Adam, mfjax's default for ``Ratings``.
    batch_size: the mini-batch size, or None for full-batch steps.
    chunk_size: the chunk of a chunked full-batch step (see ``train``), or None.
    weights: whether the ratings carry weights.
    n_validation: number of validation ratings scored each epoch.
    dtype: the parameters' dtype.

  Returns:
    An int, in bytes.

  Examples:
    >>> from mfjax.core import memory
    >>> gb = memory.memory_estimate(100_000_000, 2_000_000, 500_000, 128) / 1e9
    >>> round(gb)  # Full-batch: 4 arrays of 100M × 128 floats, 51 GB each.
    215
    >>> chunked = memory.memory_estimate(
    ...   100_000_000, 2_000_000, 500_000, 128, chunk_size=4_000_000)
    >>> round(chunked / 1e9)  # Fits a 78 GB GPU.
    18
  """
  n_ratings = _check_count("n_ratings", n_ratings)
  n_validation = _check_count("n_validation", n_validation)
  n_users = validation.check_positive_int("n_users", n_users)
  n_items = validation.check_positive_int("n_items", n_items)
  rank = validation.check_positive_int("rank", rank)
  if batch_size is not None:
    batch_size = validation.check_positive_int("batch_size", batch_size)
  if chunk_size is not None:
    chunk_size = validation.check_positive_int("chunk_size", chunk_size)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be a floating dtype; got {dtype!r}.")
  s = np.dtype(dtype).itemsize
  shapes = Params(
    user_factors=jax.ShapeDtypeStruct((n_users, rank), dtype),
    item_factors=jax.ShapeDtypeStruct((n_items, rank), dtype),
    user_bias=jax.ShapeDtypeStruct((n_users,), dtype),
    item_bias=jax.ShapeDtypeStruct((n_items,), dtype),
    mean=jax.ShapeDtypeStruct((), dtype),
  )
  slots = _optimizer_slots(optimizer, shapes)
  rating_bytes = 8 + s + (s if weights else 0)
  total = n_ratings * rating_bytes
  table = ((n_users + n_items) * (rank + 1) + 1) * s
  total += (_TABLE_COPIES + slots) * table
  if batch_size is not None:
    at_once = min(batch_size, n_ratings)
    total += (_ORDER_BYTES + rating_bytes) * n_ratings  # And the ordered copy.
  elif chunk_size is not None:
    at_once = min(chunk_size, n_ratings)
    total += n_ratings * rating_bytes
  else:
    at_once = n_ratings
  total += at_once * (_ROW_COPIES * rank + _SCALARS) * s
  total += n_validation * (8 + s + (2 * rank + 2) * s)
  return int(total)


def _check_count(name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"{name} must be an int >= 0; got {value!r}.")
  if value < 0:
    raise ValueError(f"{name} must be an int >= 0; got {value}.")
  return int(value)


def device_bytes_limit(device=None) -> int | None:
  """The memory a device reports it can allocate, or None (CPUs report none)."""
  device = jax.devices()[0] if device is None else device
  try:
    stats = device.memory_stats()
  # Backends without memory statistics raise (an XLA runtime error, or not
  # implemented) or return None.
  except (RuntimeError, NotImplementedError, AttributeError):
    return None
  if not stats or not stats.get("bytes_limit"):
    return None
  return int(stats["bytes_limit"])


CGROUP_LIMITS = (
  "/sys/fs/cgroup/memory.max",  # cgroup v2 ("max": no limit)
  "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
)
"""Where a container's memory limit is read (:func:`bytes_limit`)."""


def _cgroup_limit() -> int | None:
  """The memory limit of this process's container (its cgroup), or None."""
  for path in CGROUP_LIMITS:
    try:
      with open(path) as f:
        text = f.read(64).strip()
    except OSError:
      continue
    return int(text) if text.isdigit() else None
  return None


def bytes_limit(device=None) -> int | None:
  """The memory arrays on ``device`` may take: what a GPU reports
  (:func:`device_bytes_limit`), and for a CPU the lowest of the host's
  physical memory, the process's address-space limit (``ulimit -v``) and its
  container's memory limit (:data:`CGROUP_LIMITS`); None when none is known."""
  device = jax.devices()[0] if device is None else device
  limit = device_bytes_limit(device)
  if limit is not None or getattr(device, "platform", None) != "cpu":
    return limit
  limits = []
  try:
    limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
  except (AttributeError, ValueError, OSError):  # Not POSIX.
    pass
  try:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
      limits.append(soft)
  except (ImportError, AttributeError, ValueError, OSError):
    pass
  limits.append(_cgroup_limit() or 0)
  limits = [n for n in limits if n > 0]
  return min(limits) if limits else None


def check_room(need: int, what: str, advice: str, device=None) -> None:
  """Refuses, before anything is allocated, work whose arrays cannot fit.

  ``need`` is a lower bound of the bytes (arrays the work must hold at once,
  such as the parameter tables and their copies), so that nothing that fits is
  refused; :func:`bytes_limit` is the room.

  Raises:
    ValueError: ``need`` exceeds the room; names ``what``, both sizes and
      ``advice``.
  """
  device = jax.devices()[0] if device is None else device
  limit = bytes_limit(device)
  if limit is not None and need > limit:
    where = "the host" if device.platform == "cpu" else f"the {device.platform} device"
    raise ValueError(
      f"{what} needs at least {_human(need)} of memory but {where} has "
      f"{_human(limit)}; {advice}"
    )


def concrete_arrays(tree) -> list:
  return [
    x
    for x in jax.tree.leaves(tree)
    if isinstance(x, jax.Array) and validation.is_concrete(x)
  ]


def warn_if_too_big(params, data, *, optimizer, batch_size, chunk_size) -> None:
  """``train``'s memory check: warn when the estimate exceeds the memory.

  Host side, at trace time. Sparse data only. The room is :func:`bytes_limit`:
  a GPU's memory, or for a CPU the host's (or ``ulimit -v``). Ratings sharded
  over ``d`` accelerators (or CPUs of ``d`` hosts) are checked against ``d``
  times one's memory (a coarse check: the tables are replicated).
  """
  if not isinstance(data, Ratings):
    return
  arrays = concrete_arrays(data)
  devices = arrays[0].sharding.device_set if arrays else None
  device = next(iter(devices)) if devices else jax.devices()[0]
  limit = bytes_limit(device)
  if limit is None:
    return
  on_cpu = getattr(device, "platform", None) == "cpu"
  if devices:  # A CPU device shares its host's memory with the host's others.
    limit *= len({d.process_index for d in devices} if on_cpu else devices)
  n_users, n_items, rank = validation.check_params(params, formula=params.formula)
  estimate = memory_estimate(
    len(data),
    n_users,
    n_items,
    rank,
    optimizer=optimizer,
    batch_size=batch_size,
    chunk_size=chunk_size,
    weights=data.weights is not None,
    dtype=params.user_factors.dtype,
  )
  if estimate > limit:
    warnings.warn(
      f"train needs about {_human(estimate)} (mfjax.core.memory.memory_estimate) "
      f"but the {'host' if on_cpu else 'device'} has {_human(limit)}: give "
      "chunk_size= (full-batch steps in chunks) or batch_size=, or shard the "
      f"ratings over more {'hosts' if on_cpu else 'devices'}.",
      MemoryWarning,
      stacklevel=3,
    )


def _human(n_bytes: int) -> str:
  for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n_bytes >= size:
      return f"{n_bytes / size:.1f} {unit}"
  return f"{n_bytes} bytes"
