"""Ratings from memory: NumPy or JAX arrays, a pandas (or similar) frame, a SciPy
sparse matrix, each with raw ids of any type turned into indices and
:class:`~mfjax.IdMaps`, checked as :func:`mfjax.load_ratings` checks a file.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np

from mfjax import validation
from mfjax.data.loaders import check_options, check_values, indexed
from mfjax.data.textparse import COLUMN_NAMES, quote
from mfjax.types import IdMaps, Ratings

__all__ = [
  "ratings_from_arrays",
  "ratings_from_frame",
  "ratings_from_sparse",
]


def _missing(x) -> bool:
  """Whether ``x`` is a missing value: None, NaN (as pandas marks a missing
  number), or pandas' NA or NaT (by type name: pandas is not a dependency)."""
  return (
    x is None
    or (isinstance(x, (float, np.floating)) and x != x)
    or type(x).__name__ in ("NAType", "NaTType")
  )


def _bad_object_id(x) -> bool:
  """Whether ``x``, an element of an object array of ids, is neither an
  integer nor a string (booleans are neither)."""
  return isinstance(x, (bool, np.bool_)) or not isinstance(x, (str, int, np.integer))


def _raw_ids(name: str, ids) -> np.ndarray:
  """1-D raw ids as loaded from a file: int64 when every id is an integer, else str."""
  if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
    raise TypeError(f"{name} must be a 1-D sequence of ids; got {type(ids).__name__}.")
  array = np.asarray(ids)
  if array.ndim != 1:
    raise ValueError(f"{name} must be 1-D; got shape {array.shape}.")
  kind = array.dtype.kind
  if kind == "b":
    raise TypeError(f"{name} must hold integer or string ids, not booleans.")
  if kind in "iu":
    if kind == "u" and array.size and array.max() >= 2**63:
      raise ValueError(f"{name}: ids above 2**63 - 1 do not fit int64; pass strings.")
    return array.astype(np.int64)
  if kind == "f":
    whole = np.isfinite(array) & (array == np.round(array))
    if not whole.all():
      row = int(np.argmin(whole))
      raise ValueError(
        f"{name}[{row}] is {array[row].item()!r}: float ids must be whole numbers "
        "(or pass strings)."
      )
    # Beyond 2**53 a float is not one integer but the nearest of several (1e19
    # and 1e19 + 1 are one float), and beyond 2**63 int64 wraps: refused.
    exact = np.abs(array) <= 2**53
    if not exact.all():
      row = int(np.argmin(exact))
      raise ValueError(
        f"{name}[{row}] is {array[row].item()!r}: a float id beyond 2**53 does not "
        "name one integer exactly; pass integers or strings."
      )
    return array.astype(np.int64)
  if kind == "O":
    items = array.tolist()
    missing = [x for x in items if _missing(x)][:1]
    if missing:
      raise ValueError(f"{name} holds {missing[0]!r}: a missing id.")
    bad = [x for x in items if _bad_object_id(x)][:1]
    if bad:
      raise TypeError(
        f"{name} must hold integer or string ids; got {quote(repr(bad[0]), 60)} "
        f"({type(bad[0]).__name__})."
      )
    if not any(isinstance(x, str) for x in items):  # Integers only.
      if any(not -(2**63) <= int(x) < 2**63 for x in items):
        raise ValueError(f"{name}: ids beyond int64 do not fit; pass strings.")
      return np.asarray([int(x) for x in items], np.int64)
    return np.asarray([str(x) for x in items], dtype=str)
  if kind in "US":
    return array.astype(str)
  raise TypeError(f"{name} must hold integer or string ids; got dtype {array.dtype}.")


def ratings_from_arrays(
  users,
  items,
  ratings,
  *,
  id_maps: IdMaps | None = None,
  scale: tuple[float, float] | None = None,
  duplicates: str = "last",
) -> tuple[Ratings, IdMaps]:
  """:class:`Ratings` and :class:`IdMaps` of raw ids and ratings in memory.

  The in-memory twin of :func:`load_ratings`: the same arrays as the lines of a
  file give the same ``Ratings`` and ``IdMaps``.

  Args:
    users, items: 1-D sequences (lists, NumPy arrays, pandas Series, ...) of raw
      ids of the same length: integers (kept as int64) or anything else (kept as
      strings).
    ratings: 1-D finite numbers of the same length.
    id_maps, scale, duplicates: as in :func:`load_ratings`.

  Returns:
    ``(ratings, id_maps)``; indices follow the sorted raw ids. Without ``scale``,
    the scale is the observed one, and a rating far outside the others gives a
    :class:`ScaleWarning` naming its row.

  Raises:
    ValueError: arrays of different lengths, none at all, a rating that is not
      finite or outside ``scale``, a missing id (None, NaN), or a duplicate
      under ``duplicates="error"``; the message names the row.
    TypeError: ids or ratings of the wrong kind.
  """
  check_options(id_maps, duplicates)
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  raw_users, raw_items = _raw_ids("users", users), _raw_ids("items", items)
  if isinstance(ratings, (str, bytes)) or not hasattr(ratings, "__len__"):
    raise TypeError(
      f"ratings must be a 1-D sequence of numbers; got {quote(repr(ratings), 60)}."
    )
  values = np.asarray(ratings)
  if values.dtype.kind not in "iuf" or values.ndim != 1:
    raise TypeError(
      f"ratings must be 1-D numbers; got dtype {values.dtype}, shape {values.shape}."
    )
  lengths = {len(raw_users), len(raw_items), len(values)}
  if len(lengths) > 1:
    raise ValueError(
      f"users, items and ratings must have one length; got {len(raw_users)}, "
      f"{len(raw_items)} and {len(values)}."
    )
  if not len(values):
    raise ValueError("no ratings: users, items and ratings are empty.")
  # Integer ids against maps of text ids are looked up as text; the other way
  # round, IdMaps' lookup reads "42" as 42 and anything else as unknown.
  if id_maps is not None and id_maps.users.dtype.kind == "U":
    raw_users = raw_users.astype(str)
  if id_maps is not None and id_maps.items.dtype.kind == "U":
    raw_items = raw_items.astype(str)
  values = values.astype(np.float32)
  where = lambda row, short=False: f"row {row}"
  return indexed(
    where,
    raw_users,
    raw_items,
    values,
    id_maps,
    scale,
    duplicates,
    ValueError,
    (("user", "item", "rating"), ()),
  )


def ratings_from_frame(
  frame,
  *,
  user: str | None = None,
  item: str | None = None,
  rating: str | None = None,
  id_maps: IdMaps | None = None,
  scale: tuple[float, float] | None = None,
  duplicates: str = "last",
) -> tuple[Ratings, IdMaps]:
  """:func:`ratings_from_arrays` of three columns of a data frame.

  Takes a pandas or polars ``DataFrame``, or anything that indexes columns by
  name (a dict of arrays); neither library is a dependency of mfjax.

  Args:
    frame: the table.
    user, item, rating: the names of its columns. Each left as None is the
      column named ``user`` (``item``, ``rating``) if there is one, else found
      as :func:`mfjax.load_ratings` finds a header's columns: the one column
      whose name, in any case, is one of the role's names
      (:data:`mfjax.data.textparse.COLUMN_NAMES`: ``user``, ``userId``,
      ``user_id``, ...; ``item``, ``movieId``, ...; ``rating``, ``score``, ...).
    id_maps, scale, duplicates: as in :func:`load_ratings`.

  Returns:
    What :func:`ratings_from_arrays` returns, the maps' ``header`` the three
    column names.

  Raises:
    ValueError: a column the frame does not have, or none (or several) of a
      role's names (the message lists the frame's columns), or what
      :func:`ratings_from_arrays` raises.

  Examples:
    >>> import mfjax
    >>> frame = {"userId": [1, 1, 2], "movieId": [10, 20, 10], "rating": [4, 3, 5]}
    >>> ratings, maps = mfjax.ratings_from_frame(frame)
    >>> len(ratings), maps.header
    (3, ('userId', 'movieId', 'rating'))
  """
  given = {"user": user, "item": item, "rating": rating}
  for option, name in given.items():
    if name is not None and not isinstance(name, str):
      raise TypeError(f"{option} must be a column name; got {name!r}.")
  columns = _columns_of(frame)
  names = {role: name or _column_of_role(columns, role) for role, name in given.items()}
  missing = [name for name in names.values() if name not in columns]
  if missing:
    raise ValueError(
      f"the frame has no column {missing[0]!r}; its columns are "
      f"{list(columns)}. Name them with user=, item=, rating=."
    )
  ratings, maps = ratings_from_arrays(
    _column(frame, names["user"]),
    _column(frame, names["item"]),
    _column(frame, names["rating"]),
    id_maps=id_maps,
    scale=scale,
    duplicates=duplicates,
  )
  header = (names["user"], names["item"], names["rating"])
  return ratings, dataclasses.replace(maps, header=header)


def _column_of_role(columns: list, role: str) -> str:
  """The column of ``role``: the one named ``role`` itself (0.2's default),
  else the one named as ``load_ratings`` names the role in a header."""
  if role in columns:
    return role
  found = [c for c in columns if isinstance(c, str) and c.lower() in COLUMN_NAMES[role]]
  if len(found) != 1:
    what = "no column" if not found else f"columns {found}"
    raise ValueError(
      f"the frame has {what} for the {role}s (names such as "
      f"{', '.join(COLUMN_NAMES[role][:4])}, in any case); its columns are "
      f"{list(columns)}. Name it with {role}=."
    )
  return found[0]


def _columns_of(frame) -> list:
  if isinstance(frame, dict):
    return list(frame)
  columns = getattr(frame, "columns", None)
  if columns is None:
    raise TypeError(
      "frame must be a data frame (pandas, polars) or a dict of columns; got "
      f"{type(frame).__name__}."
    )
  return [str(c) if not isinstance(c, str) else c for c in columns]


def _column(frame, name: str) -> np.ndarray:
  column = frame[name]
  to_numpy = getattr(column, "to_numpy", None)
  return to_numpy() if callable(to_numpy) else np.asarray(column)


def ratings_from_sparse(
  matrix,
  *,
  scale: tuple[float, float] | None = None,
) -> Ratings:
  """:class:`Ratings` of a SciPy sparse ``[n_users, n_items]`` matrix.

  Its stored entries are the ratings (explicit zeros included, as SciPy stores
  them), at their row and column indices; the shape is kept, so users and items
  without ratings keep their rows. SciPy is not a dependency of mfjax.

  Args:
    matrix: any ``scipy.sparse`` matrix or array (COO, CSR, CSC, ...).
    scale: the rating scale; a stored value outside it is an error. (No scale
      is inferred: ``Ratings`` carry none.)

  Warns:
    UserWarning: a million empty rows (or columns) or more, and more of them
      than rows with ratings (:data:`EMPTY_WARNING`): their users are trained
      and stored all the same; ids that are sparse labels belong in
      :func:`ratings_from_arrays`.

  Raises:
    TypeError: not a SciPy sparse matrix, or values that are not numbers.
    ValueError: a stored value that is not finite or outside ``scale``, no
      stored values, or an empty shape.
  """
  if not hasattr(matrix, "tocoo") or not hasattr(matrix, "nnz"):
    raise TypeError(
      f"matrix must be a SciPy sparse matrix; got {type(matrix).__name__}."
      " For a dense matrix use mfjax.ratings_from_dense."
    )
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  coo = matrix.tocoo(copy=True)
  # SciPy's meaning of repeated entries is their sum; this also sorts them by
  # row, then column, as a dense matrix's entries are ordered.
  coo.sum_duplicates()
  n_users, n_items = (int(n) for n in coo.shape)
  if max(n_users, n_items) >= 2**31:  # Indices are int32: 3e9 would wrap negative.
    raise ValueError(
      f"matrix has shape {coo.shape}: at most 2**31 - 1 users and items (int32 "
      "indices). For ids that are sparse labels, pass the stored entries' ids to "
      "mfjax.ratings_from_arrays, which numbers only the ids that occur."
    )
  if not n_users or not n_items or not coo.nnz:
    raise ValueError(f"matrix has no ratings (shape {coo.shape}, {coo.nnz} stored).")
  if np.asarray(coo.data).dtype.kind not in "iuf":
    raise TypeError(f"matrix must hold numbers; got dtype {coo.data.dtype}.")
  values = np.asarray(coo.data, np.float32)
  rows, cols = np.asarray(coo.row), np.asarray(coo.col)
  where = lambda k: f"entry ({rows[k]}, {cols[k]})"
  check_values(where, values, scale, ValueError)
  _warn_of_empty("rows", n_users, _distinct(rows))
  _warn_of_empty("columns", n_items, _distinct(cols))
  return Ratings(
    jax.device_put(rows.astype(np.int32)),
    jax.device_put(cols.astype(np.int32)),
    jax.device_put(values),
    n_users=n_users,
    n_items=n_items,
  )


EMPTY_WARNING = 1_000_000
""":func:`ratings_from_sparse` warns of a matrix with at least this many empty
rows (or columns), and more empty ones than full: each is a user (or item)
whose factors are trained, stored and saved all the same."""


def _distinct(x: np.ndarray) -> int:
  """How many values ``x`` holds: by its runs where sorted (as SciPy's
  ``sum_duplicates`` leaves rows), else by ``np.unique``."""
  if np.all(x[1:] >= x[:-1]):
    return 1 + int(np.count_nonzero(np.diff(x)))
  return int(np.unique(x).size)


def _warn_of_empty(what: str, size: int, occupied: int) -> None:
  empty = size - occupied
  if empty >= EMPTY_WARNING and empty > occupied:
    warnings.warn(
      f"matrix has {size:,} {what} but only {occupied:,} hold ratings: each of "
      f"the {empty:,} empty ones is a {'user' if what == 'rows' else 'item'} "
      "whose factors are trained, stored and saved all the same. For ids that "
      "are sparse labels, pass the stored entries' ids to "
      "mfjax.ratings_from_arrays, which numbers only the ids that occur.",
      stacklevel=3,
    )
