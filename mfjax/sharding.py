"""Scale: ratings sharded over devices, factor tables placed, memory estimated.

mfjax trains on many devices with JAX's own SPMD and nothing else: place the
ratings with :func:`shard_ratings` (sharded along one mesh axis, padded with
weight-0 entries to a multiple of its size), place the params with
:func:`shard_params` (replicated, or row-sharded for tables too big for one
device), and call ``jax.jit(mfjax.train)``. XLA partitions the program and adds
the reductions; there is no ``pmap``, ``shard_map`` or hand-written collective.
The result equals one device's up to the order of float sums.

On several hosts, call ``jax.distributed.initialize()`` first in every process,
build the mesh over ``jax.devices()`` (all hosts' devices) and give each process
the same ratings; or build each ratings array with
``jax.make_array_from_process_local_data`` from the process's own part, padded as
:func:`shard_ratings` pads.

Which layout, at which size (float32, rank ``k``): each rating takes 12 bytes
(user, item, value; 16 with weights) and each factor-table row ``4·(k + 1)``
bytes, held about ``4 + o`` times during training (params, best params,
gradient, new params; ``o`` optimizer slots: 2 for Adam). Sharded ratings
divide their bytes, and the per-rating temporaries of a full-batch step
(``4·(4k + 3)`` bytes a rating), by the number of devices. Replicated tables
cost their full size on every device but need no communication beyond the
gradient's all-reduce; shard the rows only when ``(n_users + n_items)·4·(k +
1)·(4 + o)`` does not fit next to the ratings (:func:`shard_params` says what
that saves). :func:`memory_estimate` gives the whole formula.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mfjax import validation
from mfjax.data import Ratings, check_ratings
from mfjax.model import Params

__all__ = [
  "MemoryWarning",
  "shard_ratings",
  "shard_params",
  "memory_estimate",
]


class MemoryWarning(UserWarning):
  """``train`` expects to need more memory than the device has.

  A ``UserWarning`` (a ``ResourceWarning`` would be hidden by Python's default
  filters), so it is shown once per place by default.
  """


def _check_mesh(mesh: Any, axis: Any) -> tuple[Mesh, str]:
  """Checks ``mesh`` and ``axis``; returns an Auto-typed mesh and the axis name."""
  if not isinstance(mesh, Mesh):
    raise TypeError(
      "mesh must be a jax.sharding.Mesh (e.g. jax.make_mesh((n,), ('data',))); "
      f"got {type(mesh).__name__}."
    )
  names = tuple(mesh.axis_names)
  if axis is None:
    axis = names[0]
  elif axis not in names:
    raise ValueError(
      f"axis must be one of the mesh's axis names {names}; got {axis!r}."
    )
  # mfjax leaves the partitioning to XLA (Auto axes): JAX's Explicit sharding
  # rules reject the gathers of factor rows by sharded indices.
  if any(t != AxisType.Auto for t in mesh.axis_types):
    mesh = Mesh(mesh.devices, names, axis_types=(AxisType.Auto,) * len(names))
  return mesh, axis


def _put(x, n_data: int, pad: int, fill, sharding: NamedSharding):
  """``x[:n_data]`` then ``pad`` copies of ``fill``, placed with ``sharding``."""
  xp = np if isinstance(x, np.ndarray) else jnp
  if x.shape[0] != n_data:
    x = x[:n_data]
  if pad:
    x = xp.concatenate([x, xp.full((pad,), fill, x.dtype)])
  return jax.device_put(x, sharding)


def shard_ratings(ratings: Ratings, mesh: Mesh, *, axis: str | None = None) -> Ratings:
  """Places ``ratings`` sharded along one axis of ``mesh``, padded to fit it.

  Each array is split into equal contiguous parts, one per position along
  ``axis`` (and replicated along the mesh's other axes), with
  ``NamedSharding(mesh, P(axis))``. When the number of ratings is not a multiple
  of the axis size, entries of weight 0 (user 0, item 0, value 0) are appended
  and counted in ``n_padding``; they change nothing: not the loss, its gradient,
  the ``mean`` that ``train`` fixes, the penalty's divisor, ``rmse``/``mae``,
  ranking metrics, nor mini-batch training, whose batches are planned over the
  real entries only. Without padding, ``weights`` stays as it was (None: ones).

  Ratings that are already placed, on this mesh or another, sharded along
  another axis or padded for another size, are resharded: their padding is
  dropped and the real entries placed anew. A mesh with Explicit axis types (the
  default of ``jax.make_mesh``) is used with Auto axes over the same devices,
  since mfjax leaves the partitioning to XLA.

  Args:
    ratings: the ratings (NumPy or JAX arrays, on any device).
    mesh: a ``jax.sharding.Mesh``.
    axis: the mesh axis to shard along; default the mesh's first axis.

  Returns:
    :class:`mfjax.Ratings` whose arrays are sharded over the mesh, of length a
    multiple of the axis size.

  Examples:
    >>> import jax, jax.numpy as jnp, mfjax
    >>> from mfjax import sharding
    >>> mesh = jax.make_mesh((1,), ("data",))
    >>> ratings = mfjax.ratings_from_dense(jnp.array([[5.0, 0, 3], [0, 1, 0]]))
    >>> placed = sharding.shard_ratings(ratings, mesh)
    >>> len(placed), placed.n_padding, tuple(placed.values.sharding.spec)
    (3, 0, ('data',))
  """
  check_ratings("ratings", ratings, allow_unknown=True)
  mesh, axis = _check_mesh(mesh, axis)
  size = mesh.shape[axis]
  n_data = len(ratings) - ratings.n_padding
  pad = -n_data % size
  sharding = NamedSharding(mesh, P(axis))
  weights = ratings.weights
  if weights is None and pad:
    weights = jnp.ones((n_data,), jnp.float32)
  return Ratings(
    users=_put(ratings.users, n_data, pad, 0, sharding),
    items=_put(ratings.items, n_data, pad, 0, sharding),
    values=_put(ratings.values, n_data, pad, 0, sharding),
    n_users=ratings.n_users,
    n_items=ratings.n_items,
    weights=None if weights is None else _put(weights, n_data, pad, 0, sharding),
    n_padding=pad,
  )


def shard_params(
  params: Params, mesh: Mesh, *, rows: bool = False, axis: str | None = None
) -> Params:
  """Places ``params`` on ``mesh``: replicated, or with the table rows sharded.

  Replicated (the default), every device holds the whole tables, and a step
  needs one all-reduce of the gradient. With ``rows``, the factor tables are
  split by rows along ``axis`` (``NamedSharding(mesh, P(axis, None))``, biases
  ``P(axis)``), so each device keeps ``1/size`` of them, of the best params and
  of the optimizer state. But XLA all-gathers the tables for each step's
  gathers and all-reduces a full-size gradient (seen in the compiled program on
  8 CPU devices), so while a step runs a device still holds about two whole
  tables: rows take the tables from about ``4 + o`` copies per device to about
  ``2 + (4 + o)/size`` (``o`` optimizer slots). Choose rows only when the
  replicated tables do not fit (see :func:`memory_estimate`). ``n_users`` and
  ``n_items`` must then be multiples of the axis size: make the tables a few
  rows longer if need be (rows without ratings do not change the updates of
  the others under an optimizer that acts per parameter, such as Adam or SGD,
  though their penalty counts in the loss).

  Args:
    params: the parameters.
    mesh: a ``jax.sharding.Mesh`` (Explicit axes are used as Auto, as in
      :func:`shard_ratings`).
    rows: shard the table rows instead of replicating them.
    axis: the mesh axis of the rows; default the mesh's first axis.

  Returns:
    The same :class:`mfjax.Params`, placed.

  Examples:
    >>> import jax, mfjax
    >>> from mfjax import sharding
    >>> mesh = jax.make_mesh((1,), ("data",))
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> placed = sharding.shard_params(params, mesh, rows=True)
    >>> tuple(placed.user_factors.sharding.spec)
    ('data', None)
  """
  n_users, n_items, _ = validation.check_params(params)
  mesh, axis = _check_mesh(mesh, axis)
  if not isinstance(rows, bool):
    raise TypeError(f"rows must be True or False; got {rows!r}.")
  if not rows:
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: jax.device_put(x, replicated), params)
  size = mesh.shape[axis]
  if n_users % size or n_items % size:
    raise ValueError(
      f"rows=True needs n_users ({n_users}) and n_items ({n_items}) to be "
      f"multiples of the {size} devices along mesh axis {axis!r}; add rows to "
      "the tables (init_params with larger sizes) or keep them replicated."
    )
  table = NamedSharding(mesh, P(axis, None))
  vector = NamedSharding(mesh, P(axis))
  return Params(
    user_factors=jax.device_put(params.user_factors, table),
    item_factors=jax.device_put(params.item_factors, table),
    user_bias=jax.device_put(params.user_bias, vector),
    item_bias=jax.device_put(params.item_bias, vector),
    mean=jax.device_put(params.mean, NamedSharding(mesh, P())),
  )


# Calibrated against XLA's own buffer assignment (compiled.memory_analysis()) of
# jax.jit(mfjax.train) on CPU, 1M and 10M ratings, ranks 32 and 128
# (benchmarks/memory_fit.py; benchmarks/RESULTS.md).
_TABLE_COPIES = 4  # params, best params, gradient, new params.
_ROW_COPIES = 4  # per rating of a step: gathered user and item rows, their gradients.
_SCALARS = 3  # per rating of a step: prediction, residual, weight (in dtype units).
_ORDER_BYTES = 16  # per rating, mini-batch epochs: the shuffle's int32 arrays.

_OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}


def _optimizer_slots(optimizer: Any, shapes: Params) -> float:
  """Param-sized arrays of optimizer state, from a name or by ``eval_shape``."""
  if isinstance(optimizer, str):
    return _OPTIMIZER_SLOTS[
      validation.check_choice("optimizer", optimizer, tuple(_OPTIMIZER_SLOTS))
    ]
  if isinstance(optimizer, optax.GradientTransformation):
    state = jax.eval_shape(optimizer.init, shapes)
    size = lambda tree: sum(
      math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
    )
    return size(state) / max(size(shapes), 1)
  if isinstance(optimizer, numbers.Integral) and not isinstance(optimizer, bool):
    if optimizer >= 0:
      return int(optimizer)
  raise TypeError(
    "optimizer must be 'adam', 'momentum', 'sgd', a number of param-sized state "
    f"arrays >= 0, or an optax.GradientTransformation; got {optimizer!r}."
  )


def memory_estimate(
  n_ratings: int,
  n_users: int,
  n_items: int,
  rank: int,
  *,
  optimizer: Any = "adam",
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
  ``batch_size`` each epoch's shuffle adds ``16 · n_ratings`` bytes, with
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
    optimizer: ``"adam"``, ``"momentum"``, ``"sgd"``, a number of param-sized
      state arrays, or an optax ``GradientTransformation`` (its state is sized
      with ``jax.eval_shape``).
    batch_size: the mini-batch size, or None for full-batch steps.
    chunk_size: the chunk of a chunked full-batch step (see ``train``), or None.
    weights: whether the ratings carry weights.
    n_validation: number of validation ratings scored each epoch.
    dtype: the parameters' dtype.

  Returns:
    An int, in bytes.

  Examples:
    >>> from mfjax import sharding
    >>> gb = sharding.memory_estimate(100_000_000, 2_000_000, 500_000, 128) / 1e9
    >>> round(gb)  # Full-batch: 4 arrays of 100M × 128 floats, 51 GB each.
    215
    >>> chunked = sharding.memory_estimate(
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
    total += _ORDER_BYTES * n_ratings
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


def _device_bytes_limit(device=None) -> int | None:
  """The memory a device reports it can allocate, or None (CPUs report none)."""
  device = jax.devices()[0] if device is None else device
  try:
    stats = device.memory_stats()
  except Exception:  # Backends without memory statistics raise or return None.
    return None
  if not stats or not stats.get("bytes_limit"):
    return None
  return int(stats["bytes_limit"])


def _concrete_arrays(tree) -> list:
  return [
    x
    for x in jax.tree.leaves(tree)
    if isinstance(x, jax.Array) and validation.is_concrete(x)
  ]


def _warn_if_too_big(params, data, *, optimizer, batch_size, chunk_size) -> None:
  """``train``'s memory check: warn when the estimate exceeds the device memory.

  Host side, at trace time. Sparse data only. Ratings sharded over ``d`` devices
  are checked against ``d`` times one device's memory (a coarse check: the
  tables are replicated).
  """
  if not isinstance(data, Ratings):
    return
  arrays = _concrete_arrays(data)
  devices = arrays[0].sharding.device_set if arrays else None
  limit = _device_bytes_limit(next(iter(devices)) if devices else None)
  if limit is None:
    return
  limit *= len(devices) if devices else 1
  n_users, n_items, rank = validation.check_params(params)
  estimate = memory_estimate(
    len(data),
    n_users,
    n_items,
    rank,
    optimizer="adam" if optimizer is None else optimizer,
    batch_size=batch_size,
    chunk_size=chunk_size,
    weights=data.weights is not None,
    dtype=params.user_factors.dtype,
  )
  if estimate > limit:
    warnings.warn(
      f"train needs about {_human(estimate)} (mfjax.sharding.memory_estimate) "
      f"but the device has {_human(limit)}: give chunk_size= (full-batch "
      "steps in chunks) or batch_size=, or shard the ratings over more devices.",
      MemoryWarning,
      stacklevel=3,
    )


def _human(n_bytes: int) -> str:
  for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n_bytes >= size:
      return f"{n_bytes / size:.1f} {unit}"
  return f"{n_bytes} bytes"


def _check_placement(params, data, validation_data) -> None:
  """Rejects inputs that ``jit`` cannot combine, with a message that says why."""
  named = {
    "params": params,
    "data": data if isinstance(data, Ratings) else None,
    "validation_data": validation_data,
  }
  device_sets = {}
  for name, tree in named.items():
    for x in _concrete_arrays(tree):
      sharding = x.sharding
      if isinstance(sharding, NamedSharding) and any(
        t == AxisType.Explicit for t in sharding.mesh.axis_types
      ):
        raise ValueError(
          f"{name} is placed on a mesh with Explicit axes, whose sharding rules "
          "reject the gathers of factor rows; place it with "
          "mfjax.sharding.shard_ratings / shard_params, which use Auto axes."
        )
      if getattr(x, "committed", True):
        device_sets.setdefault(frozenset(sharding.device_set), name)
  if len(device_sets) > 1:
    names = ", ".join(sorted(set(device_sets.values())))
    raise ValueError(
      f"{names} are placed on different sets of devices; place them on one mesh "
      "(mfjax.sharding.shard_ratings and shard_params with the same mesh)."
    )
