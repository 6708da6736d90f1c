"""Chooses mfjax's Gibbs defaults on MovieLens 100k, never looking at a test file.

For each fold N, 10% of uN.base (seeded by N, as tune_movielens.py) is held out
as validation; every setting fits ``mfjax.fit(key, train, solver="gibbs",
...)`` on the other 90% and is scored by its validation RMSE (predictions
clipped to the file's scale). uN.test is never read. Prints each setting's mean
validation RMSE over the folds and its warm fit seconds (one warm fit after the
cold one, per fold).

Usage: python benchmarks/tune_gibbs.py [--data DIR] [--folds 1,2]
                                       [--grid NAME]  (NAME: a key of GRIDS)
       python benchmarks/run.py tune_gibbs [--quick] [...]
Writes benchmarks/results/tune_gibbs/ (harness.Record).
"""

import argparse
import itertools
import os
import time
from pathlib import Path

import harness
import jax
import numpy as np

import mfjax

GRIDS = {
  # The rank of each draw, at the default samples and burn-in.
  "rank": dict(rank=[6, 10, 16, 24], samples=[200], burn_in=[20], implicit=["none"]),
  # Below the best of "rank" (6).
  "rank_low": dict(rank=[3, 4, 8], samples=[200], burn_in=[20], implicit=["none"]),
  # The implicit terms' sweeps (myFM keeps every sample of its implicit run).
  "implicit_sweeps": dict(
    rank=[8, 10], samples=[200, 400], burn_in=[5, 20], implicit=["both"]
  ),
  # How many sweeps to discard and to keep.
  "burn_in": dict(
    rank=[10], samples=[100, 200], burn_in=[5, 20, 50], implicit=["none"]
  ),
  # The implicit-feedback terms.
  "implicit": dict(
    rank=[10], samples=[200], burn_in=[20], implicit=["none", "users", "items", "both"]
  ),
}
QUICK = dict(rank=[4], samples=[10], burn_in=[2], implicit=["none", "both"])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--folds", default="1,2")
  parser.add_argument("--grid", default="rank", choices=sorted(GRIDS))
  parser.add_argument("--quick", action="store_true", help="a smoke test")
  args = parser.parse_args()
  args.quick = args.quick or os.environ.get("MFJAX_BENCH_QUICK") == "1"
  data = harness.data_dir(args.data)
  folds = [1] if args.quick else [int(f) for f in args.folds.split(",")]
  record = harness.Record("tune_gibbs", vars(args) | {"data": data})
  env = record.data["environment"]
  print(f"{env['date']}; load average {env['loadavg_before']}")
  record.results["settings"] = rows = []
  splits = []
  for fold in folds:
    base, maps = mfjax.load_ratings(data / f"u{fold}.base")
    train, valid = mfjax.train_test_split(base, test_fraction=0.1, seed=fold)
    splits.append((train, valid, maps.scale))

  grid = QUICK if args.quick else GRIDS[args.grid]
  names = list(grid)
  for setting in itertools.product(*grid.values()):
    s = dict(zip(names, setting, strict=True))
    scores, warm = [], []
    for train, valid, scale in splits:
      key = jax.random.key(0)
      fit = lambda s=s, train=train, key=key: jax.block_until_ready(
        mfjax.fit(key, train, solver="gibbs", **s)
      )
      fit()  # cold: compiles
      start = time.perf_counter()
      fitted = fit()
      warm.append(time.perf_counter() - start)
      pred = mfjax.predict(fitted.best_params, valid.users, valid.items)
      pred = np.clip(np.asarray(pred, np.float64), *scale)
      scores.append(float(np.sqrt(np.mean((pred - np.asarray(valid.values)) ** 2))))
    rows.append(dict(settings=s, rmse=scores, warm_seconds=warm))
    print(
      f"{s}  val rmse {np.mean(scores):.4f} {np.round(scores, 4)}  "
      f"warm {np.median(warm):.2f}s/fold",
      flush=True,
    )
  print(f"load average after {os.getloadavg()}")
  record.write()


if __name__ == "__main__":
  main()
