"""A 16-configuration grid in one vmapped call against 16 sequential calls.

MovieLens 100k u1.base, with 10 % of it carved out as validation (seed 0). The
grid is 4 learning rates × 4 L2 weights, each configuration with its own seed
(initialisation and shuffles), at the fit defaults otherwise (rank 12, 10
epochs, batches of 4096, Adam, l2_bias 1). One call:
``jax.jit(mfjax.fitting.grid.train_grid)``; sequential: one ``jax.jit(mfjax.train)``
whose settings are traced arguments (compiled once), called 16 times.

Warm: the compiled programs again; cold: after ``jax.clear_caches()``, so
tracing and compiling count. Median and min of --repeats each.

Usage: python benchmarks/grid_vs_sequential.py [--data ../shared/data/ml-100k]
                                               [--repeats 3]
       python benchmarks/run.py grid_vs_sequential [--quick] [...]
Writes benchmarks/results/grid_vs_sequential/ (harness.Record).
"""

import argparse
import os
import platform
import time

import harness
import jax
import jax.numpy as jnp
import numpy as np
import optax

import mfjax
from mfjax.fitting.ensemble import FitSettings
from mfjax.fitting.grid import train_grid

LEARNING_RATES = (0.005, 0.01, 0.02, 0.04)
L2S = (4.0, 6.0, 8.0, 10.0)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", default=None)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  data = harness.data_dir(args.data)
  record = harness.Record("grid_vs_sequential", vars(args) | {"data": data})
  base, maps = mfjax.load_ratings(data / "u1.base")
  train, valid = mfjax.train_test_split(base, test_fraction=0.1, seed=0)
  d = FitSettings()
  rank, epochs, batch, l2_bias = d.rank, d.steps, d.batch_size, d.l2_bias
  lrs = jnp.repeat(jnp.array(LEARNING_RATES), len(L2S))
  l2s = jnp.tile(jnp.array(L2S), len(LEARNING_RATES))
  n = lrs.shape[0]
  init_keys = jax.random.split(jax.random.key(0), n)
  shuffle_keys = jax.random.split(jax.random.key(1), n)
  n_users, n_items = train.shape
  print(
    f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
    f"({jax.default_backend()}), mfjax {mfjax.__version__}; {n} configurations, "
    f"{len(train):,} training and {len(valid):,} validation ratings, rank {rank}, "
    f"{epochs} epochs, batch {batch}",
    flush=True,
  )

  def grid_fn(init_keys, shuffle_keys, lrs, l2s):
    params = jax.vmap(lambda k: mfjax.init_params(k, n_users, n_items, rank))(init_keys)
    return train_grid(
      params,
      train,
      learning_rate=lrs,
      l2=l2s,
      l2_bias=l2_bias,
      keys=shuffle_keys,
      steps=epochs,
      batch_size=batch,
      validation_data=valid,
      scale=maps.scale,
    )

  def one_fn(init_key, shuffle_key, lr, l2):
    params = mfjax.init_params(init_key, n_users, n_items, rank)
    return mfjax.train(
      params,
      train,
      optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=lr),
      steps=epochs,
      l2=l2,
      l2_bias=l2_bias,
      batch_size=batch,
      key=shuffle_key,
      validation_data=valid,
      scale=maps.scale,
    )

  def run_grid(program):
    out = program(init_keys, shuffle_keys, lrs, l2s)
    jax.block_until_ready(out)
    return out

  def run_sequential(program):
    outs = [program(init_keys[j], shuffle_keys[j], lrs[j], l2s[j]) for j in range(n)]
    jax.block_until_ready(outs)
    return outs

  def timed(fn, *a):
    start = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - start, out

  cold = {"grid": [], "sequential": []}
  for _ in range(args.repeats):
    for name, fn, body in (
      ("grid", run_grid, grid_fn),
      ("sequential", run_sequential, one_fn),
    ):
      jax.clear_caches()
      program = jax.jit(body)
      seconds, out = timed(fn, program)
      cold[name].append(seconds)
      if name == "grid":
        grid_out, grid_program = out, program
      else:
        seq_out, seq_program = out, program
  # The last clear_caches() also dropped the grid's executable: the untimed
  # first round compiles it again before the warm runs.
  warm = harness.time_interleaved(
    {
      "grid": lambda: run_grid(grid_program),
      "sequential": lambda: run_sequential(seq_program),
    },
    args.repeats,
  )
  warm = {name: t.warm for name, t in warm.items()}

  shared = jax.jit(lambda i, k, lr, l2: grid_fn(i, k, lr, l2))
  run_shared = lambda: shared(init_keys, shuffle_keys[0], lrs, l2s)
  shared_warm = harness.time_calls(run_shared, args.repeats).warm

  seq_rmse = np.array([float(np.nanmin(o.validation_rmse)) for o in seq_out])
  diff = float(np.max(np.abs(np.asarray(grid_out.scores) - seq_rmse)))
  best = int(grid_out.best_index)
  print(
    f"best configuration {best}: learning rate {float(lrs[best]):g}, l2 "
    f"{float(l2s[best]):g}, validation RMSE {float(grid_out.scores[best]):.4f} "
    f"(sequential best {int(np.argmin(seq_rmse))}); largest difference of a "
    f"configuration's validation RMSE, grid vs sequential: {diff:.2e}"
  )
  record.results.update(
    best=best, max_rmse_difference=diff, cold=cold, warm=warm, shared_warm=shared_warm
  )
  for label, times in (("warm", warm), ("cold", cold)):
    g, s = harness.summary(times["grid"]), harness.summary(times["sequential"])
    print(
      f"{label}: one grid call {g['median']:7.3f} s (min {g['min']:.3f}); "
      f"16 sequential calls {s['median']:7.3f} s (min {s['min']:.3f}); "
      f"sequential / grid = {s['median'] / g['median']:.2f}× "
      f"(min/min {s['min'] / g['min']:.2f}×)",
      flush=True,
    )
  s, shared = harness.summary(warm["sequential"]), harness.summary(shared_warm)
  print(
    f"warm, one grid call whose configurations share one shuffle key: "
    f"{shared['median']:7.3f} s (min {shared['min']:.3f}); "
    f"sequential / grid = {s['median'] / shared['median']:.2f}×",
    flush=True,
  )
  record.write()


if __name__ == "__main__":
  main()
