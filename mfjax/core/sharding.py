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
that saves). :func:`mfjax.core.memory.memory_estimate` gives the whole formula.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mfjax import validation
from mfjax.core import memory
from mfjax.types import Params, Ratings

__all__ = ["shard_ratings", "shard_params", "check_placement"]


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
    >>> from mfjax.core import sharding
    >>> mesh = jax.make_mesh((1,), ("data",))
    >>> ratings = mfjax.ratings_from_dense(jnp.array([[5.0, 0, 3], [0, 1, 0]]))
    >>> placed = sharding.shard_ratings(ratings, mesh)
    >>> len(placed), placed.n_padding, tuple(placed.values.sharding.spec)
    (3, 0, ('data',))
  """
  validation.check_ratings("ratings", ratings, allow_unknown=True)
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
  replicated tables do not fit (see :func:`mfjax.core.memory.memory_estimate`).
  ``n_users`` and
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
    >>> from mfjax.core import sharding
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


def check_placement(params, data, validation_data) -> None:
  """Rejects inputs that ``jit`` cannot combine, with a message that says why."""
  named = {
    "params": params,
    "data": data if isinstance(data, Ratings) else None,
    "validation_data": validation_data,
  }
  device_sets = {}
  for name, tree in named.items():
    for x in memory.concrete_arrays(tree):
      sharding = x.sharding
      if isinstance(sharding, NamedSharding) and any(
        t == AxisType.Explicit for t in sharding.mesh.axis_types
      ):
        raise ValueError(
          f"{name} is placed on a mesh with Explicit axes, whose sharding rules "
          "reject the gathers of factor rows; place it with "
          "mfjax.core.sharding.shard_ratings / shard_params, which use Auto axes."
        )
      if getattr(x, "committed", True):
        device_sets.setdefault(frozenset(sharding.device_set), name)
  if len(device_sets) > 1:
    names = ", ".join(sorted(set(device_sets.values())))
    raise ValueError(
      f"{names} are placed on different sets of devices; place them on one mesh "
      "(mfjax.core.sharding.shard_ratings and shard_params with the same mesh)."
    )
