"""First runs as whole processes: ``mfjax fit`` and ``mfjax demo`` against a
Surprise script and the seed notebook's torch script, interleaved and repeated.

Four pairs, each ``repeats`` times in turn (A, B, A, B, ...), wall seconds of
the whole process (interpreter start, imports, loading, compiling, fitting,
scoring):

1. ``mfjax fit u1.base --test u1.test`` with an empty compilation cache, against
   ``python benchmarks/surprise_fit.py DATA u1`` (Surprise SVD defaults);
2. ``mfjax fit ua.base --test ua.test`` after ``mfjax fit u1.base`` filled the
   cache (a file of another size), against the Surprise script on ua;
3. ``mfjax demo`` (the generated film catalogue) with an empty cache against
   ``python benchmarks/torch_notebook.py``;
4. ``mfjax demo`` with the cache filled by an earlier demo, against the same;
5. and 6. the same two for ``mfjax demo --notebook`` (the seed notebook's replay);
7. the README Quickstart's first Python block as a fresh script, empty cache
   (no peer: its target is 5 s);
8. the floor under pair 1: ``python -c "import jax"``, and
   ``benchmarks/jax_floor.py`` (the smallest JAX fit of u1 as a whole process:
   full-batch Adam in one small program, no mfjax), each against the same
   Surprise script.

Prints each command's median and minimum and the ratio of the medians, with
the load average before and after.

Usage: python benchmarks/cold_start.py [--data ../shared/data/ml-100k] [--repeats 5]
         [--pairs fit,demo,notebook,quickstart,floor]
       python benchmarks/run.py cold_start [--quick] [...]

Needs the ``bench`` extra (scikit-surprise, torch); without a peer's package
its pairs time mfjax alone (the reason printed). Writes
benchmarks/results/cold_start/ (harness.Record).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
MFJAX = [sys.executable, "-m", "mfjax"]


def timed(command: list[str], cache: str) -> float:
  env = dict(os.environ, MFJAX_COMPILATION_CACHE=cache)
  start = time.perf_counter()
  subprocess.run(command, env=env, check=True, capture_output=True)
  return time.perf_counter() - start


def pair(name, mfjax_cmd, peer_cmd, repeats, prepare=None):
  """Times ``mfjax_cmd`` (each run with a cache that ``prepare`` fills, or an
  empty one) against ``peer_cmd`` (None: a peer that cannot run), interleaved."""
  ours, theirs = [], []
  for _ in range(repeats):
    cache = tempfile.mkdtemp(prefix="mfjax-cache-")
    try:
      if prepare is not None:
        timed(prepare, cache)
      ours.append(timed(mfjax_cmd, cache))
      if peer_cmd is not None:
        theirs.append(timed(peer_cmd, "0"))
    finally:
      shutil.rmtree(cache, ignore_errors=True)
  o, t = harness.summary(ours), harness.summary(theirs)
  line = (
    f"{name:44s} mfjax median {o['median']:6.2f} s (min {o['min']:5.2f}, max "
    f"{o['max']:5.2f})"
  )
  if theirs:
    line += (
      f" | peer median {t['median']:6.2f} s (min {t['min']:5.2f}) | "
      f"ratio {o['median'] / t['median']:.2f} (range {o['min'] / t['max']:.2f}-"
      f"{o['max'] / t['min']:.2f})"
    )
  print(line, flush=True)
  return {"mfjax": ours, "mfjax summary": o, "peer": theirs, "peer summary": t}


def quickstart() -> str:
  """The README Quickstart's first Python block."""
  import re

  readme = (HERE.parent / "README.md").read_text(encoding="utf-8")
  return re.search(r"```python\n(.*?)```", readme, re.S).group(1)


def peer(module: str, command: list[str]):
  """``command``, or None (the reason printed) where ``module`` is missing."""
  if importlib.util.find_spec(module) is None:
    print(f"skipped: the peer {Path(command[1]).name} ({module} not installed)")
    return None
  return command


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument(
    "--pairs",
    type=lambda text: set(text.split(",")),
    default={"fit", "demo", "notebook", "quickstart", "floor"},
    help="which of fit, demo, notebook, quickstart, floor to time (default: all)",
  )
  args = parser.parse_args()
  data = str(harness.data_dir(args.data))
  peers = ("scikit-surprise", "torch")
  record = harness.Record("cold_start", vars(args) | {"data": data}, peers)
  out = record.results
  print(
    f"{time.strftime('%Y-%m-%d %H:%M')} {platform.processor() or platform.machine()}"
    f" {os.cpu_count()} CPUs, python {platform.python_version()}; load "
    f"{os.getloadavg()}",
    flush=True,
  )
  fit = lambda split: [
    *MFJAX, "fit", f"{data}/{split}.base", "--test", f"{data}/{split}.test",
  ]  # fmt: skip
  surprise = lambda split: peer(
    "surprise", [sys.executable, str(HERE / "surprise_fit.py"), data, split]
  )
  torch_script = peer("torch", [sys.executable, str(HERE / "torch_notebook.py")])
  if "fit" in args.pairs:
    out["fit u1, empty cache vs Surprise u1"] = pair(
      "fit u1, empty cache vs Surprise u1", fit("u1"), surprise("u1"), args.repeats
    )
    out["fit ua, cache filled by u1 vs Surprise ua"] = pair(
      "fit ua, cache filled by u1 vs Surprise ua",
      fit("ua"),
      surprise("ua"),
      args.repeats,
      prepare=fit("u1"),
    )
  if "floor" in args.pairs:
    out["import jax alone vs Surprise u1"] = pair(
      "import jax alone vs Surprise u1",
      [sys.executable, "-c", "import jax"],
      surprise("u1"),
      args.repeats,
    )
    out["JAX's smallest fit of u1 vs Surprise u1"] = pair(
      "JAX's smallest fit of u1 vs Surprise u1",
      [sys.executable, str(HERE / "jax_floor.py"), data, "u1"],
      surprise("u1"),
      args.repeats,
    )
  demo = [*MFJAX, "demo"]
  notebook = [*MFJAX, "demo", "--notebook"]
  for name, command in (("demo", demo), ("notebook", notebook)):
    if name not in args.pairs:
      continue
    label = " ".join(command[3:])
    out[f"{label}, empty cache vs torch script"] = pair(
      f"{label}, empty cache vs torch script", command, torch_script, args.repeats
    )
    out[f"{label}, cache filled vs torch script"] = pair(
      f"{label}, cache filled vs torch script",
      command,
      torch_script,
      args.repeats,
      prepare=command,
    )
  if "quickstart" in args.pairs:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
      script.write(quickstart())
    try:
      out["README Quickstart's first block"] = pair(
        "README Quickstart's first block", [sys.executable, script.name], None,
        args.repeats,
      )  # fmt: skip
    finally:
      os.unlink(script.name)
  print(f"load after {os.getloadavg()}")
  record.write()


if __name__ == "__main__":
  main()
