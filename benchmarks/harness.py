"""What every benchmark shares: the data folder, the environment, timing, a JSON
record, and the interface of the peer systems.

- ``data_dir(arg)``: MovieLens 100k: ``arg``, else ``$MFJAX_DATA``, else
  ``../shared/data/ml-100k`` beside the repository;
- ``environment(peers)``: versions, platform, CPU, load average, git commit;
- ``time_calls(fn, repeats)``, ``time_interleaved({name: fn}, repeats)``: cold
  (the first call) and warm median / min / max; ``summary(samples)``;
- ``Record(suite, args)``: fill ``record.results``, then ``record.write()``:
  ``benchmarks/results/SUITE/YYYY-MM-DD-COMMIT.json``, atomically;
- ``System``, ``Train``, ``Unavailable``, ``available(makers)``: the peers.

Only the standard library is imported (jax is looked up in sys.modules, never
imported). ``run.py`` passes the suite's name (``MFJAX_BENCH_SUITE``) and
--quick (``MFJAX_BENCH_QUICK=1``: the file name ends ``-quick``) by environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
VERSIONS = ("mfjax", "jax", "jaxlib", "numpy", "optax")


def data_dir(arg: str | os.PathLike | None = None) -> Path:
  """The MovieLens 100k folder; FileNotFoundError, naming it, when absent."""
  if arg:
    path, why = Path(arg), "the --data argument"
  elif os.environ.get("MFJAX_DATA"):
    path, why = Path(os.environ["MFJAX_DATA"]), "$MFJAX_DATA"
  else:
    path, why = REPO.parent / "shared" / "data" / "ml-100k", "the default"
  if not path.is_dir():
    raise FileNotFoundError(
      f"no data folder {path} ({why}); pass --data DIR or set MFJAX_DATA to the "
      "MovieLens 100k folder (u.data, u1.base, ...)"
    )
  return path


# --- Environment ---------------------------------------------------------------


def _version(name: str) -> str | None:
  module = sys.modules.get(name)
  if module is not None and isinstance(getattr(module, "__version__", None), str):
    return module.__version__  # what runs, e.g. mfjax from PYTHONPATH
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      models = [x.split(":", 1)[1] for x in f if x.startswith("model name")]
  except OSError:
    models = []
  return models[0].strip() if models else platform.processor() or platform.machine()


def _git(*argv: str) -> str | None:
  try:
    done = subprocess.run(
      ["git", "-C", str(REPO), *argv], capture_output=True, text=True, timeout=30
    )
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> dict:
  """The commit and whether tracked files differ from it (untracked ignored)."""
  commit = _git("rev-parse", "HEAD")
  status = _git("status", "--porcelain", "--untracked-files=no")
  dirty = None if status is None else bool(status)
  return {"commit": commit, "short": commit and commit[:7], "dirty": dirty}


def environment(peers: Iterable[str] = ()) -> dict:
  """Versions (VERSIONS and ``peers``: None where not installed), the machine,
  the load average now, the git state and the date."""
  spec = importlib.util.find_spec("mfjax")
  env = {
    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    "python": platform.python_version(),
    "executable": sys.executable,
    "platform": platform.platform(),
    "machine": platform.machine(),
    "cpu_model": _cpu_model(),
    "cpu_count": os.cpu_count(),
    "loadavg_before": os.getloadavg(),
    "versions": {name: _version(name) for name in (*VERSIONS, *peers)},
    "mfjax_path": str(Path(spec.origin).parent) if spec and spec.origin else None,
    "git": git_state(),
  }
  version = Path(env["mfjax_path"] or ".", "version.py")  # The mfjax on the path,
  if "mfjax" not in sys.modules and version.is_file():  # not metadata's.
    found = re.search(r'__version__ = "(.+)"', version.read_text())
    env["versions"]["mfjax"] = found and found.group(1)
  jax = sys.modules.get("jax")
  if jax is not None:  # Only where the benchmark imported it.
    env["jax_backend"] = jax.default_backend()
    env["devices"] = sorted({d.device_kind for d in jax.devices()})
  for name in ("XLA_FLAGS", "JAX_PLATFORMS", "MFJAX_COMPILATION_CACHE"):
    if name in os.environ:
      env.setdefault("env", {})[name] = os.environ[name]
  return env


# --- Timing --------------------------------------------------------------------


def summary(samples: Iterable[float]) -> dict:
  """``{"median", "min", "max", "n"}`` of seconds (None for no samples)."""
  s = list(samples)
  if not s:
    return {"median": None, "min": None, "max": None, "n": 0}
  return {"median": statistics.median(s), "min": min(s), "max": max(s), "n": len(s)}


@dataclasses.dataclass
class Timing:
  """Seconds of one function: ``cold`` (the first call; None without warm-up),
  ``warm`` (each a mean over ``inner`` calls) and their median, min and max (the
  cold call's where there are no warm ones); ``result``: the last return value."""

  cold: float | None
  warm: list[float]
  median: float | None
  min: float | None
  max: float | None
  result: Any = dataclasses.field(default=None, repr=False)

  def as_dict(self) -> dict:
    return {k: getattr(self, k) for k in ("cold", "warm", "median", "min", "max")}


def _block(x):
  jax = sys.modules.get("jax")
  return jax.block_until_ready(x) if jax is not None else x


def time_interleaved(
  fns: Mapping[str, Callable[[], Any]],
  repeats: int,
  warmup: int = 1,
  inner: int | Mapping[str, int] = 1,
  after_round: Callable[[int], None] | None = None,
) -> dict[str, Timing]:
  """Rounds of one call of each function in turn (A, B, A, B, ...), so that
  machine load hits all alike: ``warmup`` rounds (the first timed as cold), then
  ``repeats`` warm ones. Results are blocked on (jax.block_until_ready) when jax
  is loaded. ``after_round(r)`` runs after each round."""
  inner = inner if isinstance(inner, Mapping) else dict.fromkeys(fns, inner)
  cold, warm, results = dict.fromkeys(fns), {name: [] for name in fns}, {}
  for r in range(warmup + repeats):
    for name, fn in fns.items():
      n = 1 if r < warmup else inner[name]
      start = time.perf_counter()
      for _ in range(n):
        results[name] = _block(fn())
      seconds = (time.perf_counter() - start) / n
      if r >= warmup:
        warm[name].append(seconds)
      elif r == 0:
        cold[name] = seconds
    if after_round is not None:
      after_round(r)
  out = {}
  for name in fns:
    s = summary(warm[name] or [x for x in [cold[name]] if x is not None])
    out[name] = Timing(cold[name], warm[name], s["median"], s["min"], s["max"])
    out[name].result = results.get(name)
  return out


def time_calls(
  fn: Callable[[], Any], repeats: int, warmup: int = 1, inner: int = 1
) -> Timing:
  """``fn`` called ``warmup`` times (the first timed: cold), then ``repeats``
  warm samples, each the mean of ``inner`` calls."""
  return time_interleaved({"fn": fn}, repeats, warmup, inner)["fn"]


# --- The JSON record -----------------------------------------------------------


def _jsonable(x):
  for method in ("as_dict", "_asdict", "tolist"):  # Timing, NamedTuple, numpy
    if hasattr(x, method):
      return getattr(x, method)()
  return str(x)  # Paths, dtypes, ...


class Record:
  """A benchmark run as JSON: the suite, the command and its arguments, the
  environment, and ``results`` (any JSON-able values the script stores)."""

  def __init__(self, suite: str, args: Any = None, peers: Iterable[str] = ()):
    self._start = time.perf_counter()
    self.results: dict = {}
    self.data = {
      "suite": os.environ.get("MFJAX_BENCH_SUITE") or suite,
      "quick": os.environ.get("MFJAX_BENCH_QUICK") == "1",
      "command": [sys.executable, *sys.argv],
      "args": vars(args) if hasattr(args, "__dict__") else args,
      "environment": environment(peers),
      "results": self.results,
    }

  def write(self, path: str | os.PathLike | None = None) -> Path:
    """Writes the JSON (loadavg_after, wall seconds added) through a temporary
    file to ``path``, else to RESULTS/SUITE/DATE-COMMIT[-quick].json, never
    replacing an earlier run there (-2, -3, ... follow)."""
    self.data["environment"]["loadavg_after"] = os.getloadavg()
    self.data["wall_seconds"] = time.perf_counter() - self._start
    d = self.data
    name = f"{datetime.date.today()}-{d['environment']['git']['short'] or 'nogit'}"
    stem = Path(path or RESULTS / d["suite"] / (name + "-quick" * d["quick"]))
    stem.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=stem.parent, prefix=".tmp-", suffix=".json")
    try:
      with os.fdopen(fd, "w") as f:
        json.dump(self.data, f, indent=1, default=_jsonable)
        f.write("\n")
      if path:
        os.replace(tmp, target := stem)
      for n in itertools.count(1) if not path else ():
        target = stem.with_name(stem.name + (f"-{n}" if n > 1 else "") + ".json")
        with contextlib.suppress(FileExistsError):  # No run is replaced.
          os.link(tmp, target)
          break
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
    print(f"wrote {target}", flush=True)
    return target


# --- Peers ---------------------------------------------------------------------


class Unavailable(Exception):
  """A peer that cannot run here; the message says why."""


class Train(NamedTuple):
  """Training ratings as indices 0..n-1: what every system is fitted on."""

  users: Any  # int32 [n]
  items: Any  # int32 [n]
  values: Any  # float32 [n]
  n_users: int
  n_items: int


class System(Protocol):
  """A rating predictor under test. ``prepare`` converts the arrays into the
  system's own container (outside the clock), ``fit`` is what is timed, and
  ``predict`` returns raw float64 predictions of known (user, item) pairs."""

  name: str  # e.g. "libmf tuned"
  family: str  # e.g. "libmf"

  def describe(self) -> dict: ...
  def prepare(self, train: Train) -> Any: ...
  def fit(self, prepared: Any) -> Any: ...
  def predict(self, model: Any, users: Any, items: Any) -> Any: ...


def available(makers: Iterable[Callable[[], Any]]) -> list:
  """The systems whose maker raises no Unavailable; prints each reason once."""
  out, seen = [], set()
  for make in makers:
    try:
      out.append(make())
    except Unavailable as why:
      if str(why) not in seen:
        print(f"skipped: {why}", flush=True)
        seen.add(str(why))
  return out
