"""Saving and loading a trained model: one ``.npz`` file, no pickle.

A model file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) that
``np.load(path, allow_pickle=False)`` opens. Format 1 holds these entries:

=================  ==========================================================
``magic``          the string ``"mfjax-model"``: this is an mfjax model file
``format_version`` int64 scalar, :data:`FORMAT_VERSION` of the writer
``mfjax_version``  the ``mfjax.__version__`` that wrote the file
``kind``           ``"Model"`` (files of mfjax 0.1 may say ``"Params"``: bare
                   params, without the Model-only entries below)
``user_factors``   ``[U, k]``; and ``item_factors`` ``[I, k]``, ``user_bias``
                   ``[U]``, ``item_bias`` ``[I]``, ``mean`` ``[]``. Float16,
                   float32 and float64 leaves are stored as they are; other
                   floating dtypes (bfloat16, which ``.npy`` cannot describe)
                   as their raw bits, an unsigned integer of the same width
``dtypes``         ``[5]`` strings: the dtype name of each parameter, in
                   ``Params`` field order
``settings``       Model only: the training settings as JSON text (``"null"``
                   for none)
``scale``          Model only: float64 ``[2]``, the rating scale, or ``[0]``
                   for none
``user_ids``       Model with id maps only: the raw ids ``[U]`` (integers or
                   str); with ``item_ids`` ``[I]``, ``id_maps_scale`` float64
                   ``[2]`` and ``id_maps_counts`` int64 ``[3]`` (``n_lines``,
                   ``n_duplicates``, ``n_unknown``)
=================  ==========================================================

A reader of format ``M`` refuses files of a newer format and ignores entries it
does not know, so a writer bumps :data:`FORMAT_VERSION` only for a change that an
older reader would misread.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import numbers
import os
import re
import secrets
import signal
import stat
import struct
import threading
import time
import tokenize
import warnings
import zipfile
import zlib
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from mfjax import validation
from mfjax.serving import rawids
from mfjax.types import IdMaps, Params
from mfjax.version import __version__

__all__ = ["Model", "ModelFileError", "save", "load", "atomic_write", "FORMAT_VERSION"]

FORMAT_VERSION = 1
"""The version of the file format that :func:`save` writes."""

_MAGIC = "mfjax-model"
_KINDS = ("Model", "Params")
_MAP_KEYS = ("user_ids", "item_ids", "id_maps_scale", "id_maps_counts")
_COUNTS = ("n_lines", "n_duplicates", "n_unknown")
# Dtypes whose .npy description reads back as themselves; others go as raw bits.
_NATIVE_FLOATS = (np.float16, np.float32, np.float64)
# Fixed zip member timestamps, so that the same model always gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

# Temporary files of save: a short fixed name, whatever the length of the user's,
# so that it always fits the file system's name limit. Ones older than
# _STALE_SECONDS were left by a save that was killed, and the next save into
# that directory removes them; a save in progress keeps its file fresh.
_TEMP_PREFIX, _TEMP_SUFFIX = ".mfjax-", ".tmp"
_TEMP_NAME = re.compile(r"\.mfjax-[0-9a-f]+\.tmp")
_STALE_SECONDS = 600
_NAME_MAX = 255  # Where os.pathconf cannot tell.

# Bounds load checks from the zip directory and the .npy headers before it reads
# any array data. Format 1 has at most 17 entries; the rest is room for a newer
# writer's. save stores members as they are (1x); deflate of real parameters
# gains little, so arrays that declare over _MAX_EXPANSION times the file's size
# are a zip bomb, not a model.
_MAX_MEMBERS = 256
_MAX_DIRECTORY_BYTES = _MAX_MEMBERS * 1024
_MAX_EXPANSION = 64
_SLACK_BYTES = 1 << 20
_MAX_HEADER_BYTES = 10_000  # NumPy's own bound on a .npy header.
_MAX_HEADER_NESTING = 8  # A plain array's header nests 2 deep: {...(shape)...}.
_MAX_NDIM = 8
_ARRAY_KINDS = "iufU"  # Numbers and text: all that save writes.
_CHUNK_BYTES = 1 << 20
_END = struct.Struct("<4s4H2LH")  # The zip's end of central directory record.
_END64 = struct.Struct("<4sQ2H2L4Q")  # Its zip64 record, then the locator.
_LOCATOR64 = struct.Struct("<4sLQL")
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # A member's local header.


_OBJECTIVES = ("rating", "ranking")


class ModelFileError(ValueError):
  """A model file that cannot be loaded; the message names the file and why."""


class Model(NamedTuple):
  """A trained model with what is needed to use it on raw ids.

  Attributes:
    params: the fitted :class:`mfjax.Params`.
    id_maps: the raw user and item ids of the training data
      (:func:`mfjax.load_ratings`), or None for a model indexed by position only.
    settings: the training settings (rank, steps, learning rate, l2, ensemble, ...)
      as a JSON-serialisable dict with str keys, or None. JSON has no tuples: a
      tuple in it loads back as a list.
    scale: the rating scale ``(lo, hi)`` predictions are clipped to. None means
      ``id_maps.scale``: :func:`save` records that, and :func:`load` returns it
      filled in.
    mfjax_version: the mfjax version that wrote the file; set by :func:`load`.
      :func:`save` always records the running version and ignores this field.
    objective: what the model learned: ``"rating"`` (its scores are ratings)
      or ``"ranking"`` (``fit(objective="ranking")``: its scores only order
      items, and RMSE does not apply). Files without it are rating models.
    rated: the training (user, item) index pairs, int32 ``[n, 2]``
      (:func:`mfjax.serving.rawids.rated_pairs` of the training ratings), or None. With
      them, :meth:`recommend` leaves out what a user rated and knows the most
      popular items; they cost 8 bytes per rating in the file.

  The methods take and give raw ids (those of ``id_maps``): :meth:`predict`,
  :meth:`recommend`, :meth:`similar_items` and :meth:`fold_in`
  (:mod:`mfjax.serving.rawids`).
  """

  params: Params
  id_maps: IdMaps | None = None
  settings: dict | None = None
  scale: tuple[float, float] | None = None
  mfjax_version: str | None = None
  objective: str = "rating"
  rated: np.ndarray | None = None

  def predict(self, users: Any, items: Any) -> np.ndarray | float:
    """Ratings of raw (user, item) ids, clipped to the scale; unknown ids get
    the mean plus whatever bias is known (:func:`mfjax.serving.rawids.predict_ids`)."""
    return rawids.predict_ids(self, users, items)

  def recommend(
    self, user: Any, n: int = 10, *, exclude_rated: bool = True, fallback="popularity"
  ) -> tuple[np.ndarray, np.ndarray]:
    """``(item ids, scores)``: the user's ``n`` best items, rated ones left out;
    an unknown user gets the most-rated items (:func:`mfjax.serving.rawids.recommend_ids`)."""
    return rawids.recommend_ids(
      self, user, n, exclude_rated=exclude_rated, fallback=fallback
    )

  def similar_items(self, item: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(item ids, cosines)`` of the items nearest ``item`` in factor space
    (:func:`mfjax.serving.rawids.similar_items`)."""
    return rawids.similar_items(self, item, n)

  def fold_in(
    self, users: Any, items: Any, ratings: Any, *, l2=None, l2_bias=None
  ) -> Model:
    """A model that also knows new users, from their raw-id ratings, without
    retraining (:func:`mfjax.serving.rawids.fold_in_ids`)."""
    params, id_maps, rated = rawids.fold_in_ids(
      self, users, items, ratings, l2=l2, l2_bias=l2_bias
    )
    return self._replace(params=params, id_maps=id_maps, rated=rated)


def _check_path(path: Any) -> str:
  if not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}.")
  path = os.fspath(path)
  if not isinstance(path, str):
    raise TypeError(f"path must be a str path; got {type(path).__name__}.")
  return path


def _check_scale(name: str, scale: Any) -> np.ndarray:
  lo, hi = validation.check_scale(name, scale)
  out = np.array([float(lo), float(hi)], np.float64)
  if not np.isfinite(out).all():
    raise ValueError(f"{name} must be finite; got ({lo}, {hi}).")
  return out


def _host_params(name: str, params: Any) -> dict[str, np.ndarray]:
  """Checks ``params`` and returns its leaves as host arrays, by field."""
  validation.check_params(params, name)
  out = {}
  for field in Params._fields:
    leaf = getattr(params, field)
    if not validation.is_concrete(leaf):
      raise TypeError(
        f"{name}.{field} is a tracer; save needs concrete arrays and cannot run "
        "under jit or vmap (save the result outside the traced function)."
      )
    host = np.asarray(leaf)
    if not np.isfinite(host).all():
      bad = int(host.size - np.isfinite(host).sum())
      raise ValueError(
        f"{name}.{field} must be finite; it holds {bad} NaN or inf value(s) "
        "(a diverged fit? save TrainResult.best_params)."
      )
    out[field] = host
  return out


def _check_ids(name: str, ids: Any, size: int, axis: str) -> np.ndarray:
  ids = np.asarray(ids)
  if ids.dtype == object:
    values = ids.tolist() if ids.ndim == 1 else None
    if values is not None and all(isinstance(v, str) for v in values):
      ids = np.asarray(values, dtype=str) if values else np.zeros(0, "U1")
    elif values is not None and all(
      isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values
    ):
      ids = np.asarray(values, dtype=np.int64)
  if ids.dtype.kind not in "iuU":
    raise TypeError(
      f"{name} must hold integer or str ids; got an array of dtype {ids.dtype}."
    )
  if ids.shape != (size,):
    raise ValueError(
      f"{name} must have shape ({size},), one id per {axis[:-1]} of params; got "
      f"{ids.shape}."
    )
  if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
    raise ValueError(f"{name} must be sorted and unique, as IdMaps builds them.")
  return ids


def _settings_json(settings: Any) -> str:
  if settings is None:
    return "null"
  if not isinstance(settings, dict):
    raise TypeError(
      f"settings must be a dict with str keys, or None; got {type(settings).__name__}."
    )
  keys = [k for k in settings if not isinstance(k, str)]
  if keys:
    raise TypeError(f"settings must have str keys; got key {keys[0]!r}.")

  def scalar(x):  # NumPy scalars (a seed from np.int64, say) become plain numbers.
    if isinstance(x, np.generic):
      return x.item()
    raise TypeError(f"{type(x).__name__} {x!r} is not JSON-serialisable")

  try:
    return json.dumps(settings, allow_nan=False, default=scalar)
  except (TypeError, ValueError) as e:
    raise ValueError(
      "settings must be JSON-serialisable (str, int, finite float, bool, None, "
      f"lists and dicts with str keys); {e}."
    ) from None


def _entries(model: Any) -> dict[str, np.ndarray]:
  """The arrays of the file, in writing order; every argument check is here."""
  if isinstance(model, Params):
    # Bare params were stored as kind "Params" (which load still reads); they
    # are a Model without id maps, settings or scale, and saved as one.
    model = Model(model)
  if isinstance(model, Model):
    kind, params = "Model", model.params
    name = "model.params"
  else:
    raise TypeError(
      f"model must be mfjax.Model or mfjax.Params; got {type(model).__name__}."
    )
  leaves = _host_params(name, params)
  entries = {
    "magic": np.array(_MAGIC),
    "format_version": np.array(FORMAT_VERSION, np.int64),
    "mfjax_version": np.array(__version__),
    "kind": np.array(kind),
  }
  for field, host in leaves.items():
    if host.dtype.type not in _NATIVE_FLOATS:
      if host.dtype.itemsize not in (1, 2, 4, 8):
        raise TypeError(
          f"{name}.{field} has dtype {host.dtype}, which JAX does not support; "
          "convert the parameters to float32 (or float64, bfloat16) first."
        )
      host = host.view(np.dtype(f"u{host.dtype.itemsize}"))
    entries[field] = host
  entries["dtypes"] = np.array([leaves[f].dtype.name for f in Params._fields])

  entries["settings"] = np.array(_settings_json(model.settings))
  if model.objective not in _OBJECTIVES:
    raise ValueError(
      f"model.objective must be one of {_OBJECTIVES}; got {model.objective!r}."
    )
  if model.objective != "rating":  # Rating models keep the 0.2 bytes exactly.
    entries["objective"] = np.array(model.objective)
  maps = model.id_maps
  if maps is not None and not isinstance(maps, IdMaps):
    raise TypeError(
      f"model.id_maps must be mfjax.IdMaps or None; got {type(maps).__name__}."
    )
  scale = model.scale if model.scale is not None else getattr(maps, "scale", None)
  # Always there, empty for None: a damaged entry name must not drop the scale.
  entries["scale"] = (
    np.zeros(0) if scale is None else _check_scale("model.scale", scale)
  )
  if maps is not None:
    n_users, n_items = leaves["user_factors"].shape[0], leaves["item_factors"].shape[0]
    entries["user_ids"] = _check_ids(
      "model.id_maps.users", maps.users, n_users, "users"
    )
    entries["item_ids"] = _check_ids(
      "model.id_maps.items", maps.items, n_items, "items"
    )
    entries["id_maps_scale"] = _check_scale("model.id_maps.scale", maps.scale)
    counts = []
    for field in _COUNTS:
      count = getattr(maps, field)
      if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise TypeError(f"model.id_maps.{field} must be an int; got {count!r}.")
      counts.append(int(count))
    entries["id_maps_counts"] = np.array(counts, np.int64)
  if model.rated is not None:
    n_users, n_items = leaves["user_factors"].shape[0], leaves["item_factors"].shape[0]
    entries["rated"] = _check_rated(model.rated, n_users, n_items)
  return entries


def _rated_problem(rated: np.ndarray, n_users: int, n_items: int) -> str | None:
  """What is wrong with training pairs, or None."""
  if rated.dtype.kind not in "iu" or rated.ndim != 2 or rated.shape[1] != 2:
    return f"must be integer pairs [n, 2]; got {rated.dtype} {rated.shape}"
  if rated.size and (
    rated.min() < 0 or rated[:, 0].max() >= n_users or rated[:, 1].max() >= n_items
  ):
    return f"must hold user indices < {n_users} and item indices < {n_items}"
  return None


def _check_rated(rated: Any, n_users: int, n_items: int) -> np.ndarray:
  rated = np.asarray(rated)
  problem = _rated_problem(rated, n_users, n_items)
  if problem:
    raise ValueError(f"model.rated {problem}.")
  return rated.astype(np.int32)


def _write_npz(file, entries: dict[str, np.ndarray]) -> None:
  """Writes ``entries`` as ``np.savez`` does, never pickling, with fixed dates."""
  with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
    for key, array in entries.items():
      info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_DATE)
      info.external_attr = 0o644 << 16
      with archive.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


def _name_max(directory: str) -> int | None:
  """The longest file name (bytes) the directory's file system takes, if known."""
  try:
    limit = os.pathconf(directory, "PC_NAME_MAX")
  except (AttributeError, OSError, ValueError):  # Windows has no pathconf.
    return None
  return limit if limit > 0 else None


def _temp_file(directory: str, name_max: int) -> tuple[int, str]:
  # Not tempfile.mkstemp: its 0o600 mode would end up on the saved file; os.open
  # with 0o666 gets the permissions the user's umask gives any new file.
  flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
  digits = max(1, min(16, name_max - len(_TEMP_PREFIX) - len(_TEMP_SUFFIX)))
  for _ in range(100):
    token = secrets.token_hex(8)[:digits]
    temp = os.path.join(directory, _TEMP_PREFIX + token + _TEMP_SUFFIX)
    try:
      return os.open(temp, flags, 0o666), temp
    except FileExistsError:
      continue
  raise FileExistsError(f"could not create a temporary file in {directory}")


def _remove_stale_temp_files(directory: str) -> None:
  """Removes what killed saves left in ``directory``: mfjax temporary files only,
  and only old ones, so that a save in progress elsewhere keeps its file."""
  now = time.time()
  try:
    with os.scandir(directory) as found:
      for entry in found:
        if not _TEMP_NAME.fullmatch(entry.name):
          continue
        try:
          if (
            entry.is_file(follow_symlinks=False)
            and now - entry.stat(follow_symlinks=False).st_mtime > _STALE_SECONDS
          ):
            os.unlink(entry.path)
        except OSError:
          continue  # Gone already (another save cleaned up), or not ours to remove.
  except OSError:
    pass  # Cleaning up is a courtesy; the save itself reports real problems.


class _Terminated(BaseException):
  """SIGTERM during a save, raised so that the temporary file is removed."""


@contextlib.contextmanager
def _sigterm_removes_temp_file():
  """Turns SIGTERM into :class:`_Terminated` while a save runs, then dies of it.

  Only where SIGTERM would kill the process outright (its default action) and only
  in the main thread, where Python runs signal handlers; a program's own handler
  is left alone (what it raises, the save's cleanup sees too).
  """
  try:
    default = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
  except (AttributeError, ValueError):
    default = False
  if not default or threading.current_thread() is not threading.main_thread():
    yield
    return

  def terminate(signum, frame):
    raise _Terminated

  signal.signal(signal.SIGTERM, terminate)
  try:
    yield
  except _Terminated:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # Dies as it would have, file removed.
    raise
  finally:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _naming(error: OSError, path: str) -> OSError:
  """``error`` as the same type of OSError, naming the user's ``path`` rather than
  the temporary file (``filename`` and ``strerror`` are set for callers that
  print them, where the error has an errno)."""
  try:
    if error.errno is not None:
      return type(error)(error.errno, error.strerror or str(error), path)
    return type(error)(f"{path}: {error}")
  except TypeError:  # An OSError subclass with another signature.
    return OSError(f"{path}: {error}")


def _fsync_directory(directory: str) -> None:
  if not hasattr(os, "O_DIRECTORY"):
    return  # Windows: directories cannot be opened; os.replace is what it offers.
  try:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass  # Some file systems do not sync directories; the rename still happened.
  finally:
    os.close(fd)


def save(path: str | os.PathLike, model: Model | Params) -> None:
  """Saves a model to one ``.npz`` file, atomically.

  The file is written to a temporary file in the same directory, synced to disk
  and then renamed onto ``path``: a reader sees the old file or the new one, never
  a half-written one, and a failure leaves the old file as it was and no temporary
  file behind. Nothing is pickled; see the module docstring for the layout.

  The temporary file is named ``.mfjax-<random hex>.tmp``, short whatever the
  length of ``path``'s name. An exception, ``KeyboardInterrupt`` or (in the main
  thread, where SIGTERM would kill the process) SIGTERM removes it; what a
  killed process leaves (``kill -9``, a power cut) the next ``save`` into that
  directory removes once it is over 10 minutes old, so that a save running in
  another process is never disturbed.

  Args:
    path: the file to write, exactly as given: no ``.npz`` suffix is added. Its
      directory must exist. A symbolic link there is replaced, not followed.
    model: a :class:`Model`, or bare :class:`mfjax.Params` (saved as a ``Model``
      of them alone). Its arrays must be concrete (``save`` cannot run under
      ``jit``) and finite: a model with NaN or inf parameters raises
      ``ValueError`` (a diverged fit; ``TrainResult.best_params`` is finite).

  Raises:
    TypeError: ``model`` is not a ``Model``/``Params``, or a part of it has the
      wrong type.
    ValueError: inconsistent shapes, non-finite parameters or scale, id maps not
      sorted or of the wrong length, settings that are not JSON, or ``path`` is a
      directory.
    FileNotFoundError: the directory of ``path`` does not exist.
    OSError: writing failed (no permission, disk full, a name longer than the
      file system allows): the same ``OSError`` subclass, naming ``path``
      (``filename``), never the temporary file.

  Examples:
    >>> import os, tempfile, jax, mfjax
    >>> from mfjax import checkpoint
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...   path = os.path.join(tmp, "model.npz")
    ...   checkpoint.save(path, checkpoint.Model(params, settings={"rank": 3}))
    ...   checkpoint.load(path).settings
    {'rank': 3}
  """
  path = _check_path(path)
  entries = _entries(model)  # Every check, before anything touches the disk.
  with atomic_write(path) as file:
    _write_npz(file, entries)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, text: bool = False):
  """A file to write ``path`` through, atomically: what :func:`save` uses.

  Yields a file open on a temporary file in ``path``'s directory (binary, or
  UTF-8 text with ``text``); when the ``with`` block ends it is synced and
  renamed onto ``path``, so a reader sees the old file or the new one, never a
  half-written one. An exception in the block, ``KeyboardInterrupt`` or SIGTERM
  (see :func:`save`) removes the temporary file and leaves ``path`` as it was;
  temporary files that killed writers left are removed once stale (over 10
  minutes untouched). An ``OSError`` of the writing names ``path``, never the
  temporary file.

  Raises:
    FileNotFoundError: the directory of ``path`` does not exist.
    ValueError: ``path`` is a directory.
    OSError: a name longer than the file system allows; writing failed.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise FileNotFoundError(errno.ENOENT, f"directory {directory} does not exist", path)
  if os.path.isdir(path):
    raise ValueError(f"path must name a file; {path} is a directory.")
  name_max = _name_max(directory)
  if name_max and len(os.fsencode(os.path.basename(path))) > name_max:
    raise OSError(errno.ENAMETOOLONG, f"file name longer than {name_max} bytes", path)
  _remove_stale_temp_files(directory)
  with _sigterm_removes_temp_file():
    try:
      fd, temp = _temp_file(directory, name_max or _NAME_MAX)
    except OSError as e:
      raise _naming(e, path) from None
    try:
      opened = (
        os.fdopen(fd, "w", encoding="utf-8", newline="")
        if text
        else (os.fdopen(fd, "wb"))
      )
      with opened as file:
        yield file
        file.flush()
        os.fsync(file.fileno())
      os.replace(temp, path)
    except BaseException as e:
      with contextlib.suppress(OSError):
        os.unlink(temp)
      # Errors of the temporary file name the user's path; others (a file the
      # block read, say) stay as they are.
      if isinstance(e, OSError) and e.filename in (None, temp):
        raise _naming(e, path) from None
      raise
  _fsync_directory(directory)


# What a truncated or corrupted archive raises while zipfile and numpy read it.
_READ_ERRORS = (
  zipfile.BadZipFile,
  zipfile.LargeZipFile,
  zlib.error,
  struct.error,
  EOFError,
  OSError,
  ValueError,
  KeyError,
  NotImplementedError,
  RuntimeError,  # RecursionError among them.
  OverflowError,
)


def _file_kind(mode: int) -> str:
  kinds = [
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
  ]
  return next((kind for test, kind in kinds if test(mode)), "a special file")


def _open_regular(path: str):
  """``(file, size)``: ``path`` opened for reading if it is a regular file.

  Anything else is refused before it is opened, so that a FIFO cannot block
  load and a device cannot feed it endless bytes; O_NONBLOCK covers a file
  swapped for a FIFO between the two looks.
  """
  mode = os.stat(path).st_mode  # A missing file: FileNotFoundError passes through.
  if not stat.S_ISREG(mode):
    raise ModelFileError(
      f"{path}: is {_file_kind(mode)}, not a regular file; not an mfjax model file."
    )
  flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
  fd = os.open(path, flags)
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      raise ModelFileError(
        f"{path}: is {_file_kind(info.st_mode)}, not a regular file; not an mfjax "
        "model file."
      )
    return os.fdopen(fd, "rb"), info.st_size
  except BaseException:
    os.close(fd)
    raise


def _check_end_record(path: str, file, size: int) -> int | None:
  """Refuses a zip whose end record declares more members, or a larger central
  directory, than a model file has, before zipfile reads that directory, and
  returns the member count it declares.

  The record is found as zipfile finds it; where there is none, zipfile says so.
  """
  tail = min(size, _END.size + 0xFFFF)
  file.seek(size - tail)
  data = file.read(tail)
  at = len(data) - _END.size
  if not (at >= 0 and data[at : at + 4] == b"PK\x05\x06" and data[-2:] == b"\0\0"):
    at = data.rfind(b"PK\x05\x06")
  if at < 0 or len(data) - at < _END.size:
    return None
  record = _END.unpack_from(data, at)
  count, directory = record[4], record[5]
  start = size - tail + at - _LOCATOR64.size - _END64.size
  if (count == 0xFFFF or directory == 0xFFFFFFFF) and start >= 0:
    file.seek(start)
    zip64 = file.read(_END64.size + _LOCATOR64.size)
    if zip64[:4] == b"PK\x06\x06" and zip64[_END64.size :][:4] == b"PK\x06\x07":
      count, directory = _END64.unpack_from(zip64)[7:9]
  if count > _MAX_MEMBERS:
    raise ModelFileError(
      f"{path}: its zip directory declares {count} members; a model file has at "
      f"most {_MAX_MEMBERS}, and it is not read."
    )
  if directory > _MAX_DIRECTORY_BYTES:
    raise ModelFileError(
      f"{path}: its zip directory declares {directory} bytes; a model file's is at "
      f"most {_MAX_DIRECTORY_BYTES}, and it is not read."
    )
  return count


def _members(path: str, file, size: int, bound: int) -> dict[str, zipfile.ZipInfo]:
  """The archive's members by entry name, checked from its central directory."""
  count = _check_end_record(path, file, size)
  with zipfile.ZipFile(file) as archive:  # Reads the central directory only.
    infos = archive.infolist()
  if len(infos) > _MAX_MEMBERS:
    raise ModelFileError(
      f"{path}: holds {len(infos)} members; a model file has at most "
      f"{_MAX_MEMBERS}, and it is not read."
    )
  if count is not None and count != len(infos):  # Entries hidden in a comment.
    raise ModelFileError(
      f"{path}: is truncated or corrupted (its zip directory lists {len(infos)} "
      f"members; its end record says {count})."
    )
  members, declared = {}, 0
  for info in infos:
    key = info.filename.removesuffix(".npy")
    if key in members:
      raise ModelFileError(
        f"{path}: holds two members named {key!r}; it is corrupted or was not "
        "written by mfjax.save."
      )
    if not 0 <= info.header_offset <= info.header_offset + info.compress_size <= size:
      raise ModelFileError(
        f"{path}: is truncated or corrupted (member {info.filename!r} declares "
        f"{info.compress_size} bytes at offset {info.header_offset} of a "
        f"{size}-byte file)."
      )
    stored = info.compress_type == zipfile.ZIP_STORED
    if stored and info.compress_size != info.file_size:
      raise ModelFileError(
        f"{path}: is truncated or corrupted (member {info.filename!r} is stored, "
        f"{info.compress_size} bytes, but declares {info.file_size})."
      )
    _data_offset(path, file, info, size)  # A damaged name must not hide an entry.
    members[key] = info
    declared += info.file_size
  if declared > bound:
    raise ModelFileError(
      f"{path}: its members declare {declared} bytes of data, over "
      f"{_MAX_EXPANSION} times the file's {size} bytes; it is refused unread (a "
      "zip bomb, or corrupted)."
    )
  return members


def _data_offset(path: str, file, info: zipfile.ZipInfo, size: int) -> int:
  """Where a member's data starts, after its local header, which must be there
  and name it as the central directory does."""

  def corrupted(why):
    return ModelFileError(
      f"{path}: is truncated or corrupted (member {info.filename!r} {why})."
    )

  file.seek(info.header_offset)
  local = file.read(_LOCAL.size)
  if len(local) < _LOCAL.size or local[:4] != b"PK\x03\x04":
    raise corrupted("has no local header")
  name_size, extra_size = _LOCAL.unpack(local)[-2:]
  encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
  if file.read(name_size) != info.orig_filename.encode(encoding):
    raise corrupted("has another name in its local header")
  offset = info.header_offset + _LOCAL.size + name_size + extra_size
  if offset + info.compress_size > size:
    raise corrupted("ends past the end of the file")
  return offset


class _Member:
  """One member's bytes as a file: inflated as they are read, and never more than
  the size its central directory entry declares."""

  def __init__(self, path: str, key: str, file, info: zipfile.ZipInfo, size: int):
    self.path, self.key, self.file, self.info = path, key, file, info
    self.where = f"{path}: entry {key!r}"
    self.position = _data_offset(path, file, info, size)
    if info.flag_bits & 0x1:
      raise ModelFileError(f"{self.where} is encrypted; model files never are.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
      raise ModelFileError(
        f"{self.where} uses zip compression method {info.compress_type}; mfjax reads "
        "stored and deflated members."
      )
    self.raw_left, self.left, self.crc = info.compress_size, info.file_size, 0
    deflated = info.compress_type == zipfile.ZIP_DEFLATED
    self.inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None

  def corrupted(self, why: str) -> ModelFileError:
    return ModelFileError(
      f"{self.path}: is truncated or corrupted (entry {self.key!r} {why})."
    )

  def _raw(self, n: int) -> bytes:
    n = min(n, self.raw_left)
    self.file.seek(self.position)
    data = self.file.read(n)
    if len(data) < n:
      raise self.corrupted("ends early")
    self.position += n
    self.raw_left -= n
    return data

  def _inflate(self, n: int) -> bytes:
    inflater = self.inflater
    while not inflater.eof:
      data = inflater.unconsumed_tail
      if not data:
        if not self.raw_left:
          raise self.corrupted("has compressed data that ends early")
        data = self._raw(_CHUNK_BYTES)
      out = inflater.decompress(data, n)
      if out:
        return out
      if not inflater.eof and len(inflater.unconsumed_tail) == len(data):
        raise self.corrupted("has compressed data that makes no progress")
    return b""

  def read(self, n: int = -1) -> bytes:
    n = self.left if n is None or n < 0 else min(n, self.left)
    if n == 0:
      return b""
    data = self._raw(n) if self.inflater is None else self._inflate(n)
    self.left -= len(data)
    self.crc = zlib.crc32(data, self.crc)
    return data

  def finish(self) -> None:
    """Checks that the member held exactly its declared bytes, and their CRC."""
    if self.left:
      raise self.corrupted(f"ends {self.left} bytes short of its declared size")
    if self.inflater is not None and self._inflate(1):
      raise self.corrupted("holds more data than its declared size")
    if self.crc != self.info.CRC:
      raise self.corrupted("fails its CRC-32 check")


# What NumPy's .npy header parser (ast.literal_eval, tokenize, descr_to_dtype)
# raises on a corrupted header.
_HEADER_ERRORS = (
  ValueError,
  SyntaxError,
  TypeError,
  KeyError,
  RecursionError,
  MemoryError,
  tokenize.TokenError,
)


class _Header(NamedTuple):
  """What a member's .npy header declares."""

  shape: tuple[int, ...]
  fortran_order: bool
  dtype: np.dtype


def _nesting(text: bytes) -> int:
  depth = deepest = 0
  for byte in text:
    depth += (byte in b"([{") - (byte in b")]}")
    deepest = max(deepest, depth)
  return deepest


def _npy_header(member: _Member, bound: int) -> _Header:
  """The header of a member's .npy array, checked, with nothing of its data read."""
  where = member.where
  try:
    version = np.lib.format.read_magic(member)
  except ValueError:
    raise ModelFileError(f"{where} is not a .npy array; it is corrupted.") from None
  readers = {
    (1, 0): (np.lib.format.read_array_header_1_0, "<H"),
    (2, 0): (np.lib.format.read_array_header_2_0, "<I"),
  }
  if version not in readers:
    raise ModelFileError(
      f"{where} is a .npy array of version {version[0]}.{version[1]}; mfjax "
      "reads versions 1.0 and 2.0 (what NumPy writes for plain arrays)."
    )
  reader, length_format = readers[version]
  prefix = member.read(struct.calcsize(length_format))
  if len(prefix) < struct.calcsize(length_format):
    raise member.corrupted("ends inside its .npy header")
  (length,) = struct.unpack(length_format, prefix)
  if length > _MAX_HEADER_BYTES:
    raise ModelFileError(
      f"{where} has a .npy header of {length} bytes; plain arrays need under "
      f"{_MAX_HEADER_BYTES}, and it is not read."
    )
  text = member.read(length)
  if len(text) < length:
    raise member.corrupted("ends inside its .npy header")
  if _nesting(text) > _MAX_HEADER_NESTING:
    raise ModelFileError(
      f"{where} has a deeply nested .npy header (a nested structured dtype); "
      "mfjax model files hold plain arrays of numbers and text."
    )
  try:
    with warnings.catch_warnings():  # The Python 2 header fallback warns.
      warnings.simplefilter("ignore")
      header = _Header(
        *reader(io.BytesIO(prefix + text), max_header_size=_MAX_HEADER_BYTES)
      )
  except _HEADER_ERRORS as e:
    raise ModelFileError(
      f"{where} has a corrupted .npy header ({str(e)[:200]})."
    ) from None
  _check_header(where, header, bound)
  return header


def _check_header(where: str, header: _Header, bound: int) -> None:
  dtype, shape = header.dtype, header.shape
  if dtype.hasobject:
    raise ModelFileError(
      f"{where} holds pickled (object) data; mfjax model files never do, and it "
      "is not loaded."
    )
  if dtype.fields is not None or dtype.subdtype is not None:
    raise ModelFileError(
      f"{where} has a structured dtype ({dtype.descr!r:.100}); mfjax model files "
      "hold plain arrays of numbers and text."
    )
  if dtype.kind not in _ARRAY_KINDS or dtype.itemsize == 0:
    raise ModelFileError(
      f"{where} has dtype {dtype}; mfjax model files hold integers, floats and "
      "text only."
    )
  if len(shape) > _MAX_NDIM or any(not 0 <= n <= bound for n in shape):
    raise ModelFileError(f"{where} declares an impossible shape {shape!r:.100}.")


class _Archive:
  """A model file's members, each read only after what the zip directory and its
  .npy header declare has been checked against the file's size."""

  def __init__(self, path: str, file, size: int):
    self.path, self.file, self.size = path, file, size
    self.bound = _MAX_EXPANSION * size + _SLACK_BYTES
    self.members = _members(path, file, size, self.bound)

  def _open(self, key: str) -> tuple[_Member, _Header]:
    member = _Member(self.path, key, self.file, self.members[key], self.size)
    header = _npy_header(member, self.bound)
    where = member.where
    nbytes = math.prod(header.shape) * header.dtype.itemsize
    if nbytes != member.left:
      raise ModelFileError(
        f"{where} declares shape {header.shape} of {header.dtype} ({nbytes} "
        f"bytes), but its member holds {member.left} bytes of data; it is "
        "corrupted."
      )
    return member, header

  def header(self, key: str) -> _Header:
    return self._open(key)[1]

  def read(self, key: str) -> np.ndarray:
    member, header = self._open(key)
    try:
      flat = np.empty(member.left, np.uint8)
    except MemoryError:
      raise ModelFileError(
        f"{member.where} needs {member.left} bytes, more memory than is free."
      ) from None
    done = 0
    while done < flat.size:
      chunk = member.read(min(_CHUNK_BYTES, flat.size - done))
      if not chunk:
        raise member.corrupted("ends early")
      flat[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
      done += len(chunk)
    member.finish()
    order = "F" if header.fortran_order else "C"
    return flat.view(header.dtype).reshape(header.shape, order=order)


def _read_entries(path: str, file, size: int) -> dict[str, np.ndarray]:
  """The known entries of the archive, after the magic and format checks; their
  data is read once the shapes their headers declare agree."""
  archive = _Archive(path, file, size)
  present = set(archive.members)
  if "magic" not in present or _as_str(archive.read("magic")) != _MAGIC:
    raise ModelFileError(
      f"{path}: not an mfjax model file (an .npz without the mfjax marker; "
      "model files are written by mfjax.save)."
    )
  if "format_version" not in present:
    raise ModelFileError(f"{path}: has no format_version entry; it is corrupted.")
  version = archive.read("format_version")
  if version.shape != () or version.dtype.kind not in "iu" or int(version) < 1:
    raise ModelFileError(
      f"{path}: format_version must be an integer >= 1; got {version!r}."
    )
  if int(version) > FORMAT_VERSION:
    raise ModelFileError(
      f"{path}: written by a newer mfjax (format {int(version)}); this mfjax "
      f"reads format <= {FORMAT_VERSION}; upgrade mfjax to load it."
    )
  kind = _as_str(archive.read("kind")) if "kind" in present else None
  if kind not in _KINDS:
    raise ModelFileError(
      f"{path}: kind must be one of {', '.join(_KINDS)}; got {kind!r}."
    )
  required = ["mfjax_version", "dtypes", *Params._fields]
  if kind == "Model":
    required += ["settings", "scale"]
    if present & set(_MAP_KEYS):
      required += _MAP_KEYS
  missing = [key for key in required if key not in present]
  if missing:
    raise ModelFileError(
      f"{path}: missing entries {', '.join(missing)}; it is truncated or was not "
      "written by mfjax.save."
    )
  optional = [key for key in ("objective", "rated") if key in present]
  keys = required + optional
  _check_shapes(path, {key: archive.header(key) for key in keys})
  entries = {key: archive.read(key) for key in keys}
  entries["kind"] = kind
  return entries


def _check_shapes(path: str, headers: dict[str, _Header]) -> None:
  """Checks the shapes that the headers declare against each other, before any
  data is read: factors ``[U, k]`` and ``[I, k]``, and what goes with them."""
  uf, itf = headers["user_factors"].shape, headers["item_factors"].shape
  if len(uf) != 2 or len(itf) != 2 or uf[1] != itf[1]:
    raise ModelFileError(
      f"{path}: user_factors and item_factors must be [U, k] and [I, k]; got "
      f"shapes {uf} and {itf}."
    )
  expected = {"user_bias": (uf[0],), "item_bias": (itf[0],), "mean": ()}
  for field, shape in expected.items():
    if headers[field].shape != shape:
      raise ModelFileError(
        f"{path}: {field} must have shape {shape} to match user_factors "
        f"{uf} and item_factors {itf}; got {headers[field].shape}."
      )
  for key, size in (("user_ids", uf[0]), ("item_ids", itf[0])):
    if key in headers and headers[key].shape != (size,):
      raise ModelFileError(
        f"{path}: {key} must be {size} integer or str ids (one per row of the "
        f"factors); got shape {headers[key].shape} and dtype {headers[key].dtype}."
      )
  rated = headers.get("rated")
  if rated is not None and (len(rated.shape) != 2 or rated.shape[1] != 2):
    raise ModelFileError(
      f"{path}: rated must be integer pairs [n, 2]; got {rated.dtype} {rated.shape}."
    )


def _as_str(array: np.ndarray) -> str | None:
  if array.shape != () or array.dtype.kind != "U":
    return None
  return str(array)


def _decode_params(path: str, entries: dict) -> Params:
  dtypes = entries["dtypes"]
  if dtypes.shape != (len(Params._fields),) or dtypes.dtype.kind != "U":
    raise ModelFileError(
      f"{path}: dtypes must be {len(Params._fields)} dtype names; got {dtypes!r}."
    )
  leaves = {}
  for field, name in zip(Params._fields, dtypes.tolist(), strict=True):
    try:
      dtype = np.dtype(jnp.dtype(name))
    except (TypeError, ValueError):
      dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      raise ModelFileError(
        f"{path}: {field} must have a floating dtype; the file says {name!r}."
      )
    stored = entries[field]
    bits = np.dtype(f"u{dtype.itemsize}")
    # astype: a file from a machine of the other byte order reads right too.
    if stored.dtype.type is dtype.type:
      leaf = stored.astype(dtype, copy=False)
    elif stored.dtype.type is bits.type:
      leaf = stored.astype(bits, copy=False).view(dtype)  # Raw bits, e.g. bfloat16.
    else:
      raise ModelFileError(
        f"{path}: {field} is stored as {stored.dtype}; expected {name} (or its raw "
        "bits)."
      )
    if not np.isfinite(leaf).all():
      raise ModelFileError(f"{path}: {field} holds NaN or inf values.")
    leaves[field] = leaf
  return Params(**{field: jnp.asarray(leaf) for field, leaf in leaves.items()})


def _decode_scale(path: str, key: str, array: np.ndarray) -> tuple[float, float]:
  if array.shape != (2,) or array.dtype.kind not in "fiu":
    raise ModelFileError(f"{path}: {key} must be 2 numbers (lo, hi); got {array!r}.")
  lo, hi = (float(v) for v in array)
  if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
    raise ModelFileError(
      f"{path}: {key} must be finite numbers with lo <= hi; got ({lo}, {hi})."
    )
  return lo, hi


def _decode_ids(path: str, key: str, ids: np.ndarray, size: int) -> np.ndarray:
  if ids.dtype.kind not in "iuU" or ids.shape != (size,):
    raise ModelFileError(
      f"{path}: {key} must be {size} integer or str ids (one per row of the "
      f"factors); got shape {ids.shape} and dtype {ids.dtype}."
    )
  if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
    raise ModelFileError(f"{path}: {key} must be sorted and unique.")
  return ids


def _decode_model(path: str, entries: dict, params: Params) -> Model:
  text = _as_str(entries["settings"])
  try:
    settings = json.loads(text) if text is not None else text
  except ValueError:
    settings = text = None
  if text is None or not (settings is None or isinstance(settings, dict)):
    raise ModelFileError(f"{path}: settings must be JSON text of an object or null.")
  id_maps = None
  if "user_ids" in entries:
    counts = entries["id_maps_counts"]
    if counts.shape != (len(_COUNTS),) or counts.dtype.kind not in "iu":
      raise ModelFileError(f"{path}: id_maps_counts must be 3 integers.")
    id_maps = IdMaps(
      users=_decode_ids(
        path, "user_ids", entries["user_ids"], params.user_factors.shape[0]
      ),
      items=_decode_ids(
        path, "item_ids", entries["item_ids"], params.item_factors.shape[0]
      ),
      scale=_decode_scale(path, "id_maps_scale", entries["id_maps_scale"]),
      **{field: int(n) for field, n in zip(_COUNTS, counts.tolist(), strict=True)},
    )
  rated = entries.get("rated")
  if rated is not None:
    n_users, n_items = params.user_factors.shape[0], params.item_factors.shape[0]
    problem = _rated_problem(rated, n_users, n_items)
    if problem:
      raise ModelFileError(f"{path}: rated {problem}.")
  scale = entries["scale"]
  objective = "rating"  # Files before 0.3 hold rating models only.
  if "objective" in entries:
    objective = _as_str(entries["objective"])
    if objective not in _OBJECTIVES:
      raise ModelFileError(f"{path}: objective must be one of {_OBJECTIVES}.")
  return Model(
    params=params,
    id_maps=id_maps,
    settings=settings,
    scale=None if scale.shape == (0,) else _decode_scale(path, "scale", scale),
    mfjax_version=_as_str(entries["mfjax_version"]),
    objective=objective,
    rated=rated,
  )


def load(path: str | os.PathLike) -> Model:
  """Loads what :func:`save` wrote, without unpickling anything.

  Args:
    path: the file.

  Returns:
    A :class:`Model` (bare :class:`mfjax.Params` were saved as a ``Model``
    without id maps, settings or scale, and come back as one). The parameters
    are ``jax.Array`` s on the default device with their saved dtypes
    (float64 only with ``jax_enable_x64``; without it JAX holds them as float32);
    the id maps are NumPy arrays. A model saved with ``scale=None`` and id maps
    comes back with ``scale = id_maps.scale``.

  Raises:
    FileNotFoundError: there is no such file (other ``OSError`` s of opening it
      pass through too).
    ModelFileError: (a ``ValueError``) the file is not an mfjax model file (not an
      ``.npz``, or one without the mfjax marker; a directory, FIFO or device),
      was written by a newer format, is truncated or corrupted, holds pickled
      data, misses entries, or holds inconsistent shapes, non-floating or
      non-finite parameters, a bad scale or settings that are not a JSON object.
      The message names the file and what is wrong.

  A model file is untrusted input: the member count, sizes, shapes and dtypes are
  checked from the zip directory and the ``.npy`` headers before any array data
  is read, so that a hostile file (a zip bomb, a header declaring a huge shape,
  an object, structured or nested dtype, duplicate members) is refused with
  little memory used; no member is read past the size it declares.

  Examples:
    >>> import os, tempfile, jax, mfjax
    >>> from mfjax import checkpoint
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...   path = os.path.join(tmp, "params.npz")
    ...   checkpoint.save(path, params)
    ...   loaded = checkpoint.load(path)
    >>> same = (loaded.params.user_factors == params.user_factors).all()
    >>> type(loaded).__name__, bool(same)
    ('Model', True)
  """
  path = _check_path(path)
  file, size = _open_regular(path)  # Opening errors (no such file) pass through.
  with file:
    head = file.read(6)
    if not head:
      raise ModelFileError(f"{path}: is empty; not an mfjax model file.")
    if head.startswith(b"\x93NUMPY"):
      raise ModelFileError(f"{path}: is a single .npy array, not an mfjax model file.")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
      raise ModelFileError(
        f"{path}: not an mfjax model file (not an .npz archive; model files are "
        "written by mfjax.save)."
      )
    file.seek(0)
    try:
      entries = _read_entries(path, file, size)
    except ModelFileError:
      raise
    except _READ_ERRORS as e:
      raise ModelFileError(
        f"{path}: is truncated or corrupted ({type(e).__name__}: {e})."
      ) from None
  try:
    params = _decode_params(path, entries)
    if entries["kind"] == "Params":  # Written by mfjax 0.1 for bare params.
      return Model(params, mfjax_version=_as_str(entries["mfjax_version"]))
    return _decode_model(path, entries, params)
  except ModelFileError:
    raise
  except (TypeError, ValueError) as e:  # Anything the checks above did not foresee.
    raise ModelFileError(f"{path}: holds unexpected data ({e}).") from None
