"""Ratings files: read on the host with NumPy into ``Ratings`` and raw-id maps.

:func:`load_ratings` reads MovieLens ``u.data``/``uN.base`` (tab),
``ratings.dat`` (``::``), ``ratings.csv`` (comma, header) or any delimited file
of user, item and rating columns (in that order, or in any order under a header
naming them), in blocks, and gives the dense indices of the raw ids with their
:class:`IdMaps`. Bad files raise :class:`RatingsFileError` naming the file
and line.

The text itself (blocks, layouts, parsing) is :mod:`mfjax.data.textparse`; the
same checks on arrays in memory, :mod:`mfjax.data.arrays`; each process's part
of one file, :mod:`mfjax.distributed.parts`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import IO

import jax
import numpy as np

from mfjax import validation
from mfjax.data.folding import Folded, RepeatedPair
from mfjax.data.textparse import (
  FORMATS,
  ROLES,
  RatingsFileError,
  caller_stacklevel,
  line_of,
  quote,
  read_columns,
)
from mfjax.types import UNKNOWN, IdMaps, Ratings

__all__ = ["ScaleWarning", "DUPLICATES", "load_ratings", "fits_table"]


class ScaleWarning(UserWarning):
  """A rating far outside the others, with no declared scale: a typo, maybe.

  Given when no ``scale=`` is declared and the highest (or lowest) rating, held
  by at most one rating in a thousand, lies further from the others than twice
  their whole range (a single 44 among ratings 1 to 5), in data of at least
  10 ratings. The message names the file and line (or row) of the first one.
  """


DUPLICATES = ("last", "mean", "error")


def load_ratings(
  path: str | os.PathLike | IO,
  *,
  format: str = "auto",
  sep: str | None = None,
  columns=None,
  id_maps: IdMaps | None = None,
  scale: tuple[float, float] | None = None,
  duplicates: str = "last",
  progress: bool = False,
) -> tuple[Ratings, IdMaps]:
  """Reads a ratings file into :class:`Ratings` and the raw-id maps.

  Each line is ``user, item, rating[, timestamp]``, or the columns a header line
  names (in any order, with others that are not read); the timestamp is not read.

  Args:
    path: the file. MovieLens 100k ``u.data`` / ``uN.base`` / ``uN.test`` (tab),
      MovieLens 1M/10M ``ratings.dat`` (``::``), ``ratings.csv`` of ml-latest
      (comma, with a header), or any delimited file; compressed when the name
      ends in ``.gz``, ``.bz2`` or ``.xz``. Or an open file (binary or text, e.g.
      ``io.StringIO``), read from where it stands; it is not closed.
    format: ``"auto"`` (sniff the separator and a header from the first line),
      ``"ml-100k"``, ``"ml-1m"``, ``"ml-latest"`` or ``"delimited"``.
    sep: the separator, overriding the format's (``None``: sniffed).
    columns: None: a first line without any number is a header, whose names
      (:data:`COLUMN_NAMES`, any case) say which column is the user, the item,
      the rating and the timestamp; without a header the columns are user, item,
      rating[, timestamp]. Or the role of each column in file order, from
      :data:`ROLES` or None for a column not to read, e.g. ``("item", "user",
      "rating")``; a first line without numbers is then skipped as a header,
      whatever its names.
    id_maps: the :class:`IdMaps` of a training file. Given, ids get the training
      indices and ids unknown to training get :data:`UNKNOWN` (-1); they are
      counted in ``n_unknown`` and predicted from the mean and whatever bias is
      known, as Surprise does. Not given, the maps are built from this file.
    scale: the rating scale ``(lo, hi)``; ratings outside it are an error. Default:
      the training maps' scale when ``id_maps`` is given (not enforced), else the
      scale observed in the file; either way a rating far outside the others
      gives a :class:`ScaleWarning` naming its line.
    duplicates: what to do with a (user, item) pair rated more than once: keep the
      ``"last"`` rating in the file (default), the ``"mean"``, or raise
      (``"error"``). They are counted in ``n_duplicates`` either way. With
      ``"last"`` or ``"mean"`` (and no ``id_maps``) they are folded while the
      file streams in once it passes
      :data:`mfjax.data.folding.FOLD_ENTRIES` lines, so that memory follows
      the distinct pairs, not the lines (a compressed file of 10⁸ identical
      lines holds one rating); with ``"error"`` a repeat is then looked for
      as the file streams in, and raised without reading on.
    progress: show a bar of the bytes read on stderr once reading has taken
      2 s (``mfjax fit`` passes it on a terminal).

  Returns:
    ``(ratings, id_maps)``, a :class:`IdMaps`, whose ``columns`` and
    ``header`` say which column was which. Integer ids keep their integer type in
    the maps; other ids are strings. Indices follow the sorted raw ids.

  Raises:
    RatingsFileError: (a ``ValueError``) for a missing, empty, binary or
      malformed file, naming the file and the line: a wrong number of columns, a
      rating that is not a finite number, a header whose names are not
      recognised, a carriage return inside a line, a line over
      :data:`MAX_LINE_BYTES`, a rating outside ``scale``, or a duplicate under
      ``duplicates="error"``. Errors quote at most 80 characters of a line.

  Examples:
    >>> import io
    >>> text = "movieId,userId,rating\\n10,1,4\\n20,1,3\\n10,2,5\\n"
    >>> ratings, maps = load_ratings(io.StringIO(text))
    >>> maps.columns, maps.users.tolist(), maps.items.tolist()
    (('item', 'user', 'rating'), [1, 2], [10, 20])
  """
  path, stream, sep, columns, scale = check_load_args(
    path, format, sep, columns, id_maps, scale, duplicates
  )
  if not isinstance(progress, bool):
    raise TypeError(f"progress must be True or False; got {progress!r}.")

  def where_in(header: bool):
    return lambda row, short=False: (
      f"line {line_of(row, header)}" if short else f"{path}:{line_of(row, header)}"
    )

  def check(values, rows, header):  # Lines a fold may drop, first seen.
    at = lambda k, short=False: where_in(header)(int(rows[k]), short)
    check_values(at, values, None, RatingsFileError)  # Not finite: at once.
    if scale is not None:
      outside = (values < scale[0]) | (values > scale[1])
      if outside.any():
        k = int(np.argmax(outside))
        return int(rows[k]), float(values[k])
    return None

  try:
    read = read_columns(
      path, stream, format, sep, columns, id_maps, duplicates=duplicates,
      check=check, progress=progress,
    )  # fmt: skip
  except RepeatedPair as repeat:  # duplicates="error", found while reading.
    raise _repeated(where_in(repeat.header), repeat.first, repeat.second) from None
  raw_users, raw_items, values, layout, names = read[:5]
  where = where_in(names is not None)
  folded = read if isinstance(read, Folded) else None
  del read
  known_scale = scale
  if folded is not None:
    # Every line was checked as it was first folded: the first one outside
    # the declared scale, as check_values names it without folding. The
    # scale and the outlier warning come from every line's rating.
    if folded.outside is not None:
      row, value = folded.outside
      at = lambda _, short=False: where(row, short)
      check_values(at, np.array([value], np.float32), scale, RatingsFileError)
    if scale is None:
      seen, lines, first = folded.histogram
      known_scale = (float(seen[0]), float(seen[-1]))
      found = _outlier_of_histogram(seen, lines, first)
      if found is not None:
        row, value, lo, hi = found
        warn_outlier(where(row), value, lo, hi, id_maps is None)
    file_where = where
    where = lambda row, short=False: file_where(int(folded.rows[row]), short)
  ratings, maps = indexed(
    where,
    raw_users,
    raw_items,
    values,
    id_maps,
    known_scale,
    duplicates,
    RatingsFileError,
    (layout.roles, names or ()),
  )
  if folded is None:
    return ratings, maps
  n_duplicates = maps.n_duplicates + folded.n_folded
  return ratings, dataclasses.replace(
    maps, n_lines=folded.n_lines, n_duplicates=n_duplicates
  )


def indexed(
  where, raw_users, raw_items, values, id_maps, scale, duplicates, error, source
):
  """``(Ratings, IdMaps)`` of raw ids and ratings (NumPy arrays, consumed).

  ``source`` is ``(columns, header)`` of the maps.
  """
  check_values(where, values, scale, error)
  if scale is None:
    _warn_of_outliers(where, values, id_maps is None)
  if id_maps is None:
    user_ids, users = _index_ids(raw_users)
    item_ids, items = _index_ids(raw_items)
    if scale is None:
      scale = (float(values.min()), float(values.max()))
  else:
    user_ids, item_ids = id_maps.users, id_maps.items
    users, items = id_maps.user_index(raw_users), id_maps.item_index(raw_items)
    if scale is None:
      scale = id_maps.scale
  del raw_users, raw_items
  n_lines = len(values)
  users, items, values, n_duplicates = _resolve_duplicates(
    where, users, items, values, len(item_ids), duplicates, error
  )
  n_unknown = int(np.sum((users == UNKNOWN) | (items == UNKNOWN)))
  # One array at a time to the device, so host and device copies overlap least
  # (device_put: jnp.asarray compiles a small program per shape).
  users = jax.device_put(np.asarray(users, np.int32))
  items = jax.device_put(np.asarray(items, np.int32))
  values = jax.device_put(np.asarray(values, np.float32))
  ratings = Ratings(users, items, values, n_users=len(user_ids), n_items=len(item_ids))
  maps = IdMaps(
    users=user_ids,
    items=item_ids,
    scale=(float(scale[0]), float(scale[1])),
    n_lines=n_lines,
    n_duplicates=n_duplicates,
    n_unknown=n_unknown,
    columns=tuple(source[0]),
    header=tuple(source[1]),
  )
  return ratings, maps


OUTLIER_MIN_RATINGS = 10


def _outlier_row(values: np.ndarray) -> tuple[int, float, float] | None:
  """``(row, lo, hi)`` of the first rating far outside the others' ``[lo, hi]``.

  An extreme value (the highest or the lowest) held by at most one rating in a
  thousand (one at least), further from the others than twice their range.
  """
  n = len(values)
  if n < OUTLIER_MIN_RATINGS:
    return None
  allowed = max(1, n // 1000)
  for extreme in (values.max(), values.min()):
    at = values == extreme
    if int(at.sum()) > allowed:
      continue
    others = ~at
    lo = float(values.min(where=others, initial=np.inf))
    hi = float(values.max(where=others, initial=-np.inf))
    gap = max(float(extreme) - hi, lo - float(extreme))
    if hi > lo and gap > 2 * (hi - lo):
      return int(np.argmax(at)), lo, hi
  return None


def _outlier_of_histogram(values, lines, first) -> tuple | None:
  """:func:`_outlier_row` of ratings given as distinct ``values``, the
  ``lines`` holding each and the ``first`` row of each: ``(row, value, lo,
  hi)`` or None."""
  n = int(lines.sum())
  if n < OUTLIER_MIN_RATINGS or len(values) < 2:
    return None
  allowed = max(1, n // 1000)
  for k in (len(values) - 1, 0):  # The highest, then the lowest.
    if int(lines[k]) > allowed:
      continue
    others = np.delete(values, k)
    lo, hi = float(others.min()), float(others.max())
    gap = max(float(values[k]) - hi, lo - float(values[k]))
    if hi > lo and gap > 2 * (hi - lo):
      return int(first[k]), float(values[k]), lo, hi
  return None


def _warn_of_outliers(where, values, inferred: bool) -> None:
  found = _outlier_row(values)
  if found is None:
    return
  row, lo, hi = found
  warn_outlier(where(row), float(values[row]), lo, hi, inferred)


def warn_outlier(place: str, value: float, lo: float, hi: float, inferred: bool):
  side = "above" if value > hi else "below"
  scale = (min(value, lo), max(value, hi))
  consequence = f" It makes the scale ({scale[0]:g}, {scale[1]:g})." if inferred else ""
  warnings.warn(
    f"{place}: rating {value:g} lies far {side} the others ({lo:g} to "
    f"{hi:g}): a typo?{consequence} Declare scale=(lo, hi) to refuse ratings "
    "outside it.",
    ScaleWarning,
    stacklevel=caller_stacklevel(),
  )


def check_load_args(path, format, sep, columns, id_maps, scale, duplicates):
  """Host checks of :func:`load_ratings`' arguments.

  Returns ``(name, stream, sep, columns, scale)``: ``stream`` is the open file
  when ``path`` is one (``name`` its name), else None.
  """
  stream = None
  if hasattr(path, "read"):
    stream, name = path, getattr(path, "name", None)
    path = name if isinstance(name, str) else f"<{type(stream).__name__}>"
  elif not isinstance(path, (str, os.PathLike)):
    raise TypeError(
      f"path must be a file path or an open file; got {type(path).__name__}."
    )
  path = os.fspath(path)
  validation.check_choice("format", format, FORMATS)
  check_options(id_maps, duplicates)
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  if sep is not None:
    if not isinstance(sep, str):
      raise TypeError(f"sep must be a string or None; got {type(sep).__name__}.")
    if not sep or "\n" in sep or "\r" in sep:
      raise ValueError(
        f"sep must be a non-empty string without line breaks, or None; got {sep!r}."
      )
  columns = _check_columns(columns)
  if stream is None and not os.path.exists(path):
    raise RatingsFileError(f"{path}: no such file.")
  if stream is None and not os.path.isfile(path):
    raise RatingsFileError(f"{path}: not a regular file.")
  return path, stream, sep, columns, scale


def _check_columns(columns) -> tuple | None:
  if columns is None:
    return None
  if isinstance(columns, (str, bytes)) or not hasattr(columns, "__iter__"):
    raise TypeError(
      "columns must be None or a sequence of roles, one a column, such as "
      f"('item', 'user', 'rating'); got {quote(repr(columns), 60)}."
    )
  columns = tuple(columns)
  bad = [c for c in columns if c is not None and c not in ROLES]
  if bad:
    raise ValueError(
      f"columns must hold {', '.join(map(repr, ROLES))} or None; got "
      f"{quote(repr(bad[0]), 40)}."
    )
  for role in ROLES:
    count = columns.count(role)
    if count > 1 or (count == 0 and role != "timestamp"):
      raise ValueError(
        f"columns must name 'user', 'item' and 'rating' once each, and "
        f"'timestamp' at most once; got {columns!r}."
      )
  return columns


def check_options(id_maps, duplicates) -> None:
  validation.check_choice("duplicates", duplicates, DUPLICATES)
  if id_maps is not None and not isinstance(id_maps, IdMaps):
    raise TypeError(f"id_maps must be mfjax.IdMaps; got {type(id_maps).__name__}.")


def check_values(where, values, scale, error=RatingsFileError) -> None:
  """Every rating finite, and inside ``scale`` if one was declared.

  ``where(row)`` names the place of data row ``row`` in an error message
  (``where(row, short=True)`` without the file name).
  """
  finite = np.isfinite(values)
  if not finite.all():
    row = int(np.argmin(finite))
    raise error(f"{where(row)}: rating {values[row]} is not finite.")
  if scale is not None:
    outside = (values < scale[0]) | (values > scale[1])
    if outside.any():
      row = int(np.argmax(outside))
      raise error(
        f"{where(row)}: rating {values[row]:g} is outside "
        f"the declared scale [{scale[0]:g}, {scale[1]:g}]."
      )


def fits_table(lo, hi, n: int) -> bool:
  """Whether ids in ``[lo, hi]`` fit a lookup table rather than a sort (here and
  in the parts reader)."""
  return int(lo) >= 0 and int(hi) <= 4 * n + (1 << 20)


def _index_ids(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Sorted unique ids and the int32 index of each; no sort for compact int ids."""
  if raw.dtype.kind == "i" and raw.size:
    lo, hi = int(raw.min()), int(raw.max())
    if fits_table(lo, hi, raw.size):
      present = np.zeros(hi + 1, bool)
      present[raw] = True
      lookup = np.cumsum(present, dtype=np.int32) - 1
      return np.flatnonzero(present).astype(np.int64), lookup[raw]
  ids, index = np.unique(raw, return_inverse=True)
  if ids.dtype.kind == "i":
    ids = ids.astype(np.int64)
  return ids, index.astype(np.int32)


def pair_keys(users, items, n_items, start=0):
  """One int64 key per (user, item) pair; unknown ids get unique negative keys."""
  key = users.astype(np.int64) * n_items + items
  unknown = (users < 0) | (items < 0)
  if unknown.any():  # Unknown ids never count as duplicates of each other.
    key[unknown] = -1 - (start + np.flatnonzero(unknown))
  return key


KEY_CHUNK = 1 << 20


def _repeated(where, first: int, second: int, error=RatingsFileError):
  """The error of a pair rated on data rows ``first`` and ``second``."""
  return error(
    f"{where(second)}: duplicate rating of the pair on {where(first, short=True)} "
    f"(use duplicates='last' or 'mean')."
  )


def _resolve_duplicates(where, users, items, values, n_items, policy, error):
  # Written for memory: at 20M ratings an int64 array is 160 MB, and this holds
  # one at most. The keys are sorted in place to find the repeated ones; only the
  # rows with a repeated key are then sorted by key, with their line order.
  key = pair_keys(users, items, n_items)
  key.sort()
  repeat = key[1:] == key[:-1]
  n_duplicates = int(repeat.sum())
  repeated = np.unique(key[1:][repeat]) if n_duplicates else None
  del key, repeat
  if not n_duplicates:
    return users, items, values, 0
  involved = np.zeros(len(users), bool)
  for start in range(0, len(users), KEY_CHUNK):
    stop = start + KEY_CHUNK
    chunk = pair_keys(users[start:stop], items[start:stop], n_items, start)
    at = np.minimum(np.searchsorted(repeated, chunk), len(repeated) - 1)
    involved[start:stop] = repeated[at] == chunk
  rows = np.flatnonzero(involved)
  del involved
  row_keys = pair_keys(users[rows], items[rows], n_items)
  order = np.argsort(row_keys, kind="stable")  # Equal keys keep their line order.
  rows, row_keys = rows[order], row_keys[order]
  last = np.append(row_keys[1:] != row_keys[:-1], True)  # The last of each run.
  if policy == "error":
    first, second = int(rows[0]), int(rows[1])  # The first run, in key order.
    raise _repeated(where, first, second, error)
  if policy == "mean":
    starts = np.flatnonzero(np.append(True, last[:-1]))
    # In float64: a float32 sum overflows, or misses the mean of equal ratings.
    means = np.add.reduceat(values[rows].astype(np.float64), starts) / np.diff(
      np.append(starts, len(rows))
    )
    values[rows[last]] = means
  keep = np.ones(len(users), bool)
  keep[rows[~last]] = False
  return users[keep], items[keep], values[keep], n_duplicates


# Several processes, one file: each reads its part, and they agree (load_ratings_part).
