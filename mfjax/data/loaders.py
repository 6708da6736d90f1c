"""Ratings files: read on the host with NumPy into ``Ratings`` and raw-id maps.

:func:`load_ratings` reads MovieLens ``u.data``/``uN.base`` (tab),
``ratings.dat`` (``::``), ``ratings.csv`` (comma, header) or any delimited file
of user, item and rating columns (in that order, or in any order under a header
naming them), in blocks, and gives the dense indices of the raw ids with their
:class:`IdMaps`. Bad files raise :class:`RatingsFileError` naming the file
and line.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import inspect
import lzma
import math
import os
import re
import warnings
from typing import IO, NamedTuple, Protocol

import jax
import numpy as np

from mfjax import validation
from mfjax.types import UNKNOWN, IdMaps, Ratings

__all__ = [
  "RatingsFileError",
  "ScaleWarning",
  "FORMATS",
  "DUPLICATES",
  "ROLES",
  "COLUMN_NAMES",
  "MAX_LINE_BYTES",
  "load_ratings",
  "ratings_from_arrays",
  "ratings_from_frame",
  "ratings_from_sparse",
  "Exchange",
  "load_ratings_part",
]


class RatingsFileError(ValueError):
  """A ratings file that cannot be read; the message names the file and line."""


class ScaleWarning(UserWarning):
  """A rating far outside the others, with no declared scale: a typo, maybe.

  Given when no ``scale=`` is declared and the highest (or lowest) rating, held
  by at most one rating in a thousand, lies further from the others than twice
  their whole range (a single 44 among ratings 1 to 5), in data of at least
  10 ratings. The message names the file and line (or row) of the first one.
  """


FORMATS = ("auto", "ml-100k", "ml-1m", "ml-latest", "delimited")


DUPLICATES = ("last", "mean", "error")


ROLES = ("user", "item", "rating", "timestamp")
"""What a column can be; the order of the columns of a file without a header."""


COLUMN_NAMES = {
  "user": ("user", "userid", "user_id", "uid"),
  "item": ("item", "itemid", "item_id", "movieid", "movie_id", "iid", "product_id"),
  "rating": ("rating", "ratings", "score", "stars", "value"),
  "timestamp": ("timestamp", "time", "ts", "date"),
}
"""The header names of each role, compared without regard to case."""


MAX_LINE_BYTES = 1 << 16
"""The longest line :func:`load_ratings` reads: its bytes before the newline."""


_FORMAT_SEP = {"ml-100k": "\t", "ml-1m": "::", "ml-latest": ","}


_CHUNK_BYTES = 1 << 22


_ROLE_OF_NAME = {name: role for role, names in COLUMN_NAMES.items() for name in names}


class _Layout(NamedTuple):
  """Where a file's fields are: ``ncols`` fields a line, these at these indices."""

  ncols: int
  user: int
  item: int
  rating: int
  timestamp: int | None  # Checked to be a number (files without a header).
  roles: tuple  # The role of each column, None for one not read.

  @property
  def used(self) -> tuple[int, ...]:
    """The columns parsed, in the order user, item, rating[, timestamp]."""
    stamp = () if self.timestamp is None else (self.timestamp,)
    return (self.user, self.item, self.rating, *stamp)


def _layout(roles, check_timestamp: bool) -> _Layout:
  roles = tuple(roles)
  stamp = roles.index("timestamp") if "timestamp" in roles else None
  return _Layout(
    len(roles),
    roles.index("user"),
    roles.index("item"),
    roles.index("rating"),
    stamp if check_timestamp else None,
    roles,
  )


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


def _quote(text: str, limit: int = 80) -> str:
  """``repr(text)``, cut to ``limit`` characters with the length said."""
  if len(text) <= limit:
    return repr(text)
  return f"{text[: limit - 3] + '...'!r} ({len(text):,} characters)"


_INTEGER_IDS = (
  "ids must be integers of at most 15 digits, or all text; the first line had integers"
)


def _roles_text(roles) -> str:
  return ", ".join(role or "-" for role in roles)


def _bad_line(path, number, line, sep, layout, reason=None) -> RatingsFileError:
  if reason is None:
    fields = _split(line, sep)
    if len(fields) != layout.ncols:
      reason = (
        f"expected {layout.ncols} columns ({_roles_text(layout.roles)}) separated "
        f"by {sep or 'whitespace'!r}, got {len(fields)}"
      )
    elif not _is_float(fields[layout.rating]):
      reason = f"rating {_quote(fields[layout.rating], 20)} is not a number"
    elif layout.timestamp is not None and not _is_float(fields[layout.timestamp]):
      reason = f"timestamp {_quote(fields[layout.timestamp], 20)} is not a number"
    else:
      reason = "malformed line"
  return RatingsFileError(f"{path}:{number}: {reason}: {_quote(line)}")


def _or(words) -> str:
  return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _recognised_names() -> str:
  return "; ".join(
    f"{role}: {', '.join(names)}" for role, names in COLUMN_NAMES.items()
  )


def _header_layout(path, line, fields) -> _Layout:
  """The columns a header line names; a RatingsFileError if it does not name them."""
  roles = [_ROLE_OF_NAME.get(name.lower()) for name in fields]
  for role in ROLES:
    if roles.count(role) > 1:
      twice = [name for name, r in zip(fields, roles, strict=True) if r == role]
      raise RatingsFileError(
        f"{path}:1: the header names two {role} columns "
        f"({_quote(twice[0], 20)} and {_quote(twice[1], 20)}): {_quote(line)}"
      )
  missing = [role for role in ROLES[:3] if role not in roles]
  if not missing:
    return _layout(roles, check_timestamp=False)
  # Names not all known (user_id,book_id,rating): read in the usual order, user,
  # item, rating[, timestamp], if no known name says otherwise.
  usual = ROLES[: len(fields)]
  agree = all(r in (None, u) for r, u in zip(roles, usual, strict=False))
  if len(fields) in (3, 4) and agree:
    return _layout(usual, check_timestamp=False)
  raise RatingsFileError(
    f"{path}:1: a header whose names do not say which column is the "
    f"{_or(missing)}: {_quote(line)}. Recognised names (any case): "
    f"{_recognised_names()}. Rename the columns, or give the roles in file "
    "order (columns=, or --columns on the command line)."
  )


def _layout_of(path, line, sep, columns):
  """``(layout, header names or None)`` of a file whose first line is ``line``.

  The first line is a header when none of its fields is a number: its names give
  the columns (unless ``columns`` does). Otherwise the columns are ``columns``,
  or user, item, rating[, timestamp].
  """
  fields = _split(line, sep)
  names = None if any(_is_float(f) for f in fields) else tuple(fields)
  if columns is not None:
    layout = _layout(columns, check_timestamp=names is None)
    if len(fields) != layout.ncols:
      raise _bad_line(path, 1, line, sep, layout)
    return layout, names
  if names is not None:
    return _header_layout(path, line, fields), names
  if len(fields) not in (3, 4):
    reason = (
      f"expected {3 if len(fields) < 3 else 4} columns (user, item, rating"
      f"[, timestamp], or a header naming them) separated by "
      f"{sep or 'whitespace'!r}, got {len(fields)}"
    )
    raise _bad_line(path, 1, line, sep, None, reason)
  return _layout(ROLES[: len(fields)], check_timestamp=True), None


_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


class _Span(NamedTuple):
  """Part of a file: the lines that start in bytes ``[start, stop)``.

  Attributes:
    start: the byte where the first line starts (0, or just after a newline).
    stop: the byte where the next part starts (a line start, or the file's size).
    line: the line number of the first line (1-based).
    at_end: whether ``stop`` is the end of the file (blank lines may end it).
  """

  start: int
  stop: int
  line: int
  at_end: bool


def _read_lines(path: str, stream=None, span: _Span | None = None):
  """Yields ``(first_line_number, text)`` blocks of whole lines, decoded.

  Reads ``stream`` (an open file, binary or text) when given, else ``path``,
  decompressed when it ends in .gz, .bz2 or .xz; only ``span`` of it if given.
  """
  suffix = os.path.splitext(path)[1].lower() if stream is None else ""
  try:
    yield from _blocks_of(path, stream, suffix, span)
  except (OSError, EOFError, lzma.LZMAError) as e:
    if not suffix:
      raise
    raise RatingsFileError(f"{path}: not a readable {suffix} file ({e}).") from None


def _blocks_of(path, stream, suffix, span=None):
  opened = (
    contextlib.nullcontext(stream)
    if stream is not None
    else _COMPRESSED.get(suffix, open)(path, "rb")
  )
  with opened as f:
    # ``rest``, the start of a line the block cut, stays under MAX_LINE_BYTES:
    # a longer line is refused, never held whole.
    number, rest, left = 1, b"", None
    if span is not None:
      f.seek(span.start)
      number, left = span.line, span.stop - span.start
    while True:
      block = f.read(_CHUNK_BYTES if left is None else min(_CHUNK_BYTES, left))
      if left is not None:
        left -= len(block)
      if isinstance(block, str):  # A file opened in text mode.
        block = block.encode("utf-8")
      if not block:
        if rest:
          yield number, _decode(path, number, rest, last=True)
        return
      block = rest + block
      cut = block.rfind(b"\n") + 1
      start = _long_line_at(block, cut)
      if start is not None:
        raise _long_line(path, number + block.count(b"\n", 0, start), block[start:])
      text, rest = block[:cut], block[cut:]
      if text:
        yield number, _decode(path, number, text)
        number += text.count(b"\n")


def _long_line_at(block: bytes, cut: int) -> int | None:
  """Where the first line over MAX_LINE_BYTES starts in ``block``, or None.

  ``block[:cut]`` is whole lines; ``block[cut:]`` the start of one more.
  """
  start = 0
  # Each window of MAX_LINE_BYTES + 1 bytes from a line's start holds a newline,
  # or that line is too long: a few rfind calls a block, no Python loop a line.
  while cut - start > MAX_LINE_BYTES:
    end = block.rfind(b"\n", start, start + MAX_LINE_BYTES + 1)
    if end < 0:
      return start
    start = end + 1
  return cut if len(block) - cut > MAX_LINE_BYTES else None


def _long_line(path, number, raw: bytes) -> RatingsFileError:
  head = raw[: MAX_LINE_BYTES + 1]
  if b"\x00" in head:
    return RatingsFileError(
      f"{path}: looks like a binary file (NUL bytes), not ratings."
    )
  hint = ""
  if b"\r" in head:
    hint = " Its lines end in \\r alone (old Mac line ends), which are not read."
  shown = raw[:80].decode("utf-8", errors="replace")
  return RatingsFileError(
    f"{path}:{number}: a line over {MAX_LINE_BYTES:,} bytes, the most a line may "
    f"hold.{hint} It starts {shown[:77] + '...'!r}"
  )


def _decode(path, number, raw: bytes, last: bool = False) -> str:
  if b"\x00" in raw:
    raise RatingsFileError(
      f"{path}: looks like a binary file (NUL bytes), not ratings."
    )
  try:
    # A UTF-8 byte order mark at the start of the file is no part of an id.
    codec = "utf-8-sig" if number == 1 else "utf-8"
    text = raw.decode(codec)
  except UnicodeDecodeError as e:
    line = number + raw[: e.start].count(b"\n")
    raise RatingsFileError(f"{path}:{line}: not UTF-8 text ({e.reason}).") from None
  if "\r" not in text:
    return text
  if last and text.endswith("\r"):  # The end of the last line, as \r\n would be.
    text = text[:-1]
  if text.count("\r") != text.count("\r\n"):
    stray = re.search("\r(?!\n)", text).start()
    start = text.rfind("\n", 0, stray) + 1
    end = text.find("\n", stray)
    line = text[start : None if end < 0 else end].removesuffix("\r")
    hint = " (lines ending in \\r alone, as in old Mac files, are not read)"
    raise RatingsFileError(
      f"{path}:{number + text.count(chr(10), 0, stray)}: a carriage return (\\r) "
      f"inside the line, not at its end{hint if end < 0 else ''}: {_quote(line)}"
    )
  return text.replace("\r\n", "\n")


def _column_counts_agree(text, delimiter, ncols, lines) -> bool:
  """Whether every line of ``text`` has ``ncols`` fields (loadtxt with ``usecols``
  does not say)."""
  if delimiter is None:
    return all(len(line.split()) == ncols for line in text.split("\n")[:lines])
  code = delimiter.encode()
  if len(code) != 1:  # A character of several bytes.
    return all(line.count(delimiter) == ncols - 1 for line in text.split("\n")[:lines])
  raw = np.frombuffer(text.encode(), np.uint8)
  ends = np.flatnonzero(raw == 10)
  if len(ends) != lines or not lines:
    return False
  # Separators a line: each slice runs from a line's start to the next one's.
  starts = np.concatenate(([0], ends[:-1] + 1))
  seps = np.add.reduceat(raw == code[0], starts, dtype=np.int64)
  return bool(np.all(seps == ncols - 1))


def _parse_numeric(path, number, text, sep, layout):
  """Parses a block with NumPy; on any failure finds the bad line in Python."""
  import io

  lines = text.count("\n") + (0 if text.endswith("\n") else 1)
  original, delimiter = text, sep
  if sep is not None and len(sep) > 1:  # np.loadtxt takes one character.
    text = text.replace(sep, "\t")
    delimiter = "\t"
  used = layout.used
  positional = used == tuple(range(layout.ncols))
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
        usecols=None if positional else used,
      )
    if block.shape != (lines, len(used)):
      raise ValueError("blank lines or a column count that changes")
    if not positional and not _column_counts_agree(
      text, delimiter, layout.ncols, lines
    ):
      raise ValueError("a column count that changes")
  except (ValueError, UserWarning):
    raise _first_bad_line(path, number, original, sep, layout, lines) from None
  del text
  ids = block[:, :2]
  # float64 holds integers exactly below 2**53; _is_int allows 15 digits. NaN and
  # inf fail too.
  bad = ~((ids == np.round(ids)) & (np.abs(ids) < 1e15))
  if bad.any():
    row = int(np.argmax(bad.any(axis=1)))
    line = original.split("\n")[row]
    raise _bad_line(path, number + row, line, sep, layout, _INTEGER_IDS)
  _check_float32(path, number, original, sep, layout, block[:, 2])
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


def _first_bad_line(path, number, text, sep, layout, lines) -> RatingsFileError:
  """The error of the first line of a block that np.loadtxt could not read."""
  # The lines only: not the empty string after the last newline.
  for offset, line in enumerate(text.split("\n")[:lines]):
    fields = _split(line, sep)
    ids = (layout.user, layout.item)
    # Not _is_int: np.loadtxt reads ids such as "+4" or "4.0" on other lines.
    if len(fields) == layout.ncols and not all(_is_integral(fields[k]) for k in ids):
      return _bad_line(path, number + offset, line, sep, layout, _INTEGER_IDS)
    bad_stamp = layout.timestamp is not None and not _is_float(
      fields[layout.timestamp] if len(fields) == layout.ncols else ""
    )
    if len(fields) != layout.ncols or not _is_float(fields[layout.rating]) or bad_stamp:
      return _bad_line(path, number + offset, line, sep, layout)
  return RatingsFileError(f"{path}:{number}: could not parse this block.")


def _parse_strings(path, number, text, sep, layout):
  users, items, values = [], [], []
  u, i, r, stamp = layout.user, layout.item, layout.rating, layout.timestamp
  for offset, line in enumerate(text.split("\n")):
    if not line and offset == text.count("\n"):
      break  # The empty string after the last newline.
    fields = _split(line, sep)
    if (
      len(fields) != layout.ncols
      or not _is_float(fields[r])
      or not fields[u]
      or not fields[i]
      or (stamp is not None and not _is_float(fields[stamp]))
    ):
      raise _bad_line(path, number + offset, line, sep, layout)
    users.append(fields[u])
    items.append(fields[i])
    values.append(float(fields[r]))
  values = np.array(values)
  _check_float32(path, number, text, sep, layout, values)
  return np.array(users, dtype=str), np.array(items, dtype=str), values


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32(path, number, text, sep, layout, values):
  """Finite ratings beyond float32 would become inf with a RuntimeWarning."""
  big = np.isfinite(values) & (np.abs(values) > _FLOAT32_MAX)
  if big.any():
    row = int(np.argmax(big))
    raise _bad_line(
      path,
      number + row,
      text.split("\n")[row],
      sep,
      layout,
      f"rating {values[row]:g} does not fit in float32",
    )


def load_ratings(
  path: str | os.PathLike | IO,
  *,
  format: str = "auto",
  sep: str | None = None,
  columns=None,
  id_maps: IdMaps | None = None,
  scale: tuple[float, float] | None = None,
  duplicates: str = "last",
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
      (``"error"``). They are counted in ``n_duplicates`` either way.

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
  path, stream, sep, columns, scale = _check_load_args(
    path, format, sep, columns, id_maps, scale, duplicates
  )
  raw_users, raw_items, values, layout, names = _read_columns(
    path, stream, format, sep, columns, id_maps
  )
  header = names is not None
  where = lambda row, short=False: (
    f"line {_line_of(row, header)}" if short else f"{path}:{_line_of(row, header)}"
  )
  return _indexed(
    where,
    raw_users,
    raw_items,
    values,
    id_maps,
    scale,
    duplicates,
    RatingsFileError,
    (layout.roles, names or ()),
  )


def _indexed(
  where, raw_users, raw_items, values, id_maps, scale, duplicates, error, source
):
  """``(Ratings, IdMaps)`` of raw ids and ratings (NumPy arrays, consumed).

  ``source`` is ``(columns, header)`` of the maps.
  """
  _check_values(where, values, scale, error)
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


_OUTLIER_MIN_RATINGS = 10


def _outlier_row(values: np.ndarray) -> tuple[int, float, float] | None:
  """``(row, lo, hi)`` of the first rating far outside the others' ``[lo, hi]``.

  An extreme value (the highest or the lowest) held by at most one rating in a
  thousand (one at least), further from the others than twice their range.
  """
  n = len(values)
  if n < _OUTLIER_MIN_RATINGS:
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


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _stacklevel() -> int:
  """The ``stacklevel`` of the first caller outside mfjax, for warnings.warn."""
  frame, level = inspect.currentframe(), 0
  while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
    frame, level = frame.f_back, level + 1
  return level


def _warn_of_outliers(where, values, inferred: bool) -> None:
  found = _outlier_row(values)
  if found is None:
    return
  row, lo, hi = found
  _warn_outlier(where(row), float(values[row]), lo, hi, inferred)


def _warn_outlier(place: str, value: float, lo: float, hi: float, inferred: bool):
  side = "above" if value > hi else "below"
  scale = (min(value, lo), max(value, hi))
  consequence = f" It makes the scale ({scale[0]:g}, {scale[1]:g})." if inferred else ""
  warnings.warn(
    f"{place}: rating {value:g} lies far {side} the others ({lo:g} to "
    f"{hi:g}): a typo?{consequence} Declare scale=(lo, hi) to refuse ratings "
    "outside it.",
    ScaleWarning,
    stacklevel=_stacklevel(),
  )


def _check_load_args(path, format, sep, columns, id_maps, scale, duplicates):
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
      f"('item', 'user', 'rating'); got {_quote(repr(columns), 60)}."
    )
  columns = tuple(columns)
  bad = [c for c in columns if c is not None and c not in ROLES]
  if bad:
    raise ValueError(
      f"columns must hold {', '.join(map(repr, ROLES))} or None; got "
      f"{_quote(repr(bad[0]), 40)}."
    )
  for role in ROLES:
    count = columns.count(role)
    if count > 1 or (count == 0 and role != "timestamp"):
      raise ValueError(
        f"columns must name 'user', 'item' and 'rating' once each, and "
        f"'timestamp' at most once; got {columns!r}."
      )
  return columns


def _check_options(id_maps, duplicates) -> None:
  validation.check_choice("duplicates", duplicates, DUPLICATES)
  if id_maps is not None and not isinstance(id_maps, IdMaps):
    raise TypeError(f"id_maps must be mfjax.IdMaps; got {type(id_maps).__name__}.")


def _read_columns(path, stream, format, sep, columns, id_maps, span=None):
  """The raw user ids, item ids and ratings of a file, its layout and header.

  The header is the tuple of its names, or None for a file without one. With a
  ``span``, only its lines are read (the layout still comes from the file's
  first lines); a span with no line gives empty columns.
  """
  blocks = _read_lines(path, stream, span)
  first_number, first_text = next(blocks, (1, ""))
  head = first_text
  inside = span is not None and span.start > 0  # A part after the header.
  if span is not None:  # The layout comes from the file's start, in every part.
    with contextlib.closing(_read_lines(path)) as file_head:
      head = next(file_head, (1, ""))[1]
  first_lines = head.split("\n")
  first_line = next((line for line in first_lines if line.strip()), None)
  if first_line is None:
    raise RatingsFileError(f"{path}: is empty; expected lines of user, item, rating.")
  if sep is None:
    sep = _FORMAT_SEP.get(format) or _sniff_sep(first_line)
  layout, names = _layout_of(path, first_line, sep, columns)
  fields = _split(first_line, sep)
  if names is not None:
    if first_lines[0] != first_line:  # Blank lines before the header.
      raise _bad_line(path, 1, first_lines[0], sep, layout)
    if not inside:
      first_text = (
        first_text[first_text.index("\n") + 1 :] if "\n" in first_text else ""
      )
      first_number += 1
    data_line = next((line for line in first_lines[1:] if line.strip()), "")
    fields = _split(data_line, sep)
  del first_lines
  numeric = len(fields) == layout.ncols and all(
    _is_int(fields[k]) for k in (layout.user, layout.item)
  )
  if id_maps is not None and id_maps.users.dtype.kind == "U":
    numeric = False

  parse = _parse_numeric if numeric else _parse_strings
  parts = ([], [], [])
  at_end = span is None or span.at_end
  for number, text, last in _with_last(_chain([(first_number, first_text)], blocks)):
    last = last and at_end
    if last:
      text = text.rstrip()  # Blank lines at the end of the file are fine.
    if text.strip() or (text and not last):
      text = text if text.endswith("\n") else text + "\n"
      parsed = parse(path, number, text, sep, layout)
      for column, part in zip(parts, parsed, strict=True):
        column.append(part)
  if not parts[0]:
    if span is not None:  # This part has no lines; the others may.
      empty = np.zeros(0, np.int64 if parse is _parse_numeric else str)
      return empty, empty.copy(), np.zeros(0, np.float32), layout, names
    raise RatingsFileError(f"{path}: has a header but no ratings.")
  # One column at a time, so that only one column is ever held twice.
  raw_users, raw_items, values = (_concat_and_clear(c) for c in parts)
  return raw_users, raw_items, values, layout, names


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
    if _compact(lo, hi, raw.size):
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
    ``(ratings, id_maps)``; indices follow the sorted raw ids. Without ``scale``,
    the scale is the observed one, and a rating far outside the others gives a
    :class:`ScaleWarning` naming its row.

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
    raise TypeError(
      f"ratings must be a 1-D sequence of numbers; got {_quote(repr(ratings), 60)}."
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
  return _indexed(
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

  Returns:
    What :func:`ratings_from_arrays` returns, the maps' ``header`` the three
    column names.

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
  ratings, maps = ratings_from_arrays(
    _column(frame, user),
    _column(frame, item),
    _column(frame, rating),
    id_maps=id_maps,
    scale=scale,
    duplicates=duplicates,
  )
  return ratings, dataclasses.replace(maps, header=(user, item, rating))


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
    jax.device_put(rows.astype(np.int32)),
    jax.device_put(cols.astype(np.int32)),
    jax.device_put(values),
    n_users=n_users,
    n_items=n_items,
  )


# Several processes, one file: each reads its part, and they agree (load_ratings_part).


class Exchange(Protocol):
  """How the processes of :func:`load_ratings_part` share small arrays.

  :class:`mfjax.distributed.ProcessExchange` is the one over JAX's processes; a
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


def _first_failure(exchange: Exchange, step):
  """``step()`` here; if it failed in any process, every process raises the
  first failure (in process order), so that none waits for the others."""
  try:
    result, failure = step(), ""
  except (RatingsFileError, OSError) as e:
    result, failure = None, str(e) if isinstance(e, RatingsFileError) else _os_text(e)
  for index, text in enumerate(exchange.allgather(np.array([failure]))):
    if text[0]:
      if index == exchange.index:
        raise RatingsFileError(text[0])
      raise RatingsFileError(f"{text[0]} (in process {index})")
  return result


def _os_text(e: OSError) -> str:
  return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)


_CHECK_BYTES = 1 << 16


def _my_span(path: str, index: int, count: int) -> tuple[int, int, int, int, bytes]:
  """``(start, stop, newlines, size, ends)`` of part ``index`` of ``count``: the
  lines that start in its share of the bytes; ``ends`` the file's first and
  last 64 KiB (to compare between processes)."""
  if os.path.splitext(path)[1].lower() in _COMPRESSED:
    raise RatingsFileError(
      f"{path}: a compressed file cannot be split between processes; "
      "decompress it first."
    )
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(_CHECK_BYTES)
    f.seek(max(0, size - _CHECK_BYTES))
    head += f.read(_CHECK_BYTES)  # And the last bytes: files that differ there.
    # Blank lines that end the file go to the last part, which may drop them:
    # the others split the bytes up to the end of the last line of data.
    data = _line_start(f, _data_end(f, size), size)
    cut = lambda k: (
      size if k == count else min(_line_start(f, k * data // count, size), data)
    )
    start, stop = cut(index), cut(index + 1)
    f.seek(start)
    newlines, left = 0, stop - start
    while left > 0:
      block = f.read(min(_CHUNK_BYTES, left))
      newlines, left = newlines + block.count(b"\n"), left - len(block)
  return start, stop, newlines, size, head


def _data_end(f, size: int) -> int:
  """The byte after the file's last one that is not white space."""
  end = size
  while end > 0:
    f.seek(max(0, end - _CHUNK_BYTES))
    block = f.read(end - max(0, end - _CHUNK_BYTES))
    kept = block.rstrip()
    if kept:
      return end - len(block) + len(kept)
    end -= len(block)
  return 0


def _line_start(f, at: int, size: int) -> int:
  """The first line start at or after byte ``at``."""
  if at <= 0 or at >= size:
    return max(0, min(at, size))
  f.seek(at - 1)
  while block := f.read(_CHUNK_BYTES):
    found = block.find(b"\n")
    if found >= 0:
      return at + found
    at += len(block)
  return size


def _same_file(path, exchange: Exchange, size: int, head: bytes) -> None:
  """Refuses processes that read different files under the name."""
  import zlib

  mine = np.array([size, zlib.crc32(head)], np.int64)
  seen = exchange.allgather(mine)
  for index, theirs in enumerate(seen):
    if not np.array_equal(theirs, mine):
      raise RatingsFileError(
        f"{path}: processes {exchange.index} and {index} read different files "
        f"({size} and {int(theirs[0])} bytes, or other first or last bytes); give "
        "every process the same file."
      )


def _extremes(values: np.ndarray) -> np.ndarray:
  """``[n, max, n at max, max below it, min, n at min, min above it]`` (float64)."""
  if not len(values):
    return np.array([0, -np.inf, 0, -np.inf, np.inf, 0, np.inf])
  hi, lo = float(values.max()), float(values.min())
  below = values.max(where=values < hi, initial=-np.inf)
  above = values.min(where=values > lo, initial=np.inf)
  n_hi, n_lo = np.sum(values == hi), np.sum(values == lo)
  return np.array([len(values), hi, n_hi, below, lo, n_lo, above], np.float64)


def _joined_extremes(parts: list[np.ndarray]) -> tuple[float, ...]:
  """:func:`_extremes` of all parts' values, from each part's."""
  hi = max(p[1] for p in parts)
  lo = min(p[4] for p in parts)
  at_hi = sum(p[2] for p in parts if p[1] == hi)
  at_lo = sum(p[5] for p in parts if p[4] == lo)
  below = max([p[1] for p in parts if p[1] < hi] + [p[3] for p in parts])
  above = min([p[4] for p in parts if p[4] > lo] + [p[6] for p in parts])
  return sum(p[0] for p in parts), hi, at_hi, below, lo, at_lo, above


def _outlier_of_parts(stats: tuple[float, ...]) -> tuple[float, float, float] | None:
  """``(value, lo, hi)`` as :func:`_outlier_row` finds it, from joined extremes."""
  n, hi, at_hi, below, lo, at_lo, above = stats
  if n < _OUTLIER_MIN_RATINGS:
    return None
  allowed = max(1, int(n) // 1000)
  for extreme, at, others in ((hi, at_hi, (lo, below)), (lo, at_lo, (above, hi))):
    if at > allowed or at == n:
      continue
    gap = max(extreme - others[1], others[0] - extreme)
    if others[1] > others[0] and gap > 2 * (others[1] - others[0]):
      return extreme, others[0], others[1]
  return None


def _parts_outlier(name, line, values, exchange: Exchange, inferred: bool):
  """Warns as :func:`load_ratings` would of the whole file; returns the joined
  ``(lo, hi)`` of all parts' ratings."""
  stats = _joined_extremes(exchange.allgather(_extremes(values)))
  found = _outlier_of_parts(stats)
  if found is not None:
    value, lo, hi = found
    at = np.flatnonzero(values == value)
    lines = exchange.allgather(np.array([line + at[0] if len(at) else -1], np.int64))
    first = next(int(x[0]) for x in lines if x[0] >= 0)
    _warn_outlier(f"{name}:{first}", value, lo, hi, inferred)
  return stats[4], stats[1]


def _parts_index(raw: np.ndarray, exchange: Exchange) -> tuple[np.ndarray, np.ndarray]:
  """The sorted distinct ids of every part, and this part's int32 indices.

  Compact integer ids go through a table, as :func:`_index_ids` does; other
  ids are found by a binary search, a chunk at a time."""
  compact = raw.dtype.kind == "i" and (
    not raw.size or _compact(raw.min(), raw.max(), raw.size)
  )
  if compact:
    present = np.zeros(int(raw.max()) + 1 if raw.size else 0, bool)
    present[raw] = True
    distinct = np.flatnonzero(present).astype(np.int64)
    del present
  else:
    distinct = np.unique(raw)
    if distinct.dtype.kind == "i":
      distinct = distinct.astype(np.int64)
  ids = np.unique(np.concatenate(exchange.allgather(distinct)))
  if compact and (not ids.size or _compact(ids[0], ids[-1], ids.size)):
    lookup = np.zeros(int(ids[-1]) + 1 if ids.size else 0, np.int32)
    lookup[ids] = np.arange(len(ids), dtype=np.int32)
    return ids, lookup[raw]
  index = np.empty(len(raw), np.int32)
  for start in range(0, len(raw), _KEY_CHUNK):  # No int64 index of every row.
    stop = start + _KEY_CHUNK
    index[start:stop] = np.searchsorted(ids, raw[start:stop])
  return ids, index


def _compact(lo, hi, n: int) -> bool:
  """Whether ids in ``[lo, hi]`` fit a table, as :func:`_index_ids` decides."""
  return int(lo) >= 0 and int(hi) <= 4 * n + (1 << 20)


_NO_KEY = np.iinfo(np.int64).max  # Pads a chunk of pair keys; no pair has it.
_EXCHANGE_CHUNK = 1 << 20  # Pair keys a process sends at a time (8 MiB).


def _shared_keys(distinct: np.ndarray, exchange: Exchange):
  """``(later, earlier)``: which of this part's sorted distinct pair keys other
  parts also hold, after it and before it. Each part sends its keys to the
  others one fixed-size chunk at a time, so a process holds about its own
  keys and one chunk (and one compiled broadcast serves every chunk)."""
  sizes = [int(x[0]) for x in exchange.allgather(np.array([len(distinct)], np.int64))]
  chunk = max(1, min(_EXCHANGE_CHUNK, max(sizes)))
  later, earlier = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
  for root, size in enumerate(sizes):
    for begin in range(0, size, chunk):
      sent = np.full(chunk, _NO_KEY, np.int64)
      if root == exchange.index:
        sent[: min(chunk, size - begin)] = distinct[begin : begin + chunk]
      theirs = exchange.broadcast(sent, root)
      if root == exchange.index or not len(distinct):
        continue
      found = np.minimum(np.searchsorted(distinct, theirs), len(distinct) - 1)
      (later if root > exchange.index else earlier).append(
        theirs[distinct[found] == theirs]
      )
  return np.concatenate(later), np.concatenate(earlier)


def _rows_with_keys(users, items, n_items, keys: np.ndarray) -> np.ndarray:
  """The rows whose pair key is in the sorted ``keys``, in row order."""
  flags = np.zeros(len(users), bool)
  if len(keys):
    for start in range(0, len(users), _KEY_CHUNK):
      stop = start + _KEY_CHUNK
      chunk = _pair_keys(users[start:stop], items[start:stop], n_items, start)
      found = np.minimum(np.searchsorted(keys, chunk), len(keys) - 1)
      flags[start:stop] = keys[found] == chunk
  return np.flatnonzero(flags)


def _parts_duplicates(name, line, users, items, values, n_items, policy, exchange, at):
  """The duplicates ``policy`` over all parts: which of this part's rows stay
  (in file order) and, for ``"mean"``, their values; ``at`` is the part's
  first row. Written for memory as :func:`_resolve_duplicates`: one int64 key
  a row at most, then only the rows of pairs rated more than once."""
  keys = _pair_keys(users, items, n_items, at)
  keys.sort()
  repeat = keys[1:] == keys[:-1]
  repeated = np.unique(keys[1:][repeat])
  distinct = keys[np.append(True, ~repeat)] if len(keys) else keys
  del keys, repeat
  later, earlier = _shared_keys(distinct, exchange)
  del distinct
  involved = np.union1d(np.union1d(repeated, later), earlier)
  rows = _rows_with_keys(users, items, n_items, involved)
  row_keys = users[rows].astype(np.int64) * n_items + items[rows]
  order = np.argsort(row_keys, kind="stable")  # Equal keys keep their line order.
  rows, row_keys = rows[order], row_keys[order]
  if policy == "error":
    _parts_first_duplicate(name, line, involved, rows, row_keys, exchange)
  n = len(rows)
  last = np.append(row_keys[1:] != row_keys[:-1], True)[:n]  # The last of each run.
  starts = np.flatnonzero(np.append(True, last[:-1]))[:n]
  run_keys = row_keys[starts]
  gone = np.isin(run_keys, later)  # A later part has the pair's last rating.
  keep = np.ones(len(users), bool)
  keep[rows[~last]] = False
  keep[rows[last][gone]] = False
  if policy == "mean":
    # In float64, as _resolve_duplicates sums.
    sums = (
      np.add.reduceat(values[rows].astype(np.float64), starts) if n else np.zeros(0)
    )
    counts = np.diff(np.append(starts, n))
    shared = np.union1d(later, earlier)
    sums, counts = _earlier_totals(run_keys, sums, counts, shared, exchange)
    values = values.copy()
    values[rows[last][~gone]] = (sums / counts)[~gone]
  return keep, values


def _earlier_totals(keys, sums, counts, shared, exchange: Exchange):
  """``(sums, counts)`` of the pairs ``keys`` over the parts up to this one, in
  file order (the earlier parts' first). Each part but the last sends the pairs
  it shares with another part, one part at a time: a process holds its own
  and one other part's."""
  sent = np.isin(keys, shared)
  totals = np.zeros(len(keys)), np.zeros(len(keys), np.int64)
  for root in range(exchange.count - 1):
    theirs = [
      exchange.broadcast(x[sent], root)
      for x in (keys, np.asarray(sums, np.float64), counts.astype(np.int64))
    ]
    if root >= exchange.index or not len(theirs[0]) or not len(keys):
      continue
    found = np.minimum(np.searchsorted(theirs[0], keys), len(theirs[0]) - 1)
    hit = theirs[0][found] == keys
    totals[0][hit] += theirs[1][found[hit]]
    totals[1][hit] += theirs[2][found[hit]]
  return totals[0] + sums, totals[1] + counts


def _parts_first_duplicate(name, line, involved, rows, row_keys, exchange) -> None:
  """Raises, in every process, :func:`load_ratings`' error for the first pair
  (in key order) that is rated twice in any part or in two parts."""
  none = _NO_KEY
  mine = involved[0] if len(involved) else none
  least = min(int(x[0]) for x in exchange.allgather(np.array([mine], np.int64)))
  if least == none:
    return
  lines = line + rows[row_keys == least][:2].astype(np.int64)
  first, second = np.sort(np.concatenate(exchange.allgather(lines)))[:2]
  raise RatingsFileError(
    f"{name}:{second}: duplicate rating of the pair on line {first} "
    "(use duplicates='last' or 'mean')."
  )


def load_ratings_part(
  path: str | os.PathLike,
  exchange: Exchange,
  *,
  format: str = "auto",
  sep: str | None = None,
  columns=None,
  id_maps: IdMaps | None = None,
  scale: tuple[float, float] | None = None,
  duplicates: str = "last",
) -> tuple[Ratings, IdMaps, int]:
  """This process's part of a ratings file that several processes read together.

  Process ``exchange.index`` of ``exchange.count`` reads the lines that start in
  its share of the file's bytes (cut at line starts), so no process reads or
  holds the whole file. Through ``exchange`` the processes then agree on what
  :func:`load_ratings` gives for the whole file: one id map (the sorted distinct
  ids of all parts), the observed scale and the scale warning, the
  ``duplicates`` policy across parts (a pair rated in two parts keeps its
  later line's rating, or the mean of all, at the later line's place; ``"error"``
  names the same two lines), and the counts. Concatenated in process order, the
  parts are ``load_ratings(path, ...)``'s ratings, and the maps are its maps.

  Every process must call it with the same arguments. When a process fails (no
  such file, a bad line, a different file under the name), every process
  raises the first failure, in process order, so none waits for the others.

  Args:
    path: the file, uncompressed (a compressed stream has no byte ranges).
    exchange: the processes (:class:`mfjax.distributed.ProcessExchange`).
    format, sep, columns, id_maps, scale, duplicates: as for
      :func:`load_ratings`.

  Returns:
    ``(part, id_maps, offset)``: this part's :class:`Ratings` as NumPy arrays
    (indices and ``n_users``/``n_items`` of the whole file), the whole file's
    :class:`IdMaps` (the same in every process), and the place of the part's
    first rating in the whole.

  Raises:
    RatingsFileError: as :func:`load_ratings`, in every process; also for a
      compressed file, or processes that read different files.
  """
  if hasattr(path, "read"):
    raise TypeError("load_ratings_part reads a file path, not an open file.")

  def check_and_split():
    checked = _check_load_args(path, format, sep, columns, id_maps, scale, duplicates)
    return checked, _my_span(checked[0], exchange.index, exchange.count)

  (name, _, sep, columns, scale), found = _first_failure(exchange, check_and_split)
  start, stop, newlines, size, head = found
  _same_file(name, exchange, size, head)
  before = exchange.allgather(np.array([newlines], np.int64))
  line = 1 + int(sum(int(x[0]) for x in before[: exchange.index]))
  span = _Span(start, stop, line, stop == size)
  read = _first_failure(
    exchange, lambda: _read_columns(name, None, format, sep, columns, id_maps, span)
  )
  layout, names, read = read[3], read[4], list(read[:3])  # Consumed from here on.
  if names is not None and start == 0:
    line += 1  # The header line.
  where = lambda row, short=False: f"{'line ' if short else name + ':'}{line + row}"
  counts = [int(x[0]) for x in exchange.allgather(np.array([len(read[2])], np.int64))]
  if not sum(counts):
    raise RatingsFileError(f"{name}: has a header but no ratings.")
  # As load_ratings checks: every rating finite first, then inside the scale.
  _first_failure(exchange, lambda: _check_values(where, read[2], None))
  if scale is not None:
    _first_failure(exchange, lambda: _check_values(where, read[2], scale))
  return _parts_indexed(
    (name, line), read, counts, id_maps, scale, duplicates, exchange,
    (layout.roles, names or ()),
  )  # fmt: skip


def _parts_indexed(place, read, counts, id_maps, scale, policy, exchange, source):
  """:func:`_indexed` over parts: ``(part, IdMaps, offset)``. ``read``, the
  list of raw users, items and ratings, is emptied (its arrays freed early);
  ``counts`` are every part's rows as read."""
  name, line = place
  raw_users, raw_items, values = read
  read.clear()
  if scale is None:  # The same in every process: all exchange, or none.
    observed = _parts_outlier(name, line, values, exchange, id_maps is None)
    scale = observed if id_maps is None else id_maps.scale
  if id_maps is None:
    user_ids, users = _parts_index(raw_users, exchange)
    item_ids, items = _parts_index(raw_items, exchange)
  else:
    user_ids, item_ids = id_maps.users, id_maps.items
    users, items = id_maps.user_index(raw_users), id_maps.item_index(raw_items)
  del raw_users, raw_items
  at = sum(counts[: exchange.index])
  keep, values = _parts_duplicates(
    name, line, users, items, values, len(item_ids), policy, exchange, at
  )
  if not keep.all():  # One column at a time, each old one freed.
    users = users[keep]
    items = items[keep]
    values = values[keep]
  del keep
  unknown = int(np.sum((users == UNKNOWN) | (items == UNKNOWN)))
  totals = exchange.allgather(np.array([len(values), unknown], np.int64))
  part = Ratings(
    np.asarray(users, np.int32), np.asarray(items, np.int32),
    np.asarray(values, np.float32), n_users=len(user_ids), n_items=len(item_ids),
  )  # fmt: skip
  maps = IdMaps(
    users=user_ids,
    items=item_ids,
    scale=(float(scale[0]), float(scale[1])),
    n_lines=sum(counts),
    n_duplicates=sum(counts) - int(sum(t[0] for t in totals)),
    n_unknown=int(sum(t[1] for t in totals)),
    columns=tuple(source[0]),
    header=tuple(source[1]),
  )
  return part, maps, int(sum(t[0] for t in totals[: exchange.index]))
