"""``mfjax.train`` on a ratings file, in one process or in several joined ones.

Each process reads its own part of the file (``mfjax.distributed.read_ratings``)
when joined, else the whole file (``mfjax.load_ratings``, sharded over the
process's devices when it has several); then the same ``mfjax.train``: Adam,
full-batch unless ``--batch-size``, params replicated over every device.
Process 0 writes the losses, the best loss and the best params to ``--out``
(NumPy ``.npz``), with its resident memory before reading, its peak while
reading (the high-water mark reset just before), with ``--trace`` the peak of
the host arrays while reading (``tracemalloc``: NumPy's buffers, not JAX's
runtime; it slows the reading and adds its own memory), and its peak after
training;
process ``i > 0`` writes the same to ``OUT.pI.npz``.
``benchmarks/processes.py`` and ``tests/distributed/test_runtime.py`` compare the runs.

Usage:
  python benchmarks/train_processes.py FILE --out OUT.npz [--steps 20]
      [--rank 8] [--batch-size B] [--trace]
      [--coordinator HOST:PORT --num-processes N --process-id I]
"""

import argparse
import os
import resource
import time
import tracemalloc


def rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
  """Starts the peak (VmHWM) again from the present size (Linux 4.0 and later)."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
  except OSError:
    pass  # The peak then counts from the start of the process.


def peak_rss_bytes() -> int:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("file")
  parser.add_argument("--out", required=True)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--rank", type=int, default=8)
  parser.add_argument("--batch-size", type=int)
  parser.add_argument(
    "--trace", action="store_true", help="trace the host arrays' peak (tracemalloc)"
  )
  parser.add_argument("--coordinator")
  parser.add_argument("--num-processes", type=int)
  parser.add_argument("--process-id", type=int)
  args = parser.parse_args()

  import jax
  import numpy as np
  import optax

  import mfjax
  from mfjax import distributed
  from mfjax.core import sharding

  joined = args.coordinator is not None
  if joined:
    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  mesh = distributed.global_mesh()
  base_rss = rss_bytes()
  reset_peak_rss()
  if args.trace:  # NumPy's arrays are traced, JAX's runtime is not; slow.
    tracemalloc.start()
  start = time.perf_counter()
  if joined:
    ratings, maps = distributed.read_ratings(args.file, bucket=False)
  else:
    ratings, maps = mfjax.load_ratings(args.file)
    if len(jax.devices()) > 1:
      ratings = sharding.shard_ratings(ratings, mesh)
  read_seconds = time.perf_counter() - start
  read_rss = peak_rss_bytes()
  read_arrays = tracemalloc.get_traced_memory()[1] if args.trace else -1
  tracemalloc.stop()
  params = mfjax.init_params(
    jax.random.key(0), ratings.n_users, ratings.n_items, args.rank
  )
  params = sharding.shard_params(params, mesh)
  start = time.perf_counter()
  result = mfjax.train(
    params,
    ratings,
    optimizer=optax.adam(0.01),
    steps=args.steps,
    l2=0.05,
    batch_size=args.batch_size,
    key=jax.random.key(1) if args.batch_size else None,
  )
  best = jax.tree.map(np.asarray, result.best_params)
  losses = np.asarray(result.losses)
  train_seconds = time.perf_counter() - start
  out = args.out
  if jax.process_index():  # Only memory and timings: the params are process 0's.
    out = f"{out.removesuffix('.npz')}.p{jax.process_index()}.npz"
  if out:
    partial = out + ".partial.npz"
    np.savez(
      partial,
      losses=losses,
      best_loss=np.asarray(result.best_loss),
      n_ratings=len(ratings) - ratings.n_padding,
      n_duplicates=maps.n_duplicates,
      read_seconds=read_seconds,
      train_seconds=train_seconds,
      base_rss=base_rss,
      read_peak_rss=read_rss,
      read_peak_arrays=read_arrays,
      peak_rss=peak_rss_bytes(),
      processes=jax.process_count(),
      devices=len(jax.devices()),
      **{f"params_{name}": value for name, value in best._asdict().items()},
    )
    os.replace(partial, out)


if __name__ == "__main__":
  main()
