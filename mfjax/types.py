"""The types every module shares: parameters, ratings, id maps, the unknown-id index.

This module imports nothing from the rest of mfjax, so that every other module can
import it. The checks of these types live in :mod:`mfjax.validation`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["UNKNOWN", "Params", "Ratings", "IdMaps"]

UNKNOWN = -1
"""The index given to an id that the training maps do not know."""


class Params(NamedTuple):
  """Parameters of a biased matrix factorisation; a pytree.

  Attributes:
    user_factors: the notebook's ``P``.
    item_factors: the notebook's ``Q``.
    user_bias: the notebook's ``bu`` (flattened).
    item_bias: the notebook's ``bi`` (flattened).
    mean: the global mean rating, the notebook's ``mu``. ``train`` sets it from the
      data and never trains it.
  """

  user_factors: jax.Array  # shape=(n_users, rank)
  item_factors: jax.Array  # shape=(n_items, rank)
  user_bias: jax.Array  # shape=(n_users,)
  item_bias: jax.Array  # shape=(n_items,)
  mean: jax.Array  # shape=()

  # How these params predict; a subclass with another formula (the notebook's,
  # mfjax.notebook.NotebookParams) is refused by every function that assumes
  # this one, instead of giving wrong numbers.
  formula = "mean + user_bias + item_bias + user_factors·item_factors"


@dataclasses.dataclass(frozen=True)
class Ratings:
  """Sparse COO ratings; a pytree with ``n_users``/``n_items`` as static metadata.

  Attributes:
    users: user indices, int32 ``[n]``. :data:`UNKNOWN` (-1) marks a user that
      the training data did not have (see :func:`load_ratings`).
    items: item indices, int32 ``[n]``, with the same convention.
    values: ratings, float32 ``[n]``.
    n_users: number of users of the model (static).
    n_items: number of items of the model (static).
    weights: optional weight of each rating, float32 ``[n]``, finite and ``>= 0``;
      None (the default) means all ones. Every sum over ratings is weighted: the
      loss and its gradient (a weighted mean of squared errors, with the penalty
      divided by the weight sum), the ``mean`` that ``train`` fixes, ``rmse`` and
      ``mae``. A rating of weight 0 changes nothing anywhere: it is how
      :func:`mfjax.core.sharding.shard_ratings` pads, and ranking metrics and
      ``to_dense`` leave it out.
    n_padding: how many entries at the end are padding (static; 0 unless made by
      :func:`mfjax.core.sharding.shard_ratings`). They must have weight 0. Mini-batch
      epochs plan their batches over the other entries only, so that training
      visits exactly the batches it would without the padding.
  """

  users: jax.Array  # shape=(n,), int32
  items: jax.Array  # shape=(n,), int32
  values: jax.Array  # shape=(n,), float32
  n_users: int
  n_items: int
  weights: jax.Array | None = None  # shape=(n,), float32
  n_padding: int = 0

  def __post_init__(self):
    # Python lists and tuples become NumPy arrays (indices int32, the rest
    # float32), so that Ratings([0, 1], [2, 0], [4.0, 3.5], 2, 3) works. Arrays,
    # tracers and whatever else jax.tree_util passes through are left as given.
    for name, dtype in _LIST_DTYPES.items():
      value = getattr(self, name)
      if isinstance(value, (list, tuple)):
        object.__setattr__(self, name, _list_as_array(name, value, dtype))

  def __len__(self) -> int:
    return int(self.values.shape[0])

  @property
  def shape(self) -> tuple[int, int]:
    """``(n_users, n_items)``, the shape of the rating matrix."""
    return (self.n_users, self.n_items)

  def to_dense(self) -> np.ndarray:
    """The ``[n_users, n_items]`` matrix with 0 where no rating is (host, NumPy).

    Ratings of weight 0 are left out; other weights are not represented.
    """
    users, items, values = (
      np.asarray(x) for x in (self.users, self.items, self.values)
    )
    known = (users >= 0) & (items >= 0)
    if self.weights is not None:
      known &= np.asarray(self.weights) > 0
    dense = np.zeros(self.shape, np.float32)
    dense[users[known], items[known]] = values[known]
    return dense

  def subset(self, index: ArrayLike) -> Ratings:
    """The ratings at positions ``index`` (host-side indexing), with their weights.

    The result has no ``n_padding``: padding entries it picks stay as ordinary
    ratings of weight 0, which change nothing.
    """
    index = np.asarray(index)
    pick = lambda x: jnp.asarray(np.asarray(x)[index])
    return Ratings(
      users=pick(self.users),
      items=pick(self.items),
      values=pick(self.values),
      n_users=self.n_users,
      n_items=self.n_items,
      weights=None if self.weights is None else pick(self.weights),
    )


_LIST_DTYPES = {
  "users": np.int32,
  "items": np.int32,
  "values": np.float32,
  "weights": np.float32,
}


def _list_as_array(name: str, value: list | tuple, dtype) -> np.ndarray:
  """A list of numbers as a 1-D array of ``dtype``; else the value unchanged, for
  :func:`mfjax.validation.check_ratings` to refuse with its own message."""
  try:
    array = np.asarray(value)
  except (TypeError, ValueError):  # Ragged nesting: left for the checks.
    return value
  if array.dtype.kind not in "iuf" or array.ndim != 1:
    return array  # Refused by the checks, with the offending dtype or shape.
  if dtype == np.int32 and array.dtype.kind == "f":
    return array  # 1.5 is no index: the checks refuse a float index array.
  return array.astype(dtype)


_DATA_FIELDS = ("users", "items", "values", "weights")
_META_FIELDS = ("n_users", "n_items", "n_padding")


def _flatten_ratings_with_keys(ratings: Ratings):
  children = [(jax.tree_util.GetAttrKey(f), getattr(ratings, f)) for f in _DATA_FIELDS]
  return children, tuple(getattr(ratings, f) for f in _META_FIELDS)


def _flatten_ratings(ratings: Ratings):
  data = tuple(getattr(ratings, f) for f in _DATA_FIELDS)
  return data, tuple(getattr(ratings, f) for f in _META_FIELDS)


def _unflatten_ratings(meta, data) -> Ratings:
  # Not through __init__: __post_init__ turns a user's lists into arrays, but
  # the leaves jax.tree.map gives back (shapes as tuples, ...) stay as they are.
  ratings = object.__new__(Ratings)
  for name, value in zip(_DATA_FIELDS + _META_FIELDS, (*data, *meta), strict=True):
    object.__setattr__(ratings, name, value)
  return ratings


jax.tree_util.register_pytree_with_keys(
  Ratings, _flatten_ratings_with_keys, _unflatten_ratings, _flatten_ratings
)


@dataclasses.dataclass(frozen=True)
class IdMaps:
  """Raw ids of the users and items, by index, and what loading a file found.

  Attributes:
    users: raw id of each user index (``users[j]`` is the id of user ``j``),
      sorted; int64 when every id was an integer, else str.
    items: raw id of each item index, likewise.
    scale: the rating scale ``(lo, hi)``: the one declared, else the one observed
      in the training file.
    n_lines: ratings read from the file just loaded.
    n_duplicates: repeated (user, item) pairs in it, resolved by the ``duplicates``
      policy of :func:`load_ratings`.
    n_unknown: ratings in it whose user or item the given ``id_maps`` did not know.
    columns: the role of each column of the source, in its order: ``"user"``,
      ``"item"``, ``"rating"``, ``"timestamp"``, or None for a column not read;
      ``("user", "item", "rating")`` for arrays and frames; () when unknown (maps
      made by hand or loaded from a model file).
    header: the names the file's header line gave those columns, as written and
      in the same order; () for a file without a header. For a frame, the names
      of its user, item and rating columns.
  """

  users: np.ndarray
  items: np.ndarray
  scale: tuple[float, float]
  n_lines: int = 0
  n_duplicates: int = 0
  n_unknown: int = 0
  columns: tuple[str | None, ...] = ()
  header: tuple[str, ...] = ()

  def user_index(self, raw_ids: ArrayLike) -> np.ndarray:
    """Indices of raw user ids; :data:`UNKNOWN` (-1) for ids not in the map."""
    return _lookup(self.users, raw_ids)

  def item_index(self, raw_ids: ArrayLike) -> np.ndarray:
    """Indices of raw item ids; :data:`UNKNOWN` (-1) for ids not in the map."""
    return _lookup(self.items, raw_ids)


def _lookup(sorted_ids: np.ndarray, raw: ArrayLike) -> np.ndarray:
  raw = np.asarray(raw)
  if sorted_ids.dtype.kind == "i" and raw.dtype.kind not in "iu":
    if raw.dtype.kind == "f":  # 1.5 is no integer id; 5.0 is 5.
      whole = np.isfinite(raw) & (raw == np.round(raw)) & (np.abs(raw) < 2**63)
      found = _lookup(sorted_ids, np.where(whole, raw, 0).astype(np.int64))
      return np.where(whole, found, UNKNOWN).astype(np.int32)
    try:  # Integer maps: accept "42" as well as 42.
      raw = raw.astype(np.int64)
    except (TypeError, ValueError, OverflowError):  # Text, or beyond int64:
      return _lookup_one_by_one(sorted_ids, raw)  # the others may be known.
  elif sorted_ids.dtype.kind == "U":
    raw = raw.astype(str)
  if len(sorted_ids) == 0:  # A map of no ids (a model of no users) knows none.
    return np.full(raw.shape, UNKNOWN, np.int32)
  pos = np.searchsorted(sorted_ids, raw)
  pos = np.minimum(pos, len(sorted_ids) - 1)
  found = sorted_ids[pos] == raw
  return np.where(found, pos, UNKNOWN).astype(np.int32)


def _lookup_one_by_one(sorted_ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
  """Integer-map lookup of ids that are not all integers: each on its own."""
  flat = raw.ravel().tolist()
  ints, whole = np.zeros(len(flat), np.int64), np.zeros(len(flat), bool)
  for j, x in enumerate(flat):
    try:
      ints[j] = int(x)  # OverflowError beyond int64; ValueError for "a", "4.0".
      whole[j] = not isinstance(x, float) or x.is_integer()
    except (TypeError, ValueError, OverflowError):
      pass
  found = np.where(whole, _lookup(sorted_ids, ints), UNKNOWN)
  return found.reshape(raw.shape).astype(np.int32)
