"""The Gibbs fit on rating scales other than MovieLens's stars, against the Adam
default, with nothing retuned: held-out RMSE and warm fit seconds.

Files (synthetic, drawn here; no test file of the MovieLens folds is read):
- ``half-star``: benchmarks/ranking_other_data.py's file of MovieLens 100k's shape
  (943 users, 1,682 items, ~100k ratings, power-law popularity), ratings on a
  half-star scale 0.5-5, its own 80/20 split;
- ``pm10``: ``mfjax.synthetic_ratings(key(1), 943, 1682, 100_000, 8, mean=0,
  scale=None)`` times 4, clipped to -10..10 (a scale centred on 0, four times
  as wide as stars), split 80/20 (``mfjax.train_test_split``, seed 0).

Systems: ``mfjax.fit`` at its defaults (the Adam ensemble), ``solver="gibbs"``
at its defaults, and with ``implicit="both"``. Each fits once cold and once warm
(key 0); RMSE is of the warm fit, predictions clipped to the file's scale.

Usage: python benchmarks/gibbs_other_scales.py [--files half-star,pm10]
       python benchmarks/run.py gibbs_other_scales [--quick]
Writes benchmarks/results/gibbs_other_scales/ (harness.Record).
"""

import argparse
import os
import time

import harness
import jax
import jax.numpy as jnp
from ranking_other_data import draw

import mfjax

SYSTEMS = {
  "adam (default)": {},
  "gibbs": {"solver": "gibbs"},
  "gibbs implicit both": {"solver": "gibbs", "implicit": "both"},
}
QUICK = {"gibbs": {"solver": "gibbs", "samples": 10, "burn_in": 2}}


def pm10():
  ratings, _ = mfjax.synthetic_ratings(
    jax.random.key(1), 943, 1682, 100_000, 8, mean=0.0, scale=None
  )
  values = jnp.clip(4.0 * ratings.values, -10.0, 10.0)
  ratings = mfjax.Ratings(ratings.users, ratings.items, values, 943, 1682)
  return mfjax.train_test_split(ratings, test_fraction=0.2, seed=0)


FILES = {"half-star": (lambda: draw("half-star", 0), (0.5, 5.0)),
         "pm10": (pm10, (-10.0, 10.0))}  # fmt: skip


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--files", default="half-star,pm10")
  parser.add_argument("--quick", action="store_true", help="a smoke test")
  args = parser.parse_args()
  args.quick = args.quick or os.environ.get("MFJAX_BENCH_QUICK") == "1"
  record = harness.Record("gibbs_other_scales", vars(args))
  env = record.data["environment"]
  print(f"{env['date']}; load average {env['loadavg_before']}")
  systems = QUICK if args.quick else SYSTEMS
  out = record.results
  for name in args.files.split(","):
    make, scale = FILES[name]
    train, test = make()
    print(f"\n{name}: {len(train):,} train, {len(test):,} held out, scale {scale}")
    print(f"{'system':<22} {'RMSE':>7} {'warm s':>8} {'cold s':>8}")
    out[name] = {}
    for label, settings in systems.items():
      times = []
      for _ in range(2):  # cold, then warm
        start = time.perf_counter()
        fitted = jax.block_until_ready(mfjax.fit(jax.random.key(0), train, **settings))
        times.append(time.perf_counter() - start)
      rmse = float(mfjax.rmse(fitted.best_params, test, scale=scale))
      out[name][label] = {"rmse": rmse, "cold": times[0], "warm": times[1]}
      print(f"{label:<22} {rmse:7.4f} {times[1]:8.2f} {times[0]:8.2f}", flush=True)
  print(f"\nload average after {os.getloadavg()}")
  record.write()


if __name__ == "__main__":
  main()
