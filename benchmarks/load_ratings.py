"""How fast and how lean load_ratings reads a MovieLens-20M-sized file.

Writes a synthetic ``ratings.csv`` in the ml-latest layout (header, then
``userId,movieId,rating,timestamp``; 138,493 users, 26,744 movies, half-star
ratings, like MovieLens 20M) unless it exists, then loads it in a fresh process
--repeats times and reports the wall time and the peak resident memory above the
process's baseline (after importing mfjax), against the size of the final arrays.

Usage: python benchmarks/load_ratings.py [--lines 20000263] [--path /tmp/ml20m.csv]
                                         [--repeats 3]
       python benchmarks/run.py load_ratings [--quick] [...]
Writes benchmarks/results/load_ratings/ (harness.Record).
"""

import argparse
import os
import subprocess
import sys

import harness
import numpy as np

CHILD = r"""
import resource, sys, time
import mfjax
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
ratings, maps = mfjax.load_ratings(sys.argv[1])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
final = sum(x.nbytes for x in (ratings.users, ratings.items, ratings.values))
print(seconds, (peak - base) * 1024, final, len(ratings), maps.n_duplicates)
"""


def write(path, lines, seed=0):
  rng = np.random.default_rng(seed)
  with open(path, "w") as f:
    f.write("userId,movieId,rating,timestamp\n")
    for start in range(0, lines, 1_000_000):
      n = min(1_000_000, lines - start)
      block = np.column_stack(
        [
          rng.integers(1, 138_494, n),
          rng.integers(1, 26_745, n),
          rng.integers(1, 11, n),
          rng.integers(789_652_009, 1_427_784_002, n),
        ]
      )
      text = "\n".join(f"{u},{i},{r / 2:.1f},{t}" for u, i, r, t in block.tolist())
      f.write(text + "\n")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--lines", type=int, default=20_000_263)
  parser.add_argument("--path", default="/tmp/mfjax-ml20m-synthetic.csv")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  record = harness.Record("load_ratings", args)
  if not os.path.exists(args.path):
    write(args.path, args.lines)
  size = os.path.getsize(args.path)
  runs = []
  for _ in range(args.repeats):
    out = subprocess.run(
      [sys.executable, "-c", CHILD, args.path],
      check=True,
      capture_output=True,
      text=True,
    ).stdout.split()
    runs.append(tuple(float(x) for x in out))
  seconds = harness.summary(r[0] for r in runs)
  peak, final = max(r[1] for r in runs), runs[0][2]
  keys = ("seconds", "peak_rise", "final", "n", "dups")
  record.results.update(
    runs=[dict(zip(keys, r, strict=True)) for r in runs],
    seconds=seconds, peak_bytes=peak, final_bytes=final, file_bytes=size,
  )  # fmt: skip
  print(
    f"{args.path}: {int(runs[0][3]):,} ratings ({int(runs[0][4]):,} duplicates "
    f"resolved), {size / 1e6:.0f} MB"
  )
  print(f"  load: median {seconds['median']:.2f} s, min {seconds['min']:.2f} s")
  print(
    f"  peak memory above baseline {peak / 1e6:.0f} MB; final arrays "
    f"{final / 1e6:.0f} MB; ratio {peak / final:.2f}x"
  )
  record.write()


if __name__ == "__main__":
  main()
