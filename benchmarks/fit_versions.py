"""Two versions of mfjax's fit side by side: validation RMSE and warm fit time.

Each round runs one process of the old code (``--old DIR``: a folder holding an
``mfjax`` package, e.g. ``git archive REV mfjax | tar -x -C DIR``) then one of
this checkout's, alternating, so that the machine's load hits both alike. Each
process fits on validation splits only (no test file is read):

- ``ml100k``: 90/10 splits (numpy seed 0) of u1.base, u2.base and u3.base
  (``--splits``);
- ``synthetic1m``: the 900,000 training ratings of ``peers_movielens.py``'s 1M
  file, split again 90/10 (seed 1): fit on 810,000, score 90,000.

and prints, per file, the mean validation RMSE and the warm fit's median and
minimum over ``--repeats`` fits after a first (compiling) one. The last lines
give new / old ratios of the warm medians, per round and their median.

Without ``--old``, one process of this checkout prints its figures (a
validation grid: one run per ``--mfjax`` setting).

Usage:
  python benchmarks/fit_versions.py [--old DIR] [--files ml100k,synthetic1m]
      [--rounds 2] [--repeats 3] [--mfjax KEY=VALUE ...] [--data DIR]
      [--splits 1,2,3]
  python benchmarks/run.py fit_versions [--quick] [...]
Writes benchmarks/results/fit_versions/ (harness.Record).
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import harness

REPO = harness.REPO


def _splits(name: str, data: Path, folds=(1, 2, 3)):
  import jax
  import numpy as np

  import mfjax

  def cut(users, items, values, n_users, n_items, seed, fraction=0.9):
    order = np.random.default_rng(seed).permutation(len(values))
    k = int(fraction * len(values))
    part = lambda idx: mfjax.Ratings(
      users[idx], items[idx], values[idx], n_users, n_items
    )
    return part(order[:k]), part(order[k:])

  if name == "ml100k":
    for fold in folds:
      base, _ = mfjax.load_ratings(data / f"u{fold}.base")
      arrays = [np.asarray(x) for x in (base.users, base.items, base.values)]
      yield cut(*arrays, base.n_users, base.n_items, seed=0)
  else:
    r, _ = mfjax.synthetic_ratings(jax.random.key(0), 20_000, 5_000, 1_000_000, 8)
    arrays = [np.asarray(x) for x in (r.users, r.items, r.values)]
    train = np.random.default_rng(0).permutation(len(arrays[2]))[:900_000]
    yield cut(*[x[train] for x in arrays], 20_000, 5_000, seed=1)


def measure(files, repeats, settings, data, folds):
  """One process's figures: ``{file: {"rmse": mean, "warm": [...]}}``, warm:
  the median of each split's fits after a first (cold, compiling) one."""
  import jax

  import mfjax

  out = {}
  for name in files:
    scores, warm, cold = [], [], []
    for j, (fit, val) in enumerate(_splits(name, data, folds)):
      key = jax.random.key(j + 1)
      t = harness.time_calls(
        functools.partial(mfjax.fit, key, fit, **settings), repeats
      )
      warm.append(t.median)
      cold.append(t.cold)
      scores.append(float(mfjax.rmse(t.result.best_params, val)))
    out[name] = {"rmse": statistics.fmean(scores), "warm": warm, "cold": cold}
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--old", type=Path)
  parser.add_argument("--files", default="ml100k,synthetic1m")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--mfjax", action="append", default=[], metavar="KEY=VALUE")
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--splits", default="1,2,3", help="ml100k: uN.base folds")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  settings = {
    k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.mfjax)
  }
  files = args.files.split(",")
  folds = [int(f) for f in args.splits.split(",")]
  data = harness.data_dir(args.data) if "ml100k" in files else args.data
  if args.child:
    print(json.dumps(measure(files, args.repeats, settings, data, folds)))
    return
  record = harness.Record("fit_versions", vars(args) | {"data": data})
  if args.old is None:  # This checkout alone.
    print(f"load before {os.getloadavg()}; settings {settings or 'defaults'}")
    figures = measure(files, args.repeats, settings, data, folds)
    record.results["new"] = figures
    for name, f in figures.items():
      print(
        f"{name:12} val RMSE {f['rmse']:.4f}  warm median "
        f"{statistics.median(f['warm']):.3f} s (per split "
        f"{', '.join(f'{t:.3f}' for t in f['warm'])}); load {os.getloadavg()[0]:.2f}"
      )
    record.write()
    return
  if not (args.old / "mfjax").is_dir():
    parser.error("--old DIR must hold an mfjax package (git archive REV mfjax).")
  print(f"load before {os.getloadavg()}; settings {settings or 'defaults'}")
  ratios = {name: [] for name in files}
  child = [sys.executable, __file__, "--child", "--files", args.files]
  child += ["--repeats", str(args.repeats), "--splits", args.splits]
  child += ["--data", str(data)] if data else []
  child += [f"--mfjax={kv}" for kv in args.mfjax]
  record.results["rounds"] = rounds = []
  for r in range(args.rounds):
    figures = {}
    rounds.append(figures)
    for label, path in (("old", args.old), ("new", REPO)):
      env = dict(os.environ, PYTHONPATH=str(path))
      done = subprocess.run(child, env=env, capture_output=True, text=True)
      if done.returncode:
        sys.exit(f"{label} run failed:\n{done.stderr[-2000:]}")
      figures[label] = json.loads(done.stdout.strip().splitlines()[-1])
      for name, f in figures[label].items():
        print(
          f"round {r} {label} {name:12} val RMSE {f['rmse']:.4f}  warm median "
          f"{statistics.median(f['warm']):.3f} s min {min(f['warm']):.3f} s "
          f"(per split {', '.join(f'{t:.3f}' for t in f['warm'])}); "
          f"load {os.getloadavg()[0]:.2f}",
          flush=True,
        )
    for name in files:
      old, new = (statistics.fmean(figures[v][name]["warm"]) for v in ("old", "new"))
      ratios[name].append(new / old)
  for name, values in ratios.items():
    print(
      f"{name}: new/old warm {statistics.median(values):.2f} (rounds: "
      f"{', '.join(f'{v:.2f}' for v in values)})"
    )
  record.results["new/old warm"] = ratios
  print(f"load after {os.getloadavg()}")
  record.write()


if __name__ == "__main__":
  main()
