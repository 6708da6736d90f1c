"""Ratings files: read on the host with NumPy into ``Ratings`` and raw-id maps.

:func:`load_ratings` reads MovieLens ``u.data``/``uN.base`` (tab),
``ratings.dat`` (``::``), ``ratings.csv`` (comma, header) or any
``user,item,rating[,timestamp]`` file, in blocks, and gives the dense indices of
the raw ids with their :class:`mfjax.IdMaps`. Bad files raise
:class:`RatingsFileError` naming the file and line.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import math
import os
from typing import IO

import jax.numpy as jnp
import numpy as np

from mfjax import validation
from mfjax.types import UNKNOWN, IdMaps, Ratings

__all__ = [
  "RatingsFileError",
  "FORMATS",
  "DUPLICATES",
  "load_ratings",
  "ratings_from_arrays",
  "ratings_from_frame",
  "ratings_from_sparse",
]


class RatingsFileError(ValueError):
  """A ratings file that cannot be read; the message names the file and line."""


FORMATS = ("auto", "ml-100k", "ml-1m", "ml-latest", "delimited")


DUPLICATES = ("last", "mean", "error")


_FORMAT_SEP = {"ml-100k": "\t", "ml-1m": "::", "ml-latest": ","}


_CHUNK_BYTES = 1 << 22


def _sniff_sep(line: str) -> str | None:
  for sep in ("::", "\t", ",", ";", "|"):
    if sep in line:
      return sep
  return None  # Any run of whitespace.


def _split(line: str, sep: str | None) -> list[str]:
  return [f.strip() for f in (line.split(sep) if sep else line.split())]


def _is_float(text: str) -> bool:
  if not text.isascii() or "_" in text:  # float() takes "1_0" and "\u0663".
    return False
  try:
    float(text)
  except ValueError:
    return False
  return True


def _is_int(text: str) -> bool:
  digits = text[1:] if text.startswith("-") else text
  # ASCII digits only: str.isdigit() also takes "\u2460" and "\u00b2".
  return digits.isascii() and digits.isdigit() and len(text) <= 15


def _is_integral(text: str) -> bool:
  """What the integer-id path reads: a number with an integer value below 1e15."""
  if not _is_float(text):
    return False
  value = float(text)
  return math.isfinite(value) and value.is_integer() and abs(value) < 1e15


_INTEGER_IDS = (
  "ids must be integers of at most 15 digits, or all text; the first line had integers"
)


def _bad_line(path, number, line, sep, ncols, reason=None) -> RatingsFileError:
  shown = line if len(line) <= 80 else line[:77] + "..."
  if reason is None:
    fields = _split(line, sep)
    if len(fields) not in (3, 4) or len(fields) != ncols:
      reason = (
        f"expected {ncols} columns (user, item, rating[, timestamp]) separated by "
        f"{sep or 'whitespace'!r}, got {len(fields)}"
      )
    elif not _is_float(fields[2]):
      reason = f"rating {fields[2]!r} is not a number"
    else:
      reason = "malformed line"
  return RatingsFileError(f"{path}:{number}: {reason}: {shown!r}")


_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _read_lines(path: str, stream=None):
  """Yields ``(first_line_number, text)`` blocks of whole lines, decoded.

  Reads ``stream`` (an open file, binary or text) when given, else ``path``,
  decompressed when it ends in .gz, .bz2 or .xz.
  """
  suffix = os.path.splitext(path)[1].lower() if stream is None else ""
  try:
    yield from _blocks_of(path, stream, suffix)
  except (OSError, EOFError, lzma.LZMAError) as e:
    if not suffix:
      raise
    raise RatingsFileError(f"{path}: not a readable {suffix} file ({e}).") from None


def _blocks_of(path, stream, suffix):
  opened = (
    contextlib.nullcontext(stream)
    if stream is not None
    else _COMPRESSED.get(suffix, open)(path, "rb")
  )
  with opened as f:
    number, rest = 1, b""
    while True:
      block = f.read(_CHUNK_BYTES)
      if isinstance(block, str):  # A file opened in text mode.
        block = block.encode("utf-8")
      if not block:
        if rest:
          yield number, _decode(path, number, rest)
        return
      block = rest + block
      cut = block.rfind(b"\n") + 1
      if cut == 0:
        rest = block
        continue
      text, rest = block[:cut], block[cut:]
      yield number, _decode(path, number, text)
      number += text.count(b"\n")


def _decode(path, number, raw: bytes) -> str:
  if b"\x00" in raw:
    raise RatingsFileError(
      f"{path}: looks like a binary file (NUL bytes), not ratings."
    )
  try:
    # A UTF-8 byte order mark at the start of the file is no part of an id.
    codec = "utf-8-sig" if number == 1 else "utf-8"
    return raw.decode(codec).replace("\r", "")
  except UnicodeDecodeError as e:
    line = number + raw[: e.start].count(b"\n")
    raise RatingsFileError(f"{path}:{line}: not UTF-8 text ({e.reason}).") from None


def _parse_numeric(path, number, text, sep, ncols):
  """Parses a block with NumPy; on any failure finds the bad line in Python."""
  import io
  import warnings

  lines = text.count("\n") + (0 if text.endswith("\n") else 1)
  delimiter = sep
  if sep is not None and len(sep) > 1:  # np.loadtxt takes one character.
    text = text.replace(sep, "\t")
    delimiter = "\t"
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      # Bytes, not io.StringIO: that buffers 4 bytes per character.
      block = np.loadtxt(
        io.BytesIO(text.encode()),
        delimiter=delimiter,
        dtype=np.float64,
        ndmin=2,
        comments=None,
      )
    if block.shape != (lines, ncols):
      raise ValueError("blank lines or a column count that changes")
  except (ValueError, UserWarning):
    # The lines only: not the empty string after the last newline.
    for offset, line in enumerate(text.split("\n")[:lines]):
      fields = _split(line, delimiter)
      # Not _is_int: np.loadtxt reads ids such as "+4" or "4.0" on other lines.
      if len(fields) == ncols and not all(_is_integral(f) for f in fields[:2]):
        raise _bad_line(
          path,
          number + offset,
          line,
          sep,
          ncols,
          _INTEGER_IDS,
        ) from None
      if len(fields) != ncols or not _is_float(fields[2]):
        raise _bad_line(path, number + offset, line, sep, ncols) from None
      if ncols == 4 and not _is_float(fields[3]):
        reason = f"timestamp {fields[3]!r} is not a number"
        raise _bad_line(path, number + offset, line, sep, ncols, reason) from None
    raise RatingsFileError(f"{path}:{number}: could not parse this block.") from None
  ids = block[:, :2]
  # float64 holds integers exactly below 2**53; _is_int allows 15 digits. NaN and
  # inf fail too.
  bad = ~((ids == np.round(ids)) & (np.abs(ids) < 1e15))
  if bad.any():
    row = int(np.argmax(bad.any(axis=1)))
    raise _bad_line(
      path,
      number + row,
      text.split("\n")[row],
      sep,
      ncols,
      _INTEGER_IDS,
    )
  _check_float32(path, number, text, sep, ncols, block[:, 2])
  # The narrowest types that hold the block: 12 bytes a line instead of 24.
  small = np.abs(ids).max() < 2**31 if ids.size else True
  id_type = np.int32 if small else np.int64
  # Copies, not views: a view of the ratings column would keep the whole float64
  # block alive.
  return (
    block[:, 0].astype(id_type),
    block[:, 1].astype(id_type),
    block[:, 2].astype(np.float32),
  )


def _parse_strings(path, number, text, sep, ncols):
  users, items, values = [], [], []
  for offset, line in enumerate(text.split("\n")):
    if not line and offset == text.count("\n"):
      break  # The empty string after the last newline.
    fields = _split(line, sep)
    if (
      len(fields) != ncols or not _is_float(fields[2]) or not fields[0] or not fields[1]
    ):
      raise _bad_line(path, number + offset, line, sep, ncols)
    users.append(fields[0])
    items.append(fields[1])
    values.append(float(fields[2]))
  values = np.array(values)
  _check_float32(path, number, text, sep, ncols, values)
  return np.array(users, dtype=str), np.array(items, dtype=str), values


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32(path, number, text, sep, ncols, values):
  """Finite ratings beyond float32 would become inf with a RuntimeWarning."""
  big = np.isfinite(values) & (np.abs(values) > _FLOAT32_MAX)
  if big.any():
    row = int(np.argmax(big))
    raise _bad_line(
      path,
      number + row,
      text.split("\n")[row],
      sep,
      ncols,
      f"rating {values[row]:g} does not fit in float32",
    )


def load_ratings(
  path: str | os.PathLike | IO,
  *,
  format: str = "auto",
  sep: str | None = None,
  id_maps: IdMaps | None = None,
  scale: tuple[float, float] | None = None,
  duplicates: str = "last",
) -> tuple[Ratings, IdMaps]:
  """Reads a ratings file into :class:`Ratings` and the raw-id maps.

  Each line is ``user, item, rating[, timestamp]``; the timestamp is ignored.

  Args:
    path: the file. MovieLens 100k ``u.data`` / ``uN.base`` / ``uN.test`` (tab),
      MovieLens 1M/10M ``ratings.dat`` (``::``), ``ratings.csv`` of ml-latest
      (comma, with a header), or any delimited file; compressed when the name
      ends in ``.gz``, ``.bz2`` or ``.xz``. Or an open file (binary or text, e.g.
      ``io.StringIO``), read from where it stands; it is not closed.
    format: ``"auto"`` (sniff the separator and a header from the first line),
      ``"ml-100k"``, ``"ml-1m"``, ``"ml-latest"`` or ``"delimited"``.
    sep: the separator, overriding the format's (``None``: sniffed).
    id_maps: the :class:`IdMaps` of a training file. Given, ids get the training
      indices and ids unknown to training get :data:`UNKNOWN` (-1); they are
      counted in ``n_unknown`` and predicted from the mean and whatever bias is
      known, as Surprise does. Not given, the maps are built from this file.
    scale: the rating scale ``(lo, hi)``; ratings outside it are an error. Default:
      the training maps' scale when ``id_maps`` is given (not enforced), else the
      scale observed in the file.
    duplicates: what to do with a (user, item) pair rated more than once: keep the
      ``"last"`` rating in the file (default), the ``"mean"``, or raise
      (``"error"``). They are counted in ``n_duplicates`` either way.

  Returns:
    ``(ratings, id_maps)``. Integer ids keep their integer type in the maps; other
    ids are strings. Indices follow the sorted raw ids.

  Raises:
    RatingsFileError: (a ``ValueError``) for a missing, empty, binary or
      malformed file, naming the file and the line: a wrong number of columns, a
      rating that is not a finite number, a rating outside ``scale``, or a
      duplicate under ``duplicates="error"``.
  """
  path, stream, sep, scale = _check_load_args(
    path, format, sep, id_maps, scale, duplicates
  )
  raw_users, raw_items, values, header = _read_columns(
    path, stream, format, sep, id_maps
  )
  where = lambda row, short=False: (
    f"line {_line_of(row, header)}" if short else f"{path}:{_line_of(row, header)}"
  )
  return _indexed(
    where, raw_users, raw_items, values, id_maps, scale, duplicates, RatingsFileError
  )


def _indexed(where, raw_users, raw_items, values, id_maps, scale, duplicates, error):
  """``(Ratings, IdMaps)`` of raw ids and ratings (NumPy arrays, consumed)."""
  _check_values(where, values, scale, error)
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
  # One array at a time to the device, so host and device copies overlap least.
  users = jnp.asarray(users)
  items = jnp.asarray(items)
  values = jnp.asarray(values, jnp.float32)
  ratings = Ratings(users, items, values, n_users=len(user_ids), n_items=len(item_ids))
  maps = IdMaps(
    users=user_ids,
    items=item_ids,
    scale=(float(scale[0]), float(scale[1])),
    n_lines=n_lines,
    n_duplicates=n_duplicates,
    n_unknown=n_unknown,
  )
  return ratings, maps


def _check_load_args(path, format, sep, id_maps, scale, duplicates):
  """Host checks of :func:`load_ratings`' arguments; ``(name, stream, sep, scale)``.

  ``stream`` is the open file when ``path`` is one (``name`` its name), else None.
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
  _check_options(id_maps, duplicates)
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  if sep is not None:
    if not isinstance(sep, str):
      raise TypeError(f"sep must be a string or None; got {type(sep).__name__}.")
    if not sep or "\n" in sep or "\r" in sep:
      raise ValueError(
        f"sep must be a non-empty string without line breaks, or None; got {sep!r}."
      )
  if stream is None and not os.path.exists(path):
    raise RatingsFileError(f"{path}: no such file.")
  if stream is None and not os.path.isfile(path):
    raise RatingsFileError(f"{path}: not a regular file.")
  return path, stream, sep, scale


def _check_options(id_maps, duplicates) -> None:
  validation.check_choice("duplicates", duplicates, DUPLICATES)
  if id_maps is not None and not isinstance(id_maps, IdMaps):
    raise TypeError(f"id_maps must be mfjax.IdMaps; got {type(id_maps).__name__}.")


def _read_columns(path, stream, format, sep, id_maps):
  """The raw user ids, item ids and ratings of a file, and whether it had a header."""
  blocks = _read_lines(path, stream)
  first_number, first_text = next(blocks, (1, ""))
  first_lines = first_text.split("\n")
  first_line = next((line for line in first_lines if line.strip()), None)
  if first_line is None:
    raise RatingsFileError(f"{path}: is empty; expected lines of user, item, rating.")
  if sep is None:
    sep = _FORMAT_SEP.get(format) or _sniff_sep(first_line)
  fields = _split(first_line, sep)
  header = len(fields) >= 3 and not _is_float(fields[2])
  ncols = len(fields)
  if ncols not in (3, 4):
    raise _bad_line(path, 1, first_line, sep, 3 if ncols < 3 else 4)
  if header:
    first_text = first_text[first_text.index("\n") + 1 :] if "\n" in first_text else ""
    first_number += 1
    data_line = next((line for line in first_lines[1:] if line.strip()), "")
    fields = _split(data_line, sep) if data_line else fields
  numeric = all(_is_int(f) for f in fields[:2])
  if id_maps is not None and id_maps.users.dtype.kind == "U":
    numeric = False

  parse = _parse_numeric if numeric else _parse_strings
  columns = ([], [], [])
  for number, text, last in _with_last(_chain([(first_number, first_text)], blocks)):
    if last:
      text = text.rstrip()  # Blank lines at the end of the file are fine.
    if text.strip() or (text and not last):
      text = text if text.endswith("\n") else text + "\n"
      parsed = parse(path, number, text, sep, ncols)
      for column, part in zip(columns, parsed, strict=True):
        column.append(part)
  if not columns[0]:
    raise RatingsFileError(f"{path}: has a header but no ratings.")
  # One column at a time, so that only one column is ever held twice.
  raw_users, raw_items, values = (_concat_and_clear(c) for c in columns)
  return raw_users, raw_items, values, header


def _check_values(where, values, scale, error=RatingsFileError) -> None:
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


def _concat_and_clear(parts: list) -> np.ndarray:
  out = np.concatenate(parts)
  parts.clear()
  dtype = out.dtype
  if dtype.kind == "i" and out.size and -(2**31) <= out.min() and out.max() < 2**31:
    out = out.astype(np.int32)  # Half the memory of int64 for the usual ids.
  elif dtype.kind == "f":
    out = out.astype(np.float32)
  return out


def _index_ids(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Sorted unique ids and the int32 index of each; no sort for compact int ids."""
  if raw.dtype.kind == "i" and raw.size:
    lo, hi = int(raw.min()), int(raw.max())
    if lo >= 0 and hi <= 4 * raw.size + (1 << 20):
      present = np.zeros(hi + 1, bool)
      present[raw] = True
      lookup = np.cumsum(present, dtype=np.int32) - 1
      return np.flatnonzero(present).astype(np.int64), lookup[raw]
  ids, index = np.unique(raw, return_inverse=True)
  if ids.dtype.kind == "i":
    ids = ids.astype(np.int64)
  return ids, index.astype(np.int32)


def _with_last(blocks):
  """``(number, text, is_last)`` for each block: the last one is read ahead."""
  previous = None
  for block in blocks:
    if previous is not None:
      yield (*previous, False)
    previous = block
  if previous is not None:
    yield (*previous, True)


def _chain(first, rest):
  yield from first
  yield from rest


def _line_of(row: int, header: bool) -> int:
  """The file line of data row ``row`` (blank lines are rejected, so it is exact)."""
  return row + 1 + int(header)


def _pair_keys(users, items, n_items, start=0):
  """One int64 key per (user, item) pair; unknown ids get unique negative keys."""
  key = users.astype(np.int64) * n_items + items
  unknown = (users < 0) | (items < 0)
  if unknown.any():  # Unknown ids never count as duplicates of each other.
    key[unknown] = -1 - (start + np.flatnonzero(unknown))
  return key


_KEY_CHUNK = 1 << 20


def _resolve_duplicates(where, users, items, values, n_items, policy, error):
  # Written for memory: at 20M ratings an int64 array is 160 MB, and this holds
  # one at most. The keys are sorted in place to find the repeated ones; only the
  # rows with a repeated key are then sorted by key, with their line order.
  key = _pair_keys(users, items, n_items)
  key.sort()
  repeat = key[1:] == key[:-1]
  n_duplicates = int(repeat.sum())
  repeated = np.unique(key[1:][repeat]) if n_duplicates else None
  del key, repeat
  if not n_duplicates:
    return users, items, values, 0
  involved = np.zeros(len(users), bool)
  for start in range(0, len(users), _KEY_CHUNK):
    stop = start + _KEY_CHUNK
    chunk = _pair_keys(users[start:stop], items[start:stop], n_items, start)
    at = np.minimum(np.searchsorted(repeated, chunk), len(repeated) - 1)
    involved[start:stop] = repeated[at] == chunk
  rows = np.flatnonzero(involved)
  del involved
  row_keys = _pair_keys(users[rows], items[rows], n_items)
  order = np.argsort(row_keys, kind="stable")  # Equal keys keep their line order.
  rows, row_keys = rows[order], row_keys[order]
  last = np.append(row_keys[1:] != row_keys[:-1], True)  # The last of each run.
  if policy == "error":
    first, second = int(rows[0]), int(rows[1])  # The first run, in key order.
    raise error(
      f"{where(second)}: duplicate rating of the pair on {where(first, short=True)} "
      f"(use duplicates='last' or 'mean')."
    )
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
    return array.astype(np.int64)
  if kind == "O":
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in ids):
      return np.asarray([int(x) for x in ids], np.int64)
    bad = next((x for x in ids if x is None or isinstance(x, float)), "ok")
    if bad != "ok":
      raise ValueError(f"{name} holds {bad!r}: a missing id.")
    return np.asarray([str(x) for x in ids], dtype=str)
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
    ``(ratings, id_maps)``; indices follow the sorted raw ids.

  Raises:
    ValueError: arrays of different lengths, none at all, a rating that is not
      finite or outside ``scale``, a missing id (None, NaN), or a duplicate
      under ``duplicates="error"``; the message names the row.
    TypeError: ids or ratings of the wrong kind.
  """
  _check_options(id_maps, duplicates)
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  raw_users, raw_items = _raw_ids("users", users), _raw_ids("items", items)
  if isinstance(ratings, (str, bytes)) or not hasattr(ratings, "__len__"):
    raise TypeError(f"ratings must be a 1-D sequence of numbers; got {ratings!r}.")
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
  return _indexed(
    where, raw_users, raw_items, values, id_maps, scale, duplicates, ValueError
  )


def ratings_from_frame(
  frame,
  *,
  user: str = "user",
  item: str = "item",
  rating: str = "rating",
  id_maps: IdMaps | None = None,
  scale: tuple[float, float] | None = None,
  duplicates: str = "last",
) -> tuple[Ratings, IdMaps]:
  """:func:`ratings_from_arrays` of three columns of a data frame.

  Takes a pandas or polars ``DataFrame``, or anything that indexes columns by
  name (a dict of arrays); neither library is a dependency of mfjax.

  Args:
    frame: the table.
    user, item, rating: the names of its columns.
    id_maps, scale, duplicates: as in :func:`load_ratings`.

  Raises:
    ValueError: a column name the frame does not have (the message lists the
      frame's columns), or what :func:`ratings_from_arrays` raises.
  """
  for option, name in (("user", user), ("item", item), ("rating", rating)):
    if not isinstance(name, str):
      raise TypeError(f"{option} must be a column name; got {name!r}.")
  columns = _columns_of(frame)
  missing = [name for name in (user, item, rating) if name not in columns]
  if missing:
    raise ValueError(
      f"the frame has no column {missing[0]!r}; its columns are "
      f"{list(columns)}. Name them with user=, item=, rating=."
    )
  return ratings_from_arrays(
    _column(frame, user),
    _column(frame, item),
    _column(frame, rating),
    id_maps=id_maps,
    scale=scale,
    duplicates=duplicates,
  )


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
    scale: the rating scale; a stored value outside it is an error.

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
  if not n_users or not n_items or not coo.nnz:
    raise ValueError(f"matrix has no ratings (shape {coo.shape}, {coo.nnz} stored).")
  if np.asarray(coo.data).dtype.kind not in "iuf":
    raise TypeError(f"matrix must hold numbers; got dtype {coo.data.dtype}.")
  values = np.asarray(coo.data, np.float32)
  rows, cols = np.asarray(coo.row), np.asarray(coo.col)
  where = lambda k: f"entry ({rows[k]}, {cols[k]})"
  _check_values(where, values, scale, ValueError)
  return Ratings(
    jnp.asarray(rows.astype(np.int32)),
    jnp.asarray(cols.astype(np.int32)),
    jnp.asarray(values),
    n_users=n_users,
    n_items=n_items,
  )
