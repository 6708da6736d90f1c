"""Top-10 ranking quality of mfjax's default fit on MovieLens 100k u1-u5.

For each fold N the model is trained on uN.base exactly as ``mfjax fit`` trains it
(``mfjax.ensemble.fit_program`` with ``FitSettings()``, seed 0). Every user with a
rating in uN.test gets a top-10 list from ``mfjax.recommend`` that leaves
out the items the user rated in uN.base, and ``mfjax.metrics.ranking_metrics``
scores the lists against uN.test (relevant = rated >= 4). Next to it:

- popularity: the most-popular baseline (``mfjax.metrics.popularity_params``:
  items ranked by their number of ratings in uN.base), same exclusion;
- blend: the model's score plus ``alpha * log(1 + count)``, ``count`` being the
  item's number of ratings in uN.base;
- min-count: the model's score, but only items with at least ``m`` ratings in
  uN.base are recommended.

``alpha`` and ``m`` are chosen once, by NDCG@10 on a validation split carved out
of u1.base (10%, seeded; the model trained on the other 90%). No test file is read
before they are fixed.

Usage: python benchmarks/ranking_movielens.py [--data ../shared/data/ml-100k]
                                              [--folds 1,2,3,4,5] [--k 10]
"""

import argparse
import datetime
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mfjax
from mfjax import metrics, recommend
from mfjax.ensemble import FitSettings, fit_program

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/ml-100k"
NAMES = ("precision", "recall", "ndcg", "map", "hit_rate")
ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
MIN_COUNTS = (0, 10, 20, 50, 100, 150, 200, 250, 300, 400)


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
  return {name: float(getattr(result, name)) for name in NAMES} | {
    "n_users": int(result.n_users)
  }


def row(label, m):
  return (
    f"| {label} | "
    + " | ".join(f"{m[n]:.4f}" for n in NAMES)
    + f" | {m['n_users']:g} |"
  )


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
  parser.add_argument("--folds", default="1,2,3,4,5")
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--threshold", type=float, default=4.0)
  args = parser.parse_args()
  k, threshold = args.k, args.threshold
  print(
    f"# {datetime.datetime.now().isoformat(timespec='seconds')}  "
    f"python {platform.python_version()}, jax {jax.__version__} "
    f"({jax.default_backend()}), optax {optax.__version__}, numpy {np.__version__}, "
    f"mfjax {mfjax.__version__}"
  )
  print(f"# {FitSettings()}; k={k}, relevant = rating >= {threshold}")

  # 1. alpha and m on a validation split of u1.base; no test file is read here.
  start = time.perf_counter()
  base, maps = mfjax.load_ratings(args.data / "u1.base")
  train, valid = mfjax.train_test_split(base, test_fraction=0.1, seed=1)
  params = fit(train, maps.scale)
  counts = counts_of(train)
  print("\n## validation (90/10 split of u1.base), NDCG@k")
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

  # 2. The test folds.
  models = {
    "mfjax default fit": [],
    "popularity": [],
    f"blend alpha={alpha:g}": [],
    f"min count m={m}": [],
  }
  for fold in map(int, args.folds.split(",")):
    train, maps = mfjax.load_ratings(args.data / f"u{fold}.base")
    test, _ = mfjax.load_ratings(args.data / f"u{fold}.test", id_maps=maps)
    params = fit(train, maps.scale)
    counts = counts_of(train)
    rmse = float(mfjax.rmse(params, test, scale=maps.scale))
    for label, p in zip(
      models,
      (
        params,
        metrics.popularity_params(train),
        blend(params, counts, alpha),
        min_count(params, counts, m),
      ),
      strict=True,
    ):
      models[label].append(score(p, train, test, k, threshold))
    print(f"fold {fold}: test rmse of the model {rmse:.4f}", flush=True)

  header = "| model | " + " | ".join(f"{n}@{k}" for n in NAMES) + " | users |"
  rule = "|---" * (len(NAMES) + 2) + "|"
  for label, per_fold in models.items():
    print(f"\n## {label}\n{header}\n{rule}")
    for fold, m_ in zip(args.folds.split(","), per_fold, strict=True):
      print(row(f"u{fold}", m_))
    mean = {n: float(np.mean([f[n] for f in per_fold])) for n in NAMES}
    mean["n_users"] = float(np.mean([f["n_users"] for f in per_fold]))
    print(row("**mean**", mean))
  print(f"\n## mean over folds\n{header}\n{rule}")
  for label, per_fold in models.items():
    mean = {n: float(np.mean([f[n] for f in per_fold])) for n in NAMES}
    mean["n_users"] = float(np.mean([f["n_users"] for f in per_fold]))
    print(row(label, mean))


if __name__ == "__main__":
  main()
