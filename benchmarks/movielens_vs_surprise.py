"""mfjax's defaults against Surprise's SVD defaults on MovieLens 100k u1-u5.

Both train on uN.base and score uN.test, side by side in one run. Surprise's
predictions are clipped to the rating scale by Surprise; mfjax clips to the scale
of the base file. For each fold: RMSE, MAE, warm fit seconds (median and min of
--repeats fits; mfjax's compiled program reused) and cold seconds (mfjax:
compilation plus the first fit; Surprise: the first fit).

Usage: python benchmarks/movielens_vs_surprise.py [--data ../shared/data/ml-100k]
                                                  [--repeats 3]
Needs the bench extra (scikit-surprise).
"""

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import surprise
from surprise import SVD, Dataset, Reader, accuracy

import mfjax
from mfjax.fitting.ensemble import FitSettings, fit_program

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/ml-100k"


def _surprise_fold(data_dir, fold, repeats):
  reader = Reader("ml-100k")
  data = Dataset.load_from_folds(
    [(str(data_dir / f"u{fold}.base"), str(data_dir / f"u{fold}.test"))], reader
  )
  trainset, testset = next(iter(surprise.model_selection.PredefinedKFold().split(data)))
  times = []
  for _ in range(repeats + 1):
    algo = SVD(random_state=0)
    start = time.perf_counter()
    algo.fit(trainset)
    times.append(time.perf_counter() - start)
  predictions = algo.test(testset)
  return (
    accuracy.rmse(predictions, verbose=False),
    accuracy.mae(predictions, verbose=False),
    times[0],
    times[1:],
  )


def _mfjax_fold(data_dir, fold, repeats):
  d = FitSettings()
  start = time.perf_counter()
  train, maps = mfjax.load_ratings(data_dir / f"u{fold}.base")
  test, _ = mfjax.load_ratings(data_dir / f"u{fold}.test", id_maps=maps)
  load = time.perf_counter() - start
  program = fit_program(d, patience=None, progress=False)
  l2, l2_bias = np.float32(d.l2), np.float32(d.l2_bias)
  inputs = (jax.random.key(0), train, l2, l2_bias, None, maps.scale)
  start = time.perf_counter()
  compiled = program.lower(*inputs).compile()
  _, params = jax.block_until_ready(compiled(*inputs))
  cold = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*inputs))
    times.append(time.perf_counter() - start)
  rmse = float(mfjax.rmse(params, test, scale=maps.scale))
  mae = float(mfjax.mae(params, test, scale=maps.scale))
  return rmse, mae, cold, times, load


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(
    f"{platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} "
    f"({jax.default_backend()}), scikit-surprise {surprise.__version__}, "
    f"mfjax {mfjax.__version__}; mfjax defaults {FitSettings()}"
  )
  rows = []
  for fold in range(1, 6):
    s = _surprise_fold(args.data, fold, args.repeats)
    m = _mfjax_fold(args.data, fold, args.repeats)
    rows.append((s, m))
    print(f"u{fold}: " + _row(s, m), flush=True)
  mean_s = [
    float(np.mean([r[0][j] if j < 3 else statistics.median(r[0][3]) for r in rows]))
    for j in range(4)
  ]
  mean_m = [
    float(np.mean([r[1][j] if j < 3 else statistics.median(r[1][3]) for r in rows]))
    for j in range(4)
  ]
  print(
    f"mean: surprise rmse {mean_s[0]:.4f} mae {mean_s[1]:.4f} warm {mean_s[3]:.3f}s"
    f" | mfjax rmse {mean_m[0]:.4f} mae {mean_m[1]:.4f} warm {mean_m[3]:.3f}s"
    f" cold {mean_m[2]:.3f}s | ratio {mean_m[3] / mean_s[3]:.2f}"
  )


def _row(s, m):
  s_warm, m_warm = statistics.median(s[3]), statistics.median(m[3])
  return (
    f"surprise rmse {s[0]:.4f} mae {s[1]:.4f} warm {s_warm:.3f}s"
    f" (min {min(s[3]):.3f}) cold {s[2]:.3f}s | mfjax rmse {m[0]:.4f}"
    f" mae {m[1]:.4f} warm {m_warm:.3f}s (min {min(m[3]):.3f}) cold {m[2]:.3f}s"
    f" load {m[4]:.3f}s | fit-time ratio mfjax/surprise {m_warm / s_warm:.2f}"
  )


if __name__ == "__main__":
  main()
