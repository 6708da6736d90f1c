"""The fast loop: its wall time, its line coverage, and what its dear tests buy.

``pytest -m "not slow"`` is the loop a developer runs between edits (issue 28:
under 60 s on 2 CPU cores). A test joins the ``slow`` mark when it costs about a
second or more and faster tests run the same lines of mfjax. This script runs
the fast loop once under coverage with one context per test, then reports:

- the loop's wall time, its test count and its line coverage of mfjax/;
- every test function that costs ``--over`` seconds or more (call, set-up and
  tear-down, all parameters together), with the lines of mfjax/ that no cheaper
  test runs. Taken greedily by lines per second, the ones that buy fewer than
  ``--rate`` lines a second are the candidates for ``@pytest.mark.slow``
  (a doctest goes in the root conftest.py's SLOW_DOCTESTS).

Lines JAX runs only while tracing count for whichever test traced them first, so
a candidate's "unique" lines are an upper bound: marking it slow loses at most
those. Re-run after marking to see the loop's coverage as it is. Lines a test's
subprocess runs are not measured.

Needs coverage and pytest-cov (the bench extra).
Usage: python benchmarks/fast_loop.py [--over 1.0] [--rate 5] [--workers 2]
       python benchmarks/run.py fast_loop
Writes benchmarks/results/fast_loop/ (harness.Record).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parent.parent
DURATION = re.compile(r"\s*([\d.]+)s (?:call|setup|teardown)\s+(\S+)")


def function_of(nodeid: str) -> str:
  """tests/x.py::test_f[param] -> tests/x.py::test_f: marks go on functions."""
  return nodeid.split("[")[0]


def run_loop(data_file: Path, workers: int) -> tuple[float, str]:
  argv = [sys.executable, "-m", "pytest", "-m", "not slow", "-q", "-n", str(workers)]
  argv += ["--durations=0", "--cov=mfjax", "--cov-context=test", "--cov-report="]
  env = dict(os.environ, COVERAGE_FILE=str(data_file))
  start = time.perf_counter()
  done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - start
  if done.returncode != 0:
    sys.exit(f"the fast loop failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
  return wall, done.stdout


def lines_by_function(data_file: Path) -> tuple[dict, set]:
  import coverage  # The bench extra: the library and its tests never need it.

  data = coverage.CoverageData(str(data_file))
  data.read()
  by_function, every = collections.defaultdict(set), set()
  for path in data.measured_files():
    for line, contexts in data.contexts_by_lineno(path).items():
      every.add((path, line))
      for context in filter(None, contexts):
        by_function[function_of(context.split("|")[0])].add((path, line))
  return by_function, every


def candidates(cost: dict, lines: dict, over: float, rate: float) -> list[dict]:
  """The dear functions, greedily by new lines per second: what each adds."""
  cheap = [f for f in lines if cost.get(f, 0.0) < over]
  covered = set().union(*(lines[f] for f in cheap)) if cheap else set()
  dear = {f for f in set(lines) | set(cost) if cost.get(f, 0.0) >= over}
  rows = []
  while dear:
    best = max(dear, key=lambda f: (len(lines[f] - covered) / cost[f], f))
    new = lines[best] - covered
    rows.append(
      {
        "test": best,
        "seconds": round(cost[best], 2),
        "unique_lines": len(new),
        "lines_per_second": round(len(new) / cost[best], 1),
        "mark_slow": len(new) / cost[best] < rate,
      }
    )
    covered |= new
    dear.discard(best)
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--over", type=float, default=1.0, help="seconds (default 1)")
  parser.add_argument("--rate", type=float, default=5.0, help="lines/s (default 5)")
  parser.add_argument("--workers", type=int, default=2)
  args = parser.parse_args()
  record = harness.Record("fast_loop", args)
  with tempfile.TemporaryDirectory() as tmp:
    wall, out = run_loop(Path(tmp) / ".coverage", args.workers)
    lines, every = lines_by_function(Path(tmp) / ".coverage")
  cost = collections.Counter()
  for seconds, nodeid in DURATION.findall(out):
    cost[function_of(nodeid)] += float(seconds)
  rows = candidates(cost, lines, args.over, args.rate)
  summary = re.findall(r"^\d+ passed.*$", out, re.M)
  record.results.update(
    wall_seconds=round(wall, 1),
    pytest_summary=summary[-1] if summary else None,
    lines_run=len(every),
    candidates=rows,
  )
  print(f"fast loop: {summary[-1] if summary else '?'}; {wall:.1f} s wall")
  print(f"lines of mfjax run: {len(every)}")
  print(f"tests of {args.over} s or more, by new lines per second:")
  for row in rows:
    flag = "  mark slow" if row["mark_slow"] else ""
    print(
      f"  {row['seconds']:6.2f} s {row['unique_lines']:5d} lines"
      f" {row['lines_per_second']:7.1f}/s  {row['test']}{flag}"
    )
  record.write()


if __name__ == "__main__":
  main()
