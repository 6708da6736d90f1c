"""Where a Gibbs sweep's time goes, piece by piece, on MovieLens 100k u1.base.

Each piece of ``mfjax.core.gibbs.sweep`` is jitted on its own and timed warm
(median and minimum of --repeats calls, each blocked until ready), then the
whole sweep, with and without implicit terms, and one sweep with the sketch of
the posterior mean added (what ``sample`` does per sweep past ``max_rank``).
The pieces add up to about the sweep: XLA fuses a little across them.

Usage: python benchmarks/profile_gibbs.py [--data DIR] [--rank 10] [--repeats 50]
       python benchmarks/run.py profile_gibbs [--quick]
Writes benchmarks/results/profile_gibbs/ (harness.Record).
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import harness
import jax
import jax.numpy as jnp

import mfjax
from mfjax.core import gibbs


def timed(fn, *args, repeats):
  jax.block_until_ready(fn(*args))  # compile
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds), min(seconds)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--rank", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=50)
  parser.add_argument("--quick", action="store_true", help="a smoke test")
  args = parser.parse_args()
  args.quick = args.quick or os.environ.get("MFJAX_BENCH_QUICK") == "1"
  repeats = 3 if args.quick else args.repeats
  data = harness.data_dir(args.data)
  record = harness.Record("profile_gibbs", vars(args) | {"data": data})
  env = record.data["environment"]
  print(f"{env['date']}; load average {env['loadavg_before']}")
  ratings, _ = mfjax.load_ratings(data / "u1.base")
  n_users, n_items, rank = ratings.n_users, ratings.n_items, args.rank
  hyper = gibbs.DEFAULT_HYPER
  key = jax.random.key(0)
  rows = {}

  def report(name, median, low):
    rows[name] = {"median_ms": 1e3 * median, "min_ms": 1e3 * low}
    print(f"{name:<44} {1e3 * median:8.2f} ms  (min {1e3 * low:.2f})", flush=True)

  for implicit in ("none", "both"):
    d = jax.jit(lambda r, i=implicit: gibbs.design(r, implicit=i))(ratings)
    state = gibbs.init_state(key, n_users, n_items, rank, d.mean, hyper, implicit)
    # A state from a few sweeps in, not the initial one.
    run = jax.jit(lambda k, s, d=d: gibbs.sweep(k, d, s, hyper))
    for k in jax.random.split(key, 5):
      state = run(k, state)
    report(f"sweep, implicit={implicit}", *timed(run, key, state, repeats=repeats))
    if implicit != "none":
      links, term = d.user_links, state.user_implicit
      rows_ = jnp.concatenate(
        [state.params.user_bias[:, None], state.params.user_factors], 1
      )
      shift = jax.jit(lambda f, links=links: gibbs.implicit_shift(links, f, n_users))
      report(
        "  users' term: W Y (one of two)", *timed(shift, term.factors, repeats=repeats)
      )

      def draw(r, t=term, links=links, precision=state.user_prior.precision):
        v = gibbs.Variates(key, links.basis.shape[0] * r.shape[1])
        return gibbs.draw_implicit(v, links, r, precision, t.prior)

      report(
        "  users' term: draw every y_j", *timed(jax.jit(draw), rows_, repeats=repeats)
      )
      continue
    p = state.params
    for side in ("user", "item"):
      stats = jax.jit(lambda p, s=side, d=d: gibbs.side_statistics(d, s, p))
      report(
        f"  {side}s' Grams and right-hand sides", *timed(stats, p, repeats=repeats)
      )
      gram, rhs = stats(p)
      prior = state.user_prior if side == "user" else state.item_prior

      def draw(g, r, prior=prior, noise=state.noise):
        v = gibbs.Variates(key, r.size)
        return gibbs.draw_rows(v, g, r, noise, prior)

      report(
        f"  {side}s' rows: Cholesky and solves",
        *timed(jax.jit(draw), gram, rhs, repeats=repeats),
      )
    sq = jax.jit(lambda p, d=d: gibbs._squared_error(d, p))
    report("  squared error (noise draw, RMSE)", *timed(sq, p, repeats=repeats))
    sketch = gibbs.sketch_init(key, n_users, n_items, 128)
    add = jax.jit(gibbs.sketch_add)
    report(
      "  sketch of the mean (width 128)",
      *timed(add, sketch, p.user_factors, p.item_factors, repeats=repeats),
    )
  record.results["pieces"] = rows
  print(f"load average after {os.getloadavg()}")
  record.write()


if __name__ == "__main__":
  main()
