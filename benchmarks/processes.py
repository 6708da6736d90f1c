"""Several processes against one: the same results, and memory per process.

Equality (``--equality``): on ML-100k u1 (u1.base, u1.test) and on a synthetic
file of 1M ratings (``mfjax.synthetic_ratings(key(0), 20000, 5000, 1000000, 8)``,
as benchmarks/throughput.py, split 90/10 with NumPy seed 0), ``mfjax fit`` with
its defaults runs as 2 processes x 2 CPU devices (``mfjax launch -n 2 --devices
2``, each process reading its own part of the files), as 1 process x 4 devices
and as 1 process x 1 device; the script prints each run's test RMSE, its
difference to 1 x 1's, the largest difference of the saved params, and the fit
and wall seconds. Then ``mfjax.train`` full-batch (Adam, rank 8, 20 steps;
benchmarks/train_processes.py) over 2 x 2 against 1 x 1: the largest
difference of the losses and of the best params.

Memory (``--memory``): a file of N ratings of distinct random pairs (default
10M, written once to --workdir) is read by 1 process and by 2 joined processes
(one device each), then trained one full-batch step; each process reports its
resident memory before reading, its peak while reading and the seconds read;
in a second run under tracemalloc (slow), the peak of its host arrays while
reading (train_processes.py). The
ratings part is the difference; the script prints each process's and the ratio
to the single process's.

Usage:
  python benchmarks/processes.py [--equality] [--memory] [--n 10000000]
      [--data ../shared/data/ml-100k] [--workdir /tmp/mfjax-processes]
  python benchmarks/run.py processes [--quick] [...]
Writes benchmarks/results/processes/ (harness.Record).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import harness
import numpy as np

HERE = Path(__file__).resolve().parent
RUNS = {
  "2 x 2": ("launch", "-n", "2", "--devices", "2", "--"),
  "1 x 4": ("launch", "-n", "1", "--devices", "4", "--"),
  "1 x 1": (),
}


def write_ratings(path: Path, users, items, values) -> None:
  """A tab-separated file of 1-based ids, written through a temporary name."""
  lines = (
    f"{u + 1}\t{i + 1}\t{v:.4f}\n" for u, i, v in zip(users, items, values, strict=True)
  )
  partial = path.with_suffix(".partial")
  with open(partial, "w") as f:
    f.writelines(lines)
  os.replace(partial, path)


def synthetic_1m(workdir: Path) -> tuple[Path, Path]:
  """throughput.py's 1M planted rank-8 ratings, split 90/10; written once."""
  train, test = workdir / "synthetic1m.train", workdir / "synthetic1m.test"
  if train.exists() and test.exists():
    return train, test
  import jax

  import mfjax

  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 20_000, 5_000, 1_000_000, 8)
  columns = [np.asarray(x) for x in (ratings.users, ratings.items, ratings.values)]
  order = np.random.default_rng(0).permutation(len(columns[0]))
  held = np.zeros(len(order), bool)
  held[order[: len(order) // 10]] = True
  write_ratings(test, *(c[held] for c in columns))
  write_ratings(train, *(c[~held] for c in columns))
  return train, test


def mfjax_cli(*argv) -> tuple[dict, float, str]:
  """``(JSON report, wall seconds, output)`` of ``python -m mfjax ARGV --json``."""
  env = dict(os.environ, MFJAX_COMPILATION_CACHE="0")
  start = time.perf_counter()
  done = subprocess.run(
    [sys.executable, "-m", "mfjax", *argv, "--json"],
    capture_output=True, text=True, env=env, check=False,
  )  # fmt: skip
  wall = time.perf_counter() - start
  if done.returncode:
    raise SystemExit(f"mfjax {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
  for line in done.stdout.splitlines():
    line = line.removeprefix("[0] ")
    if line.startswith("{"):
      return json.loads(line), wall, done.stdout
  raise SystemExit(f"no report from mfjax {' '.join(argv)}:\n{done.stdout}")


def params_of(path: Path) -> list[np.ndarray]:
  import mfjax

  return [np.asarray(x) for x in mfjax.load(str(path)).params]


def train_runs(train: Path, workdir: Path, processes: int, devices: int, **options):
  """benchmarks/train_processes.py in ``processes`` joined processes: the
  reports of every process (process 0's first)."""
  from mfjax import distributed

  out = workdir / f"train{processes}x{devices}.npz"
  argv = [
    sys.executable,
    str(HERE / "train_processes.py"),
    str(train),
    "--out",
    str(out),
  ]
  for name, value in options.items():  # A value of "" is a flag.
    argv += [f"--{name.replace('_', '-')}" + (f"={value}" if value != "" else "")]
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  if processes > 1:
    argv += ["--coordinator", f"127.0.0.1:{distributed.free_port()}"]
    argv += ["--num-processes", str(processes)]
  children = [
    subprocess.Popen(
      argv + (["--process-id", str(i)] if processes > 1 else []),
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )  # fmt: skip
    for i in range(processes)
  ]
  outputs = [c.communicate()[0] for c in children]
  for child, output in zip(children, outputs, strict=True):
    if child.returncode:
      raise SystemExit(f"train_processes.py failed:\n{output}")
  names = [out] + [out.with_name(f"{out.stem}.p{i}.npz") for i in range(1, processes)]
  return [dict(np.load(name)) for name in names]


def equality(data: Path, workdir: Path) -> list:
  files = {"ML-100k u1": (data / "u1.base", data / "u1.test")}
  files["synthetic 1M"] = synthetic_1m(workdir)
  print(
    "| data | run | test RMSE | - 1 x 1 | max abs params - 1 x 1 | fit s | wall s |"
  )
  print("|---|---|---|---|---|---|---|")
  rows = []
  for name, (train, test) in files.items():
    reports, params = {}, {}
    for run, launcher in RUNS.items():
      saved = workdir / f"fit-{run.replace(' ', '')}.npz"
      fit = ["fit", str(train), "--test", str(test), "--save", str(saved)]
      reports[run] = mfjax_cli(*launcher, *fit)
      params[run] = params_of(saved)
    alone = reports["1 x 1"][0]["test_rmse"]
    for run, (report, wall, _) in reports.items():
      gap = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(params[run], params["1 x 1"], strict=True)
      )
      rows.append(dict(data=name, run=run, report=report, wall=wall, gap=gap))
      print(
        f"| {name} | {run} | {report['test_rmse']:.6f} | "
        f"{report['test_rmse'] - alone:+.1e} | {gap:.1e} | "
        f"{report['fit_seconds']:.2f} | {wall:.1f} |"
      )
    one = train_runs(train, workdir, 1, 1, steps=20)[0]
    two = train_runs(train, workdir, 2, 2, steps=20)[0]
    gap = max(
      float(np.max(np.abs(one[k] - two[k]))) for k in one if k.startswith("params_")
    )
    rows.append(dict(
      data=name, run="train full-batch 2 x 2", best_loss=two["best_loss"],
      max_loss_difference=np.max(np.abs(one["losses"] - two["losses"])), gap=gap,
      train_seconds=two["train_seconds"], train_seconds_1x1=one["train_seconds"],
    ))  # fmt: skip
    print(
      f"| {name} | train full-batch 2 x 2 | loss {two['best_loss']:.6f} | "
      f"max abs losses {np.max(np.abs(one['losses'] - two['losses'])):.1e} | {gap:.1e} "
      f"| {two['train_seconds']:.2f} (1 x 1: {one['train_seconds']:.2f}) | |"
    )
  return rows


def distinct_pairs_file(workdir: Path, n: int) -> Path:
  """``n`` ratings of distinct (user, item) pairs (n/50 users, n/200 items,
  half-star ratings), in random order; written once. synthetic_ratings draws
  pairs with replacement: at 10M, half its lines repeat a pair."""
  path = workdir / f"distinct{n}.tsv"
  if path.exists():
    return path
  rng = np.random.default_rng(0)
  n_users, n_items = max(n // 50, 10), max(n // 200, 10)
  cells = np.unique(rng.integers(0, n_users * n_items, n + n // 4 + 100))
  cells = rng.permutation(cells)[:n]
  values = rng.integers(2, 11, len(cells)) / 2
  write_ratings(path, cells // n_items, cells % n_items, values)
  return path


def memory(n: int, workdir: Path) -> list:
  train = distinct_pairs_file(workdir, n)
  print(f"{train}: {train.stat().st_size / 2**20:.0f} MiB, {n:,} ratings")
  print("| processes | process | before reading MiB | peak reading MiB "
        "| ratings part MiB | / 1 process | host arrays peak MiB | / 1 process "
        "| read s |")  # fmt: skip
  print("|---|---|---|---|---|---|---|---|---|")
  alone, rows = None, []
  for processes in (1, 2):
    reports = train_runs(train, workdir, processes, 1, steps=1)
    traced = train_runs(train, workdir, processes, 1, steps=1, trace="")
    for index, (report, trace) in enumerate(zip(reports, traced, strict=True)):
      part = (report["read_peak_rss"] - report["base_rss"]) / 2**20
      arrays = trace["read_peak_arrays"] / 2**20
      alone = (part, arrays) if alone is None else alone
      keys = ("base_rss", "read_peak_rss", "read_seconds")
      rows.append(
        {"processes": processes, "process": index}
        | {key: report[key] for key in keys}
        | {"read_peak_arrays": trace["read_peak_arrays"]}
      )
      print(
        f"| {processes} | {index} | {report['base_rss'] / 2**20:.0f} | "
        f"{report['read_peak_rss'] / 2**20:.0f} | {part:.0f} | {part / alone[0]:.2f} "
        f"| {arrays:.0f} | {arrays / alone[1]:.2f} | {report['read_seconds']:.1f} |"
      )
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--equality", action="store_true")
  parser.add_argument("--memory", action="store_true")
  parser.add_argument("--n", type=int, default=10_000_000)
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--workdir", type=Path, default=Path("/tmp/mfjax-processes"))
  args = parser.parse_args()
  args.workdir.mkdir(parents=True, exist_ok=True)
  record = harness.Record("processes", args)
  print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
  if args.equality or not args.memory:
    data = harness.data_dir(args.data)
    record.results["equality"] = equality(data, args.workdir)
  if args.memory or not args.equality:
    record.results["memory"] = memory(args.n, args.workdir)
  print(f"load average {os.getloadavg()[0]:.2f}")
  record.write()


if __name__ == "__main__":
  main()
