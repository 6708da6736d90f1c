"""A time-accuracy table of Bayesian (Gibbs) fits on MovieLens 100k: test RMSE
against warm fit seconds as the number of samples grows.

Rows (each a harness.System of benchmarks/peers_movielens.py):
- mfjax's own Gibbs solver at each sample count in --samples
  (``mfjax.fit(key, ratings, solver="gibbs", rank=10, samples=N)``, after its
  default burn-in of 20 sweeps);
- myFM ids only (one-hot user and item, ``MyFMRegressor(rank=10).fit(X, y,
  n_iter=N)``, the mean over its kept samples) at N in --samples (10, 25, 50,
  100, 200, 400);
- mfjax Gibbs with implicit terms (--implicit: users, items and/or both) at
  --implicit-samples;
- myFM rank 10 with the implicit features of its MovieLens example (svd++ and
  "flipped", as RelationBlocks) at --implicit-samples (200);
- LibMF at peers_movielens.py's tuned settings (TUNED["libmf"], 2 threads): the
  SGD reference point (no samples);
- with --ensemble: mfjax.fit at its defaults (today's ensemble);
- with --gibbs-defaults: mfjax.fit(key, ratings, solver="gibbs") at its
  defaults (mfjax.settings.GibbsSettings).
A row whose package is missing is skipped, its reason printed.

Data: ML-100k u1-u5 (uN.base to train, uN.test to score) as peers_movielens.py
reads and scores them: ids indexed from the training part, a test pair with an
unseen user or item predicted as the training mean (for every row alike), all
predictions clipped to [1, 5].

Timing: the fit call only (building each library's matrices is done before,
outside the clock). Per fold the rows are interleaved (A, B, C, A, B, C): one
cold fit each, then --repeats warm ones; the fold's figure is the warm median.
The tables give each fold, the mean over folds and, for seconds, the median
over folds. Threads: OPENBLAS_NUM_THREADS=1 (set before numpy loads); myFM's
sampler is single-threaded; LibMF runs 2 threads; mfjax (XLA) every core.

Usage:
  python benchmarks/bayesian_movielens.py [--folds 1,2,3,4,5] [--repeats 1]
      [--samples 10,25,50,100,200,400] [--implicit-samples 200]
      [--implicit both] [--implicit-ranks 10] [--seed 42]
      [--ensemble] [--gibbs-defaults] [--synthetic1m 10,25,50]
      [--quick] [--json PATH] [--data DIR]
--folds '' runs no MovieLens fold (with --synthetic1m: that file alone).
  python benchmarks/run.py bayesian_movielens [--quick] [...]
--quick (or run.py's --quick, by $MFJAX_BENCH_QUICK): fold 1, 10 and 50
samples, implicit at 50: a smoke test. The JSON record goes to --json, else to
benchmarks/results/bayesian_movielens/ (harness.Record). Needs myfm (measured:
0.4.0) and libmf (pip install myfm==0.4.0 libmf).
"""

import os

# Peers' BLAS on one thread, as the other peer scripts run it; set before numpy.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

import harness  # noqa: E402
from peers_movielens import (  # noqa: E402
  LIBMF_THREADS,
  TUNED,
  LibmfSystem,
  MfjaxSystem,
  MyfmSystem,
  ml100k_split,
  print_split_header,
  print_table,
  record_settings,
  run_split,
  synthetic1m_split,
)

SUITE = "bayesian_movielens"
PEERS = ("myfm", "libmf")
RANK = 10
DEFAULTS = {
  "folds": "1,2,3,4,5",
  "samples": (10, 25, 50, 100, 200, 400),
  "implicit_samples": 200,
}
QUICK = {"folds": "1", "samples": (10, 50), "implicit_samples": 50}


class MfjaxGibbsSystem(MfjaxSystem):
  """``mfjax.fit(key, ratings, solver="gibbs", rank=RANK, samples=N)``: N kept
  draws after the default burn-in (20 sweeps), served as their posterior mean."""

  def __init__(self, samples, seed, implicit="none", rank=RANK):
    settings = {"solver": "gibbs", "rank": rank, "samples": samples}
    if implicit != "none":
      settings["implicit"] = implicit
    super().__init__(settings, seed)
    term = "" if implicit == "none" else f"{implicit} "
    self.name = f"mfjax gibbs r{rank} {term}{samples}"
    self.rank = rank
    self.samples = samples
    self.implicit = implicit

  def describe(self):
    from mfjax.settings import SETTINGS

    gibbs = SETTINGS["gibbs"](rank=self.rank, samples=self.samples)
    if self.implicit != "none":
      gibbs = gibbs._replace(implicit=self.implicit)
    return gibbs._asdict() | {"solver": "gibbs"}

  def first_fit_compiles(self, train):
    # The Gibbs plan does not pad to buckets: each fold's shapes compile anew.
    return True


class GibbsDefaults(MfjaxGibbsSystem):
  """``mfjax.fit(key, ratings, solver="gibbs")`` at its defaults."""

  def __init__(self, seed):
    MfjaxSystem.__init__(self, {"solver": "gibbs"}, seed)
    from mfjax.settings import SETTINGS

    self.defaults = SETTINGS["gibbs"]()
    self.name = "mfjax gibbs defaults"
    self.samples = self.defaults.samples

  def describe(self):
    return self.defaults._asdict() | {"solver": "gibbs"}


def mfjax_gibbs_systems(args):
  """mfjax's own Gibbs rows, one per sample count in ``args.samples``."""
  try:
    import mfjax.settings

    mfjax.settings.SETTINGS["gibbs"]
  except (ImportError, KeyError) as e:  # an mfjax before its Gibbs solver
    print(f"skipping mfjax gibbs: {e}")
    return []
  systems = [MfjaxGibbsSystem(n, args.seed) for n in args.samples]
  if "implicit" in mfjax.settings.SETTINGS["gibbs"]._fields:
    systems += [
      MfjaxGibbsSystem(args.implicit_samples, args.seed, implicit, rank)
      for implicit in args.implicit
      for rank in args.implicit_ranks
    ]
  return systems


def make_systems(args):
  makers = [lambda n=n: MyfmSystem(RANK, n, seed=args.seed) for n in args.samples]
  makers += [
    lambda r=r: MyfmSystem(r, args.implicit_samples, implicit=True, seed=args.seed)
    for r in args.implicit_ranks
  ]
  makers.append(lambda: LibmfSystem("tuned", TUNED["libmf"]))
  if args.ensemble:
    makers.append(lambda: MfjaxSystem({}, args.seed))
  if args.gibbs_defaults:
    makers.append(lambda: GibbsDefaults(args.seed))
  return [*mfjax_gibbs_systems(args), *harness.available(makers)]


def table(systems, per_fold):
  """{name: samples, per-fold and summary RMSE and warm / cold seconds}."""
  out = {}
  for s in systems:
    rows = {fold: r[s.name] for fold, r in per_fold.items()}
    rmse = {fold: r["rmse"] for fold, r in rows.items()}
    warm = {fold: r["warm_median"] for fold, r in rows.items()}
    out[s.name] = {
      "family": s.family,
      "samples": getattr(s, "samples", None),
      "rmse": rmse,
      "rmse_mean": statistics.fmean(rmse.values()),
      "mae_mean": statistics.fmean(r["mae"] for r in rows.values()),
      "warm_seconds": warm,
      "warm_seconds_median": statistics.median(warm.values()),
      "warm_seconds_mean": statistics.fmean(warm.values()),
      "cold_seconds_mean": statistics.fmean(r["cold"] for r in rows.values()),
    }
  return out


def print_time_accuracy(rows, folds):
  label = 24
  fold_cols = "".join(f"{'u' + str(f):>8}" for f in folds)
  print(f"\ntest RMSE (clipped to [1, 5]), ML-100k u{','.join(map(str, folds))}:")
  print(f"{'system':<{label}} {'samples':>7}{fold_cols}{'mean':>8}")
  for name, r in rows.items():
    samples = "-" if r["samples"] is None else str(r["samples"])
    cells = "".join(f"{r['rmse'][f]:>8.4f}" for f in folds)
    print(f"{name:<{label}} {samples:>7}{cells}{r['rmse_mean']:>8.4f}")
  print("\nwarm fit seconds (the fit call only):")
  print(f"{'system':<{label}} {'samples':>7}{fold_cols}{'median':>8}{'mean':>8}")
  for name, r in rows.items():
    samples = "-" if r["samples"] is None else str(r["samples"])
    cells = "".join(f"{r['warm_seconds'][f]:>8.3f}" for f in folds)
    print(
      f"{name:<{label}} {samples:>7}{cells}"
      f"{r['warm_seconds_median']:>8.3f}{r['warm_seconds_mean']:>8.3f}",
      flush=True,
    )


def parse_ints(text):
  return tuple(int(x) for x in str(text).split(",") if x)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--folds", default=None, help="default 1,2,3,4,5")
  parser.add_argument("--repeats", type=int, default=1, help="warm fits per fold")
  parser.add_argument("--samples", default=None, help="myFM ids-only sample counts")
  parser.add_argument("--implicit-samples", type=int, default=None)
  parser.add_argument(
    "--implicit",
    default="both",
    help="mfjax's implicit terms run at --implicit-samples, comma-separated "
    "(users, items, both; '' for none)",
  )
  parser.add_argument(
    "--implicit-ranks",
    default=str(RANK),
    help="ranks of the implicit-feature rows, mfjax's and myFM's (default 10)",
  )
  parser.add_argument("--seed", type=int, default=42, help="myFM's own default")
  parser.add_argument("--ensemble", action="store_true", help="add mfjax defaults")
  parser.add_argument(
    "--gibbs-defaults", action="store_true", help="add mfjax's Gibbs defaults"
  )
  parser.add_argument(
    "--synthetic1m",
    default="",
    help="also the 1M synthetic file (peers_movielens.py's), at these sample "
    "counts (e.g. 10,25,50)",
  )
  parser.add_argument("--quick", action="store_true", help="a smoke test")
  parser.add_argument("--json", type=Path, default=None)
  args = parser.parse_args()
  args.quick = args.quick or os.environ.get("MFJAX_BENCH_QUICK") == "1"  # run.py's
  defaults = QUICK if args.quick else DEFAULTS  # what no option names
  args.folds = parse_ints(defaults["folds"] if args.folds is None else args.folds)
  args.synthetic1m = parse_ints(args.synthetic1m)
  args.samples = parse_ints(args.samples) if args.samples else defaults["samples"]
  args.implicit_samples = args.implicit_samples or defaults["implicit_samples"]
  args.implicit = tuple(x for x in args.implicit.split(",") if x)
  args.implicit_ranks = parse_ints(args.implicit_ranks)
  data_dir = harness.data_dir(args.data)

  record = harness.Record(SUITE, vars(args) | {"data": data_dir}, PEERS)
  record.data["quick"] = record.data["quick"] or args.quick
  env, out = record.data["environment"], record.results
  print(
    f"{env['date']}; {env['machine']}, {env['cpu_count']} CPUs, Python "
    f"{env['python']}; load average {env['loadavg_before']}"
  )
  print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
  out["threads"] = {
    "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    "libmf": LIBMF_THREADS,
    "myfm": 1,
  }

  systems = make_systems(args) if args.folds else []
  if args.folds and not systems:
    raise SystemExit("no system to run: install myfm and/or libmf")
  record_settings(systems, out)
  print(
    f"\nfit seconds: warm = median / min of {args.repeats} after the cold (first)"
    " fit, rows interleaved"
  )

  per_fold = {}
  out["folds"] = {}
  for fold in args.folds:
    split = ml100k_split(data_dir, fold)
    print_split_header(split)
    per_fold[fold] = out["folds"][f"ml100k u{fold}"] = run_split(
      systems, split, args.repeats
    )
    print_table(per_fold[fold])

  if args.folds:
    out["table"] = rows = table(systems, per_fold)
    print_time_accuracy(rows, args.folds)
  if args.synthetic1m:
    # The 1M synthetic file: the sample counts of --synthetic1m, no implicit
    # terms (myFM's would take minutes a fit).
    big = argparse.Namespace(**{**vars(args), "samples": args.synthetic1m,
                                "implicit": (), "implicit_samples": None})  # fmt: skip
    makers = [lambda n=n: MyfmSystem(RANK, n, seed=args.seed) for n in big.samples]
    makers.append(lambda: LibmfSystem("tuned", TUNED["libmf"]))
    if args.ensemble:
      makers.append(lambda: MfjaxSystem({}, args.seed))
    big_systems = [*mfjax_gibbs_systems(big), *harness.available(makers)]
    record_settings(big_systems, out)
    split = synthetic1m_split()
    print_split_header(split)
    out["synthetic 1M"] = run_split(big_systems, split, args.repeats)
    print_table(out["synthetic 1M"])
  print(f"\nload average before {env['loadavg_before']}, after {os.getloadavg()}")
  record.write(args.json)


if __name__ == "__main__":
  main()
