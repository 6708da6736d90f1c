"""``mfjax.core.memory.memory_estimate`` against what training really takes, on CPU.

For each case (ratings, rank, mode): the estimate; XLA's own buffer assignment of
the compiled ``jax.jit(mfjax.train)`` (``compiled.memory_analysis()``: arguments
+ outputs + temporaries - aliased, the peak XLA plans for); and, in a fresh
process, the measured peak resident memory of the run above what the process
held before it (``ru_maxrss`` after the run minus the resident size before it,
plus the ratings and params already resident then). The shapes are those of
``benchmarks/throughput.py``: n_users = n/50, n_items = n/200, Adam, 3 epochs.

Then the largest problem the estimate fits in a given device memory.

Usage: python benchmarks/memory_fit.py [--cases 1000000:32:full,...]
                                       [--device-gb 80]
       python benchmarks/run.py memory_fit [--quick] [...]
Writes benchmarks/results/memory_fit/ (harness.Record).
"""

import argparse
import json
import os
import resource
import subprocess
import sys

import harness

CASES = (
  "1000000:32:full,1000000:128:full,1000000:128:chunk,"
  "10000000:32:full,10000000:32:chunk,10000000:128:chunk"
)


def rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(n: int, rank: int, mode: str) -> dict:
  import jax
  import jax.numpy as jnp
  import optax

  import mfjax
  from mfjax.core import memory

  n_users, n_items = max(100, n // 50), max(100, n // 200)
  chunk = max(n // 10, 1) if mode == "chunk" else None
  key = jax.random.key(0)
  ratings = mfjax.Ratings(
    jax.random.randint(key, (n,), 0, n_users, jnp.int32),
    jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, n_items, jnp.int32),
    jax.random.uniform(jax.random.fold_in(key, 2), (n,), jnp.float32, 1, 5),
    n_users,
    n_items,
  )
  params = mfjax.init_params(jax.random.key(1), n_users, n_items, rank)
  run = jax.jit(
    lambda p, r: (
      mfjax.train(p, r, optimizer=optax.adam(0.01), steps=3, chunk_size=chunk).best_loss
    )
  )
  compiled = run.lower(params, ratings).compile()
  m = compiled.memory_analysis()
  planned = (
    m.argument_size_in_bytes
    + m.output_size_in_bytes
    + m.temp_size_in_bytes
    - m.alias_size_in_bytes
  )
  resident = sum(x.nbytes for x in jax.tree.leaves((ratings, params)))
  before = rss_bytes()
  compiled(params, ratings).block_until_ready()
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return {
    "n": n,
    "rank": rank,
    "mode": mode if chunk is None else f"chunk {chunk:,}",
    "estimate": memory.memory_estimate(n, n_users, n_items, rank, chunk_size=chunk),
    "xla": planned,
    "measured": max(peak - before, 0) + resident,
  }


def largest(device_gb: float, rank: int, chunk_size=None) -> int:
  from mfjax.core import memory

  def fits(n):
    est = memory.memory_estimate(
      n, max(100, n // 50), max(100, n // 200), rank, chunk_size=chunk_size
    )
    return est <= device_gb * 1e9

  lo, hi = 1000, 10**11
  while hi - lo > 1000:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if fits(mid) else (lo, mid)
  return lo


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--cases", default=CASES)
  parser.add_argument("--device-gb", type=float, default=80.0)
  parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    n, rank, mode = args.child.split(":")
    print(json.dumps(child(int(n), int(rank), mode)))
    return
  import jax

  import mfjax

  record = harness.Record("memory_fit", args)
  record.results["cases"] = cases = []
  record.results["largest"] = largest_fits = []
  print(
    f"jax {jax.__version__} ({jax.default_backend()}), mfjax {mfjax.__version__}; "
    "n_users = n/50, n_items = n/200, Adam, 3 epochs; GB = 1e9 bytes"
  )
  print(
    f"{'ratings':>12} {'rank':>4} {'mode':>16} {'estimate':>9} {'XLA plan':>9} "
    f"{'measured':>9} {'est/XLA':>8} {'est/meas':>8}"
  )
  for case in args.cases.split(","):
    out = subprocess.run(
      [sys.executable, __file__, "--child", case],
      capture_output=True,
      text=True,
      env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")},
    )
    if out.returncode:
      print(f"{case}: failed\n{out.stderr[-2000:]}")
      cases.append({"case": case, "failed": out.stderr[-2000:]})
      continue
    r = json.loads(out.stdout.strip().splitlines()[-1])
    cases.append(r)
    gb = lambda x: f"{x / 1e9:9.2f}"
    print(
      f"{r['n']:>12,} {r['rank']:>4} {r['mode']:>16} {gb(r['estimate'])} "
      f"{gb(r['xla'])} {gb(r['measured'])} {r['estimate'] / r['xla']:8.2f} "
      f"{r['estimate'] / r['measured']:8.2f}",
      flush=True,
    )
  for rank in (32, 128):
    for chunk in (None, 4_000_000):
      n = largest(args.device_gb, rank, chunk)
      how = "full-batch" if chunk is None else f"chunk_size={chunk:,}"
      largest_fits.append({"rank": rank, "chunk_size": chunk, "n": n})
      print(
        f"largest that fits {args.device_gb:g} GB by the estimate, rank {rank}, "
        f"{how}: {n / 1e6:,.0f}M ratings ({n // 50:,} users, {n // 200:,} items)"
      )
  record.write()


if __name__ == "__main__":
  main()
