"""Runs one benchmark suite and records it as JSON.

  python benchmarks/run.py SUITE [--quick] [--data DIR] [ARGS ...]
  python benchmarks/run.py --list

SUITE is a name of SUITES below. The suite's script runs in a child process of
this Python with the checkout first on PYTHONPATH (so the checkout's mfjax is
measured), its ARGS passed through (after ``--`` where one clashes with an
option of this script), and writes
``benchmarks/results/SUITE/YYYY-MM-DD-COMMIT.json`` through ``harness.Record``
(an earlier run's file is never replaced: -2, -3, ... follow).

--quick adds the suite's small arguments (fewer repeats, folds, sizes) so that
it finishes in well under a minute on 2 CPU cores: a smoke test, whose file
name ends ``-quick``; never a figure to quote. --data DIR: the MovieLens 100k
folder, passed on as $MFJAX_DATA (default: $MFJAX_DATA, else
../shared/data/ml-100k beside the repository).

A "legacy" suite is a script not converted to the harness: it runs as it is,
its output is echoed and captured, and this script writes the record with the
output in it (``results.stdout``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import NamedTuple

import harness

HERE = Path(__file__).resolve().parent


class Suite(NamedTuple):
  script: str  # in benchmarks/
  about: str
  quick: tuple[str, ...] = ()  # arguments added by --quick
  legacy: bool = False
  quick_env: tuple[tuple[str, str], ...] = ()  # environment added by --quick


SUITES = {
  "peers_movielens": Suite(
    "peers_movielens.py",
    "mfjax against LibMF, cornac, Surprise (and Spark): RMSE and fit time",
    ("--files", "ml100k", "--folds", "1", "--repeats", "1"),
  ),
  "bayesian_movielens": Suite("bayesian_movielens.py", "Gibbs: RMSE vs fit seconds"),
  "ranking_movielens": Suite(
    "ranking_movielens.py",
    "top-10 ranking on ML-100k u1-u5 against popularity and implicit",
    ("--recorded-settings", "--folds", "1", "--repeats", "1"),
  ),
  "ranking_other_data": Suite(
    "ranking_other_data.py",
    "ranking defaults on synthetic files of other shapes",
    ("--files", "half-star", "--grid", "quick"),
  ),
  "ranking_scale": Suite(
    "ranking_scale.py",
    "ranking fit and recommend --all at 1M/10M interactions against implicit ALS",
    ("--size", "tiny", "--repeats", "1"),
  ),
  "rating_lists": Suite(
    "rating_lists.py",
    "rating models' top-10 lists: by rating, shrunk, or with popularity (u1-u5)",
    ("--folds", "1"),
  ),
  "similar_items": Suite(
    "similar_items.py",
    "item neighbours of a rating model: cosine, shrunk cosine, popularity (u1-u5)",
    ("--folds", "1"),
  ),
  "ranking_counts": Suite(
    "ranking_counts.py",
    "weighing play counts in the ranking fit: none, linear, log (synthetic)",
    ("--seeds", "1", "--kinds", "indep", "--quick"),
  ),
  "ranking_rank_rule": Suite(
    "ranking_rank_rule.py",
    "the ranking fit's rank and l2 against implicit's ALS on synthetic implicit files",
    ("--files", "s100k", "--ranks", "32", "--no-implicit"),
  ),
  "ranking_alpha0_grid": Suite(
    "ranking_alpha0_grid.py",
    "validation NDCG of alpha0 x l2 by file shape",
    ("--files", "ml", "--grid", "quick"),
  ),
  "cold_start": Suite(
    "cold_start.py",
    "whole first processes: mfjax fit / demo against Surprise and torch scripts",
    ("--repeats", "1"),
  ),
  "fast_loop": Suite(
    "fast_loop.py",
    "the fast loop's wall time and coverage; its dear tests by lines per second",
  ),
  "tune_demo": Suite(
    "tune_demo.py", "the demo's rank, L2 and steps on validation splits"
  ),
  "compile_once": Suite(
    "compile_once.py",
    "XLA options, one program for nearby sizes, the padding's cost",
    ("--repeats", "1", "--levels", "level 1 (mfjax)"),
  ),
  "throughput": Suite(
    "throughput.py",
    "ratings per second of full-batch epochs, synthetic data",
    ("--sizes", "100000", "--ranks", "32", "--steps", "2", "--repeats", "1"),
  ),
  "notebook_vs_torch": Suite(
    "notebook_vs_torch.py",
    "the seed notebook's torch loop against jax.jit(mfjax.train)",
    ("--repeats", "1"),
  ),
  "fit_versions": Suite(
    "fit_versions.py",
    "two versions of the fit (--old DIR): validation RMSE and warm time",
    ("--files", "ml100k", "--repeats", "1", "--splits", "1"),
  ),
  "memory_fit": Suite(
    "memory_fit.py",
    "the memory estimate against XLA's plan and the measured peak",
    ("--cases", "100000:32:full,100000:32:chunk"),
  ),
  "tune_movielens": Suite(
    "tune_movielens.py",
    "the sparse defaults' validation grid on ML-100k",
    ("--grid", "fast", "--folds", "1", "--steps", "5"),
  ),
  "profile_gibbs": Suite(
    "profile_gibbs.py", "where a Gibbs sweep's time goes (ML-100k)", ("--quick",)
  ),
  "gibbs_other_scales": Suite(
    "gibbs_other_scales.py", "Gibbs on half-star and -10..10 files", ("--quick",)
  ),
  "tune_gibbs": Suite(
    "tune_gibbs.py", "the Gibbs defaults' validation grid on ML-100k", ("--quick",)
  ),
  "grid_vs_sequential": Suite(
    "grid_vs_sequential.py",
    "a 16-setting grid in one vmapped call against 16 calls",
    ("--repeats", "1"),
  ),
  "dense_kernels": Suite(
    "dense_kernels.py",
    "fused against dot kernel of the dense path, by size",
    ("--repeats", "1"),
  ),
  "movielens_vs_surprise": Suite(
    "movielens_vs_surprise.py",
    "mfjax defaults against Surprise SVD defaults, ML-100k u1-u5",
    ("--folds", "1", "--repeats", "1"),
  ),
  "load_ratings": Suite(
    "load_ratings.py",
    "loading a MovieLens-20M-sized file: seconds and peak memory",
    (
      "--lines",
      "100000",
      "--path",
      "/tmp/mfjax-load-ratings-quick.csv",
      "--repeats",
      "1",
    ),
  ),
  "recommend_memory": Suite(
    "recommend_memory.py",
    "top-k for every user of a large catalogue in bounded memory",
    ("--users", "10000", "--items", "2000", "--ratings", "100000", "--repeats", "1"),
  ),
  "fold_in_movielens": Suite(
    "fold_in_movielens.py",
    "folding in new users against a full retrain",
    ("--splits", "0"),
  ),
  "profile_minibatch": Suite(
    "profile_minibatch.py",
    "what one mini-batch step of the default fit costs, part by part",
    ("--repeats", "1", "--models", "1"),
  ),
  "processes": Suite(
    "processes.py",
    "several processes against one: equal results, memory per process",
    ("--memory", "--n", "100000"),
  ),
  "gpu": Suite(
    "gpu.sh",
    "the GPU checks in one run (suite, throughput, u1 fit, several devices)",
    legacy=True,
    quick_env=(("SIZES", "100000"), ("RANKS", "32"), ("TESTS", "skip")),
  ),
}
# Not suites: helpers that the suites above run as processes.
HELPERS = {
  "torch_notebook.py": "cold_start, notebook_vs_torch",
  "surprise_fit.py": "cold_start",
  "train_processes.py": "processes (and tests/distributed/test_runtime.py)",
}


def _tee(stream, sink, kept: list[str]) -> None:
  for line in stream:
    sink.write(line)
    sink.flush()
    kept.append(line)


def run_legacy(name: str, command: list[str], env: dict, quick: bool) -> int:
  """Runs ``command``, echoing its output, and records the output as JSON."""
  record = harness.Record(name, {"command": command, "quick": quick})
  record.data["quick"] = quick
  child = subprocess.Popen(
    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  out, err = [], []
  reader = threading.Thread(target=_tee, args=(child.stderr, sys.stderr, err))
  reader.start()
  _tee(child.stdout, sys.stdout, out)
  reader.join()
  code = child.wait()
  record.results.update(
    legacy=True, returncode=code, stdout="".join(out), stderr="".join(err)[-20000:]
  )
  record.write()
  return code


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__.splitlines()[0],
    epilog="suites: " + ", ".join(SUITES),
  )
  parser.add_argument("suite", nargs="?", choices=sorted(SUITES), metavar="SUITE")
  parser.add_argument("--quick", action="store_true", help="a smoke test")
  parser.add_argument("--data", help="the MovieLens 100k folder ($MFJAX_DATA)")
  parser.add_argument("--list", action="store_true", help="list the suites")
  args, extra = parser.parse_known_args(argv)
  if args.list or args.suite is None:
    for name, suite in SUITES.items():
      kind = " (legacy)" if suite.legacy else ""
      print(f"{name:22s} {suite.about}{kind}")
    print("\nhelpers: " + "; ".join(f"{k} (run by {v})" for k, v in HELPERS.items()))
    return 0 if args.list else 2
  suite = SUITES[args.suite]
  env = dict(os.environ, MFJAX_BENCH_SUITE=args.suite, PYTHONUNBUFFERED="1")
  env["MFJAX_BENCH_QUICK"] = "1" if args.quick else "0"
  path = os.environ.get("PYTHONPATH")
  env["PYTHONPATH"] = str(harness.REPO) + (os.pathsep + path if path else "")
  if args.data:
    env["MFJAX_DATA"] = str(harness.data_dir(args.data).resolve())
  if args.quick:
    env.update(suite.quick_env)
  script = str(HERE / suite.script)
  runner = ["bash"] if script.endswith(".sh") else [sys.executable]
  command = [*runner, script, *(suite.quick if args.quick else ()), *extra]
  print("$ " + " ".join(command), flush=True)
  if suite.legacy:  # Records of the scripts it runs go to their own suites.
    env["MFJAX_BENCH_SUITE"] = ""
    return run_legacy(args.suite, command, env, args.quick)
  return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
  sys.exit(main())
