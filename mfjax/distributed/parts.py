"""Several processes, one ratings file: each reads its own part of the file
(:func:`load_ratings_part`) and the processes agree, through an
:class:`~mfjax.distributed.exchange.Exchange`, on one id map, the duplicates,
the scale and every error, so that the parts together equal
:func:`mfjax.load_ratings` of the whole file.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from mfjax.data.loaders import (
  KEY_CHUNK,
  OUTLIER_MIN_RATINGS,
  check_load_args,
  check_values,
  fits_table,
  pair_keys,
  warn_outlier,
)
from mfjax.data.textparse import (
  CHUNK_BYTES,
  COMPRESSED,
  RatingsFileError,
  Span,
  read_columns,
)
from mfjax.distributed.exchange import Exchange, first_failure
from mfjax.types import UNKNOWN, IdMaps, Ratings

__all__ = ["load_ratings_part"]


_CHECK_BYTES = 1 << 16


def _my_span(path: str, index: int, count: int) -> tuple[int, int, int, int, bytes]:
  """``(start, stop, newlines, size, ends)`` of part ``index`` of ``count``: the
  lines that start in its share of the bytes; ``ends`` the file's first and
  last 64 KiB and digests of this part and the next one (part 0 after the
  last), to compare between processes."""
  if os.path.splitext(path)[1].lower() in COMPRESSED:
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
    mine = hashlib.blake2b(digest_size=8)
    while left > 0:
      block = f.read(min(CHUNK_BYTES, left))
      mine.update(block)
      newlines, left = newlines + block.count(b"\n"), left - len(block)
    following = (index + 1) % count
    head += mine.digest() + _digest(f, cut(following), cut(following + 1))
  return start, stop, newlines, size, head


def _digest(f, start: int, stop: int) -> bytes:
  """An 8-byte BLAKE2b digest of bytes ``[start, stop)`` of ``f``."""
  digest = hashlib.blake2b(digest_size=8)
  f.seek(start)
  left = stop - start
  while left > 0:
    block = f.read(min(CHUNK_BYTES, left))
    if not block:
      break
    digest.update(block)
    left -= len(block)
  return digest.digest()


def _data_end(f, size: int) -> int:
  """The byte after the file's last one that is not white space."""
  end = size
  while end > 0:
    f.seek(max(0, end - CHUNK_BYTES))
    block = f.read(end - max(0, end - CHUNK_BYTES))
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
  while block := f.read(CHUNK_BYTES):
    found = block.find(b"\n")
    if found >= 0:
      return at + found
    at += len(block)
  return size


def _same_file(path, exchange: Exchange, size: int, ends: bytes) -> None:
  """Refuses processes that read different files under the name: sizes, the
  first and last 64 KiB, and every byte between. Each process digests its own
  part and the next one (the last process part 0), so every byte is read by
  two processes, each from its own copy: the digest of part ``i`` by process
  ``i`` must be the one process ``i - 1`` computed. (Two processes each read
  the whole file; with more, each reads two parts.)"""
  import zlib

  head, mine, following = ends[:-16], ends[-16:-8], ends[-8:]
  as_int = lambda digest: int.from_bytes(digest, "little", signed=True)
  row = [size, zlib.crc32(head), as_int(mine), as_int(following)]
  seen = exchange.allgather(np.array(row, np.int64))
  for index, theirs in enumerate(seen):
    if not np.array_equal(theirs[:2], seen[exchange.index][:2]):
      raise RatingsFileError(
        f"{path}: processes {exchange.index} and {index} read different files "
        f"({size} and {int(theirs[0])} bytes, or other first or last bytes); give "
        "every process the same file."
      )
  for index in range(exchange.count):
    before = (index - 1) % exchange.count
    if seen[index][2] != seen[before][3]:
      raise RatingsFileError(
        f"{path}: processes {before} and {index} read different files (of one "
        f"size and the same first and last bytes, but part {index} differs); "
        "give every process the same file."
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
  if n < OUTLIER_MIN_RATINGS:
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
    warn_outlier(f"{name}:{first}", value, lo, hi, inferred)
  return stats[4], stats[1]


def _parts_index(raw: np.ndarray, exchange: Exchange) -> tuple[np.ndarray, np.ndarray]:
  """The sorted distinct ids of every part, and this part's int32 indices.

  Compact integer ids go through a table, as :func:`_index_ids` does; other
  ids are found by a binary search, a chunk at a time."""
  compact = raw.dtype.kind == "i" and (
    not raw.size or fits_table(raw.min(), raw.max(), raw.size)
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
  if compact and (not ids.size or fits_table(ids[0], ids[-1], ids.size)):
    lookup = np.zeros(int(ids[-1]) + 1 if ids.size else 0, np.int32)
    lookup[ids] = np.arange(len(ids), dtype=np.int32)
    return ids, lookup[raw]
  index = np.empty(len(raw), np.int32)
  for start in range(0, len(raw), KEY_CHUNK):  # No int64 index of every row.
    stop = start + KEY_CHUNK
    index[start:stop] = np.searchsorted(ids, raw[start:stop])
  return ids, index


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
    for start in range(0, len(users), KEY_CHUNK):
      stop = start + KEY_CHUNK
      chunk = pair_keys(users[start:stop], items[start:stop], n_items, start)
      found = np.minimum(np.searchsorted(keys, chunk), len(keys) - 1)
      flags[start:stop] = keys[found] == chunk
  return np.flatnonzero(flags)


def _parts_duplicates(name, line, users, items, values, n_items, policy, exchange, at):
  """The duplicates ``policy`` over all parts: which of this part's rows stay
  (in file order) and, for ``"mean"``, their values; ``at`` is the part's
  first row. Written for memory as :func:`_resolve_duplicates`: one int64 key
  a row at most, then only the rows of pairs rated more than once."""
  keys = pair_keys(users, items, n_items, at)
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
    checked = check_load_args(path, format, sep, columns, id_maps, scale, duplicates)
    return checked, _my_span(checked[0], exchange.index, exchange.count)

  (name, _, sep, columns, scale), found = first_failure(
    check_and_split, exchange, error=RatingsFileError
  )
  start, stop, newlines, size, head = found
  _same_file(name, exchange, size, head)
  before = exchange.allgather(np.array([newlines], np.int64))
  line = 1 + int(sum(int(x[0]) for x in before[: exchange.index]))
  span = Span(start, stop, line, stop == size)
  read = first_failure(
    lambda: read_columns(name, None, format, sep, columns, id_maps, span),
    exchange,
    error=RatingsFileError,
  )
  layout, names, read = read[3], read[4], list(read[:3])  # Consumed from here on.
  if names is not None and start == 0:
    line += 1  # The header line.
  where = lambda row, short=False: f"{'line ' if short else name + ':'}{line + row}"
  counts = [int(x[0]) for x in exchange.allgather(np.array([len(read[2])], np.int64))]
  if not sum(counts):
    raise RatingsFileError(f"{name}: has a header but no ratings.")
  # As load_ratings checks: every rating finite first, then inside the scale.
  first_failure(
    lambda: check_values(where, read[2], None), exchange, error=RatingsFileError
  )
  if scale is not None:
    first_failure(
      lambda: check_values(where, read[2], scale), exchange, error=RatingsFileError
    )
  return _parts_indexed(
    (name, line), read, counts, id_maps, scale, duplicates, exchange,
    (layout.roles, names or ()),
  )  # fmt: skip


def _parts_indexed(place, read, counts, id_maps, scale, policy, exchange, source):
  """:func:`indexed` over parts: ``(part, IdMaps, offset)``. ``read``, the
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
