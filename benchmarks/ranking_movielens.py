"""Top-10 ranking quality of mfjax's default fit on MovieLens 100k u1-u5.

For each fold N the model is trained on uN.base exactly as ``mfjax fit`` trains it
(``mfjax.fitting.ensemble.fit_program`` with ``FitSettings()``, seed 0). Every user
with a rating in uN.test gets a top-10 list from ``mfjax.recommend`` that leaves
out the items the user rated in uN.base, and ``mfjax.core.metrics.ranking_metrics``
scores the lists against uN.test (relevant = rated >= 4). Next to it:

- popularity: the most-popular baseline (``mfjax.core.metrics.popularity_params``:
  items ranked by their number of ratings in uN.base), same exclusion;
- blend: the model's score plus ``alpha * log(1 + count)``, ``count`` being the
  item's number of ratings in uN.base;
- min-count: the model's score, but only items with at least ``m`` ratings in
  uN.base are recommended.

- mfjax ranking: ``mfjax.fit(..., objective="ranking")`` (iALS by alternating
  least squares), at ``RankingSettings()`` and tuned over rank, alpha0, l2 and
  confidence;
- EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", 2019):
  item-item ridge regression in closed form, ``B = I - P / diag(P)``, ``P =
  (XᵀX + λI)⁻¹`` over the binary user x item matrix ``X`` of uN.base, scores
  ``X B`` (a few lines of NumPy, float64), λ tuned;
- implicit ALS (``implicit.als.AlternatingLeastSquares``) and implicit BPR
  (``implicit.bpr.BayesianPersonalizedRanking``) on the user x item matrix of
  uN.base (ones, or the ratings as confidence for ALS), at their library defaults
  and tuned. Their factors are wrapped as ``mfjax.Params`` (zero biases), so all
  lists come from the same ``recommend`` and ``ranking_metrics``.

``alpha`` and ``m`` are chosen once, by NDCG@10 on a validation split carved out
of u1.base (10%, seeded; the model trained on the other 90%). The settings of the
ranking peers are tuned by NDCG@10 averaged over two such splits (seeds 1 and 2).
No test file is read before all of them are fixed.

Also reported: catalogue coverage (distinct items recommended / n_items) and fit
seconds of the ranking peers at their tuned settings: cold (first
fit on the fold, compilation included; mfjax's caches are cleared first) and warm
(median of --repeats more fits; the fit call only, blocked until ready).
Without implicit (or scipy) installed, its rows are skipped, the reason printed.

Usage: python benchmarks/ranking_movielens.py [--data ../shared/data/ml-100k]
                                              [--folds 1,2,3,4,5] [--k 10] [--quick]
                                              [--recorded-settings] [--repeats 3]
       python benchmarks/run.py ranking_movielens [--quick] [...]
Writes benchmarks/results/ranking_movielens/ (harness.Record).
"""

import os

# implicit warns when BLAS is multi-threaded; set it before numpy loads BLAS.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import itertools  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import harness  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import mfjax  # noqa: E402
from mfjax import recommend  # noqa: E402
from mfjax.core import metrics  # noqa: E402
from mfjax.fitting import ensemble  # noqa: E402
from mfjax.fitting.ensemble import FitSettings, RankingSettings, fit_program  # noqa: E402

try:
  import implicit
  import scipy.sparse
  from implicit.als import AlternatingLeastSquares
  from implicit.bpr import BayesianPersonalizedRanking

  NO_IMPLICIT = None
except ImportError as error:
  implicit = None
  NO_IMPLICIT = f"implicit not importable ({error!r})"

PEERS = ("implicit", "scipy")
NAMES = ("precision", "recall", "ndcg", "map", "hit_rate")
ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
MIN_COUNTS = (0, 10, 20, 50, 100, 150, 200, 250, 300, 400)
SEEDS = (1, 2)  # validation splits of u1.base
# Grids of the ranking peers (full, --quick).
GRIDS = {
  "mfjax ranking": (
    dict(
      rank=(32, 64),
      alpha0=(1.0, 3.0, 10.0),
      l2=(0.003, 0.006, 0.01, 0.02),
      confidence=(0.0, 1.0, 2.0),
    ),
    dict(rank=(32,), alpha0=(3.0, 10.0), l2=(0.003, 0.01), confidence=(0.0, 1.0)),
  ),
  "implicit ALS": (
    dict(
      factors=(8, 16, 32, 64),
      regularization=(0.1, 1.0, 10.0, 30.0, 100.0),
      alpha=(0.5, 1.0, 2.0, 5.0),
      values=("ones", "ratings"),
    ),
    dict(
      factors=(16, 32, 64),
      regularization=(0.1, 1.0, 10.0),
      alpha=(1.0, 2.0, 5.0),
      values=("ones", "ratings"),
    ),
  ),
  "implicit BPR": (
    dict(
      factors=(32, 64, 128),
      learning_rate=(0.005, 0.01, 0.02),
      regularization=(0.001, 0.01, 0.1),
      iterations=(100, 300),
    ),
    dict(
      factors=(64, 128),
      learning_rate=(0.01,),
      regularization=(0.01, 0.1),
      iterations=(100,),
    ),
  ),
}
GRIDS["EASE"] = (
  dict(lam=(50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0)),
  dict(lam=(100.0, 500.0)),
)
# Library defaults (implicit 0.7: ALS factors 100, regularization 0.01, alpha 1,
# 15 iterations; BPR factors 100, learning rate 0.01, regularization 0.01, 100
# iterations), spelled out so that the report shows them.
DEFAULTS = {
  "mfjax ranking": dict(
    rank=RankingSettings().rank,
    alpha0=RankingSettings().alpha0,
    l2=RankingSettings().l2,
    confidence=RankingSettings().confidence,
  ),
  "implicit ALS": dict(factors=100, regularization=0.01, alpha=1.0, values="ones"),
  "implicit BPR": dict(
    factors=100, learning_rate=0.01, regularization=0.01, iterations=100
  ),
  # EASE has no library; λ = 500 is the paper's order of magnitude.
  "EASE": dict(lam=500.0),
}


def fit(train, scale, seed=0):
  """The CLI's default fit (``mfjax fit TRAIN``): an ensemble of FitSettings()."""
  d = FitSettings()
  program = fit_program(d, patience=None, progress=False)
  inputs = (
    jax.random.key(seed),
    train,
    np.float32(d.l2),
    np.float32(d.l2_bias),
    None,
    scale,
  )
  _, params = jax.block_until_ready(program(*inputs))
  return params


def fit_ranking(train, seed=0, **settings):
  """mfjax's ranking objective; returns (params, fit seconds)."""
  start = time.perf_counter()
  result = mfjax.fit(jax.random.key(seed), train, objective="ranking", **settings)
  params = jax.block_until_ready(result.best_params)
  return params, time.perf_counter() - start


def user_items(train, values):
  """The user x item CSR matrix of ``train``: ones, or the ratings."""
  users, items = np.asarray(train.users), np.asarray(train.items)
  keep = users >= 0
  data = np.asarray(train.values, np.float32)[keep]
  if values == "ones":
    data = np.ones_like(data)
  return scipy.sparse.csr_matrix(
    (data, (users[keep], items[keep])), shape=(train.n_users, train.n_items)
  )


def wrap(user_factors, item_factors):
  """Factors of an implicit model as mfjax Params with zero biases."""
  p = jnp.asarray(np.asarray(user_factors, np.float32))
  q = jnp.asarray(np.asarray(item_factors, np.float32))
  return mfjax.Params(p, q, jnp.zeros(p.shape[0]), jnp.zeros(q.shape[0]), jnp.zeros(()))


def fit_als(train, factors, regularization, alpha, values, iterations=15):
  model = AlternatingLeastSquares(
    factors=factors,
    regularization=regularization,
    alpha=alpha,
    iterations=iterations,
    random_state=0,
  )
  return fit_implicit(model, user_items(train, values))


def fit_bpr(train, factors, learning_rate, regularization, iterations):
  # BPR's factors carry the item bias as one more column (users have a 1 there).
  model = BayesianPersonalizedRanking(
    factors=factors,
    learning_rate=learning_rate,
    regularization=regularization,
    iterations=iterations,
    random_state=0,
  )
  return fit_implicit(model, user_items(train, "ones"))


def fit_ease(train, lam):
  """(Params, fit seconds) of EASE: ``X`` as the user factors and ``B`` as
  the item factors' transpose, so that ``p_u · q_i = (X B)_ui``."""
  start = time.perf_counter()
  users, items = np.asarray(train.users), np.asarray(train.items)
  keep = users >= 0
  x = np.zeros((train.n_users, train.n_items))
  x[users[keep], items[keep]] = 1.0
  gram = x.T @ x
  gram[np.diag_indices_from(gram)] += lam
  p = np.linalg.inv(gram)
  b = -p / np.diag(p)[None, :]
  b[np.diag_indices_from(b)] = 0.0
  seconds = time.perf_counter() - start
  return wrap(x, b.T), seconds


def fit_implicit(model, matrix):
  """(Params, fit seconds) of an implicit model fitted to ``matrix``."""
  start = time.perf_counter()
  model.fit(matrix, show_progress=False)
  seconds = time.perf_counter() - start
  return wrap(model.user_factors, model.item_factors), seconds


FITTERS = {
  "mfjax ranking": fit_ranking,
  "EASE": fit_ease,
  "implicit ALS": fit_als,
  "implicit BPR": fit_bpr,
}
if NO_IMPLICIT:
  del FITTERS["implicit ALS"], FITTERS["implicit BPR"]


def clear_mfjax_caches():
  # Its name in the 0.3 layout, else in 0.3's first stage.
  cached = getattr(ensemble, "cached_ranking_program", None)
  (cached or ensemble._cached_ranking_program).cache_clear()
  jax.clear_caches()


def fit_seconds(name, train, settings, repeats=3):
  """(params, cold s, warm median s, warm min s) of FITTERS[name] on train.

  The fitters time the fit call alone (not building implicit's matrix)."""
  if name == "mfjax ranking":
    clear_mfjax_caches()
  params, cold = FITTERS[name](train, **settings)
  warm = harness.summary(FITTERS[name](train, **settings)[1] for _ in range(repeats))
  return params, cold, warm["median"], warm["min"]


def tune(name, grid, splits, k, threshold):
  """Settings of the best mean NDCG@k over the validation splits.

  The library defaults are a candidate too, so "tuned" is never worse than the
  defaults on validation.
  """
  keys = list(grid)
  ndcg = {}
  start = time.perf_counter()
  # Outer loop over the static settings, so that mfjax compiles each once.
  defaults = tuple(DEFAULTS[name][key] for key in keys)
  for combo in [*itertools.product(*grid.values()), defaults]:
    if combo in ndcg:
      continue
    settings = dict(zip(keys, combo, strict=True))
    ndcg[combo] = float(
      np.mean(
        [
          score(FITTERS[name](train, **settings)[0], train, valid, k, threshold)["ndcg"]
          for train, valid in splits
        ]
      )
    )
  best = max(ndcg, key=ndcg.get)
  ranked = sorted(ndcg, key=ndcg.get, reverse=True)
  print(f"\n### {name}: {len(ndcg)} settings ({time.perf_counter() - start:.0f} s)")
  print("top 5: " + "; ".join(f"{c}: {ndcg[c]:.4f}" for c in ranked[:5]))
  print(f"worst: {ranked[-1]}: {ndcg[ranked[-1]]:.4f}")
  return dict(zip(keys, best, strict=True)), ndcg[best]


def counts_of(train):
  return metrics.popularity_params(train).item_bias


def blend(params, counts, alpha):
  return params._replace(item_bias=params.item_bias + alpha * jnp.log1p(counts))


def min_count(params, counts, m):
  # A large penalty rather than -inf, so that a user left with fewer eligible
  # items still gets a full list (recommend turns -inf into empty slots).
  return params._replace(item_bias=params.item_bias - 1e6 * (counts < m))


def score(params, train, test, k, threshold):
  users = np.unique(np.asarray(test.users))
  users = users[users >= 0].astype(np.int32)
  items, _ = recommend(params, users, k, exclude=train)
  result = metrics.ranking_metrics(items, users, test, k=k, threshold=threshold)
  items = np.asarray(items)
  return {name: float(getattr(result, name)) for name in NAMES} | {
    "n_users": int(result.n_users),
    "coverage": len(np.unique(items[items >= 0])) / train.n_items,
  }


def row(label, m):
  return (
    f"| {label} | "
    + " | ".join(f"{m[n]:.4f}" for n in NAMES)
    + f" | {m['coverage']:.4f} | {m['n_users']:g} |"
  )


def mean_of(per_fold):
  mean = {n: float(np.mean([f[n] for f in per_fold])) for n in NAMES}
  mean["coverage"] = float(np.mean([f["coverage"] for f in per_fold]))
  mean["n_users"] = float(np.mean([f["n_users"] for f in per_fold]))
  return mean


# What step 2 chose in the run recorded in RESULTS.md (2026-12-02, "Ranking: ...").
# --recorded-settings uses them instead of tuning again (39 minutes), e.g. to
# re-score the test folds after a change of mfjax's defaults.
RECORDED = {
  "implicit ALS": dict(factors=64, regularization=30.0, alpha=1.0, values="ratings"),
  "implicit BPR": dict(
    factors=64, learning_rate=0.005, regularization=0.001, iterations=100
  ),
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--folds", default="1,2,3,4,5")
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--threshold", type=float, default=4.0)
  parser.add_argument(
    "--quick", action="store_true", help="smaller grids for the ranking peers"
  )
  parser.add_argument(
    "--recorded-settings",
    action="store_true",
    help="no tuning of the ranking peers that have recorded settings: "
    "implicit's chosen in the recorded run (RECORDED), mfjax at its defaults; "
    "the others (EASE) are tuned",
  )
  parser.add_argument("--repeats", type=int, default=3, help="warm fits per fold")
  args = parser.parse_args()
  data = harness.data_dir(args.data)
  record = harness.Record("ranking_movielens", vars(args) | {"data": data}, PEERS)
  out = record.results
  k, threshold = args.k, args.threshold
  grids = {
    name: grid[1 if args.quick else 0]
    for name, grid in GRIDS.items()
    if name in FITTERS
  }
  wall = time.perf_counter()
  print(
    f"# {datetime.datetime.now().isoformat(timespec='seconds')}  "
    f"python {platform.python_version()}, jax {jax.__version__} "
    f"({jax.default_backend()}), optax {optax.__version__}, numpy {np.__version__}, "
    f"implicit {implicit.__version__ if implicit else None}, "
    f"mfjax {mfjax.__version__}; "
    f"{os.cpu_count()} cpus, OPENBLAS_NUM_THREADS="
    f"{os.environ.get('OPENBLAS_NUM_THREADS')}"
  )
  if NO_IMPLICIT:
    print(f"# implicit ALS and BPR: skipped: {NO_IMPLICIT}")
  print(f"# load average at start: {os.getloadavg()}")
  print(f"# {FitSettings()}; {RankingSettings()}")
  print(
    f"# k={k}, relevant = rating >= {threshold}; "
    f"grids: {'quick' if args.quick else 'full'}"
  )

  # 1. alpha and m on a validation split of u1.base; no test file is read here.
  start = time.perf_counter()
  base, maps = mfjax.load_ratings(data / "u1.base")
  train, valid = mfjax.train_test_split(base, test_fraction=0.1, seed=1)
  params = fit(train, maps.scale)
  counts = counts_of(train)
  print("\n## validation (90/10 split of u1.base, seed 1), NDCG@k")
  by_alpha = {
    a: score(blend(params, counts, a), train, valid, k, threshold) for a in ALPHAS
  }
  by_m = {
    m: score(min_count(params, counts, m), train, valid, k, threshold)
    for m in MIN_COUNTS
  }
  popular = score(metrics.popularity_params(train), train, valid, k, threshold)
  print("alpha: " + ", ".join(f"{a:g}: {s['ndcg']:.4f}" for a, s in by_alpha.items()))
  print("min count: " + ", ".join(f"{m}: {s['ndcg']:.4f}" for m, s in by_m.items()))
  print(f"popularity: {popular['ndcg']:.4f}")
  alpha = max(ALPHAS, key=lambda a: by_alpha[a]["ndcg"])
  m = max(MIN_COUNTS, key=lambda c: by_m[c]["ndcg"])
  print(
    f"chosen: alpha = {alpha:g}, min count = {m}  ({time.perf_counter() - start:.0f} s)"
  )
  out["validation"] = dict(
    alpha={a: s["ndcg"] for a, s in by_alpha.items()},
    min_count={c: s["ndcg"] for c, s in by_m.items()},
    popularity=popular["ndcg"],
    chosen_alpha=alpha,
    chosen_min_count=m,
  )

  # 2. The ranking peers, tuned by NDCG@k averaged over splits of u1.base.
  splits = [
    mfjax.train_test_split(base, test_fraction=0.1, seed=seed) for seed in SEEDS
  ]
  print(
    f"\n## tuning the ranking peers: mean NDCG@k over splits of u1.base, seeds {SEEDS}"
  )
  tuned = {}
  if args.recorded_settings:
    tuned = dict(RECORDED, **{"mfjax ranking": DEFAULTS["mfjax ranking"]})
    tuned = {name: tuned[name] for name in FITTERS if name in tuned}
    grids = {name: grid for name, grid in grids.items() if name not in tuned}
    print(f"not tuned: recorded settings {tuned}; tuned: {list(grids)}")
  for name, grid in grids.items():
    settings, best = tune(name, grid, splits, k, threshold)
    default = float(
      np.mean(
        [
          score(FITTERS[name](tr, **DEFAULTS[name])[0], tr, va, k, threshold)["ndcg"]
          for tr, va in splits
        ]
      )
    )
    tuned[name] = settings
    print(f"chosen: {settings}: {best:.4f}  (defaults {DEFAULTS[name]}: {default:.4f})")
  print(f"\nsettings fixed after {time.perf_counter() - wall:.0f} s", flush=True)

  # 3. The test folds.
  models = {
    "popularity": [],
    "mfjax rating fit": [],
    f"rating fit + blend alpha={alpha:g}": [],
    f"rating fit, min count m={m}": [],
  }
  for name in FITTERS:
    models[f"{name} (defaults)"] = []
    models[f"{name} (tuned)"] = []
  # Fit seconds of every ranking peer, at its defaults and tuned.
  seconds = {label: {"cold": [], "warm": [], "fastest": []} for label in models}
  folds = args.folds.split(",")
  for fold in map(int, folds):
    train, maps = mfjax.load_ratings(data / f"u{fold}.base")
    test, _ = mfjax.load_ratings(data / f"u{fold}.test", id_maps=maps)
    params = fit(train, maps.scale)
    counts = counts_of(train)
    rmse = float(mfjax.rmse(params, test, scale=maps.scale))
    fitted = {
      "popularity": metrics.popularity_params(train),
      "mfjax rating fit": params,
      f"rating fit + blend alpha={alpha:g}": blend(params, counts, alpha),
      f"rating fit, min count m={m}": min_count(params, counts, m),
    }
    for name in FITTERS:
      for which, settings in (("defaults", DEFAULTS[name]), ("tuned", tuned[name])):
        label = f"{name} ({which})"
        fitted[label], cold, warm, fastest = fit_seconds(
          name, train, settings, args.repeats
        )
        seconds[label]["cold"].append(cold)
        seconds[label]["warm"].append(warm)
        seconds[label]["fastest"].append(fastest)
    for label, p in fitted.items():
      models[label].append(score(p, train, test, k, threshold))
    print(
      f"fold {fold}: test rmse of the rating model {rmse:.4f}; load average "
      f"{os.getloadavg()}",
      flush=True,
    )

  header = (
    "| model | " + " | ".join(f"{n}@{k}" for n in NAMES) + f" | coverage@{k} | users |"
  )
  rule = "|---" * (len(NAMES) + 3) + "|"
  for label, per_fold in models.items():
    print(f"\n## {label}\n{header}\n{rule}")
    for fold, m_ in zip(folds, per_fold, strict=True):
      print(row(f"u{fold}", m_))
    print(row("**mean**", mean_of(per_fold)))
  print(f"\n## mean over folds\n{header}\n{rule}")
  for label, per_fold in models.items():
    print(row(label, mean_of(per_fold)))

  print("\n## tuned settings")
  print(f"rating fit + blend: alpha = {alpha:g}; min count: m = {m}")
  for name, settings in tuned.items():
    print(f"{name}: {settings}  (defaults {DEFAULTS[name]})")

  out.update(models=models, fit_seconds=seconds, tuned=tuned, folds=folds)
  als = [f["ndcg"] for f in models.get("implicit ALS (tuned)", [])]
  for which in ("defaults", "tuned") if als else ():
    ours = [f["ndcg"] for f in models[f"mfjax ranking ({which})"]]
    print(f"\n## NDCG@{k}: mfjax ranking ({which}) vs implicit ALS (tuned)")
    print("| fold | mfjax ranking | implicit ALS | difference |\n|---|---|---|---|")
    for fold, a_, b_ in zip(folds, ours, als, strict=True):
      print(f"| u{fold} | {a_:.4f} | {b_:.4f} | {a_ - b_:+.4f} |")
    wins = sum(a_ > b_ for a_, b_ in zip(ours, als, strict=True))
    print(
      f"mean {np.mean(ours):.4f} vs {np.mean(als):.4f}; mfjax ranking ({which}) "
      f"NDCG > implicit ALS (tuned) NDCG on {wins} of {len(folds)} folds"
    )

  print("\n## fit seconds (cold: first fit on the fold, compilation included after")
  print(
    f"## clearing mfjax's caches; warm: median and minimum of {args.repeats} more fits)"
  )
  print("| model | cold s, median of folds | warm s, median of folds | warm s, min |")
  print("|---|---|---|---|")
  for label, times in seconds.items():
    if times["warm"]:
      print(
        f"| {label} | {np.median(times['cold']):.3f} | "
        f"{np.median(times['warm']):.3f} | {np.min(times['fastest']):.3f} |"
      )
  als_warm = np.median(seconds.get("implicit ALS (tuned)", {}).get("warm", [np.nan]))
  for which in ("defaults", "tuned") if als else ():
    ratio = np.median(seconds[f"mfjax ranking ({which})"]["warm"]) / als_warm
    print(
      f"warm fit time ratio mfjax ranking ({which}) / implicit ALS (tuned), "
      f"medians over folds: {ratio:.2f}"
    )
  print(f"\n# load average at end: {os.getloadavg()}")
  print(f"# total {time.perf_counter() - wall:.0f} s")
  record.write()


if __name__ == "__main__":
  main()
