"""Folding repeated (user, item) pairs while a ratings file streams in.

:func:`mfjax.data.textparse.read_columns` hands each parsed block to a
:class:`Folder`, which folds the pairs held so far whenever they reach
:data:`FOLD_ENTRIES` lines and twice what the last fold kept, so that the
memory of a file follows its distinct pairs, not its lines; under
``duplicates="error"`` it looks for a repeat instead (:class:`RepeatedPair`).
Also :func:`concat_and_clear`, how the readers join their blocks.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["FOLD_ENTRIES", "Folded", "Folder", "RepeatedPair", "concat_and_clear"]


class RepeatedPair(Exception):
  """A (user, item) pair on two lines under ``duplicates="error"``, found while
  the file streams in (:class:`Folder`): its data rows, earlier first. The
  loader words it as its error (a ``RatingsFileError``)."""

  def __init__(self, first: int, second: int, header: bool):
    super().__init__(first, second, header)
    self.first, self.second, self.header = first, second, header


def concat_and_clear(parts: list) -> np.ndarray:
  out = np.concatenate(parts)
  parts.clear()
  dtype = out.dtype
  if dtype.kind == "i" and out.size and -(2**31) <= out.min() and out.max() < 2**31:
    out = out.astype(np.int32)  # Half the memory of int64 for the usual ids.
  elif dtype.kind == "f":
    out = out.astype(np.float32)
  return out


# Lines held before repeated (user, item) pairs are folded while a file streams
# in (read_columns with duplicates): 2**25 lines are 400 MB of int32 ids and
# float32 ratings. Below it nothing is folded, so files of up to 33M lines (all
# MovieLens sets) read as before, at no cost.
FOLD_ENTRIES = 1 << 25


class Folded(NamedTuple):
  """:func:`read_columns` of a file whose repeated pairs were folded."""

  raw_users: np.ndarray
  raw_items: np.ndarray
  values: np.ndarray
  layout: Any
  names: tuple | None
  rows: np.ndarray  # Each entry's data row (0-based): the pair's last line.
  n_lines: int  # Data lines read.
  n_folded: int  # Lines folded into an earlier or later one of their pair.
  outside: tuple | None  # (row, rating) of the first outside a declared scale.
  histogram: tuple  # (values, lines, first row) of the ratings of every line.


class Folder:
  """Folds repeated (user, item) pairs of the parts held so far, in place:
  ``"last"`` keeps a pair's last rating, ``"mean"`` the mean of its ratings
  (weighted by the lines each folded entry stands for, in float64), each at
  its last line's row, the rows kept in line order.

  Every line is checked (``check``) when it is first folded, before a fold can
  drop it, and counted in a histogram of the ratings read (value, lines, first
  row), so that the scale and the outlier warning are those of every line, as
  without folding.
  """

  def __init__(self, policy: str, check, header: bool):
    self.policy, self.check, self.header = policy, check, header
    self.n_lines, self.n_folded, self.n_folds = 0, 0, 0
    self.held, self.threshold, self.checked = 0, FOLD_ENTRIES, 0
    self.rows, self.counts = [], []
    self.outside = None  # (row, rating) of the first outside a declared scale.
    self.histogram = None  # (values, lines, first row) of every line read.

  def added(self, parts, n: int) -> None:
    if self.policy == "error":  # Nothing to fold: a repeat is the error.
      self.n_lines += n
      if self.n_lines >= self.threshold:
        _raise_a_repeat(parts, self.header)
        self.threshold = 4 * self.n_lines
      return
    if self.n_folds:  # The new lines' rows (and counts), beside their parts.
      self.rows.append(np.arange(self.n_lines, self.n_lines + n, dtype=np.int64))
      if self.policy == "mean":
        self.counts.append(np.ones(n))
    self.n_lines += n
    self.held += n
    if self.held >= self.threshold:
      self.fold(parts)

  def _first_look(self, values: np.ndarray, rows: np.ndarray) -> None:
    """Checks lines never folded before, and counts their ratings."""
    values = values.astype(np.float32)  # As they will be kept.
    if self.check is not None:
      outside = self.check(values, rows, self.header)
      if outside is not None and self.outside is None:
        self.outside = outside
    distinct, first, lines = np.unique(values, return_index=True, return_counts=True)
    seen = (distinct.astype(np.float64), lines.astype(np.int64), rows[first])
    if self.histogram is not None:
      joined = [np.concatenate(pair) for pair in zip(self.histogram, seen, strict=True)]
      distinct, inverse = np.unique(joined[0], return_inverse=True)
      lines = np.zeros(len(distinct), np.int64)
      np.add.at(lines, inverse, joined[1])
      first = np.full(len(distinct), np.iinfo(np.int64).max)
      np.minimum.at(first, inverse, joined[2])
      seen = (distinct, lines, first)
    self.histogram = seen

  def fold(self, parts):
    """Folds the parts into one part each; returns users, items, values, rows."""
    users, items = (concat_and_clear(part) for part in parts[:2])
    values = np.concatenate(parts[2])  # float64 means stay float64.
    parts[2].clear()
    if self.n_folds:
      rows = np.concatenate(self.rows)
    else:
      rows = np.arange(len(users), dtype=np.int64)
    new = rows >= self.checked
    values[new] = values[new].astype(np.float32)  # Read as without folding.
    self._first_look(values[new], rows[new])
    self.checked = self.n_lines
    counts = None
    if self.policy == "mean":
      counts = np.concatenate(self.counts) if self.n_folds else np.ones(len(users))
    self.rows.clear()
    self.counts.clear()
    order = np.lexsort((rows, items, users))  # By pair, then line.
    pair_users, pair_items = users[order], items[order]
    last = np.ones(len(order), bool)  # The last line of each pair.
    last[:-1] = (pair_users[1:] != pair_users[:-1]) | (
      pair_items[1:] != pair_items[:-1]
    )
    del pair_users, pair_items
    kept = order[last]
    if self.policy == "mean":
      starts = np.flatnonzero(np.append(True, last[:-1]))
      weight = counts[order]
      sums = np.add.reduceat(values[order].astype(np.float64) * weight, starts)
      counts = np.add.reduceat(weight, starts)
      values = sums / counts
    else:
      values = values[kept]
    del order, last
    in_line_order = np.argsort(rows[kept], kind="stable")
    kept = kept[in_line_order]
    users, items, rows = users[kept], items[kept], rows[kept]
    values = values[in_line_order]
    n_before, n_kept = self.held, len(kept)
    self.n_folded += n_before - n_kept
    self.n_folds += 1
    self.held = n_kept
    # Few repeats (under a tenth): fold less often, for the time and the
    # sorts' memory; many: as soon as the lines double again.
    grow = 4 if n_before - n_kept < n_before // 10 else 2
    self.threshold = max(FOLD_ENTRIES, grow * n_kept)
    for part, column in zip(parts, (users, items, values), strict=True):
      part.append(column)
    self.rows.append(rows)
    if self.policy == "mean":
      self.counts.append(counts[in_line_order])
    return users, items, values.astype(np.float32), rows


def _raise_a_repeat(parts, header: bool) -> None:
  """:class:`RepeatedPair` of the held lines' first repeated pair (in the
  order of the raw ids, as the whole file's check names one), if any."""
  users, items = (np.concatenate(part) for part in parts[:2])
  order = np.lexsort((np.arange(len(users)), items, users))
  same = (users[order][1:] == users[order][:-1]) & (
    items[order][1:] == items[order][:-1]
  )
  if same.any():
    at = int(np.argmax(same))
    raise RepeatedPair(int(order[at]), int(order[at + 1]), header)
