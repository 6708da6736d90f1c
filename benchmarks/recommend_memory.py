"""Top-N recommendation for every user of a large catalogue, in bounded memory.

Random params (rank --rank) for --users users and --items items; the exclusion set
is ``mfjax.synthetic_ratings`` with --ratings pairs (power-law popularity, repeats
included). ``jax.jit(recommend)`` returns the top --k items of every user. Cold =
compile plus the first run; warm = the compiled program again, median and min of
--repeats runs.

Memory: the process's resident set after the set-up (params and exclusion pairs
on the device, which is host memory on a CPU; the pairs are drawn in a child
process so that drawing them leaves no higher peak here) against its peak
(ru_maxrss) after all runs; their difference bounds what recommend needed.
XLA's own figure for the compiled program's temporaries is printed too. A naive
top-N that scores the full users x items matrix at once needs users x items x 4
bytes for that matrix alone.

Usage: python benchmarks/recommend_memory.py [--users 100000] [--items 20000]
         [--ratings 5000000] [--rank 32] [--k 10] [--block-size 1024] [--repeats 3]
       python benchmarks/run.py recommend_memory [--quick] [...]
Writes benchmarks/results/recommend_memory/ (harness.Record).
"""

import argparse
import multiprocessing
import os
import platform
import resource
import time

import harness
import jax
import jax.numpy as jnp
import numpy as np

import mfjax
from mfjax import recommend

GB = 1e9


def _rss_now() -> float:
  """The current resident set, in bytes (Linux)."""
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_peak() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux


def _draw_pairs(n_users, n_items, n_ratings):
  ratings, _ = mfjax.synthetic_ratings(
    jax.random.key(1), n_users, n_items, n_ratings, 8
  )
  return np.asarray(ratings.users), np.asarray(ratings.items)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--users", type=int, default=100_000)
  parser.add_argument("--items", type=int, default=20_000)
  parser.add_argument("--ratings", type=int, default=5_000_000)
  parser.add_argument("--rank", type=int, default=32)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--block-size", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  record = harness.Record("recommend_memory", args)
  print(
    f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
    f"({jax.default_backend()}, {jax.devices()[0].device_kind}), "
    f"numpy {np.__version__}, mfjax {mfjax.__version__}"
  )
  print(
    f"{args.users:,} users x {args.items:,} items, rank {args.rank}, "
    f"{args.ratings:,} excluded pairs, top {args.k}, block_size {args.block_size}"
  )

  # The pairs are drawn in a child process, so that the transient memory of
  # drawing them does not hide recommend's peak in this one.
  spawn = multiprocessing.get_context("spawn")
  with spawn.Pool(1) as pool:
    ex_users, ex_items = pool.apply(_draw_pairs, (args.users, args.items, args.ratings))
  exclude = mfjax.Ratings(
    jnp.asarray(ex_users),
    jnp.asarray(ex_items),
    jnp.ones(ex_users.shape, jnp.float32),
    n_users=args.users,
    n_items=args.items,
  )
  params = mfjax.init_params(jax.random.key(0), args.users, args.items, args.rank)
  params = params._replace(mean=params.mean + 3.5)
  jax.block_until_ready((params, exclude))
  users = np.arange(args.users, dtype=np.int32)
  rss_setup, peak_setup = _rss_now(), _rss_peak()

  run = jax.jit(
    lambda p, u, e: recommend(p, u, args.k, exclude=e, block_size=args.block_size)
  )
  start = time.perf_counter()
  compiled = run.lower(params, users, exclude).compile()
  compile_s = time.perf_counter() - start
  rss_compiled, peak_compiled = _rss_now(), _rss_peak()
  start = time.perf_counter()
  items, scores = jax.block_until_ready(compiled(params, users, exclude))
  cold = compile_s + time.perf_counter() - start
  t = harness.time_calls(lambda: compiled(params, users, exclude), args.repeats, 0)
  items, scores = t.result
  peak = _rss_peak()

  # Sanity: the answer is right for a few users, against a full row each.
  rng = np.random.default_rng(0)
  for u in rng.choice(args.users, 3, replace=False):
    row = np.asarray(mfjax.predict(params, users=np.array([u])))[0].astype(np.float64)
    row[ex_items[ex_users == u]] = -np.inf
    expected = np.argsort(-row, kind="stable")[: args.k]
    assert np.array_equal(np.asarray(items[u]), expected), u
  n_excluded_users = int(np.unique(ex_users).size)

  naive = args.users * args.items * 4
  tile = args.block_size * args.items * 4
  analysis = compiled.memory_analysis()
  temp = getattr(analysis, "temp_size_in_bytes", None) if analysis else None
  med, low = t.median, t.min
  record.results.update(
    compile_s=compile_s, cold_s=cold, warm_s=t.warm, rss_setup=rss_setup,
    peak_setup=peak_setup, rss_compiled=rss_compiled, peak_compiled=peak_compiled,
    peak=peak, xla_temp_bytes=temp, naive_bytes=naive, tile_bytes=tile,
  )  # fmt: skip
  n_scored = args.users * args.items
  print(f"cold (compile {compile_s:.2f} s + first run): {cold:8.2f} s")
  print(
    f"warm: median {med:8.2f} s, min {low:8.2f} s over {args.repeats} runs "
    f"({n_scored / med / 1e9:.2f} G scores/s median)"
  )
  print(f"resident set after set-up:    {rss_setup / GB:6.2f} GB")
  print(f"peak resident set, set-up:    {peak_setup / GB:6.2f} GB")
  print(f"resident set after compiling: {rss_compiled / GB:6.2f} GB")
  print(f"peak resident set, compiling: {peak_compiled / GB:6.2f} GB")
  print(f"peak resident set, all runs:  {peak / GB:6.2f} GB")
  rise = peak - rss_setup
  print(
    f"peak rise over the set-up resident set, compilation included (bounds "
    f"recommend's use): {rise / GB:6.2f} GB"
  )
  if peak > peak_compiled:
    print(
      f"peak rise of the runs over the resident set after compiling: "
      f"{(peak - rss_compiled) / GB:6.2f} GB"
    )
  else:
    print("the runs did not raise the peak set while compiling")
  if temp is not None:
    print(f"XLA temporaries of the compiled program: {temp / GB:6.3f} GB")
  print(
    f"one block's score tile ({args.block_size} x {args.items} x 4 B): "
    f"{tile / GB:6.3f} GB"
  )
  print(
    f"a naive full {args.users:,} x {args.items:,} float32 score matrix: "
    f"{naive / GB:6.2f} GB = {naive / max(rise, 1):.0f}x the measured "
    f"rise" + (f", {naive / temp:.0f}x XLA's temporaries" if temp else "")
  )
  print(
    f"checked 3 users against a full-row argsort; {n_excluded_users:,} users have "
    f"excluded pairs; {int((np.asarray(items) < 0).sum())} slots padded with -1"
  )
  record.write()


if __name__ == "__main__":
  main()
