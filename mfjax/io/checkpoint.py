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

import json
import math
import numbers
import os
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mfjax import validation
from mfjax.io.atomic import atomic_write
from mfjax.io.npzread import READ_ERRORS, Archive, Header, ModelFileError, open_regular
from mfjax.serving.model import OBJECTIVES, Model
from mfjax.types import IdMaps, Params
from mfjax.version import __version__

__all__ = ["save", "load", "FORMAT_VERSION"]

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
  if model.objective not in OBJECTIVES:
    raise ValueError(
      f"model.objective must be one of {OBJECTIVES}; got {model.objective!r}."
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
    if maps.scale is None:  # check_scale's own words would say None is fine.
      raise TypeError(
        "model.id_maps.scale must be a pair (lo, hi): a model file keeps the "
        "rating scale of its ids (IdMaps(users, items, scale=(lo, hi))); got None."
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


def save(path: str | os.PathLike, model: Model | Params) -> None:
  """Saves a model to one ``.npz`` file, atomically.

  The file is written to a temporary file in the same directory, synced to disk
  and then renamed onto ``path``: a reader sees the old file or the new one, never
  a half-written one, and a failure leaves the old file as it was and no temporary
  file behind. Nothing is pickled; see the module docstring for the layout.

  The temporary file is named ``.mfjax-<random hex>.tmp``, short whatever the
  length of ``path``'s name. An exception (``KeyboardInterrupt`` included)
  removes it; what a killed process leaves (a signal the program does not turn
  into an exception, ``kill -9``, a power cut) the next ``save`` into that
  directory removes once it is over 10 minutes old, so that a save running in
  another process is never disturbed. ``save`` installs no signal handler (the
  ``mfjax`` command turns SIGTERM into an exception for its own saves).

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
    >>> from mfjax.io import checkpoint
    >>> params = mfjax.init_params(jax.random.key(0), 4, 6, 3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...   path = os.path.join(tmp, "model.npz")
    ...   checkpoint.save(path, mfjax.Model(params, settings={"rank": 3}))
    ...   checkpoint.load(path).settings
    {'rank': 3}
  """
  path = _check_path(path)
  entries = _entries(model)  # Every check, before anything touches the disk.
  with atomic_write(path) as file:
    _write_npz(file, entries)


def _read_entries(path: str, file, size: int) -> dict[str, np.ndarray]:
  """The known entries of the archive, after the magic and format checks; their
  data is read once the shapes their headers declare agree."""
  archive = Archive(path, file, size)
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


def _check_shapes(path: str, headers: dict[str, Header]) -> None:
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
    # Checked again in the dtype JAX computes in: float64 1e300 is inf in
    # float32 (without jax_enable_x64).
    computed = jax.dtypes.canonicalize_dtype(dtype)
    with np.errstate(over="ignore"):
      leaf = leaf.astype(computed, copy=False)
    if not np.isfinite(leaf).all():
      raise ModelFileError(
        f"{path}: {field} holds values beyond the range of {computed}, the "
        "dtype it is computed in."
      )
    leaves[field] = leaf
  problem = _overflow(leaves)
  if problem:
    raise ModelFileError(f"{path}: {problem}")
  return Params(**{field: jnp.asarray(leaf) for field, leaf in leaves.items()})


def _overflow(leaves: dict[str, np.ndarray]) -> str | None:
  """What would overflow when the parameters ``leaves`` (NumPy, in the dtypes
  they are computed in) predict or score a list, or None.

  A prediction is ``mean + b_u + b_i + p_u·q_i``, and ``|p_u·q_i| <= |p_u||q_i|``
  (Cauchy-Schwarz), so the largest biases and norms bound every prediction and
  every partial sum of it: the dot product is computed in the factors' dtype,
  the sum in the dtype all five promote to. Each bound, in float64, must stay
  below half that dtype's largest value (a margin for rounding).
  """

  def largest(x):
    return float(np.max(np.abs(x))) if x.size else 0.0

  def norm(x):  # Row by row in float64, a bounded block at a time.
    most = 0.0
    for start in range(0, len(x), 1 << 16):
      block = x[start : start + (1 << 16)].astype(np.float64)
      most = max(most, float(np.max(np.einsum("ij,ij->i", block, block))))
    return math.sqrt(most)

  factors = jnp.result_type(leaves["user_factors"], leaves["item_factors"])
  promoted = jnp.result_type(*leaves.values())
  with np.errstate(over="ignore"):
    dot = norm(leaves["user_factors"]) * norm(leaves["item_factors"])
    bounds = [
      ("a dot product of the factors", dot, factors),
      (
        "a prediction",
        sum(largest(leaves[f]) for f in ("mean", "user_bias", "item_bias")) + dot,
        promoted,
      ),
    ]
  for what, bound, dtype in bounds:
    largest_value = float(jnp.finfo(dtype).max)
    if not bound < largest_value / 2:  # NaN too.
      return (
        f"its parameters are too large to compute with in {np.dtype(dtype)}: "
        f"{what} could reach {bound:.3g} (the dtype's largest value is "
        f"{largest_value:.3g}); the file is damaged or not from a fit."
      )
  return None


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
  except (ValueError, RecursionError):  # RecursionError: nested too deep.
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
    if objective not in OBJECTIVES:
      raise ModelFileError(f"{path}: objective must be one of {OBJECTIVES}.")
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
    >>> from mfjax.io import checkpoint
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
  file, size = open_regular(path)  # Opening errors (no such file) pass through.
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
    except READ_ERRORS as e:
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
