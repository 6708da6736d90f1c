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

Needs the ``bench`` extra (torch). Everything runs on the CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import torch

import mfjax
from mfjax import notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torch_notebook  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "ml-100k"


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


def _time(fn, repeats: int, inner: int) -> list[float]:
  """Seconds per call of ``fn``: ``repeats`` samples, each a mean over ``inner``."""
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(inner):
      fn()
    samples.append((time.perf_counter() - start) / inner)
  return samples


def _stats(samples: list[float]) -> tuple[float, float]:
  return statistics.median(samples), min(samples)


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

  start = time.perf_counter()
  torch_loss = _torch_run(matrix, init)
  torch_first = time.perf_counter() - start
  start = time.perf_counter()
  jax_loss = float(run(params))
  jax_first = time.perf_counter() - start

  torch_warm = _time(lambda: _torch_run(matrix, init), repeats, max(1, inner // 20))
  jax_warm = _time(lambda: run(params).block_until_ready(), repeats, inner)
  t_med, t_min = _stats(torch_warm)
  j_med, j_min = _stats(jax_warm)
  print(f"\n== {name}: 100 notebook steps ({n_users}x{n_items}) ==")
  print(f"  best loss        torch {torch_loss:.6f}   mfjax {jax_loss:.6f}")
  print(f"  first call       torch {_ms(torch_first)}   mfjax {_ms(jax_first)}")
  for label, t, j in (("warm median", t_med, j_med), ("warm min", t_min, j_min)):
    print(f"  {label:<16} torch {_ms(t)}   mfjax {_ms(j)}   ratio {t / j:7.1f}x")
  return dict(torch=(t_med, t_min), mfjax=(j_med, j_min))


def _process_seconds(argv: list[str], env: dict, repeats: int, fresh_cache=None):
  samples = []
  for _ in range(repeats):
    if fresh_cache is not None:
      shutil.rmtree(fresh_cache, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    samples.append(time.perf_counter() - start)
  return samples


def compare_processes(repeats: int) -> None:
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
      cold += _process_seconds(demo, cold_env, 1, cold_env["MFJAX_COMPILATION_CACHE"])
      cached += _process_seconds(demo, warm_env, 1)
      torch_times += _process_seconds(script, dict(os.environ), 1)
  t_med, t_min = _stats(torch_times)
  print("\n== whole process: `mfjax demo` against `python torch_notebook.py` ==")
  print(f"  torch script                 median {t_med:6.3f} s   min {t_min:6.3f} s")
  for label, samples in (("empty cache", cold), ("filled cache", cached)):
    med, low = _stats(samples)
    print(
      f"  mfjax demo, {label:<14}   median {med:6.3f} s   min {low:6.3f} s   "
      f"torch/mfjax {t_med / med:4.2f}x (median)"
    )


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()

  print(
    f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}\n"
    f"python {platform.python_version()}, jax {jax.__version__} "
    f"({jax.default_backend()}), torch {torch.__version__}, "
    f"numpy {np.__version__}, mfjax {mfjax.__version__}\n"
    f"torch threads {torch.get_num_threads()}; {args.repeats} repeats"
  )
  compare_loops("notebook 4x6", notebook.MATRIX, args.repeats, inner=200)
  if (args.data / "u.data").exists():
    compare_loops("ML-100k dense", _dense_movielens(args.data), args.repeats, inner=3)
  else:
    print(f"\n(skipping the 943x1682 case: no {args.data / 'u.data'})")
  compare_processes(args.repeats)
  return 0


if __name__ == "__main__":
  sys.exit(main())
