"""Which kernel computes ``P @ Q.T`` fastest inside ``train``, by problem size.

mfjax's dense path switches from a fused broadcast-multiply-and-sum to a dot above
``mfjax.core.kernels.FUSED_DOT_MAX`` multiply-adds (n_users·n_items·rank). This script
times 20 full-batch training steps (forward and backward) with each kernel forced
(``FUSED_DOT_MAX`` set to infinity or to 0 while ``train`` is traced), so the
crossover can be re-measured on any machine.

Usage: python benchmarks/dense_kernels.py [--repeats 5]
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import mfjax
from mfjax.core import kernels

SIZES = [
  (4, 6, 3),
  (20, 30, 3),
  (25, 30, 3),
  (30, 30, 3),
  (30, 40, 4),
  (50, 50, 8),
  (100, 100, 10),
  (200, 300, 10),
  (943, 1682, 3),
]


# FUSED_DOT_MAX values that force each kernel of kernels.dense_dot.
KERNELS = {"fused": float("inf"), "dot": 0}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  print(
    f"{platform.machine()}, jax {jax.__version__} ({jax.default_backend()}); "
    f"threshold {kernels.FUSED_DOT_MAX}; µs per training step, median (min) of "
    f"{args.repeats}"
  )
  original = kernels.FUSED_DOT_MAX
  try:
    for n_users, n_items, rank in SIZES:
      key = jax.random.key(0)
      matrix = jax.random.randint(key, (n_users, n_items), 0, 6).astype(jnp.float32)
      params = mfjax.init_params(key, n_users, n_items, rank)
      row = []
      for threshold in KERNELS.values():
        kernels.FUSED_DOT_MAX = threshold  # Read by dense_dot while tracing.
        run = jax.jit(lambda p, m: mfjax.train(p, m, steps=20).best_loss)
        run(params, matrix).block_until_ready()
        inner = max(1, int(2000 / (n_users * n_items * rank) ** 0.5))
        samples = []
        for _ in range(args.repeats):
          start = time.perf_counter()
          for _ in range(inner):
            run(params, matrix).block_until_ready()
          samples.append((time.perf_counter() - start) / inner / 20 * 1e6)
        row.append(f"{statistics.median(samples):9.2f} ({min(samples):8.2f})")
      size = n_users * n_items * rank
      print(
        f"  {n_users:>4}x{n_items:<5} rank {rank:<3} {size:>9,}  "
        f"fused {row[0]}   dot {row[1]}"
      )
  finally:
    kernels.FUSED_DOT_MAX = original


if __name__ == "__main__":
  main()
