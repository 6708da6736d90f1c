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
                                         [--levels NAME [--levels NAME ...]]
       python benchmarks/run.py compile_once [--quick] [...]
--levels limits part 1 to those of LEVELS (default: all). Writes
benchmarks/results/compile_once/ (harness.Record).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import harness
import jax
import jax.numpy as jnp
import numpy as np

import mfjax
from mfjax.fitting import ensemble

try:  # Where the 0.3 layout puts them, else where 0.3's first stage did.
  from mfjax.fitting.buckets import batch_size_for, bucket, pad_to_buckets
except ImportError:
  from mfjax.fitting.ensemble import batch_size_for, bucket, pad_to_buckets

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
  padded = pad_to_buckets(ratings)
  return (jax.random.key(0), padded.ratings, *l2s, None, None, padded.sizes)


def interleaved(programs: dict, repeats: int) -> dict:
  """``{name: Timing}`` of runs of ``{name: (compiled, args)}``, interleaved
  after one untimed (cold) run each."""
  return harness.time_interleaved(
    {name: (lambda c=c, a=a: c(*a)) for name, (c, a) in programs.items()}, repeats
  )


def levels(ratings, settings, repeats, names):
  program = ensemble.fit_program(settings)
  args = inputs(ratings)
  lowered = program.lower(*args)
  compiled, seconds = {}, {}
  for name in names:
    start = time.perf_counter()
    compiled[name] = (lowered.compile(LEVELS[name]), args)
    seconds[name] = time.perf_counter() - start
  out = {}
  for name, t in interleaved(compiled, repeats).items():
    out[name] = {"compile": seconds[name], "run": t}
    print(
      f"  {name:28s} compile {seconds[name]:5.2f} s  warm median {t.median:.3f} s"
      f" (min {t.min:.3f})",
      flush=True,
    )
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--synthetic", action="store_true")
  parser.add_argument("--levels", action="append", choices=list(LEVELS))
  args = parser.parse_args()
  data = harness.data_dir(args.data)
  record = harness.Record("compile_once", vars(args) | {"data": data})
  out = record.results
  print(f"{time.strftime('%Y-%m-%d %H:%M')}; load {os.getloadavg()}", flush=True)
  u1, _ = mfjax.load_ratings(data / "u1.base")
  ua, _ = mfjax.load_ratings(data / "ua.base")

  print("1. u1.base fit program (bucketed), XLA options:")
  names = args.levels or list(LEVELS)
  out["levels u1"] = levels(u1, ensemble.FitSettings(), args.repeats, names)

  print("2. mfjax.fit in one process:")
  out["fit in one process"] = {}
  for name, ratings in (("u1.base", u1), ("ua.base", ua), ("u1.base again", u1)):
    start = time.perf_counter()
    fitted = jax.block_until_ready(mfjax.fit(jax.random.key(0), ratings))
    seconds = out["fit in one process"][name] = time.perf_counter() - start
    print(f"  {name:14s} {seconds:.2f} s", flush=True)
    if name == "u1.base":
      reference = fitted
  program = ensemble.fit_program()
  _, unpadded = program(*inputs(u1, bucketed=False))
  gap = np.abs(np.asarray(unpadded.user_factors) - reference.best_params.user_factors)
  out["bucketed vs unpadded max difference"] = float(gap.max())
  print(f"  bucketed against unpadded u1 factors: max difference {gap.max():.2g}")

  print("3. the padding's cost, u1 warm:")
  runs = {
    "unpadded": (
      ensemble.compile_program(program, inputs(u1, False)),
      inputs(u1, False),
    ),
    "bucketed": (ensemble.compile_program(program, inputs(u1)), inputs(u1)),
  }
  out["padding u1"] = interleaved(runs, args.repeats)
  for name, t in out["padding u1"].items():
    print(f"  {name:10s} warm median {t.median:.3f} s (min {t.min:.3f})", flush=True)

  if args.synthetic:
    full, _ = mfjax.synthetic_ratings(jax.random.key(0), 20000, 5000, 1000000, 8)
    train, _ = mfjax.train_test_split(full, test_fraction=0.1, seed=0)
    size = batch_size_for(bucket(len(train)))
    print(f"4. synthetic 1M ({len(train):,} training ratings, batch {size}):")
    settings = ensemble.FitSettings(batch_size=size)
    out["levels synthetic 1M"] = levels(
      train, settings, 3, ["level 3 (XLA default)", "level 1 (mfjax)"]
    )
  print(f"load {os.getloadavg()}")
  record.write()


if __name__ == "__main__":
  main()
