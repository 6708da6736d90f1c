"""Compiled fit programs kept on disk, so that a later ``mfjax fit`` of the same
shapes skips tracing, lowering and compiling.

JAX's persistent compilation cache (which the command line turns on, see
``app._enable_compilation_cache``) skips XLA's compile, but a hit still traces
and lowers the program to compute its key: 1.9 s of the 4.4 s that a cached
``mfjax fit ua.base`` took (``benchmarks/cold_start.py``, RESULTS.md "Cold
start"). This keeps the compiled executable itself (``jax.experimental.
serialize_executable``), under a key that names everything the program depends
on: the plan's settings and the inputs' shapes, dtypes and tree, the source
of mfjax, the versions of jax and jaxlib, the backend and its devices, the
processor, the compiler options and the JAX settings that change a trace. Any
file that does not load (another version, a damaged or foreign file), or
whose first run fails, is ignored and the program compiled as before.

Only one-process, one-device fits are kept (spread programs name their
devices) and never one with a progress bar (host callbacks do not serialise).
Files live in ``programs/`` beside JAX's cache; at most :data:`MAX_FILES`
(the least recently used go first). ``MFJAX_COMPILATION_CACHE=0`` turns both
off. A file is loaded only if it belongs to this user and nobody else can write
it or its folder: loading an executable runs code, so the folder must be as
private as the user's own site-packages.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import re
import stat
from pathlib import Path

__all__ = ["compile_or_load", "folder", "key", "load", "source_digest", "MAX_FILES"]

MAX_FILES = 32  # About 1.6 MB each for MovieLens 100k's default fit.
_SUFFIX = ".mfjax-program"


def compile_or_load(program, inputs: tuple, recipe: tuple, *, compile=None):
  """``program`` compiled for ``inputs`` (``ensemble.compile_program``), or
  the same executable read back from an earlier run.

  Args:
    program: the plan's jitted fit.
    inputs: its arguments.
    recipe: printable settings that fix what ``program`` is apart from its
      inputs' shapes (e.g. the plan's settings), and the compile options of
      ``compile`` where it has its own.
    compile: ``(program, inputs) -> compiled``; default
      ``ensemble.compile_program`` (the fit's compiler options).

  Returns:
    A callable compiled program: ``compiled(*inputs)``.
  """
  from mfjax.fitting import ensemble

  compile = compile or ensemble.compile_program
  where = folder()
  name = None if where is None else key(program, inputs, recipe)
  if name is None:
    return compile(program, inputs)
  path = where / f"{name}{_SUFFIX}"
  loaded = load(path)
  if loaded is not None:
    return _Checked(loaded, path, lambda: compile(program, inputs))
  hits = _cache_hits()
  with _persistent_cache_bypassed():
    compiled = compile(program, inputs)
  if _cache_hits() == hits:
    _store(path, compiled)
  return compiled


_HITS = [0]


def _cache_hits() -> int:
  """How many programs JAX's persistent cache has read back in this process
  (counted from the first call on)."""
  import jax

  if not _HITS[0]:
    _HITS[0] = 1
    jax.monitoring.register_event_listener(_count_hit)
  return _HITS[0]


def _count_hit(event: str, **_) -> None:
  if event == "/jax/compilation_cache/cache_hits":
    _HITS[0] += 1


@contextlib.contextmanager
def _persistent_cache_bypassed():
  """JAX's persistent compilation cache neither read nor written meanwhile.

  An executable that the cache read back serialises without its compiled
  kernels (jax 0.10, CPU): kept and loaded, it failed its first run with
  "NOT_FOUND: Function broadcast_in_dim.270_kernel not found", so every
  other run paid a failed load and a compile. A program to keep is therefore
  compiled afresh. This uses JAX's private switch; where a JAX lacks it, the
  cache stays on and :func:`compile_or_load` keeps nothing that came from it.
  (One the same process read back earlier and holds in memory is not seen;
  ``mfjax fit`` compiles its program once, and :class:`_Checked` catches it.)
  """
  try:
    from jax._src import compilation_cache as cache

    lock = cache._cache_initialized_mutex
    saved = (cache._cache_checked, cache._cache_used)
  except (ImportError, AttributeError):
    yield
    return
  with lock:
    cache._cache_checked, cache._cache_used = True, False
  try:
    yield
  finally:
    with lock:
      cache._cache_checked, cache._cache_used = saved


class _Checked:
  """A program read back from disk, run once under watch: if its first run
  fails (an executable that loads but does not run here, as one compiled
  without XLA's fusion emitters), the file is removed and the program
  compiled and run instead. Runs have no side effects, so the retry is safe."""

  def __init__(self, loaded, path: Path, compile):
    self._program, self._path, self._compile = loaded, path, compile
    self._checked = False

  def __call__(self, *args):
    if self._checked:
      return self._program(*args)
    import jax

    try:
      out = jax.block_until_ready(self._program(*args))
    except (jax.errors.JaxRuntimeError, TypeError) as e:
      # A program that does not run here, or not on these arguments; but
      # running out of memory is the run's own failure: no retry.
      if "RESOURCE_EXHAUSTED" in str(e):
        raise
      with contextlib.suppress(OSError):
        self._path.unlink()
      self._program = self._compile()
      out = self._program(*args)
    self._checked = True
    return out


def folder() -> Path | None:
  """The folder of kept programs, or None when JAX's cache is off or the
  folder is not this user's alone."""
  import jax

  base = jax.config.jax_compilation_cache_dir
  if not base or not isinstance(base, str) or "://" in base:
    return None
  folder = Path(base) / "programs"
  try:
    folder.mkdir(mode=0o700, exist_ok=True)
    if not _private(folder.stat()):
      return None
  except OSError:
    return None
  return folder


def _private(info: os.stat_result) -> bool:
  """Owned by this user and writable by nobody else."""
  owner = getattr(os, "getuid", lambda: info.st_uid)()
  return info.st_uid == owner and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def key(program, inputs: tuple, recipe: tuple) -> str | None:
  """A digest of everything the compiled program depends on, or None where it
  is not kept (several devices or processes, tracers)."""
  import jax

  from mfjax import validation
  from mfjax.fitting import ensemble

  if jax.process_count() != 1 or jax.device_count() != 1:
    return None
  leaves, tree = jax.tree.flatten(inputs)
  if not all(validation.is_concrete(x) for x in leaves):
    return None
  shapes = [
    (tuple(getattr(x, "shape", ())), str(getattr(x, "dtype", type(x).__name__)))
    for x in leaves
  ]
  processor = _processor()
  if processor is None:  # No instruction sets to key on: nothing kept.
    return None
  device = jax.devices()[0]
  parts = [
    repr(recipe),
    repr(tree),
    repr(shapes),
    getattr(program, "__qualname__", type(program).__name__),
    source_digest(),
    device.platform,
    device.device_kind,
    device.client.platform_version,
    processor,
    _versions(),
    _trace_context(),
    repr(ensemble.compiler_options()),
    repr(
      [
        jax.config.jax_enable_x64,
        jax.config.jax_default_matmul_precision,
        jax.config.jax_default_prng_impl,
        jax.config.jax_threefry_partitionable,
        os.environ.get("XLA_FLAGS", ""),
      ]
    ),
  ]
  return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:40]


@functools.cache
def source_digest() -> str:
  """A digest of mfjax's Python source: an edited checkout never loads a
  program its older code compiled."""
  root = Path(__file__).resolve().parent.parent
  digest = hashlib.sha256()
  for path in sorted(root.rglob("*.py")):
    digest.update(str(path.relative_to(root)).encode() + b"\0")
    digest.update(path.read_bytes())
  return digest.hexdigest()


@functools.cache
def _processor() -> str | None:
  """The processor's model and instruction sets (an executable built for one
  set of vector instructions may not run on another), or None where the system
  does not say (then no program is kept: a wrong one could crash every run)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
      wanted = [
        line.strip()
        for line in info
        if line.startswith(("model name", "flags", "Features", "CPU part"))
      ]
  except OSError:
    return None
  return "\n".join(sorted(set(wanted))) or None


@functools.cache
def _versions() -> str:
  """The versions of the packages whose code is traced into the programs."""
  from importlib import metadata

  found = []
  for name in ("jax", "jaxlib", "optax", "numpy", "ml_dtypes"):
    try:
      found.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
      found.append(f"{name} -")
  return ", ".join(found)


def _trace_context() -> str:
  """Every JAX setting that changes a trace (what ``jax.jit`` keys its own
  cache on), where this JAX exposes it."""
  try:
    from jax._src import config

    # Objects' addresses change from run to run; what they hold is the rest.
    return re.sub(r"0x[0-9a-fA-F]+", "?", repr(config.trace_context()))
  except Exception:  # Another JAX: the explicit settings in the key remain.
    return ""


def load(path: Path):
  """The program kept at ``path``, or None (absent, not private, unreadable,
  or written by something else)."""
  from jax.experimental import serialize_executable

  try:
    with open(path, "rb") as file:
      if not _private(os.fstat(file.fileno())):
        return None
      payload, in_tree, out_tree = pickle.load(file)
    compiled = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
  except Exception:  # Whatever the file holds, the fit compiles instead.
    return None
  try:
    os.utime(path)  # Recently used: kept longest.
  except OSError:
    pass
  return compiled


def _store(path: Path, compiled) -> None:
  """Writes ``compiled`` to ``path`` atomically, then trims the folder to
  :data:`MAX_FILES`; a program that does not serialise, or a full disk, only
  costs the next run its compile."""
  from jax.experimental import serialize_executable

  from mfjax.io.atomic import atomic_write

  try:
    blob = pickle.dumps(serialize_executable.serialize(compiled))
    with atomic_write(path) as file:
      os.fchmod(file.fileno(), 0o600)
      file.write(blob)
  except Exception:
    return
  try:
    kept = sorted(path.parent.glob(f"*{_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    for old in kept[:-MAX_FILES]:
      old.unlink()
  except OSError:
    pass
