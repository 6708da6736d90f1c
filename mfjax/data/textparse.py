"""The text of a ratings file: compressed or plain blocks of lines, the layout of
its columns (a header, a separator, MovieLens formats) and the parsing of each
block into columns, with :class:`RatingsFileError` naming the file and line.

:func:`mfjax.data.loaders.load_ratings` and the parts reader
(:mod:`mfjax.distributed.parts`) read through :func:`read_columns`.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import inspect
import lzma
import math
import os
import re
import warnings
import zlib
from typing import NamedTuple

import numpy as np

from mfjax.data.folding import Folded, Folder, concat_and_clear

__all__ = [
  "concat_and_clear",
  "RatingsFileError",
  "FORMATS",
  "ROLES",
  "COLUMN_NAMES",
  "MAX_LINE_BYTES",
  "CHUNK_BYTES",
  "quote",
  "COMPRESSED",
  "Span",
  "read_columns",
  "IdSpellingWarning",
  "line_of",
  "caller_stacklevel",
]


class RatingsFileError(ValueError):
  """A ratings file that cannot be read; the message names the file and line."""


FORMATS = ("auto", "ml-100k", "ml-1m", "ml-latest", "delimited")


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


CHUNK_BYTES = 1 << 22


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


def quote(text: str, limit: int = 80) -> str:
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
      reason = f"rating {quote(fields[layout.rating], 20)} is not a number"
    elif layout.timestamp is not None and not _is_float(fields[layout.timestamp]):
      reason = f"timestamp {quote(fields[layout.timestamp], 20)} is not a number"
    else:
      reason = "malformed line"
  return RatingsFileError(f"{path}:{number}: {reason}: {quote(line)}")


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
        f"({quote(twice[0], 20)} and {quote(twice[1], 20)}): {quote(line)}"
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
    f"{_or(missing)}: {quote(line)}. Recognised names (any case): "
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


COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


class Span(NamedTuple):
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


def _read_lines(path: str, stream=None, span: Span | None = None):
  """Yields ``(first_line_number, text)`` blocks of whole lines, decoded.

  Reads ``stream`` (an open file, binary or text) when given, else ``path``,
  decompressed when it ends in .gz, .bz2 or .xz; only ``span`` of it if given.
  """
  suffix = os.path.splitext(path)[1].lower() if stream is None else ""
  try:
    yield from _blocks_of(path, stream, suffix, span)
  except (OSError, EOFError, lzma.LZMAError, zlib.error) as e:
    if not suffix:  # zlib.error: a damaged deflate block of a .gz.
      raise
    raise RatingsFileError(f"{path}: not a readable {suffix} file ({e}).") from None


def _blocks_of(path, stream, suffix, span=None):
  opened = (
    contextlib.nullcontext(stream)
    if stream is not None
    else COMPRESSED.get(suffix, open)(path, "rb")
  )
  with opened as f:
    # ``rest``, the start of a line the block cut, stays under MAX_LINE_BYTES:
    # a longer line is refused, never held whole.
    number, rest, left = 1, b"", None
    if span is not None:
      f.seek(span.start)
      number, left = span.line, span.stop - span.start
    while True:
      block = f.read(CHUNK_BYTES if left is None else min(CHUNK_BYTES, left))
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


def _binary(path, raw: bytes) -> RatingsFileError:
  """The error of bytes with NUL in them: UTF-16 text (a byte order mark, or
  every other byte of ASCII text NUL, as Windows tools write), or binary."""
  head = raw[:4096]
  even, odd = head[0::2], head[1::2]
  ascii_pairs = lambda nul, text: (
    nul.count(0) >= 0.9 * len(nul) and all(9 <= b < 127 or b == 0 for b in text)
  )
  if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (
    len(head) >= 8 and (ascii_pairs(odd, even) or ascii_pairs(even, odd))
  ):
    return RatingsFileError(
      f"{path}: looks like UTF-16 text; save it as UTF-8 (for example "
      "`iconv -f UTF-16 -t UTF-8`)."
    )
  return RatingsFileError(f"{path}: looks like a binary file (NUL bytes), not ratings.")


def _long_line(path, number, raw: bytes) -> RatingsFileError:
  head = raw[: MAX_LINE_BYTES + 1]
  if b"\x00" in head:
    return _binary(path, head)
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
    raise _binary(path, raw)
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
      f"inside the line, not at its end{hint if end < 0 else ''}: {quote(line)}"
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


def read_columns(
  path, stream, format, sep, columns, id_maps, span=None, *, duplicates=None,
  check=None, progress=False,
):  # fmt: skip
  """The raw user ids, item ids and ratings of a file, its layout and header.

  The header is the tuple of its names, or None for a file without one. With a
  ``span``, only its lines are read (the layout still comes from the file's
  first lines); a span with no line gives empty columns.

  With ``duplicates`` ``"last"`` or ``"mean"`` (and no ``span`` or ``id_maps``),
  repeated (user, item) pairs are folded while the file streams in
  (:mod:`mfjax.data.folding`), so that memory follows the distinct pairs (a
  file of 10⁸ identical lines holds one). The result then has no repeated
  pair and is a ``Folded`` (its ``rows``: each kept entry's data row;
  ``n_lines``, ``n_folded``, ``outside`` and ``histogram``);
  without a fold it is a plain tuple. ``check(values, rows, header)`` looks
  at each line's rating before a fold can drop it: it raises for a rating that
  is not finite and returns ``(row, rating)`` of the first outside a declared
  scale, or None
  (``Folded.outside``: raised once every line has been read, as without
  folding). ``progress``: a tqdm bar of the bytes read, shown on stderr once
  the read has taken 2 s.
  """
  blocks = _read_lines(path, stream, span)
  if progress:
    blocks = _with_progress(blocks, path, stream, span)
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
  folder, spelling = None, _Spelling()
  if duplicates in ("last", "mean", "error") and span is None and id_maps is None:
    folder = Folder(duplicates, check, names is not None)
  # A closed reader on any exit: a progress bar is cleared before an error.
  with contextlib.closing(blocks):
    for number, text, last in _with_last(_chain([(first_number, first_text)], blocks)):
      last = last and at_end
      if last:
        text = text.rstrip()  # Blank lines at the end of the file are fine.
      if text.strip() or (text and not last):
        text = text if text.endswith("\n") else text + "\n"
        parsed = parse(path, number, text, sep, layout)
        if numeric and spelling.scans and spelling.may_be_odd(text, sep, layout):
          spelling.scan(path, number, text, sep, layout)
        for column, part in zip(parts, parsed, strict=True):
          column.append(part)
        if folder is not None:
          folder.added(parts, len(parsed[0]))
  if folder is not None and folder.n_folds:
    raw_users, raw_items, values, rows = folder.fold(parts)
    return Folded(
      raw_users, raw_items, values, layout, names, rows, folder.n_lines,
      folder.n_folded, folder.outside, folder.histogram,
    )  # fmt: skip
  if not parts[0]:
    if span is not None:  # This part has no lines; the others may.
      empty = np.zeros(0, np.int64 if parse is _parse_numeric else str)
      return empty, empty.copy(), np.zeros(0, np.float32), layout, names
    raise RatingsFileError(f"{path}: has a header but no ratings.")
  # One column at a time, so that only one column is ever held twice.
  raw_users, raw_items, values = (concat_and_clear(c) for c in parts)
  return raw_users, raw_items, values, layout, names


# The mfjax package folder (this module lies in mfjax/data/).
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def caller_stacklevel() -> int:
  """The ``stacklevel`` of the first caller outside mfjax, for warnings.warn."""
  frame, level = inspect.currentframe(), 0
  while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
    frame, level = frame.f_back, level + 1
  return level


class IdSpellingWarning(UserWarning):
  """Integer ids spelled otherwise than plainly (``007``, ``+7``, ``7e0``, ``7.0``):
  they are read as the integer, so ``007`` and ``7`` are one id. Given once
  per file, naming the first such line."""


def _may_spell_ids_oddly(text: str, sep: str | None) -> bool:
  """A cheap look at a block: could an id hold a sign, an exponent or a
  leading zero? (Ratings and timestamps may give false alarms; the lines
  then decide.)"""
  if "+" in text or "e" in text or "E" in text:
    return True
  starts = " \t\n" if sep is None else sep[-1:] + "\n"
  if not text.startswith("0") and not any(c + "0" in text for c in starts):
    return False  # No field starts with 0 (a C search of the text).
  raw = np.frombuffer(text.encode("latin-1", "replace"), np.uint8)
  if len(raw) < 2:
    return False
  if raw[0] == 48 and 48 <= raw[1] <= 57:
    return True
  zeros = np.flatnonzero(raw[1:-1] == 48) + 1  # Few: then only their neighbours.
  after, before = raw[zeros + 1], raw[zeros - 1]
  at_start = np.zeros(len(zeros), bool)
  for code in starts.encode("latin-1", "replace"):
    at_start |= before == code
  return bool(np.any(at_start & (after >= 48) & (after <= 57)))


def _point_in_ids(text: str, sep: str | None, fields: tuple[int, int]) -> bool:
  """Whether a decimal point of ``text`` lies in one of these ``fields`` of
  its line (``7.0`` for the id 7), as NumPy finds it: a half-star rating's
  point is no alarm, and such a block is not read line by line."""
  raw = np.frombuffer(text.encode("latin-1", "replace"), np.uint8)
  points = np.flatnonzero(raw == 46)
  if not len(points):
    return False
  if sep is None:  # A run of blanks is one separator; none starts a line.
    blank = (raw == 32) | (raw == 9)
    starts = np.flatnonzero(blank[1:] & ~blank[:-1] & (raw[:-1] != 10)) + 1
  else:  # Where the separator starts ("::" counts once).
    code = np.frombuffer(sep.encode("latin-1", "replace"), np.uint8)
    n = len(raw) - len(code) + 1
    starts = np.flatnonzero(
      np.logical_and.reduce([raw[j : n + j] == c for j, c in enumerate(code)])
    )
  newlines = np.flatnonzero(raw == 10)
  line = np.searchsorted(newlines, points)  # The line of each point,
  line_start = np.concatenate(([0], newlines + 1))[line]  # where it starts,
  field = np.searchsorted(starts, points) - np.searchsorted(starts, line_start)
  return bool(np.isin(field, fields).any())  # and its field there.


class _Spelling:
  """Looks for an id spelled oddly until it warns once, or until 8 blocks the
  cheap look flagged had none (their other columns hold signs or letters:
  reading every line of every block would double the parse). A decimal point
  in an id (``7.0``) is looked for in the first 8 blocks that hold a point
  (4 MiB each: a half-star file's ratings all do)."""

  def __init__(self):
    self.scans = 8
    self.point_looks = 8  # Blocks looked at for a point in an id (a NumPy pass).

  def may_be_odd(self, text, sep, layout) -> bool:
    if _may_spell_ids_oddly(text, sep):
      return True
    if self.point_looks <= 0 or "." not in text:
      return False
    self.point_looks -= 1
    return _point_in_ids(text, sep, (layout.user, layout.item))

  def scan(self, path, number, text, sep, layout) -> None:
    if _warn_of_odd_id(path, number, text, sep, layout):
      self.scans = 0
    else:
      self.scans -= 1


def _warn_of_odd_id(path, number, text, sep, layout) -> bool:
  """Warns of the block's first id spelled otherwise than ``str(int)``
  (:class:`IdSpellingWarning`); returns whether it did."""
  for offset, line in enumerate(text.split("\n")):
    fields = _split(line, sep)
    if len(fields) != layout.ncols:
      continue
    for k in (layout.user, layout.item):
      field = fields[k]
      try:
        plain = str(int(float(field)))
      except (ValueError, OverflowError):
        continue
      if field != plain:
        warnings.warn(
          f"{path}:{number + offset}: id {quote(field, 20)} is read as the "
          f"integer {plain}, so ids spelled differently (a leading zero, a "
          f"sign, a decimal point or an exponent) and {plain} are one id; if "
          "they are different ids, give ids that are not numbers (a letter "
          "before them).",
          IdSpellingWarning,
          stacklevel=caller_stacklevel(),
        )
        return True
  return False


def _with_progress(blocks, path, stream, span):
  """``blocks`` with a tqdm bar of the bytes read on stderr, shown only once
  the read has taken 2 s (its total: a plain file's size)."""
  import sys

  from tqdm import tqdm

  total = None
  suffix = os.path.splitext(str(path))[1].lower()
  if stream is None and span is None and suffix not in COMPRESSED:
    total = os.path.getsize(path)
  name = os.path.basename(str(path))
  with tqdm(
    total=total, unit="B", unit_scale=True, delay=2, leave=False, file=sys.stderr,
    desc=f"reading {name}",
  ) as bar:  # fmt: skip
    for number, text in blocks:
      bar.update(len(text))
      yield number, text


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


def line_of(row: int, header: bool) -> int:
  """The file line of data row ``row`` (blank lines are rejected, so it is exact)."""
  return row + 1 + int(header)
