"""mfjax against the seed notebook's PyTorch loop, side by side in one run.

Three comparisons, each repeated and reported as median and minimum:

1. warm: 100 notebook steps on the notebook's 4×6 matrix; torch's eager loop against
   ``jax.jit(mfjax.train)`` after compilation. ``first call`` is the first run in
   this process (torch's lazy set-up; JAX's tracing and compilation);
2. the same on the dense 943×1682 MovieLens 100k matrix (``u.data``);
3. whole processes: ``mfjax demo`` (with an empty compilation cache, and with the
   cache filled by an earlier run) against ``python torch_notebook.py``.

Usage:
  python benchmarks/notebook_vs_torch.py [--data ../shared/data/ml-100k] [--repeats 7]
  python benchmarks/run.py notebook_vs_torch [--quick] [...]

Needs the ``bench`` extra (torch); without it, mfjax's side alone (the reason
printed). Everything runs on the CPU. Writes benchmarks/results/notebook_vs_torch/
(harness.Record).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import jax
import numpy as np

import mfjax
from mfjax import notebook

HERE = Path(__file__).resolve().parent
try:
  import torch
  import torch_notebook
except ImportError as error:
  torch = torch_notebook = None
  NO_TORCH = f"torch not importable ({error!r})"


def _dense_movielens(data_dir: Path) -> np.ndarray:
  raw = np.loadtxt(data_dir / "u.data", dtype=np.int64)
  matrix = np.zeros((raw[:, 0].max(), raw[:, 1].max()), np.float32)
  matrix[raw[:, 0] - 1, raw[:, 1] - 1] = raw[:, 2]
  return matrix


def _torch_run(matrix: np.ndarray, init: list[np.ndarray]):
  tensors = [torch.tensor(x, requires_grad=True) for x in init]
  return torch_notebook.notebook_loop(torch.tensor(matrix), *tensors)[0]


def _mfjax_runner(matrix: np.ndarray):
  mask = np.ones_like(matrix, bool)

  @jax.jit
  def run(params, matrix):
    return mfjax.train(
      params,
      matrix,
      optimizer=notebook.optimizer(),
      mask=mask,
      objective=notebook.OBJECTIVE,
    ).best_loss

  matrix = jax.device_put(matrix)  # An argument, not a constant baked into the program.
  return lambda params: run(params, matrix)


def _ms(seconds: float) -> str:
  return f"{seconds * 1e3:9.3f} ms"


def compare_loops(name: str, matrix: np.ndarray, repeats: int, inner: int) -> dict:
  n_users, n_items = matrix.shape
  rng = np.random.default_rng(0)
  init = [
    rng.random((n_users, 3), np.float32),
    rng.random((n_items, 3), np.float32),
    rng.random((n_users, 1), np.float32),
    rng.random((n_items, 1), np.float32),
  ]
  params = notebook.NotebookParams(
    init[0], init[1], init[2][:, 0], init[3][:, 0], np.float32(0)
  )
  run = _mfjax_runner(matrix)

  # "first call": the first run in this process (torch's lazy set-up; JAX's
  # tracing and compiling); warm: each sample a mean over ``inner`` runs.
  torch_t = None
  if torch is not None:
    torch_t = harness.time_calls(
      lambda: _torch_run(matrix, init), repeats, inner=max(1, inner // 20)
    )
  jax_t = harness.time_calls(lambda: run(params), repeats, inner=inner)
  jax_loss = float(jax_t.result)
  print(f"\n== {name}: 100 notebook steps ({n_users}x{n_items}) ==")
  if torch_t is None:
    print(f"  best loss        mfjax {jax_loss:.6f}")
    print(f"  first call       mfjax {_ms(jax_t.cold)}")
    for label, j in (("warm median", jax_t.median), ("warm min", jax_t.min)):
      print(f"  {label:<16} mfjax {_ms(j)}")
    return dict(mfjax=jax_t, mfjax_loss=jax_loss)
  torch_loss = torch_t.result
  print(f"  best loss        torch {torch_loss:.6f}   mfjax {jax_loss:.6f}")
  print(f"  first call       torch {_ms(torch_t.cold)}   mfjax {_ms(jax_t.cold)}")
  for label, t, j in (
    ("warm median", torch_t.median, jax_t.median),
    ("warm min", torch_t.min, jax_t.min),
  ):
    print(f"  {label:<16} torch {_ms(t)}   mfjax {_ms(j)}   ratio {t / j:7.1f}x")
  return dict(torch=torch_t, mfjax=jax_t, torch_loss=torch_loss, mfjax_loss=jax_loss)


def _process_seconds(argv: list[str], env: dict, fresh_cache=None) -> float:
  if fresh_cache is not None:
    shutil.rmtree(fresh_cache, ignore_errors=True)
  start = time.perf_counter()
  subprocess.run(argv, env=env, check=True, capture_output=True)
  return time.perf_counter() - start


def compare_processes(repeats: int) -> dict:
  demo = [sys.executable, "-m", "mfjax", "demo"]
  script = [sys.executable, str(HERE / "torch_notebook.py")]
  with tempfile.TemporaryDirectory() as tmp:
    cold_env = dict(os.environ, MFJAX_COMPILATION_CACHE=os.path.join(tmp, "cold"))
    warm_env = dict(os.environ, MFJAX_COMPILATION_CACHE=os.path.join(tmp, "warm"))
    for env in (cold_env, warm_env):
      env.pop("JAX_COMPILATION_CACHE_DIR", None)
    subprocess.run(demo, env=warm_env, check=True, capture_output=True)  # Fill it.
    cold, cached, torch_times = [], [], []
    for _ in range(repeats):  # Interleaved, so machine noise hits all three alike.
      cold.append(_process_seconds(demo, cold_env, cold_env["MFJAX_COMPILATION_CACHE"]))
      cached.append(_process_seconds(demo, warm_env))
      if torch is not None:
        torch_times.append(_process_seconds(script, dict(os.environ)))
  t = harness.summary(torch_times)
  print("\n== whole process: `mfjax demo` against `python torch_notebook.py` ==")
  if torch is None:
    print(f"  torch script: skipped: {NO_TORCH}")
  else:
    print(
      f"  torch script                 median {t['median']:6.3f} s   "
      f"min {t['min']:6.3f} s"
    )
  for label, samples in (("empty cache", cold), ("filled cache", cached)):
    m = harness.summary(samples)
    ratio = f"torch/mfjax {t['median'] / m['median']:4.2f}x (median)" if t["n"] else ""
    print(
      f"  mfjax demo, {label:<14}   median {m['median']:6.3f} s   "
      f"min {m['min']:6.3f} s   {ratio}".rstrip()
    )
  return {"torch script": torch_times, "demo empty cache": cold,
          "demo filled cache": cached}  # fmt: skip


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  try:
    data, missing = harness.data_dir(args.data), None
  except FileNotFoundError as error:  # The dense case is skipped.
    data, missing = None, str(error)
  record = harness.Record("notebook_vs_torch", vars(args) | {"data": data}, ["torch"])
  out = record.results

  torch_line = "torch: skipped: " + NO_TORCH
  if torch is not None:
    torch_line = f"torch {torch.__version__}"
    out["torch_threads"] = torch.get_num_threads()
  print(
    f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}\n"
    f"python {platform.python_version()}, jax {jax.__version__} "
    f"({jax.default_backend()}), {torch_line}, "
    f"numpy {np.__version__}, mfjax {mfjax.__version__}\n"
    + (f"torch threads {torch.get_num_threads()}; " if torch is not None else "")
    + f"{args.repeats} repeats"
  )
  out["notebook 4x6"] = compare_loops(
    "notebook 4x6", notebook.MATRIX, args.repeats, inner=200
  )
  if data is not None and (data / "u.data").exists():
    out["ML-100k dense"] = compare_loops(
      "ML-100k dense", _dense_movielens(data), args.repeats, inner=3
    )
  else:
    why = missing or f"no {data / 'u.data'}"
    print(f"\n(skipping the 943x1682 case: {why})")
  out["whole process"] = compare_processes(args.repeats)
  record.write()
  return 0


if __name__ == "__main__":
  sys.exit(main())
