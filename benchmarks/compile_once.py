"""The fit's compile and run time under XLA options, one program for nearby
sizes, and what the padding costs (MovieLens 100k; --synthetic adds 1M ratings).

1. ``fit_program`` of u1.base (padded to its bucket) compiled with LLVM
   optimisation levels 3 (XLA's default), 1 (mfjax's, ``ensemble.compiler_options``)
   and 0, and with level 1 and the fusion emitters off: compile seconds and the
   warm run (min of --repeats, interleaved);
2. ``mfjax.fit`` in one process: u1.base first (compiles), then ua.base (90,570
   ratings: the same bucket), with the largest difference between the bucketed
   and the unpadded program's factors on u1;
3. the padding's cost: the bucketed and the unpadded program on u1, warm,
   interleaved;
4. with --synthetic, levels 1 and 3 on the 1M-rating synthetic file of
   ``peers_movielens.py`` at the fit's batch size.

Usage: python benchmarks/compile_once.py [--data ../shared/data/ml-100k]
                                         [--repeats 5] [--synthetic]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import mfjax
from mfjax.fitting import ensemble

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/ml-100k"
LEVELS = {
  "level 3 (XLA default)": {"xla_backend_optimization_level": 3},
  "level 1 (mfjax)": {"xla_backend_optimization_level": 1},
  "level 0": {"xla_backend_optimization_level": 0},
  "level 1, no fusion emitters": {
    "xla_backend_optimization_level": 1,
    "xla_cpu_use_fusion_emitters": False,
  },
}


def inputs(ratings, bucketed=True):
  l2s = (jnp.float32(8.0), jnp.float32(1.0))
  if not bucketed:
    return (jax.random.key(0), ratings, *l2s, None, None)
  padded = ensemble.pad_to_buckets(ratings)
  return (jax.random.key(0), padded.ratings, *l2s, None, None, padded.sizes)


def interleaved(programs: dict, repeats: int) -> dict:
  """``{name: (median, min)}`` of warm runs of ``{name: (compiled, args)}``."""
  times = {name: [] for name in programs}
  for compiled, args in programs.values():
    jax.block_until_ready(compiled(*args))
  for _ in range(repeats):
    for name, (compiled, args) in programs.items():
      start = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times[name].append(time.perf_counter() - start)
  return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def levels(ratings, settings, repeats, names):
  program = ensemble.fit_program(settings)
  args = inputs(ratings)
  lowered = program.lower(*args)
  compiled, seconds = {}, {}
  for name in names:
    start = time.perf_counter()
    compiled[name] = (lowered.compile(LEVELS[name]), args)
    seconds[name] = time.perf_counter() - start
  for name, (median, low) in interleaved(compiled, repeats).items():
    print(
      f"  {name:28s} compile {seconds[name]:5.2f} s  warm median {median:.3f} s"
      f" (min {low:.3f})",
      flush=True,
    )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--synthetic", action="store_true")
  args = parser.parse_args()
  print(f"{time.strftime('%Y-%m-%d %H:%M')}; load {os.getloadavg()}", flush=True)
  u1, _ = mfjax.load_ratings(args.data / "u1.base")
  ua, _ = mfjax.load_ratings(args.data / "ua.base")

  print("1. u1.base fit program (bucketed), XLA options:")
  levels(u1, ensemble.FitSettings(), args.repeats, list(LEVELS))

  print("2. mfjax.fit in one process:")
  for name, ratings in (("u1.base", u1), ("ua.base", ua), ("u1.base again", u1)):
    start = time.perf_counter()
    fitted = jax.block_until_ready(mfjax.fit(jax.random.key(0), ratings))
    print(f"  {name:14s} {time.perf_counter() - start:.2f} s", flush=True)
    if name == "u1.base":
      reference = fitted
  program = ensemble.fit_program()
  _, unpadded = program(*inputs(u1, bucketed=False))
  gap = np.abs(np.asarray(unpadded.user_factors) - reference.best_params.user_factors)
  print(f"  bucketed against unpadded u1 factors: max difference {gap.max():.2g}")

  print("3. the padding's cost, u1 warm:")
  runs = {
    "unpadded": (
      ensemble.compile_program(program, inputs(u1, False)),
      inputs(u1, False),
    ),
    "bucketed": (ensemble.compile_program(program, inputs(u1)), inputs(u1)),
  }
  for name, (median, low) in interleaved(runs, args.repeats).items():
    print(f"  {name:10s} warm median {median:.3f} s (min {low:.3f})", flush=True)

  if args.synthetic:
    full, _ = mfjax.synthetic_ratings(jax.random.key(0), 20000, 5000, 1000000, 8)
    train, _ = mfjax.train_test_split(full, test_fraction=0.1, seed=0)
    size = ensemble.batch_size_for(ensemble.bucket(len(train)))
    print(f"4. synthetic 1M ({len(train):,} training ratings, batch {size}):")
    settings = ensemble.FitSettings(batch_size=size)
    levels(train, settings, 3, ["level 3 (XLA default)", "level 1 (mfjax)"])
  print(f"load {os.getloadavg()}")


if __name__ == "__main__":
  main()
