"""Saving and loading models (mfjax.io.checkpoint): round trips, atomic writes, bad
files, golden files, and the round-trip property of the robustness section."""

import errno
import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mfjax
from mfjax.io import checkpoint
from mfjax.io.npzread import ModelFileError
from mfjax.serving.model import Model
from mfjax.version import __version__
from tests.conftest import STOP_MID_SAVE, hypothesis_settings, planted_matrix

DATA = Path(__file__).resolve().parent / "golden"

# The golden model, written out here rather than imported from make_golden.py, so
# that the test pins the numbers the committed files must hold.
GOLDEN_PREDICTIONS = [
  [4.25, 3.875, 3.25, 3.1875],
  [4.5, 3.25, 3.25, 2.375],
  [4.25, 2.5, 3.5, 3.875],
  [4.0, 3.5, 3.5, 4.75],
  [4.25, 2.625, 3.375, 3.4375],
]


def _params(seed=0, n_users=5, n_items=4, rank=2, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  return mfjax.Params(
    user_factors=jnp.asarray(rng.random((n_users, rank)), dtype),
    item_factors=jnp.asarray(rng.random((n_items, rank)), dtype),
    user_bias=jnp.asarray(rng.random(n_users), dtype),
    item_bias=jnp.asarray(rng.random(n_items), dtype),
    mean=jnp.asarray(3.25, dtype),
  )


def _str_maps(n_users=5, n_items=4):
  return mfjax.IdMaps(
    users=np.array([f"user{j:02d}" for j in range(n_users)]),
    items=np.array([f"item-é{j}" for j in range(n_items)]),
    scale=(1.0, 5.0),
    n_lines=17,
    n_duplicates=2,
    n_unknown=3,
  )


def _int_maps(n_users=5, n_items=4):
  return mfjax.IdMaps(
    users=np.arange(n_users, dtype=np.int64) * 10 + 1,
    items=np.arange(n_items, dtype=np.int64) * 3 + 2,
    scale=(0.5, 5.0),
  )


def _assert_params_identical(loaded, params):
  assert type(loaded) is mfjax.Params
  for field in mfjax.Params._fields:
    got, want = getattr(loaded, field), getattr(params, field)
    assert isinstance(got, jax.Array), field
    assert got.dtype == want.dtype and got.shape == want.shape, field
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=field)


def _assert_maps_identical(loaded, maps):
  for field in ("users", "items"):
    got, want = getattr(loaded, field), getattr(maps, field)
    assert got.dtype == want.dtype, field
    np.testing.assert_array_equal(got, want)
  assert (loaded.scale, loaded.n_lines, loaded.n_duplicates, loaded.n_unknown) == (
    maps.scale,
    maps.n_lines,
    maps.n_duplicates,
    maps.n_unknown,
  )


def _assert_same_predictions(loaded, params, pairs=False):
  args = [()]
  if pairs:  # One unknown (-1) user among them.
    args.append((jnp.array([0, 4, 2, -1]), jnp.array([3, 0, 1, 2])))
  for arg in args:
    np.testing.assert_array_equal(
      np.asarray(mfjax.predict(loaded, *arg).astype(jnp.float32)),
      np.asarray(mfjax.predict(params, *arg).astype(jnp.float32)),
    )


# Round trips.


@pytest.mark.parametrize("maps", [_str_maps, _int_maps], ids=["str_ids", "int_ids"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_model_round_trip_is_exact(tmp_path, maps, dtype):
  params, id_maps = _params(1, dtype=dtype), maps()
  settings = {"rank": 2, "steps": 10, "learning_rate": 0.02, "ensemble": 6, "x": None}
  path = tmp_path / "model.npz"
  checkpoint.save(path, Model(params, id_maps, settings, (1.0, 5.0)))
  loaded = checkpoint.load(path)

  assert type(loaded) is Model
  _assert_params_identical(loaded.params, params)
  _assert_same_predictions(loaded.params, params, pairs=True)
  _assert_maps_identical(loaded.id_maps, id_maps)
  assert loaded.settings == settings
  assert loaded.scale == (1.0, 5.0)
  assert loaded.mfjax_version == mfjax.__version__ == __version__ == "0.3.0"
  # Raw ids still find their rows.
  assert loaded.id_maps.user_index(id_maps.users[[3, 1]]).tolist() == [3, 1]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_bare_params_come_back_as_a_model_of_them(tmp_path, dtype):
  params = _params(2, 7, 3, 4, dtype)
  checkpoint.save(tmp_path / "p.npz", params)
  loaded = checkpoint.load(tmp_path / "p.npz")
  assert type(loaded) is Model
  assert loaded == Model(params, mfjax_version=__version__)._replace(
    params=loaded.params
  )
  _assert_params_identical(loaded.params, params)
  _assert_same_predictions(loaded.params, params)
  # The same file as the Model of the params alone.
  checkpoint.save(tmp_path / "m.npz", Model(params))
  assert (tmp_path / "m.npz").read_bytes() == (tmp_path / "p.npz").read_bytes()


def test_bare_params_are_written_as_kind_model(tmp_path):
  checkpoint.save(tmp_path / "p.npz", _params())
  with np.load(tmp_path / "p.npz", allow_pickle=False) as archive:
    assert str(archive["kind"]) == "Model"
    assert str(archive["settings"]) == "null" and archive["scale"].shape == (0,)
    assert str(archive["mfjax_version"]) == __version__
    assert "user_ids" not in archive.files


def test_float64_and_mixed_dtypes_round_trip_with_x64(tmp_path):
  with jax.enable_x64(True):
    params = _params(3, dtype=jnp.float64)
    params = params._replace(user_bias=params.user_bias.astype(jnp.bfloat16))
    params = params._replace(mean=jnp.asarray(1 / 3, jnp.float64))
    checkpoint.save(tmp_path / "p.npz", params)
    loaded = checkpoint.load(tmp_path / "p.npz").params
    assert loaded.mean.dtype == jnp.float64 and float(loaded.mean) == 1 / 3
    _assert_params_identical(loaded, params)


def test_model_without_maps_orhypothesis_settings(tmp_path):
  params = _params(4)
  checkpoint.save(tmp_path / "m.npz", Model(params))
  loaded = checkpoint.load(tmp_path / "m.npz")
  assert (loaded.id_maps, loaded.settings, loaded.scale) == (None, None, None)
  _assert_params_identical(loaded.params, params)


def test_scale_defaults_to_the_id_maps_scale(tmp_path):
  checkpoint.save(tmp_path / "m.npz", Model(_params(), _int_maps()))
  assert checkpoint.load(tmp_path / "m.npz").scale == (0.5, 5.0)
  # An explicit scale wins, and the maps keep their own.
  checkpoint.save(tmp_path / "m.npz", Model(_params(), _int_maps(), scale=(1, 4)))
  loaded = checkpoint.load(tmp_path / "m.npz")
  assert loaded.scale == (1.0, 4.0) and loaded.id_maps.scale == (0.5, 5.0)


def test_object_ids_and_numpy_settings_are_converted(tmp_path):
  maps = _str_maps()
  maps = mfjax.IdMaps(maps.users.astype(object), maps.items.astype(object), (1, 5))
  settings = {"seed": np.int64(7), "l2": np.float32(0.5), "scale": (1, 5)}
  checkpoint.save(tmp_path / "m.npz", Model(_params(), maps, settings))
  loaded = checkpoint.load(tmp_path / "m.npz")
  assert loaded.id_maps.users.dtype.kind == "U"
  assert loaded.id_maps.users.tolist() == maps.users.tolist()
  # JSON has no tuples; NumPy scalars become plain numbers.
  assert loaded.settings == {"seed": 7, "l2": 0.5, "scale": [1, 5]}


def test_metrics_of_a_loaded_model_are_identical(tmp_path):
  _, matrix, _ = planted_matrix(0, 20, 15, 2, 0.4)
  ratings, planted = mfjax.ratings_from_dense(matrix), _params(0, 20, 15, 2)
  checkpoint.save(tmp_path / "m.npz", Model(planted, settings={"k": 2}))
  loaded = checkpoint.load(tmp_path / "m.npz")
  _assert_params_identical(loaded.params, planted)
  assert float(mfjax.rmse(loaded.params, ratings)) == float(
    mfjax.rmse(planted, ratings)
  )


def test_the_file_is_a_plain_npz_without_pickle(tmp_path):
  path = tmp_path / "model"  # No suffix: written exactly where asked.
  checkpoint.save(path, Model(_params(), _str_maps(), {"rank": 2}))
  assert sorted(os.listdir(tmp_path)) == ["model"]
  with np.load(path, allow_pickle=False) as archive:
    entries = {key: archive[key] for key in archive.files}
  assert str(entries["magic"]) == "mfjax-model"
  assert int(entries["format_version"]) == checkpoint.FORMAT_VERSION == 1
  assert str(entries["kind"]) == "Model"
  assert json.loads(str(entries["settings"])) == {"rank": 2}
  assert all(a.dtype != object for a in entries.values())
  np.testing.assert_array_equal(entries["user_bias"], _params().user_bias)


def test_bfloat16_is_stored_as_raw_bits(tmp_path):
  params = _params(dtype=jnp.bfloat16)
  checkpoint.save(tmp_path / "p.npz", params)
  with np.load(tmp_path / "p.npz", allow_pickle=False) as archive:
    assert archive["user_factors"].dtype == np.uint16
    assert archive["dtypes"].tolist() == ["bfloat16"] * 5
    np.testing.assert_array_equal(
      archive["user_factors"], np.asarray(params.user_factors).view(np.uint16)
    )


def test_same_model_same_bytes(tmp_path):
  model = Model(_params(), _str_maps(), {"rank": 2})
  checkpoint.save(tmp_path / "a.npz", model)
  checkpoint.save(tmp_path / "b.npz", model)
  assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_a_compressed_npz_of_the_same_entries_loads(tmp_path):
  checkpoint.save(tmp_path / "m.npz", Model(_params(), _int_maps()))
  with np.load(tmp_path / "m.npz") as archive:
    np.savez_compressed(tmp_path / "c.npz", **dict(archive))
  _assert_params_identical(checkpoint.load(tmp_path / "c.npz").params, _params())


# Atomic writes.


def _old_file(tmp_path):
  path = tmp_path / "model.npz"
  checkpoint.save(path, Model(_params(0), settings={"old": True}))
  return path, path.read_bytes()


def _fail_midway(monkeypatch, exception):
  real = np.lib.format.write_array
  calls = []

  def write_array(fp, array, *args, **kwargs):
    calls.append(array)
    if len(calls) == 6:  # After the header entries and a parameter.
      fp.write(b"half an array")
      raise exception
    return real(fp, array, *args, **kwargs)

  monkeypatch.setattr(np.lib.format, "write_array", write_array)
  return calls


@pytest.mark.parametrize("exception", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
  tmp_path, monkeypatch, exception
):
  path, old = _old_file(tmp_path)
  calls = _fail_midway(monkeypatch, exception)
  with pytest.raises(type(exception)):
    checkpoint.save(path, Model(_params(1), settings={"old": False}))
  assert len(calls) == 6
  assert sorted(os.listdir(tmp_path)) == ["model.npz"]
  assert path.read_bytes() == old
  monkeypatch.undo()
  assert checkpoint.load(path).settings == {"old": True}


def test_a_failed_rename_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
  path, old = _old_file(tmp_path)

  def replace(src, dst):
    assert os.path.getsize(src) > 0  # The new file was complete by then.
    raise PermissionError("no")

  monkeypatch.setattr(os, "replace", replace)
  with pytest.raises(PermissionError):
    checkpoint.save(path, Model(_params(1)))
  assert sorted(os.listdir(tmp_path)) == ["model.npz"]
  assert path.read_bytes() == old


def test_a_failed_first_write_creates_nothing(tmp_path, monkeypatch):
  _fail_midway(monkeypatch, OSError("disk full"))
  with pytest.raises(OSError, match="disk full"):
    checkpoint.save(tmp_path / "new.npz", _params())
  assert os.listdir(tmp_path) == []


def test_save_replaces_an_existing_file(tmp_path):
  path, _ = _old_file(tmp_path)
  checkpoint.save(path, Model(_params(1), settings={"old": False}))
  assert checkpoint.load(path).settings == {"old": False}
  assert sorted(os.listdir(tmp_path)) == ["model.npz"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_saved_file_gets_the_umask_permissions(tmp_path):
  umask = os.umask(0o027)
  try:
    checkpoint.save(tmp_path / "m.npz", _params())
  finally:
    os.umask(umask)
  assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o640


# Temporary files: short names, errors that name the user's path, no litter.

_TEMP = r"\.mfjax-[0-9a-f]+\.tmp"


def _temp_files(directory):
  return sorted(n for n in os.listdir(directory) if re.fullmatch(_TEMP, n))


def test_a_name_of_250_bytes_saves_and_loads(tmp_path):
  path = tmp_path / ("m" * 246 + ".npz")  # The temp name never grows with it.
  checkpoint.save(path, Model(_params(), settings={"long": True}))
  assert os.listdir(tmp_path) == [path.name]
  assert checkpoint.load(path).settings == {"long": True}
  checkpoint.save(path, Model(_params(1)))  # Replacing it works too.
  _assert_params_identical(checkpoint.load(path).params, _params(1))


def test_a_name_too_long_for_the_file_system_is_an_error_naming_it(tmp_path):
  path = tmp_path / ("m" * 300 + ".npz")
  with pytest.raises(OSError) as info:
    checkpoint.save(path, _params())
  assert info.value.errno == errno.ENAMETOOLONG
  assert info.value.filename == str(path) and "longer than" in str(info.value)
  assert os.listdir(tmp_path) == []


def test_a_missing_directory_is_an_error_naming_the_path(tmp_path):
  path = tmp_path / "no" / "m.npz"
  with pytest.raises(FileNotFoundError, match="does not exist") as info:
    checkpoint.save(path, _params())
  assert info.value.filename == str(path) and info.value.errno == errno.ENOENT
  assert str(path) in str(info.value)


def _assert_names_the_user_path(error, path):
  assert error.filename == str(path) and str(path) in str(error)
  assert ".mfjax-" not in str(error) and error.filename2 is None


@pytest.mark.skipif(
  os.name != "posix" or os.geteuid() == 0, reason="POSIX, and root ignores modes"
)
def test_a_read_only_directory_is_an_error_naming_the_path(tmp_path):
  directory = tmp_path / "ro"
  directory.mkdir()
  directory.chmod(0o500)
  try:
    with pytest.raises(PermissionError) as info:
      checkpoint.save(directory / "m.npz", _params())
  finally:
    directory.chmod(0o700)
  _assert_names_the_user_path(info.value, directory / "m.npz")
  assert os.listdir(directory) == []


def test_errors_on_the_temp_file_name_the_users_path(tmp_path, monkeypatch):
  """What the OS says about the temporary file is said about ``path``: creating
  it (a read-only directory, for root too), writing it, renaming it."""
  path, old = _old_file(tmp_path)
  real_open = os.open

  def refuse_create(name, flags, *args):
    if flags & os.O_CREAT:
      raise PermissionError(errno.EACCES, "Permission denied", name)
    return real_open(name, flags, *args)

  monkeypatch.setattr(os, "open", refuse_create)
  with pytest.raises(PermissionError) as info:
    checkpoint.save(path, _params(1))
  _assert_names_the_user_path(info.value, path)
  assert info.value.errno == errno.EACCES
  monkeypatch.undo()

  # As a write() to the temporary file fails: an errno, no file name.
  _fail_midway(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
  with pytest.raises(OSError, match="No space left on device") as info:
    checkpoint.save(path, _params(1))
  _assert_names_the_user_path(info.value, path)
  monkeypatch.undo()

  def replace(src, dst):
    raise IsADirectoryError(errno.EISDIR, "Is a directory", src, dst)

  monkeypatch.setattr(os, "replace", replace)
  with pytest.raises(IsADirectoryError) as info:
    checkpoint.save(path, _params(1))
  _assert_names_the_user_path(info.value, path)
  assert sorted(os.listdir(tmp_path)) == ["model.npz"] and path.read_bytes() == old


def test_stale_temp_files_are_removed_by_the_next_save(tmp_path):
  stale, fresh = tmp_path / ".mfjax-0123456789abcdef.tmp", tmp_path / ".mfjax-42.tmp"
  others = [tmp_path / ".model.npz.0123456789ab.tmp", tmp_path / "notes.tmp"]
  an_hour_ago = time.time() - 3600
  for path in [stale, fresh, *others]:
    path.write_bytes(b"half a model")
    if path != fresh:
      os.utime(path, (an_hour_ago, an_hour_ago))
  (tmp_path / ".mfjax-abc.tmp").mkdir()  # Not a file: never touched.
  os.utime(tmp_path / ".mfjax-abc.tmp", (an_hour_ago, an_hour_ago))
  checkpoint.save(tmp_path / "m.npz", _params())
  # A fresh one may be a save in progress in another process: it stays.
  assert _temp_files(tmp_path) == [".mfjax-42.tmp", ".mfjax-abc.tmp"]
  assert all(path.exists() for path in others)


def test_save_leaves_the_sigterm_handler_as_it_was(tmp_path):
  before = signal.getsignal(signal.SIGTERM)
  checkpoint.save(tmp_path / "m.npz", _params())
  assert signal.getsignal(signal.SIGTERM) == before


# A child process that stops in the middle of writing the temporary file.
_INTERRUPTED_SAVE = (
  STOP_MID_SAVE
  + """
import mfjax
from mfjax.io import checkpoint

shapes = [(5, 2), (4, 2), 5, 4, ()]
params = mfjax.Params(*(np.full(shape, 7.0, np.float32) for shape in shapes))
checkpoint.save(sys.argv[1], params)
"""
)


def _interrupt_a_save(tmp_path, signum):
  path, old = _old_file(tmp_path)
  root = Path(__file__).resolve().parents[2]
  env = {**os.environ, "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu"}
  child = subprocess.Popen(
    [sys.executable, "-c", _INTERRUPTED_SAVE, str(path)],
    stderr=subprocess.PIPE,
    env=env,
    cwd=tmp_path,
  )
  try:
    assert child.stderr.readline() == b"writing\n"
    assert len(_temp_files(tmp_path)) == 1  # The child is mid-write.
    child.send_signal(signum)
    assert child.wait(60) == -signum
  finally:
    child.kill()
    child.wait()
    child.stderr.close()
  assert path.read_bytes() == old  # Never a half-written model.
  return path


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=str)
@pytest.mark.slow
def test_a_signal_mid_save_leaves_the_old_file_and_the_next_save_cleans_up(
  tmp_path, signum
):
  # The library installs no handler, so SIGTERM kills as SIGKILL does (the
  # command line turns SIGTERM into an exception: tests/test_cli.py).
  path = _interrupt_a_save(tmp_path, signum)
  (left,) = _temp_files(tmp_path)  # A killed process runs no cleanup.
  checkpoint.save(tmp_path / "other.npz", _params(2))
  assert _temp_files(tmp_path) == [left]  # Too fresh: it could be a live save.
  an_hour_ago = time.time() - 3600
  os.utime(tmp_path / left, (an_hour_ago, an_hour_ago))
  checkpoint.save(path, Model(_params(1)))
  assert sorted(os.listdir(tmp_path)) == ["model.npz", "other.npz"]
  _assert_params_identical(checkpoint.load(path).params, _params(1))


# Bad arguments to save: nothing is written.


@pytest.mark.parametrize(
  "model, error, match",
  [
    ({"user_factors": 1}, TypeError, "model must be mfjax.Model or mfjax.Params"),
    ((1, 2, 3, 4, 5), TypeError, "model must be mfjax.Model or mfjax.Params; got tu"),
    (Model(params={"a": 1}), TypeError, "model.params must be mfjax.Params"),
    (_params()._replace(user_bias=jnp.zeros(4)), ValueError, "user_bias must have"),
    (
      _params()._replace(item_bias=jnp.array([0.0, np.nan, 0.0, np.inf])),
      ValueError,
      "model.params.item_bias must be finite; it holds 2 NaN",
    ),
    (Model(_params(), settings=[1]), TypeError, "settings must be a dict"),
    (Model(_params(), settings={1: 2}), TypeError, "str keys; got key 1"),
    (Model(_params(), settings={"a": object()}), ValueError, "JSON-serialisable"),
    (Model(_params(), settings={"lr": float("nan")}), ValueError, "JSON"),
    (Model(_params(), id_maps={"users": []}), TypeError, "model.id_maps must be"),
    (Model(_params(), _int_maps(6, 4)), ValueError, r"users must have shape \(5,\)"),
    (Model(_params(), _int_maps(5, 3)), ValueError, r"items must have shape \(4,\)"),
    (
      Model(_params(), mfjax.IdMaps(np.array([1, 3, 2, 4, 5]), np.arange(4), (1, 5))),
      ValueError,
      "users must be sorted and unique",
    ),
    (
      Model(_params(), mfjax.IdMaps(np.arange(5.0), np.arange(4), (1, 5))),
      TypeError,
      "integer or str ids; got an array of dtype float64",
    ),
    (
      Model(_params(), mfjax.IdMaps(np.arange(5), np.arange(4), (1, 5), n_lines=1.5)),
      TypeError,
      "n_lines must be an int",
    ),
    (Model(_params(), scale=(5, 1)), ValueError, "lo <= hi"),
    (Model(_params(), scale=(1, np.inf)), ValueError, "model.scale must be finite"),
    (Model(_params(), scale="1-5"), TypeError, "model.scale must be a pair"),
  ],
)
def test_save_rejects_bad_models(tmp_path, model, error, match):
  with pytest.raises(error, match=match):
    checkpoint.save(tmp_path / "m.npz", model)
  assert os.listdir(tmp_path) == []


def test_save_rejects_bad_paths_and_traced_params(tmp_path):
  with pytest.raises(TypeError, match="path must be a str or os.PathLike; got int"):
    checkpoint.save(3, _params())
  with pytest.raises(ValueError, match="is a directory"):
    checkpoint.save(tmp_path, _params())
  with pytest.raises(FileNotFoundError, match="does not exist"):
    checkpoint.save(tmp_path / "no" / "m.npz", _params())

  def traced(params):
    checkpoint.save(tmp_path / "m.npz", params)

  wide = mfjax.Params(*(np.asarray(leaf, np.longdouble) for leaf in _params()))
  if np.dtype(np.longdouble).itemsize == 16:
    with pytest.raises(TypeError, match="which JAX does not support"):
      checkpoint.save(tmp_path / "m.npz", wide)
  with pytest.raises(TypeError, match="tracer; save needs concrete arrays"):
    jax.jit(traced)(_params())
  assert os.listdir(tmp_path) == []


# Bad files: one clear error each.


def _good(tmp_path, model=None):
  path = tmp_path / "good.npz"
  checkpoint.save(path, Model(_params(), _str_maps(), {"rank": 2}, (1, 5)))
  if model is not None:
    checkpoint.save(path, model)
  with np.load(path, allow_pickle=False) as archive:
    return path, dict(archive)


def _write(tmp_path, entries, **changes):
  """An npz of ``entries`` with ``changes`` (None deletes), written by NumPy."""
  entries = {**entries, **changes}
  entries = {key: value for key, value in entries.items() if value is not None}
  path = tmp_path / "bad.npz"
  np.savez(path, **entries)
  return path


def test_missing_file_is_file_not_found(tmp_path):
  with pytest.raises(FileNotFoundError):
    checkpoint.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize(
  "content, match",
  [
    (b"", "is empty"),
    (b"user\titem\trating\n1\t2\t3\n", r"not an \.npz archive"),
    (pickle.dumps({"user_factors": [1.0]}), r"not an \.npz archive"),
  ],
  ids=["empty", "text", "pickle"],
)
def test_non_npz_files_are_rejected(tmp_path, content, match):
  path = tmp_path / "m.npz"
  path.write_bytes(content)
  with pytest.raises(ModelFileError, match=match) as info:
    checkpoint.load(path)
  assert str(path) in str(info.value)
  assert isinstance(info.value, ValueError)


def test_a_npy_file_is_rejected(tmp_path):
  np.save(tmp_path / "a.npy", np.ones(3))
  with pytest.raises(ModelFileError, match=r"single \.npy array"):
    checkpoint.load(tmp_path / "a.npy")


def test_a_foreign_npz_is_not_a_model_file(tmp_path):
  np.savez(tmp_path / "f.npz", user_factors=np.ones((5, 2)), mean=np.float32(3))
  with pytest.raises(ModelFileError, match="not an mfjax model file"):
    checkpoint.load(tmp_path / "f.npz")
  _, entries = _good(tmp_path)
  path = _write(tmp_path, entries, magic=np.array("other-model"))
  with pytest.raises(ModelFileError, match="not an mfjax model file"):
    checkpoint.load(path)


def test_a_newer_format_asks_for_an_upgrade(tmp_path):
  _, entries = _good(tmp_path)
  # A newer format may change everything else; the version check comes first.
  path = _write(
    tmp_path,
    {"magic": entries["magic"]},
    format_version=np.array(2, np.int64),
    stuff=np.ones(3),
  )
  with pytest.raises(
    ModelFileError,
    match=r"written by a newer mfjax \(format 2\); this mfjax reads format <= 1; "
    "upgrade",
  ):
    checkpoint.load(path)


class _Boom:
  """Unpickling this object would set a flag: the loader must never do that."""

  unpickled = False

  def __reduce__(self):
    return (_Boom._set, ())

  @staticmethod
  def _set():
    _Boom.unpickled = True
    return "boom"


def test_pickled_object_arrays_are_never_unpickled(tmp_path):
  _, entries = _good(tmp_path)
  ids = np.array([_Boom()] * 5, dtype=object)
  path = _write(tmp_path, entries, user_ids=ids)
  with pytest.raises(ModelFileError, match="'user_ids' holds pickled"):
    checkpoint.load(path)
  assert not _Boom.unpickled
  # The marker itself pickled.
  path = _write(tmp_path, entries, magic=np.array([_Boom()], dtype=object))
  with pytest.raises(ModelFileError, match="'magic' holds pickled"):
    checkpoint.load(path)
  np.save(tmp_path / "o.npy", np.array([_Boom()], dtype=object), allow_pickle=True)
  with pytest.raises(ModelFileError, match="single .npy"):
    checkpoint.load(tmp_path / "o.npy")
  assert not _Boom.unpickled


def test_truncated_files_are_rejected_at_every_length(tmp_path):
  path, _ = _good(tmp_path)
  data = path.read_bytes()
  cut = tmp_path / "cut.npz"
  for n in [*range(1, len(data), 97), len(data) - 1]:
    cut.write_bytes(data[:n])
    with pytest.raises(ModelFileError, match="cut.npz: "):
      checkpoint.load(cut)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.slow
def test_corrupted_bytes_are_rejected_or_harmless(tmp_path, compressed):
  model = Model(_params(), _str_maps(), {"rank": 2}, (1.0, 5.0))
  path, entries = _good(tmp_path, model)
  if compressed:
    np.savez_compressed(path, **entries)
  data = path.read_bytes()
  bad = tmp_path / "bad.npz"
  rejected = 0
  for at in range(0, len(data), 7):
    flipped = bytearray(data)
    flipped[at] ^= 0x5A
    bad.write_bytes(bytes(flipped))
    try:
      loaded = checkpoint.load(bad)
    except ModelFileError as e:
      assert "bad.npz: " in str(e)
      rejected += 1
      continue
    # A byte nothing reads (a zip timestamp, say): the model is unchanged.
    _assert_params_identical(loaded.params, model.params)
    _assert_maps_identical(loaded.id_maps, model.id_maps)
    assert loaded[2:4] == model[2:4]
  assert rejected > 0.5 * len(range(0, len(data), 7))  # Most bytes are checked.


def test_a_flipped_data_byte_fails_the_crc(tmp_path):
  path, _ = _good(tmp_path)
  data = bytearray(path.read_bytes())
  at = bytes(data).index(np.asarray(_params().user_factors).tobytes())
  data[at + 3] ^= 0x01  # One bit of one factor.
  path.write_bytes(bytes(data))
  with pytest.raises(ModelFileError, match="truncated or corrupted.*CRC"):
    checkpoint.load(path)


def test_an_entry_that_is_not_npy_is_corrupted(tmp_path):
  path, _ = _good(tmp_path)
  bad = tmp_path / "bad.npz"
  with zipfile.ZipFile(path) as good, zipfile.ZipFile(bad, "w") as out:
    for name in good.namelist():
      data = good.read(name) if name != "user_factors.npy" else b"not an array"
      out.writestr(name, data)
  with pytest.raises(
    ModelFileError, match="bad.npz: entry 'user_factors' is not a .npy"
  ):
    checkpoint.load(bad)


@pytest.mark.parametrize(
  "changes, match",
  [
    ({"item_bias": None}, "missing entries item_bias"),
    ({"dtypes": None, "mean": None}, "missing entries dtypes, mean"),
    ({"item_ids": None}, "missing entries item_ids"),
    ({"settings": None}, "missing entries settings"),
    ({"scale": None}, "missing entries scale"),
    ({"kind": None}, "kind must be one of Model, Params; got None"),
    ({"kind": np.array("Pipeline")}, "got 'Pipeline'"),
    ({"format_version": None}, "no format_version"),
    ({"format_version": np.array(1.0)}, "format_version must be an integer"),
    ({"format_version": np.array(0)}, "format_version must be an integer >= 1"),
    ({"user_bias": np.zeros(4, np.float32)}, r"user_bias must have shape \(5,\)"),
    ({"mean": np.zeros(1, np.float32)}, r"mean must have shape \(\)"),
    ({"item_factors": np.zeros((4, 3), np.float32)}, r"\[U, k\] and \[I, k\]"),
    ({"user_factors": np.zeros(5, np.float32)}, r"\[U, k\] and \[I, k\]"),
    ({"user_ids": np.array(["a", "b", "c", "d"])}, "user_ids must be 5"),
    ({"item_ids": np.arange(4.0)}, "item_ids must be 4 integer or str ids"),
    ({"user_ids": np.array([1, 2, 2, 4, 5])}, "user_ids must be sorted and unique"),
    ({"user_factors": np.zeros((5, 2), np.int32)}, "stored as int32; expected"),
    (
      {"dtypes": np.array(["int32"] * 5), "user_factors": np.zeros((5, 2), np.int32)},
      "user_factors must have a floating dtype; the file says 'int32'",
    ),
    ({"dtypes": np.array(["float99"] * 5)}, "the file says 'float99'"),
    ({"dtypes": np.array(["float32"] * 4)}, "dtypes must be 5 dtype names"),
    ({"mean": np.float32(np.nan)}, "mean holds NaN or inf"),
    # Issue 31: finite in float64, inf in the float32 JAX computes in.
    (
      {"dtypes": np.array(["float32"] * 4 + ["float64"]), "mean": np.float64(1e300)},
      "mean holds values beyond the range of float32",
    ),
    # Issue 31: finite factors whose products overflow (predict gave NaN).
    (
      {
        "user_factors": np.full((5, 2), 1e20, np.float32),
        "item_factors": np.full((4, 2), 1e20, np.float32),
      },
      "too large to compute with in float32: a dot product of the factors",
    ),
    ({"item_bias": np.full(4, 3e38, np.float32)}, r"a prediction could reach 3e\+38"),
    ({"scale": np.array([5.0, 1.0])}, "scale must be finite numbers with lo <= hi"),
    ({"scale": np.array([1.0, np.inf])}, "scale must be finite"),
    ({"id_maps_scale": np.array([1.0])}, r"id_maps_scale must be 2 numbers"),
    ({"id_maps_counts": np.zeros(3)}, "id_maps_counts must be 3 integers"),
    ({"settings": np.array("{rank: 2")}, "settings must be JSON text of an object"),
    ({"settings": np.array("[1, 2]")}, "settings must be JSON text of an object"),
    ({"settings": np.array(["{}"])}, "settings must be JSON text of an object"),
    (  # Nested deeper than Python's recursion limit: json raises RecursionError.
      {"settings": np.array("[" * 100_000 + "]" * 100_000)},
      "settings must be JSON text of an object",
    ),
  ],
)
def test_bad_entries_are_rejected(tmp_path, changes, match):
  _, entries = _good(tmp_path)
  path = _write(tmp_path, entries, **changes)
  with pytest.raises(ModelFileError, match=match) as info:
    checkpoint.load(path)
  assert str(info.value).startswith(f"{path}: ")


def test_zip64_end_records_load(tmp_path, monkeypatch):
  """A model over 4 GB gets zip64 end records; with zipfile's limit lowered a small
  one does, and the directory checks read the counts there."""
  monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 4)
  path, _ = _good(tmp_path)
  monkeypatch.undo()
  data = bytearray(path.read_bytes())
  assert data[-98:-94] == b"PK\x06\x06" and data[-22:-18] == b"PK\x05\x06"
  _assert_params_identical(checkpoint.load(path).params, _params())
  # The plain record may leave the counts and sizes to the zip64 one.
  data[-14:-6] = b"\xff" * 8
  path.write_bytes(bytes(data))
  _assert_params_identical(checkpoint.load(path).params, _params())
  # Where the zip64 record says too many, that is what counts.
  data[-98 + 32 : -98 + 48] = struct.pack("<2Q", 70_000, 70_000)
  path.write_bytes(bytes(data))
  _load_refused(path, "its zip directory declares 70000 members")


def test_unknown_entries_are_ignored(tmp_path):
  _, entries = _good(tmp_path)
  path = _write(tmp_path, entries, optimizer_state=np.ones(3))
  _assert_params_identical(checkpoint.load(path).params, _params())


# Hostile files: resources are checked from the zip directory and the .npy headers
# before any array data is read. Each file is built here, byte by byte where
# zipfile or NumPy would refuse to write it.

_STORED, _DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED


def _npy(array):
  buffer = io.BytesIO()
  np.save(buffer, array, allow_pickle=True)
  return buffer.getvalue()


def _header_text(descr="'<f4'", shape="(5, 2)"):
  return f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}"


def _npy_with_header(text, data=b""):
  """A version 1.0 .npy member with a hand-written header ``text``."""
  header = text.encode("latin1")
  header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
  return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def _member(name, payload, *, method=_STORED, file_size=None, crc=None, flags=0):
  """A zip member: ``payload`` is its data as stored (deflated for _DEFLATED);
  ``file_size`` and ``crc`` are what its directory entry declares."""
  if method == _DEFLATED and file_size is None:
    file_size, crc = len(payload), zlib.crc32(payload)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = deflater.compress(payload) + deflater.flush()
  size = len(payload) if file_size is None else file_size
  crc = zlib.crc32(payload) if crc is None else crc
  return name, payload, method, size, crc, flags


def _zip_bytes(members, *, declared_count=None):
  """A zip archive of ``members``, written as zipfile writes one (1980 dates)."""
  out, directory = bytearray(), bytearray()
  for name, payload, method, size, crc, flags in members:
    raw, offset = name.encode(), len(out)
    fields = (flags, method, 0, 0x21, crc, len(payload), size, len(raw))
    out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, *fields, 0)
    out += raw + payload
    directory += struct.pack(
      "<4s4B4HL2L5HLL", b"PK\x01\x02", 20, 3, 20, 0, *fields, 0, 0, 0, 0, 0, offset
    )
    directory += raw
  count = len(members) if declared_count is None else declared_count
  end = (b"PK\x05\x06", 0, 0, count, count, len(directory), len(out), 0)
  return bytes(out + directory + struct.pack("<4s4H2LH", *end))


def _good_members(tmp_path):
  path, _ = _good(tmp_path)
  with zipfile.ZipFile(path) as archive:
    return {
      i.filename: _member(i.filename, archive.read(i)) for i in archive.infolist()
    }


def _hostile(tmp_path, members, name="hostile.npz", **kwargs):
  path = tmp_path / name
  path.write_bytes(_zip_bytes(list(members), **kwargs))
  return path


def _load_refused(path, match):
  """Loads ``path``, expecting a ModelFileError that names it and matches."""
  with pytest.raises(ModelFileError, match=match) as info:
    checkpoint.load(path)
  assert str(info.value).startswith(f"{path}: ")
  return info.value


def _zip_bomb(n_bytes):
  """A deflate stream of a .npy header and ``n_bytes`` zeros, about 1/1000 the
  size: after a full flush the deflater's output for the same input repeats."""
  rows = n_bytes // 8
  header = _npy_with_header(_header_text(shape=f"({rows}, 2)"))
  deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
  head = deflater.compress(header) + deflater.flush(zlib.Z_FULL_FLUSH)
  block = 1 << 20
  zeros = deflater.compress(bytes(block)) + deflater.flush(zlib.Z_FULL_FLUSH)
  stream = head + zeros * (n_bytes // block) + deflater.flush()
  return stream, len(header) + n_bytes


def test_the_zip_bomb_builder_makes_real_bombs():
  stream, size = _zip_bomb(3 << 20)
  assert len(zlib.decompress(stream, -zlib.MAX_WBITS)) == size
  assert len(stream) < size / 500


def test_a_zip_bomb_is_refused_unread_in_bounded_memory(tmp_path):
  stream, size = _zip_bomb(1 << 30)  # 1 GiB of zeros in about 1 MB.
  members = _good_members(tmp_path)
  # Its CRC is never consulted: the member is refused before its data is read.
  members["user_factors.npy"] = _member(
    "user_factors.npy", stream, method=_DEFLATED, file_size=size, crc=0
  )
  path = _hostile(tmp_path, members.values())
  assert path.stat().st_size < 2 << 20
  tracemalloc.start()
  try:
    error = _load_refused(path, r"declare \d+ bytes of data, over 64 times .*zip bomb")
  finally:
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
  assert f"the file's {path.stat().st_size} bytes" in str(error)
  assert peak < 4 << 20, peak


def _shaped(tmp_path, name, header, data=b"", **kwargs):
  members = _good_members(tmp_path)
  members[name] = _member(name, _npy_with_header(header, data), **kwargs)
  return _hostile(tmp_path, members.values())


@pytest.mark.parametrize(
  "shape, match",
  [
    (
      "(100000, 2)",
      r"declares shape \(100000, 2\) of float32 \(800000 bytes\), but "
      r"its member holds 40 bytes of data",
    ),
    ("(1099511627776, 1048576)", r"declares an impossible shape \(1099511627776"),
    ("(5, -2)", r"declares an impossible shape \(5, -2\)"),
    ("(" + "1, " * 40 + ")", r"declares an impossible shape \(1, 1, 1,"),
    ("(5, 2) * 3", "has a corrupted .npy header"),
  ],
)
def test_a_huge_declared_shape_in_a_tiny_file_is_refused_unread(tmp_path, shape, match):
  data = np.zeros((5, 2), np.float32).tobytes()
  path = _shaped(tmp_path, "user_factors.npy", _header_text(shape=shape), data)
  assert path.stat().st_size < 10_000
  tracemalloc.start()
  try:
    _load_refused(path, "entry 'user_factors' " + match)
  finally:
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
  assert peak < 1 << 20, peak


def test_a_directory_that_lies_about_sizes_is_refused(tmp_path):
  members = _good_members(tmp_path)
  name, payload, *_ = members["item_factors.npy"]
  # A stored member declaring 4 GB that the file does not hold.
  members[name] = _member(name, payload, file_size=0xFFFFFFF0)
  path = _hostile(tmp_path, members.values())
  _load_refused(path, "truncated or corrupted .*'item_factors.npy' is stored")
  # A deflated one declaring 4 GB: over 64 times the file.
  members[name] = _member(name, payload, method=_DEFLATED, file_size=0xFFFFFFF0, crc=0)
  _load_refused(_hostile(tmp_path, members.values()), "zip bomb")


def test_data_beyond_the_declared_size_is_an_error(tmp_path):
  members = _good_members(tmp_path)
  name, payload, *_ = members["user_bias.npy"]
  deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
  longer = deflater.compress(payload + b"\0" * 4000) + deflater.flush()
  # The directory declares the first len(payload) bytes, with their CRC.
  members[name] = _member(
    name, longer, method=_DEFLATED, file_size=len(payload), crc=zlib.crc32(payload)
  )
  path = _hostile(tmp_path, members.values())
  _load_refused(path, "'user_bias' holds more data than its declared size")
  # And less than declared: a stream that ends early.
  deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
  shorter = deflater.compress(payload[:-8]) + deflater.flush()
  members[name] = _member(
    name, shorter, method=_DEFLATED, file_size=len(payload), crc=zlib.crc32(payload)
  )
  _load_refused(_hostile(tmp_path, members.values()), "'user_bias' ends early")


def _nested_descr(depth):
  descr = "'<f4'"
  for _ in range(depth):
    descr = f"[('a', {descr})]"
  return descr


def _nested_dtype(depth):
  dtype = np.dtype(np.float32)
  for _ in range(depth):
    dtype = np.dtype([("a", dtype)])
  return dtype


@pytest.mark.parametrize("name", ["user_factors", "magic", "dtypes", "settings"])
@pytest.mark.parametrize(
  "npy, match",
  [
    (
      lambda: _npy_with_header(
        _header_text(_nested_descr(150)),
        bytes(40),
      ),
      "has a deeply nested .npy header",
    ),
    (lambda: _npy(np.zeros(1, _nested_dtype(40))), "has a deeply nested .npy header"),
    (
      lambda: _npy(np.zeros((5, 2), [("a", "<f4"), ("b", "<i4")])),
      r"has a structured dtype",
    ),
    (lambda: _npy(np.zeros((5, 2), "<f4,<f4")), "has a structured dtype"),
    (lambda: _npy(np.array([[_Boom()] * 2] * 5, object)), "holds pickled"),
    (lambda: _npy(np.zeros((5, 2), "V4")), r"has dtype \|V4"),
    (lambda: _npy(np.zeros((5, 2), "M8[s]")), r"has dtype datetime64\[s\]"),
  ],
  ids=[
    "nested-header",
    "nested-dtype",
    "structured",
    "record",
    "object",
    "void",
    "date",
  ],
)
def test_object_structured_and_nested_dtypes_are_refused(tmp_path, name, npy, match):
  members = _good_members(tmp_path)
  members[f"{name}.npy"] = _member(f"{name}.npy", npy())
  path = _hostile(tmp_path, members.values())
  _load_refused(path, f"entry '{name}' {match}")
  assert not _Boom.unpickled


def test_a_header_too_long_to_be_a_plain_array_is_refused_unread(tmp_path):
  header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2), }"
  header += b" " * 99_000 + b"\n"
  npy = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header + bytes(40)
  members = _good_members(tmp_path)
  members["user_factors.npy"] = _member("user_factors.npy", npy)
  path = _hostile(tmp_path, members.values())
  _load_refused(path, r"'user_factors' has a .npy header of \d{5} bytes")


def test_too_many_members_are_refused_before_the_directory_is_read(tmp_path):
  members = list(_good_members(tmp_path).values())
  extra = [_member(f"x{j}.npy", _npy(np.zeros(1))) for j in range(300)]
  n = len(members) + len(extra)
  path = _hostile(tmp_path, members + extra)
  _load_refused(path, f"its zip directory declares {n} members; a model file has")
  # An end record that understates the count: the directory itself is counted.
  path = _hostile(tmp_path, members + extra, declared_count=17)
  _load_refused(path, f"holds {n} members; a model file has at most")
  # A directory too large for any model file.
  long_names = [_member("n" * 60_000 + f"{j}.npy", b"") for j in range(10)]
  path = _hostile(tmp_path, members + long_names)
  _load_refused(
    path, r"its zip directory declares \d+ bytes; a model file's is at most"
  )


@pytest.mark.parametrize("second", ["user_factors.npy", "user_factors"])
def test_duplicate_member_names_are_refused(tmp_path, second):
  members = _good_members(tmp_path)
  decoy = _member(second, _npy(np.full((5, 2), 7.0, np.float32)))
  path = _hostile(tmp_path, [*members.values(), decoy])
  _load_refused(path, "holds two members named 'user_factors'")


@pytest.mark.parametrize(
  "change, match",
  [
    ({"flags": 1}, "'mean' is encrypted"),
    (
      {"method": 12, "file_size": 132, "crc": 0},
      "'mean' uses zip compression method 12",
    ),
  ],
)
def test_encrypted_and_unknown_compression_are_refused(tmp_path, change, match):
  members = _good_members(tmp_path)
  name, payload, *_ = members["mean.npy"]
  members[name] = _member(name, payload, **change)
  _load_refused(_hostile(tmp_path, members.values()), match)


def test_a_member_whose_local_name_differs_is_refused(tmp_path):
  path, _ = _good(tmp_path)
  data = path.read_bytes()
  at = data.index(b"mean.npy")  # The first: the local header's.
  path.write_bytes(data[:at] + b"meaN.npy" + data[at + 8 :])
  _load_refused(path, r"truncated or corrupted \(member 'mean.npy' has another name")


def _ranking_model():
  """A model with every optional entry: id maps, objective and training pairs."""
  rated = np.array([[0, 1], [2, 3], [4, 0]], np.int32)
  return Model(
    _params(), _str_maps(), {"rank": 2}, (1.0, 5.0), objective="ranking", rated=rated
  )


def test_a_damaged_directory_cannot_hide_an_entry(tmp_path):
  """An entry dropped or renamed in the directory alone would load another model
  (no id maps, a rating objective): the end record's count and the local
  headers' names catch it."""
  path = tmp_path / "m.npz"
  checkpoint.save(path, _ranking_model())
  data = path.read_bytes()
  names = zipfile.ZipFile(path).namelist()

  def directory_name(name):  # Where the directory entry of ``name`` names it.
    at = data.index(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name.encode():
      at = data.index(b"PK\x01\x02", at + 1)
    return at + 46

  # The comment length of the entry of 'scale': those after it become its comment.
  at = directory_name("scale.npy") - 13  # The high byte.
  path.write_bytes(data[:at] + b"\x5a" + data[at + 1 :])
  listed = names.index("scale.npy") + 1
  _load_refused(
    path, f"its zip directory lists {listed} members; its end record says {len(names)}"
  )
  # The directory's name of 'objective' (not the local header's).
  at = directory_name("objective.npy")
  path.write_bytes(data[:at] + b"O" + data[at + 1 :])
  _load_refused(path, "member 'Objective.npy' has another name in its local header")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_fifo_is_refused_without_blocking(tmp_path):
  path = tmp_path / "model.npz"
  os.mkfifo(path)
  outcome = []

  def load():
    try:
      checkpoint.load(path)
    except Exception as e:  # Reported below; a blocked open never gets here.
      outcome.append(e)

  thread = threading.Thread(target=load, daemon=True)
  thread.start()
  thread.join(30)
  if thread.is_alive():  # Unblock it before failing, so that nothing hangs.
    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    pytest.fail("load blocked on a FIFO")
  assert type(outcome[0]) is ModelFileError
  assert str(outcome[0]) == (
    f"{path}: is a named pipe (FIFO), not a regular file; not an mfjax model file."
  )


def test_a_directory_or_device_is_refused(tmp_path):
  _load_refused(tmp_path, "is a directory, not a regular file")
  if os.path.exists("/dev/zero"):
    _load_refused(Path("/dev/zero"), "is a character device, not a regular file")
  # A link to a model file is followed; a link to a directory is refused.
  path, _ = _good(tmp_path)
  if hasattr(os, "symlink"):
    (tmp_path / "link.npz").symlink_to(path)
    _assert_params_identical(checkpoint.load(tmp_path / "link.npz").params, _params())
    (tmp_path / "dirlink.npz").symlink_to(tmp_path)
    _load_refused(tmp_path / "dirlink.npz", "is a directory")


@pytest.mark.slow  # benchmarks/fast_loop.py: faster tests run its lines.
@pytest.mark.robustness
@hypothesis_settings(60)
@given(
  compressed=st.booleans(),
  changes=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    min_size=1,
    max_size=4,
  ),
  cut=st.none() | st.floats(0, 1),
)
def test_corrupted_files_are_rejected_or_load_the_same_model(
  scratch, compressed, changes, cut
):
  """Any bytes changed, or a file cut short: a ModelFileError, or the model."""
  model = _ranking_model()
  path = scratch / "corrupted.npz"
  checkpoint.save(path, model)
  if compressed:
    with np.load(path, allow_pickle=False) as archive:
      np.savez_compressed(path, **dict(archive))
  data = bytearray(path.read_bytes())
  for where, xor in changes:
    data[int(where * len(data))] ^= xor
  if cut is not None:
    data = data[: int(cut * len(data))]
  path.write_bytes(bytes(data))
  try:
    loaded = checkpoint.load(path)
  except ModelFileError as e:
    assert str(e).startswith(f"{path}: ")
    return
  _assert_params_identical(loaded.params, model.params)
  _assert_maps_identical(loaded.id_maps, model.id_maps)
  assert loaded[2:4] == model[2:4] and loaded.objective == model.objective
  np.testing.assert_array_equal(loaded.rated, model.rated)


# Golden files written by format 1 (tests/io/golden/make_golden.py).


def _golden_params_values():
  return dict(
    user_factors=[[0.5, -0.25], [1.0, 0.0], [0.0, 1.0], [-0.5, 0.5], [0.25, 0.75]],
    item_factors=[[1.0, 0.5], [0.0, -1.0], [0.5, 0.5], [-1.0, 0.25]],
    user_bias=[0.125, -0.25, 0.0, 0.5, -0.125],
    item_bias=[0.25, 0.0, -0.5, 0.125],
    mean=3.5,
  )


def _check_golden_params(params, dtype):
  for field, values in _golden_params_values().items():
    leaf = getattr(params, field)
    assert leaf.dtype == dtype, field
    assert np.asarray(leaf, np.float64).tolist() == values, field
  pred = mfjax.predict(params).astype(jnp.float32)
  assert np.asarray(pred).tolist() == GOLDEN_PREDICTIONS


def test_golden_model_with_str_ids():
  model = checkpoint.load(DATA / "model_v1.npz")
  _check_golden_params(model.params, jnp.float32)
  maps = model.id_maps
  assert maps.users.tolist() == ["alice", "bob", "carol", "dave", "erin"]
  assert maps.items.tolist() == ["i1", "i2", "i3", "i4"]
  assert (maps.scale, maps.n_lines, maps.n_duplicates, maps.n_unknown) == (
    (1.0, 5.0),
    12,
    1,
    0,
  )
  assert model.settings == {
    "rank": 2,
    "epochs": 10,
    "learning_rate": 0.02,
    "l2": 10.0,
    "seeds": 6,
  }
  assert model.scale == (1.0, 5.0)
  assert model.mfjax_version == "0.1.0"
  users = maps.user_index(["dave", "zoe"])
  items = maps.item_index(["i4", "i1"])
  pred = mfjax.predict(model.params, users, items, scale=model.scale)
  assert np.asarray(pred).tolist() == [4.75, 3.75]  # zoe: 3.5 + 0.25, unknown.


def test_golden_model_with_int_ids():
  model = checkpoint.load(DATA / "model_int_ids_v1.npz")
  _check_golden_params(model.params, jnp.float32)
  assert model.id_maps.users.dtype == np.int64
  assert model.id_maps.users.tolist() == [3, 7, 10, 42, 100]
  assert model.id_maps.items.tolist() == [1, 2, 5, 9]
  assert model.settings is None
  assert model.scale == model.id_maps.scale == (0.5, 5.0)
  assert model.id_maps.n_lines == 11
  assert model.id_maps.user_index([42]).tolist() == [3]


def test_golden_bfloat16_params_of_kind_params_load_as_a_model():
  # mfjax 0.1 wrote bare params as kind "Params", without settings or scale.
  with np.load(DATA / "params_bf16_v1.npz", allow_pickle=False) as archive:
    assert str(archive["kind"]) == "Params" and "settings" not in archive.files
  model = checkpoint.load(DATA / "params_bf16_v1.npz")
  assert type(model) is Model
  assert (model.id_maps, model.settings, model.scale) == (None, None, None)
  assert model.mfjax_version == "0.1.0"
  _check_golden_params(model.params, jnp.bfloat16)


# The entries that format 1 defines for each kind of file (module docstring of
# mfjax.io.checkpoint), in writing order.
_PARAMS_ENTRIES = [
  "magic",
  "format_version",
  "mfjax_version",
  "kind",
  *mfjax.Params._fields,
  "dtypes",
]
_MODEL_ENTRIES = [*_PARAMS_ENTRIES, "settings", "scale"]
_MAP_ENTRIES = ["user_ids", "item_ids", "id_maps_scale", "id_maps_counts"]


def _golden_models():
  """The models of the golden files, by file name (as golden/make_golden.py)."""
  values = _golden_params_values()
  params = mfjax.Params(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})
  str_maps = mfjax.IdMaps(
    np.array(["alice", "bob", "carol", "dave", "erin"]),
    np.array(["i1", "i2", "i3", "i4"]),
    (1.0, 5.0),
    12,
    1,
    0,
  )
  int_maps = mfjax.IdMaps(
    np.array([3, 7, 10, 42, 100], np.int64),
    np.array([1, 2, 5, 9], np.int64),
    (0.5, 5.0),
    n_lines=11,
  )
  settings = json.loads(
    '{"rank": 2, "epochs": 10, "learning_rate": 0.02, "l2": 10.0, "seeds": 6}'
  )
  return {
    "model_v1.npz": Model(params, str_maps, settings, (1.0, 5.0)),
    "model_int_ids_v1.npz": Model(params, int_maps),
    "params_bf16_v1.npz": mfjax.Params(
      **{k: jnp.asarray(v, jnp.bfloat16) for k, v in values.items()}
    ),
  }


@pytest.mark.parametrize("name", sorted(_golden_models()))
def test_the_writer_still_writes_the_golden_format(tmp_path, name):
  """Saving a golden model now gives the entries of the committed file.

  Two entries differ by design: ``mfjax_version`` (the writer's version), and
  ``kind`` of the bare params, which mfjax 0.1 wrote as ``"Params"`` without the
  Model-only entries and which are now written as a Model of the params alone:
  ``settings`` ``"null"`` and an empty ``scale``, which load reads back as None.
  Every other entry the format defines is the same, dtype and value.
  """
  model = _golden_models()[name]
  checkpoint.save(tmp_path / name, model)
  with (
    np.load(tmp_path / name, allow_pickle=False) as new,
    np.load(DATA / name, allow_pickle=False) as old,
  ):
    maps = _MAP_ENTRIES if "user_ids" in old.files else []
    assert new.files == _MODEL_ENTRIES + maps
    bare = isinstance(model, mfjax.Params)
    assert old.files == (_PARAMS_ENTRIES if bare else _MODEL_ENTRIES) + maps
    assert (str(new["kind"]), str(old["kind"])) == (
      "Model",
      "Params" if bare else "Model",
    )
    assert (str(new["mfjax_version"]), str(old["mfjax_version"])) == (
      __version__,
      "0.1.0",
    )
    for key in old.files:
      if key not in ("mfjax_version", "kind"):
        assert new[key].dtype == old[key].dtype, key
        np.testing.assert_array_equal(new[key], old[key], err_msg=key)
    if bare:  # The Model-only entries of a Model without settings or scale.
      assert str(new["settings"]) == "null" and new["scale"].shape == (0,)
  # Both load to the same Model.
  fresh, golden = checkpoint.load(tmp_path / name), checkpoint.load(DATA / name)
  _assert_params_identical(fresh.params, golden.params)
  assert (fresh.settings, fresh.scale) == (golden.settings, golden.scale)
  if golden.id_maps is None:
    assert fresh.id_maps is None
  else:
    _assert_maps_identical(fresh.id_maps, golden.id_maps)


# --- the round-trip property (robustness section) --------------------------------

_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
# Text ids: no control or BOM character, no surrounding space, not all digits.
_TEXT_IDS = st.text(
  st.characters(exclude_categories=("Cs", "Cc"), exclude_characters=":,;|\t\n\r\ufeff"),
  min_size=1,
  max_size=5,
).filter(lambda s: s == s.strip() and not s.lstrip("-").isdigit())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
  """A folder for the files the property tests write."""
  return tmp_path_factory.mktemp("checkpoint")


@pytest.mark.robustness
@hypothesis_settings(25)
@given(st.data())
@pytest.mark.slow
def test_save_then_load_is_the_identity(scratch, data):
  n_users = data.draw(st.integers(1, 6), label="n_users")
  n_items = data.draw(st.integers(1, 5), label="n_items")
  rank = data.draw(st.integers(1, 3), label="rank")
  dtype = data.draw(st.sampled_from(_DTYPES), label="dtype")
  # Drawn as float32 and cast to the dtype under test before saving.
  values = st.integers(-255, 255).map(lambda n: n / 4)

  def table(*shape):
    return jnp.asarray(data.draw(hnp.arrays(np.float32, shape, elements=values)), dtype)

  params = mfjax.Params(
    table(n_users, rank), table(n_items, rank), table(n_users), table(n_items), table()
  )
  if data.draw(st.booleans(), label="bare params"):
    saved, expected = params, Model(params)
  else:
    text_ids = data.draw(st.booleans(), label="text ids")
    ids = _TEXT_IDS if text_ids else st.integers(-(2**62), 2**62)
    users = sorted(data.draw(st.sets(ids, min_size=n_users, max_size=n_users)))
    items = sorted(data.draw(st.sets(ids, min_size=n_items, max_size=n_items)))
    lo = data.draw(st.floats(-10, 10), label="lo")
    scale = (lo, lo + data.draw(st.floats(0, 10), label="width"))
    maps = mfjax.IdMaps(
      users=np.array(users, dtype=str if text_ids else np.int64),
      items=np.array(items, dtype=str if text_ids else np.int64),
      scale=scale,
      n_lines=data.draw(st.integers(0, 10**6), label="n_lines"),
    )
    settings_ = data.draw(
      st.dictionaries(_TEXT_IDS, st.integers(-5, 5) | st.booleans() | _TEXT_IDS),
      label="settings",
    )
    saved = expected = Model(params, id_maps=maps, settings=settings_)
  path = scratch / "round_trip.npz"
  mfjax.save(path, saved)
  loaded = mfjax.load(path)
  assert type(loaded) is Model and loaded.mfjax_version == __version__
  for got, want in zip(loaded.params, params, strict=True):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(
      np.asarray(got, np.float32), np.asarray(want, np.float32)
    )
  if expected.id_maps is None:
    assert (loaded.id_maps, loaded.settings, loaded.scale) == (None, None, None)
  else:
    np.testing.assert_array_equal(loaded.id_maps.users, expected.id_maps.users)
    np.testing.assert_array_equal(loaded.id_maps.items, expected.id_maps.items)
    assert loaded.id_maps.users.dtype.kind == expected.id_maps.users.dtype.kind
    assert loaded.scale == expected.id_maps.scale
    assert loaded.settings == expected.settings
    assert loaded.id_maps.n_lines == expected.id_maps.n_lines


def test_a_float16_model_with_large_item_norms_but_small_predictions_loads(tmp_path):
  # The overflow check bounds what is computed in float16 (the dot products),
  # not each norm: items of norm 300 (300² overflows float16's 65504) with
  # users of norm 0.01 predict within a rating scale.
  params = _params()
  params = params._replace(
    user_factors=np.full(params.user_factors.shape, 0.005, np.float16),
    item_factors=np.full(params.item_factors.shape, 212.0, np.float16),
  )
  checkpoint.save(tmp_path / "half.npz", params)
  loaded = checkpoint.load(tmp_path / "half.npz")
  np.testing.assert_array_equal(loaded.params.item_factors, params.item_factors)


def test_a_model_whose_id_maps_have_no_scale_is_refused_in_words_that_fit(tmp_path):
  # check_scale's message said "a pair (lo, hi) or None; got NoneType None".
  params = mfjax.init_params(jax.random.key(0), 3, 4, 2)
  maps = mfjax.IdMaps(np.array([1, 2, 3]), np.array([10, 11, 12, 13]), None)
  path = tmp_path / "m.npz"
  with pytest.raises(TypeError, match=r"keeps the rating scale .* got None\.$"):
    mfjax.save(path, mfjax.Model(params, maps))
  assert not path.exists()
