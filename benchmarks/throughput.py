"""Ratings processed per second per full-batch epoch, on synthetic ratings.

For each size and rank: ``synthetic_ratings`` (power-law popularity), then
``jax.jit(mfjax.train)`` with full-batch Adam steps on ``Ratings``. Cold = compile
plus the first run; warm = the compiled program again, per epoch, median and min
of --repeats runs. Ratings/s = n_ratings / (warm seconds per epoch): rating
updates (a forward and backward pass over each rating) per second.

Mode (--mode auto): full-batch steps when ``mfjax.core.memory.memory_estimate`` fits
in 90 % of the device memory (``memory_stats()["bytes_limit"]``, or --memory-gb);
else chunked full-batch steps (``train(chunk_size=...)``, the same step computed
in chunks), with the largest chunk n/2^j that fits. CPUs report no memory limit,
so there the mode is full-batch unless --memory-gb is given. --mode full/chunk
force one.

Usage: python benchmarks/throughput.py [--sizes 100000,1000000,10000000]
                                       [--ranks 32,128] [--steps 5] [--repeats 3]
                                       [--mode auto|full|chunk] [--chunk-size N]
                                       [--memory-gb G]
       python benchmarks/run.py throughput [--quick] [...]
Writes benchmarks/results/throughput/ (harness.Record).
"""

import argparse
import functools
import os
import platform

import harness
import jax
import optax

import mfjax
from mfjax.core import memory


def choose_mode(n, n_users, n_items, rank, args):
  """``(mode, chunk_size, estimate_bytes, limit_bytes)`` for one case."""
  if args.memory_gb is not None:
    limit = int(args.memory_gb * 1e9)
  else:
    limit = memory.device_bytes_limit()
  full = memory.memory_estimate(n, n_users, n_items, rank)
  if args.mode == "full" or (
    args.mode == "auto" and (limit is None or full <= 0.9 * limit)
  ):
    return "full-batch", None, full, limit
  if args.chunk_size:
    chunk = args.chunk_size
  else:
    chunk = n
    while chunk > 1:
      chunk = -(-chunk // 2)
      est = memory.memory_estimate(n, n_users, n_items, rank, chunk_size=chunk)
      if limit is None or est <= 0.9 * limit:
        break
  est = memory.memory_estimate(n, n_users, n_items, rank, chunk_size=chunk)
  return f"chunked ({chunk:,} ratings a chunk)", chunk, est, limit


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="100000,1000000,10000000")
  parser.add_argument("--ranks", default="32,128")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--mode", choices=("auto", "full", "chunk"), default="auto")
  parser.add_argument("--chunk-size", type=int, default=None)
  parser.add_argument("--memory-gb", type=float, default=None)
  args = parser.parse_args()
  record = harness.Record("throughput", args)
  record.results["cases"] = cases = []
  device = jax.devices()[0]
  print(
    f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
    f"({jax.default_backend()}, {device.device_kind}), "
    f"mfjax {mfjax.__version__}; {args.steps} full-batch epochs per run",
    flush=True,
  )
  for n in map(int, args.sizes.split(",")):
    n_users, n_items = max(100, n // 50), max(100, n // 200)
    ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), n_users, n_items, n, 8)
    for rank in map(int, args.ranks.split(",")):
      mode, chunk, estimate, limit = choose_mode(n, n_users, n_items, rank, args)
      memory = f"estimate {estimate / 1e9:.1f} GB" + (
        f" of {limit / 1e9:.1f} GB" if limit else ""
      )
      params = mfjax.init_params(jax.random.key(1), n_users, n_items, rank)
      run = jax.jit(
        lambda p, r, chunk=chunk: (
          mfjax.train(
            p, r, optimizer=optax.adam(0.01), steps=args.steps, chunk_size=chunk
          ).best_loss
        )
      )
      timing = harness.time_calls(functools.partial(run, params, ratings), args.repeats)
      cold = timing.cold
      med, low = timing.median / args.steps, timing.min / args.steps
      cases.append(
        dict(
          n=n, n_users=n_users, n_items=n_items, rank=rank, mode=mode,
          estimate_bytes=estimate, limit_bytes=limit, fit=timing,
          epoch_median=med, epoch_min=low, ratings_per_s=n / med,
        )
      )  # fmt: skip
      print(
        f"  {n:>11,} ratings  {n_users:>7,} users  {n_items:>6,} items  rank {rank:<4}"
        f"  epoch {med * 1e3:9.1f} ms (min {low * 1e3:9.1f})  "
        f"{n / med / 1e6:8.2f} M ratings/s (max {n / low / 1e6:8.2f})  "
        f"cold {cold:6.2f} s  {mode}, {memory}",
        flush=True,
      )
      del params, run
  record.write()


if __name__ == "__main__":
  main()
