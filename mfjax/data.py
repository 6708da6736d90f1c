"""Sparse ratings: the ``Ratings`` pytree, file loaders, splits and synthetic data.

Data flows one way: a file is read on the host with NumPy (:func:`load_ratings`),
raw ids become dense indices kept in :class:`IdMaps`, and the result is a
:class:`Ratings` that ``train``, ``loss`` and the metrics take directly.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mfjax import validation

__all__ = [
  "Ratings",
  "IdMaps",
  "RatingsFileError",
  "UNKNOWN",
  "ratings_from_dense",
  "load_ratings",
  "train_test_split",
  "kfold",
  "synthetic_ratings",
]

UNKNOWN = -1
"""The index given to an id that the training maps do not know."""


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
      :func:`mfjax.sharding.shard_ratings` pads, and ranking metrics and
      ``to_dense`` leave it out.
    n_padding: how many entries at the end are padding (static; 0 unless made by
      :func:`mfjax.sharding.shard_ratings`). They must have weight 0. Mini-batch
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


jax.tree_util.register_dataclass(
  Ratings,
  data_fields=["users", "items", "values", "weights"],
  meta_fields=["n_users", "n_items", "n_padding"],
)


def check_ratings(
  name: str,
  ratings: Any,
  *,
  allow_unknown: bool = False,
  shape: tuple[int, int] | None = None,
) -> Ratings:
  """Host-side checks of a :class:`Ratings`: dtypes, lengths, ranges, finiteness.

  ``allow_unknown`` admits index -1 (held-out data); ``shape``, the params'
  ``(n_users, n_items)``, must then be the ratings' too.
  """
  if not isinstance(ratings, Ratings):
    raise TypeError(f"{name} must be mfjax.Ratings; got {type(ratings).__name__}.")
  if shape is not None and ratings.shape != tuple(shape):
    hint = " Load test files with the training file's id_maps." if allow_unknown else ""
    raise ValueError(
      f"{name} must have n_users, n_items = {tuple(shape)} to match params; got "
      f"{ratings.shape}.{hint}"
    )
  for axis, size in (("users", ratings.n_users), ("items", ratings.n_items)):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
      raise ValueError(f"{name}.n_{axis} must be an int >= 1; got {size!r}.")
    index = getattr(ratings, axis)
    if not jnp.issubdtype(index.dtype, jnp.integer) or index.ndim != 1:
      raise TypeError(
        f"{name}.{axis} must be a 1-D integer array; got shape {index.shape} "
        f"and dtype {index.dtype}."
      )
  values = validation.check_real_array(f"{name}.values", ratings.values, ndim=1)
  if not ratings.users.shape == ratings.items.shape == values.shape:
    raise ValueError(
      f"{name}.users, .items and .values must have the same length; got "
      f"{ratings.users.shape[0]}, {ratings.items.shape[0]} and {values.shape[0]}."
    )
  _check_weights(name, ratings, values.shape[0])
  for axis, size in (("users", ratings.n_users), ("items", ratings.n_items)):
    index = getattr(ratings, axis)
    if validation.is_concrete(index) and index.shape[0]:
      with jax.ensure_compile_time_eval():
        lo, hi = int(jnp.min(index)), int(jnp.max(index))
      floor = UNKNOWN if allow_unknown else 0
      if lo < floor or hi >= size:
        bad = lo if lo < floor else hi
        what = f"[{floor}, {size})" + (" (-1 = unknown)" if allow_unknown else "")
        raise ValueError(f"{name}.{axis} must lie in {what}; got index {bad}.")
  return ratings


def _check_weights(name: str, ratings: Ratings, n: int) -> None:
  """Checks ``weights`` (length, finite, >= 0) and ``n_padding`` (static, weight 0)."""
  weights = ratings.weights
  if weights is not None:
    weights = validation.check_real_array(f"{name}.weights", weights, ndim=1)
    if weights.shape[0] != n:
      raise ValueError(
        f"{name}.weights must have one weight per rating, {n}; got {weights.shape[0]}."
      )
    if validation.is_concrete(weights) and n:
      with jax.ensure_compile_time_eval():
        lowest = float(jnp.min(weights))
      if lowest < 0:
        raise ValueError(f"{name}.weights must be >= 0; got {lowest:g}.")
  padding = ratings.n_padding
  if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)):
    raise TypeError(f"{name}.n_padding must be an int; got {padding!r}.")
  if not 0 <= padding <= n:
    raise ValueError(
      f"{name}.n_padding must lie in [0, {n}] (the number of entries); got {padding}."
    )
  if padding and weights is None:
    raise ValueError(
      f"{name}.n_padding is {padding} but weights is None; padding entries need "
      "weight 0 (see mfjax.sharding.shard_ratings)."
    )
  if padding and validation.is_concrete(weights):
    with jax.ensure_compile_time_eval():
      tail = float(jnp.max(jnp.abs(weights[n - padding :])))
    if tail != 0:
      raise ValueError(
        f"{name}.weights must be 0 on the last n_padding = {padding} entries "
        "(the padding)."
      )


def ratings_from_dense(matrix: ArrayLike) -> Ratings:
  """The non-zero entries of a dense ``[n_users, n_items]`` matrix as ``Ratings``."""
  matrix = validation.check_real_array("matrix", matrix, ndim=2)
  matrix = np.asarray(matrix, np.float32)
  users, items = np.nonzero(matrix)
  return Ratings(
    users=jnp.asarray(users, jnp.int32),
    items=jnp.asarray(items, jnp.int32),
    values=jnp.asarray(matrix[users, items]),
    n_users=int(matrix.shape[0]),
    n_items=int(matrix.shape[1]),
  )


class RatingsFileError(ValueError):
  """A ratings file that cannot be read; the message names the file and line."""


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
  """

  users: np.ndarray
  items: np.ndarray
  scale: tuple[float, float]
  n_lines: int = 0
  n_duplicates: int = 0
  n_unknown: int = 0

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


def _read_lines(path: str):
  """Yields ``(first_line_number, text)`` blocks of whole lines, decoded."""
  with open(path, "rb") as f:
    number, rest = 1, b""
    while True:
      block = f.read(_CHUNK_BYTES)
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
  path: str | os.PathLike,
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
      (comma, with a header), or any delimited file.
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
  path = os.fspath(path)
  validation.check_choice("format", format, FORMATS)
  validation.check_choice("duplicates", duplicates, DUPLICATES)
  if scale is not None:
    scale = validation.check_clip("scale", scale)
  if sep is not None:
    if not isinstance(sep, str):
      raise TypeError(f"sep must be a string or None; got {type(sep).__name__}.")
    if not sep or "\n" in sep or "\r" in sep:
      raise ValueError(
        f"sep must be a non-empty string without line breaks, or None; got {sep!r}."
      )
  if id_maps is not None and not isinstance(id_maps, IdMaps):
    raise TypeError(f"id_maps must be mfjax.IdMaps; got {type(id_maps).__name__}.")
  if not os.path.exists(path):
    raise RatingsFileError(f"{path}: no such file.")
  if not os.path.isfile(path):
    raise RatingsFileError(f"{path}: not a regular file.")

  blocks = _read_lines(path)
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

  finite = np.isfinite(values)
  if not finite.all():
    row = int(np.argmin(finite))
    raise RatingsFileError(
      f"{path}:{_line_of(row, header)}: rating {values[row]} is not finite."
    )
  if scale is not None:
    outside = (values < scale[0]) | (values > scale[1])
    if outside.any():
      row = int(np.argmax(outside))
      raise RatingsFileError(
        f"{path}:{_line_of(row, header)}: rating {values[row]:g} is outside "
        f"the declared scale [{scale[0]:g}, {scale[1]:g}]."
      )

  if id_maps is None:
    user_ids, users = _index_ids(raw_users)
    item_ids, items = _index_ids(raw_items)
    if scale is None:
      scale = (float(values.min()), float(values.max()))
  else:
    user_ids, item_ids = id_maps.users, id_maps.items
    users, items = _lookup(user_ids, raw_users), _lookup(item_ids, raw_items)
    if scale is None:
      scale = id_maps.scale
  del raw_users, raw_items
  n_lines = len(values)
  users, items, values, n_duplicates = _resolve_duplicates(
    path, header, users, items, values, len(item_ids), duplicates
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


def _resolve_duplicates(path, header, users, items, values, n_items, policy):
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
    raise RatingsFileError(
      f"{path}:{_line_of(second, header)}: duplicate rating of the pair on "
      f"line {_line_of(first, header)} (use duplicates='last' or 'mean')."
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


def _check_fraction(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
    raise TypeError(f"{name} must be a number in (0, 1); got {value!r}.")
  if not 0.0 < float(value) < 1.0:
    raise ValueError(f"{name} must lie in (0, 1); got {value!r}.")
  return float(value)


def _without_padding(ratings: Ratings) -> Ratings:
  """``ratings`` without its trailing padding entries (host-side)."""
  if not ratings.n_padding:
    return ratings
  return ratings.subset(np.arange(len(ratings) - ratings.n_padding))


def train_test_split(
  ratings: Ratings, *, test_fraction: float = 0.2, seed: int = 0, stratify: bool = False
) -> tuple[Ratings, Ratings]:
  """A seeded random split of ``ratings`` into ``(train, test)``.

  Args:
    ratings: the ratings to split.
    test_fraction: the share of ratings held out, in (0, 1).
    seed: the NumPy seed of the shuffle.
    stratify: hold out ``test_fraction`` of each user's ratings (rounded down, and
      never a user's only rating) instead of a fraction of all ratings, so that
      every user is in the training part.

  Returns:
    ``(train, test)``, both with the model's ``n_users``/``n_items``. Weights go
    with their ratings; padding (``n_padding``) is dropped first.
  """
  check_ratings("ratings", ratings)
  test_fraction = _check_fraction("test_fraction", test_fraction)
  ratings = _without_padding(ratings)
  rng = np.random.default_rng(seed)
  n = len(ratings)
  if not stratify:
    order = rng.permutation(n)
    n_test = int(round(n * test_fraction))
    test, train = order[:n_test], order[n_test:]
  else:
    users = np.asarray(ratings.users)
    order = rng.permutation(n)
    order = order[np.argsort(users[order], kind="stable")]  # Shuffled within user.
    starts = np.searchsorted(users[order], np.arange(ratings.n_users))
    counts = np.bincount(users, minlength=ratings.n_users)
    rank = np.arange(n) - np.repeat(starts, counts)
    held = np.floor(counts * test_fraction).astype(np.int64)
    held = np.where(counts > 1, np.minimum(held, counts - 1), 0)
    is_test = rank < np.repeat(held, counts)
    test, train = order[is_test], order[~is_test]
  return ratings.subset(np.sort(train)), ratings.subset(np.sort(test))


def kfold(ratings: Ratings, k: int = 5, *, seed: int = 0):
  """Yields ``k`` seeded ``(train, test)`` splits; each rating is tested once.

  Weights go with their ratings; padding (``n_padding``) is dropped first.
  """
  check_ratings("ratings", ratings)
  k = validation.check_positive_int("k", k)
  ratings = _without_padding(ratings)
  if k < 2 or k > len(ratings):
    raise ValueError(
      f"k must lie in [2, {len(ratings)}] (the number of ratings); got {k}."
    )
  folds = np.array_split(np.random.default_rng(seed).permutation(len(ratings)), k)
  for j in range(k):
    train = np.sort(np.concatenate(folds[:j] + folds[j + 1 :]))
    yield ratings.subset(train), ratings.subset(np.sort(folds[j]))


def synthetic_ratings(
  key: ArrayLike,
  n_users: int,
  n_items: int,
  n_ratings: int,
  rank: int,
  *,
  noise: float = 0.5,
  popularity: float = 1.0,
  mean: float = 3.5,
  scale: tuple[float, float] | None = (1.0, 5.0),
) -> tuple[Ratings, Any]:
  """Ratings drawn from a planted biased low-rank model, on the device.

  Users and items are drawn with power-law popularity: the ``j``-th most popular
  has weight ``(j + 1) ** -popularity`` (0 gives uniform draws), so a few users
  rate a lot and a few items are rated a lot, as in real data. Pairs may repeat.

  Args:
    key: a JAX PRNG key.
    n_users, n_items, n_ratings, rank: sizes, static ints >= 1.
    noise: standard deviation of the Gaussian noise on each rating.
    popularity: the power-law exponent of user and item popularity, >= 0.
    mean: the global mean rating.
    scale: ratings are clipped to it (None: not clipped).

  Returns:
    ``(ratings, planted)``: the :class:`Ratings` and the planted ``Params``.
  """
  from mfjax.model import Params  # model imports nothing from here; keep it so.

  validation.check_key("key", key)
  n_users = validation.check_positive_int("n_users", n_users)
  n_items = validation.check_positive_int("n_items", n_items)
  n_ratings = validation.check_positive_int("n_ratings", n_ratings)
  rank = validation.check_positive_int("rank", rank)
  validation.check_nonnegative("noise", noise)
  validation.check_nonnegative("popularity", popularity)
  if scale is not None:
    scale = validation.check_clip("scale", scale)
  keys = jax.random.split(key, 7)
  planted = Params(
    user_factors=jax.random.normal(keys[0], (n_users, rank)) / rank**0.25,
    item_factors=jax.random.normal(keys[1], (n_items, rank)) / rank**0.25,
    user_bias=0.3 * jax.random.normal(keys[2], (n_users,)),
    item_bias=0.3 * jax.random.normal(keys[3], (n_items,)),
    mean=jnp.float32(mean),
  )

  def draw(k, n):
    weights = jnp.exp(-popularity * jnp.log1p(jnp.arange(n, dtype=jnp.float32)))
    cdf = jnp.cumsum(weights) / jnp.sum(weights)
    # Inverse-CDF sampling needs O(n_ratings) memory; jax.random.categorical
    # would build an [n_ratings, n] array.
    u = jax.random.uniform(k, (n_ratings,))
    picks = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n - 1)
    # A random permutation, so that popularity is not tied to the index order.
    ranks = jax.random.permutation(jax.random.fold_in(k, 1), n)
    return ranks[picks].astype(jnp.int32)

  users, items = draw(keys[4], n_users), draw(keys[5], n_items)
  values = (
    planted.mean
    + planted.user_bias[users]
    + planted.item_bias[items]
    + jnp.sum(planted.user_factors[users] * planted.item_factors[items], axis=-1)
    + noise * jax.random.normal(keys[6], (n_ratings,))
  )
  if scale is not None:
    values = jnp.clip(values, scale[0], scale[1])
  ratings = Ratings(users, items, values.astype(jnp.float32), n_users, n_items)
  return ratings, planted
