"""The ranking fit and ``recommend --all`` at a million interactions and more,
against implicit's ALS at the same rank and passes (issue 29, "Scale").

Data: synthetic power-law interactions, every rating 1: users and items drawn
with weight ``(j + 1) ** -1`` for the j-th most popular (as
``mfjax.synthetic_ratings``), repeated pairs dropped until --interactions
distinct pairs remain, ids shuffled; written as a CSV file (user,item,rating)
in a temporary folder.

Each measurement runs in its own child process, whose peak resident set comes
from ``os.wait4`` (so one phase's memory never hides another's):

- ``mfjax fit CSV --objective ranking --rank R --steps P --save M``: the whole
  command (reading the CSV, compiling, fitting, saving); run --repeats times,
  the first with an empty compilation cache (cold), the others warm;
- ``mfjax recommend M --all -n 10 --output OUT``: every user's top 10, training
  pairs left out, written as CSV; --repeats times;
- in-process fits, cold (compile included) and warm: ``mfjax.fit(...,
  objective='ranking')`` on the loaded ratings, and implicit's
  ``AlternatingLeastSquares(factors=R, iterations=P).fit`` on the same pairs
  as a CSR matrix (``OPENBLAS_NUM_THREADS=1``, as implicit asks), and
  implicit's ``recommend`` of every user's top 10 with liked items filtered.

Usage: python benchmarks/ranking_scale.py [--size 1m|10m] [--repeats 3]
         [--rank 32] [--passes 8] [--no-implicit]
       python benchmarks/run.py ranking_scale [--quick] [...]
Writes benchmarks/results/ranking_scale/ (harness.Record).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import numpy as np

SIZES = {  # users, items, interactions
  "1m": (30_000, 40_000, 1_000_000),
  "10m": (200_000, 100_000, 10_000_000),
  "tiny": (3_000, 4_000, 100_000),  # --quick
}


def draw(n_users: int, n_items: int, n: int, seed: int = 0):
  """``n`` distinct (user, item) pairs, power-law in both, ids shuffled."""
  rng = np.random.default_rng(seed)

  def weights(m):
    w = 1.0 / np.arange(1, m + 1)
    return w / w.sum()

  pu, pi = weights(n_users), weights(n_items)
  keys = np.empty(0, np.int64)
  while keys.size < n:
    want = int((n - keys.size) * 1.3) + 1000
    users = rng.choice(n_users, want, p=pu)
    items = rng.choice(n_items, want, p=pi)
    keys = np.unique(np.concatenate([keys, users.astype(np.int64) * n_items + items]))
  keys = rng.permutation(keys)[:n]
  user_ids, item_ids = rng.permutation(n_users), rng.permutation(n_items)
  return user_ids[keys // n_items], item_ids[keys % n_items]


def write_csv(path: Path, users, items) -> None:
  with open(path, "w") as f:
    f.write("user,item,rating\n")
    np.savetxt(
      f, np.stack([users, items, np.ones_like(users)], 1), fmt="%d", delimiter=","
    )


def timed_child(argv, env=None) -> dict:
  """``argv`` in a child: its wall seconds, its own peak RSS in GB (from
  ``os.wait4``) and its stdout's last line."""
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0), err.seek(0)
    if proc.returncode:
      raise RuntimeError(f"{' '.join(argv[:5])} ... exited {proc.returncode}: "
                         f"{err.read()[-2000:]}")  # fmt: skip
    last = (out.read().strip().splitlines() or [""])[-1]
  return {"seconds": seconds, "peak_gb": usage.ru_maxrss * 1024 / 1e9, "last": last}


def cli_runs(args, folder: Path, env) -> dict:
  """The whole ``mfjax fit`` and ``mfjax recommend --all`` commands."""
  mfjax_cli = [sys.executable, "-m", "mfjax"]
  data, model, out = folder / "train.csv", folder / "model.npz", folder / "top10.csv"
  fit = [
    *mfjax_cli, "fit", str(data), "--objective", "ranking", "--rank",
    str(args.rank), "--steps", str(args.passes), "--save", str(model),
  ]  # fmt: skip
  rec = [*mfjax_cli, "recommend", str(model), "--all", "-n", "10", "--output", str(out)]
  fits, alls = [], []
  for _ in range(args.repeats):
    fits.append(timed_child(fit, env))
    alls.append(timed_child(rec, env))
  rows = sum(1 for _ in open(out)) - 1
  return {"fit": fits, "recommend_all": alls, "rows_written": rows}


def in_process(args, folder: Path) -> dict:
  """Child: mfjax's and implicit's fits in this process, cold and warm."""
  import jax

  import mfjax

  users, items = np.load(folder / "pairs.npy")
  n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
  ratings = mfjax.Ratings(
    jax.numpy.asarray(users, np.int32),
    jax.numpy.asarray(items, np.int32),
    jax.numpy.ones(users.size, np.float32),
    n_users,
    n_items,
  )

  def fit_mfjax():
    return mfjax.fit(
      jax.random.key(0), ratings, objective="ranking", rank=args.rank, steps=args.passes
    ).best_params.item_factors

  timings = {"mfjax fit": fit_mfjax}
  out = {}
  if not args.no_implicit:
    import scipy.sparse
    from implicit.cpu.als import AlternatingLeastSquares

    matrix = scipy.sparse.csr_matrix(
      (np.ones(users.size, np.float32), (users, items)), shape=(n_users, n_items)
    )

    def fit_implicit():
      model = AlternatingLeastSquares(
        factors=args.rank, iterations=args.passes, random_state=0
      )
      model.fit(matrix, show_progress=False)
      out["implicit_model"] = model
      return model.item_factors

    timings["implicit ALS fit"] = fit_implicit
  result = {
    name: t.as_dict()
    for name, t in harness.time_interleaved(timings, args.repeats).items()
  }
  if not args.no_implicit:
    model = out["implicit_model"]

    def recommend_all():
      return model.recommend(
        np.arange(n_users), matrix, N=10, filter_already_liked_items=True
      )

    result["implicit recommend all"] = harness.time_calls(
      recommend_all, args.repeats
    ).as_dict()
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="1m")
  parser.add_argument("--rank", type=int, default=32)
  parser.add_argument("--passes", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no-implicit", action="store_true")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    result = in_process(args, Path(args.child))
    print(json.dumps(result))
    return
  n_users, n_items, n = SIZES[args.size]
  record = harness.Record("ranking_scale", args, peers=["implicit", "scipy"])
  with tempfile.TemporaryDirectory(prefix="mfjax-scale-") as tmp:
    folder = Path(tmp)
    start = time.perf_counter()
    users, items = draw(n_users, n_items, n)
    np.save(folder / "pairs.npy", np.stack([users, items]))
    write_csv(folder / "train.csv", users, items)
    print(f"{args.size}: {n:,} pairs, {n_users:,} x {n_items:,}, drawn and "
          f"written in {time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env["MFJAX_COMPILATION_CACHE"] = str(folder / "jax-cache")  # Empty: cold.
    cli = cli_runs(args, folder, env)
    child = [sys.executable, __file__, "--size", args.size, "--rank", str(args.rank)]
    child += ["--passes", str(args.passes), "--repeats", str(args.repeats)]
    child += ["--no-implicit"] * args.no_implicit + ["--child", str(folder)]
    ran = timed_child(child, env)
    inproc = json.loads(ran["last"])
  record.results.update(cli=cli, in_process=inproc, in_process_peak_gb=ran["peak_gb"])
  report(args, cli, inproc)
  record.write()


def report(args, cli, inproc) -> None:
  med = lambda runs: harness.summary(r["seconds"] for r in runs)  # noqa: E731
  fit, rec = med(cli["fit"]), med(cli["recommend_all"])
  print(f"\nrank {args.rank}, {args.passes} passes, {args.repeats} repeats")
  print("| measurement | cold / first | warm median (min) | peak RSS |")
  print("|---|---|---|---|")
  for label, runs in (
    ("mfjax fit (whole command)", cli["fit"]),
    ("mfjax recommend --all -n 10 (whole command)", cli["recommend_all"]),
  ):
    warm = runs[1:] or runs
    ws = harness.summary(r["seconds"] for r in warm)
    peak = max(r["peak_gb"] for r in runs)
    print(f"| {label} | {runs[0]['seconds']:.2f} s | {ws['median']:.2f} s "
          f"({ws['min']:.2f}) | {peak:.2f} GB |")  # fmt: skip
  for name, t in inproc.items():
    print(f"| {name} (in process) | {t['cold']:.2f} s | {t['median']:.2f} s "
          f"({t['min']:.2f}) | |")  # fmt: skip
  if "implicit ALS fit" in inproc:
    ratio = inproc["mfjax fit"]["median"] / inproc["implicit ALS fit"]["median"]
    print(f"mfjax fit / implicit ALS fit, warm medians: {ratio:.2f}x")
  print(f"recommend --all / fit, whole commands' medians: "
        f"{rec['median'] / fit['median']:.2f}x")  # fmt: skip


if __name__ == "__main__":
  main()
