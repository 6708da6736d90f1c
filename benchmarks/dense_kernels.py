"""Which kernel computes ``P @ Q.T`` fastest inside ``train``, by problem size.

mfjax's dense path switches from a fused broadcast-multiply-and-sum to a dot above
``mfjax.core.kernels.FUSED_DOT_MAX`` multiply-adds (n_users·n_items·rank). This script
times 20 full-batch training steps (forward and backward) with each kernel forced
(``FUSED_DOT_MAX`` set to infinity or to 0 while ``train`` is traced), so the
crossover can be re-measured on any machine.

Usage: python benchmarks/dense_kernels.py [--repeats 5]
       python benchmarks/run.py dense_kernels [--quick] [...]
Writes benchmarks/results/dense_kernels/ (harness.Record).
"""

import argparse
import functools
import platform

import harness
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
  record = harness.Record("dense_kernels", args)
  record.results["sizes"] = cases = []
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
      row, case = [], dict(n_users=n_users, n_items=n_items, rank=rank)
      for name, threshold in KERNELS.items():
        kernels.FUSED_DOT_MAX = threshold  # Read by dense_dot while tracing.
        run = jax.jit(lambda p, m: mfjax.train(p, m, steps=20).best_loss)
        inner = max(1, int(2000 / (n_users * n_items * rank) ** 0.5))
        call = functools.partial(run, params, matrix)
        t = harness.time_calls(call, args.repeats, inner=inner)
        per_step = [s / 20 * 1e6 for s in t.warm]  # µs per training step
        case[name] = {"us_per_step": per_step, "inner": inner, "cold_s": t.cold}
        row.append(f"{t.median / 20 * 1e6:9.2f} ({t.min / 20 * 1e6:8.2f})")
      cases.append(case)
      size = n_users * n_items * rank
      print(
        f"  {n_users:>4}x{n_items:<5} rank {rank:<3} {size:>9,}  "
        f"fused {row[0]}   dot {row[1]}"
      )
  finally:
    kernels.FUSED_DOT_MAX = original
  record.write()


if __name__ == "__main__":
  main()
