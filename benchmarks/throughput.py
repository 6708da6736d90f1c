"""Ratings processed per second per full-batch epoch, on synthetic ratings.

For each size and rank: ``synthetic_ratings`` (power-law popularity), then
``jax.jit(mfjax.train)`` with full-batch Adam steps on ``Ratings``. Cold = compile
plus the first run; warm = the compiled program again, per epoch, median and min
of --repeats runs. Ratings/s = n_ratings / (warm seconds per epoch).

Usage: python benchmarks/throughput.py [--sizes 100000,1000000,10000000]
                                       [--ranks 32,128] [--steps 5] [--repeats 3]
"""

import argparse
import os
import platform
import statistics
import time

import jax
import optax

import mfjax


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="100000,1000000,10000000")
  parser.add_argument("--ranks", default="32,128")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(
    f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
    f"({jax.default_backend()}, {jax.devices()[0].device_kind}), "
    f"mfjax {mfjax.__version__}; {args.steps} full-batch epochs per run"
  )
  for n in map(int, args.sizes.split(",")):
    n_users, n_items = max(100, n // 50), max(100, n // 200)
    ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), n_users, n_items, n, 8)
    for rank in map(int, args.ranks.split(",")):
      params = mfjax.init_params(jax.random.key(1), n_users, n_items, rank)
      run = jax.jit(
        lambda p, r: (
          mfjax.train(p, r, optimizer=optax.adam(0.01), steps=args.steps).best_loss
        )
      )
      start = time.perf_counter()
      run(params, ratings).block_until_ready()
      cold = time.perf_counter() - start
      samples = []
      for _ in range(args.repeats):
        start = time.perf_counter()
        run(params, ratings).block_until_ready()
        samples.append((time.perf_counter() - start) / args.steps)
      med, low = statistics.median(samples), min(samples)
      print(
        f"  {n:>11,} ratings  {n_users:>7,} users  {n_items:>6,} items  rank {rank:<4}"
        f"  epoch {med * 1e3:9.1f} ms (min {low * 1e3:9.1f})  "
        f"{n / med / 1e6:7.2f} M ratings/s (max {n / low / 1e6:7.2f})  "
        f"cold {cold:6.2f} s",
        flush=True,
      )


if __name__ == "__main__":
  main()
