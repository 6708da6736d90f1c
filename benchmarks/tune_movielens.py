"""Tunes mfjax's sparse defaults on MovieLens 100k, never looking at a test file.

For each fold N, 10% of uN.base (seeded) is held out as validation; every setting
trains on the other 90% with early stopping on that validation RMSE, and the
script prints the mean validation RMSE over the folds. uN.test is never read.

Usage: python benchmarks/tune_movielens.py [--data ../shared/data/ml-100k]
                                          [--folds 1,2] [--grid small]
       python benchmarks/run.py tune_movielens [--quick] [...]
Writes benchmarks/results/tune_movielens/ (harness.Record).
"""

import argparse
import itertools
import time
from pathlib import Path

import harness
import jax
import numpy as np
import optax

import mfjax

GRIDS = {
  "low_rank": dict(
    rank=[8, 16],
    l2=[10.0],
    l2_bias=[1.0],
    lr=[0.02],
    batch_size=[4096],
    ensemble=[6],
  ),
  "seeds": dict(
    rank=[16, 32],
    l2=[10.0],
    l2_bias=[1.0],
    lr=[0.02],
    batch_size=[4096],
    ensemble=[4, 8],
  ),
  "bias": dict(
    rank=[32],
    l2=[7.5, 10.0],
    l2_bias=[0.3, 1.0, 3.0],
    lr=[0.02],
    batch_size=[4096],
    ensemble=[4],
  ),
  "shape": dict(
    rank=[32, 64],
    l2=[10.0, 15.0],
    l2_bias=[None, 1.0],
    lr=[0.02],
    batch_size=[4096],
    ensemble=[4],
  ),
  "fast": dict(
    rank=[32],
    l2=[10.0],
    l2_bias=[None],
    lr=[0.01, 0.02],
    batch_size=[4096],
    ensemble=[4],
  ),
  "small": dict(
    rank=[32, 128],
    l2=[5.0, 10.0, 20.0],
    l2_bias=[None],
    lr=[0.005, 0.01],
    batch_size=[256, 1024],
    ensemble=[1, 4],
  ),
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--folds", default="1,2")
  parser.add_argument("--grid", default="small", choices=sorted(GRIDS))
  parser.add_argument("--steps", "--epochs", type=int, default=40)
  args = parser.parse_args()
  data = harness.data_dir(args.data)
  record = harness.Record("tune_movielens", vars(args) | {"data": data})
  record.results["settings"] = rows = []
  grid = GRIDS[args.grid]
  splits = []
  for fold in map(int, args.folds.split(",")):
    base, maps = mfjax.load_ratings(data / f"u{fold}.base")
    train, valid = mfjax.train_test_split(base, test_fraction=0.1, seed=fold)
    splits.append((train, valid, maps.scale))

  names = list(grid)
  for setting in itertools.product(*grid.values()):
    s = dict(zip(names, setting, strict=True))
    scores, epochs, seconds = [], [], []
    for train, valid, scale in splits:

      def run(key, train=train, valid=valid, scale=scale, s=s):
        params = mfjax.init_params(key, train.n_users, train.n_items, s["rank"])
        return mfjax.train(
          params,
          train,
          optimizer=optax.adam(s["lr"]),
          steps=args.steps,
          l2=s["l2"],
          l2_bias=s["l2_bias"],
          batch_size=s["batch_size"],
          key=jax.random.fold_in(key, 1),
          validation_data=valid,
          patience=4,
          scale=scale,
        )

      keys = jax.random.split(jax.random.key(0), s["ensemble"])
      start = time.perf_counter()
      result = jax.jit(jax.vmap(run))(keys)
      # The models' predictions averaged: one model of rank ensemble x rank
      # (mfjax.fitting.ensemble.ensemble_params).
      preds = jax.vmap(
        lambda p, valid=valid: mfjax.predict(p, valid.users, valid.items)
      )(result.best_params)
      pred = np.clip(np.asarray(preds).mean(0), *scale)
      seconds.append(time.perf_counter() - start)
      scores.append(float(np.sqrt(np.mean((pred - np.asarray(valid.values)) ** 2))))
      epochs.append(int(np.nanargmin(np.asarray(result.validation_rmse), axis=1).max()))
    rows.append(dict(settings=s, rmse=scores, best_epochs=epochs, cold=seconds))
    print(
      f"{s}  val rmse {np.mean(scores):.4f} {np.round(scores, 4)}  best epoch <= "
      f"{max(epochs)}  {np.mean(seconds):.1f}s/fold (cold)",
      flush=True,
    )
  record.write()


if __name__ == "__main__":
  main()
