"""mfjax's defaults against Surprise's SVD defaults on MovieLens 100k u1-u5.

Both train on uN.base and score uN.test, side by side in one run. Surprise's
predictions are clipped to the rating scale by Surprise; mfjax clips to the scale
of the base file. For each fold: RMSE, MAE, warm fit seconds (median and min of
--repeats fits; mfjax's compiled program reused) and cold seconds (mfjax:
compilation plus the first fit; Surprise: the first fit).

Usage: python benchmarks/movielens_vs_surprise.py [--data ../shared/data/ml-100k]
                                                  [--repeats 3] [--folds 1,2,3,4,5]
       python benchmarks/run.py movielens_vs_surprise [--quick] [...]
Needs the bench extra (scikit-surprise); without it, mfjax's side alone (the
reason printed). Writes benchmarks/results/movielens_vs_surprise/
(harness.Record).
"""

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import harness
import jax
import numpy as np

import mfjax
from mfjax.fitting.ensemble import FitSettings, fit_program

try:
  import surprise
  import surprise.model_selection
  from surprise import SVD, Dataset, Reader, accuracy
except ImportError as error:
  surprise = None
  NO_SURPRISE = f"scikit-surprise not importable ({error!r})"


def _surprise_fold(data_dir, fold, repeats):
  reader = Reader("ml-100k")
  data = Dataset.load_from_folds(
    [(str(data_dir / f"u{fold}.base"), str(data_dir / f"u{fold}.test"))], reader
  )
  trainset, testset = next(iter(surprise.model_selection.PredefinedKFold().split(data)))
  # A new SVD each fit; cold = the first.
  t = harness.time_calls(lambda: SVD(random_state=0).fit(trainset), repeats)
  predictions = t.result.test(testset)
  return (
    accuracy.rmse(predictions, verbose=False),
    accuracy.mae(predictions, verbose=False),
    t.cold,
    t.warm,
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
  times = harness.time_calls(lambda: compiled(*inputs), repeats, warmup=0).warm
  rmse = float(mfjax.rmse(params, test, scale=maps.scale))
  mae = float(mfjax.mae(params, test, scale=maps.scale))
  return rmse, mae, cold, times, load


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--folds", default="1,2,3,4,5")
  args = parser.parse_args()
  data = harness.data_dir(args.data)
  record = harness.Record(
    "movielens_vs_surprise", vars(args) | {"data": data}, ["scikit-surprise"]
  )
  print(
    f"{platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} "
    f"({jax.default_backend()}), scikit-surprise "
    f"{surprise.__version__ if surprise else None}, "
    f"mfjax {mfjax.__version__}; mfjax defaults {FitSettings()}"
  )
  if surprise is None:
    print(f"surprise: skipped: {NO_SURPRISE}")
  rows = []
  keys = ("rmse", "mae", "cold", "warm")
  for fold in map(int, args.folds.split(",")):
    s = _surprise_fold(data, fold, args.repeats) if surprise else None
    m = _mfjax_fold(data, fold, args.repeats)
    rows.append((s, m))
    record.results[f"u{fold}"] = {
      "surprise": dict(zip(keys, s, strict=True)) if s else None,
      "mfjax": dict(zip((*keys, "load"), m, strict=True)),
    }
    print(f"u{fold}: " + (_row(s, m) if s else _mfjax_row(m)), flush=True)
  if surprise is None:
    record.write()
    return
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
  record.write()


def _mfjax_row(m):
  return (
    f"mfjax rmse {m[0]:.4f} mae {m[1]:.4f} warm {statistics.median(m[3]):.3f}s"
    f" (min {min(m[3]):.3f}) cold {m[2]:.3f}s load {m[4]:.3f}s"
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
