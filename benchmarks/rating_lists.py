"""Top-10 lists of a rating model: shrinking items with few ratings (issue 29,
"no silent nonsense": rating-model lists favoured items rated once or twice).

A rating model ranks a user's unrated items by predicted rating, and an item
with one rating of 5 can top every list. Two ways to order the same model's
predictions, measured on MovieLens 100k u1–u5 (NDCG@10, relevant = test rating
≥ 4, training items left out, every user with a relevant test item):

- shrink(m): ``mean + n_i / (n_i + m) · (prediction − mean)``, ``n_i`` the
  item's number of training ratings: a Bayesian average that pulls an item
  toward the global mean until it has about ``m`` ratings (what
  ``mfjax recommend`` and ``Model.recommend`` now do for rating models);
- blend(α): ``prediction + α·log(1 + n_i)``, popularity added outright (the
  stopgap measured in RESULTS.md "Top-10 ranking on ML-100k against a
  most-popular baseline").

``m`` and ``α`` are chosen by NDCG@10 on a 10 % validation split of u1.base
(seeded; the model trained on the other 90 %), before any test file is read;
then each fold's default fit (``mfjax.fit`` at ``FitSettings()``) is scored
on uN.test raw, shrunk, blended, and against popularity.

Usage: python benchmarks/rating_lists.py [--data DIR] [--folds 1,2,3,4,5]
       python benchmarks/run.py rating_lists [--quick]
Writes benchmarks/results/rating_lists/ (harness.Record).
"""

from __future__ import annotations

import argparse
import statistics

import harness
import jax
import jax.numpy as jnp
import numpy as np

import mfjax
from mfjax.core import metrics

SHRINK = (0, 10, 25, 50, 100, 200, 500, 1000, 2000)
ALPHA = (0.5, 1.0, 2.0, 4.0)


def shrunk(params, counts, m):
  """Params whose scores are ``mean + w_i·(b_u + b_i + p_u·q_i)``, ``w_i =
  n_i / (n_i + m)``: the user bias rides in one more factor column."""
  w = counts / (counts + m) if m else jnp.ones_like(counts)
  return mfjax.Params(
    jnp.concatenate([params.user_factors, params.user_bias[:, None]], 1),
    jnp.concatenate([params.item_factors * w[:, None], w[:, None]], 1),
    jnp.zeros_like(params.user_bias),
    params.item_bias * w,
    params.mean,
  )


def blended(params, counts, alpha):
  return params._replace(item_bias=params.item_bias + alpha * jnp.log1p(counts))


def ndcg(params, train, test, k=10):
  users = np.unique(np.asarray(test.users))
  users = jnp.asarray(users[users >= 0], jnp.int32)
  top, _ = mfjax.recommend(params, users, k, exclude=train)
  found = metrics.ranking_metrics(top, users, test, k=k, threshold=4.0)
  return float(found.ndcg)


def fit(train, seed=0):
  return mfjax.fit(jax.random.key(seed), train, scale=(1.0, 5.0)).best_params


def counts_of(train):
  return jnp.asarray(np.bincount(np.asarray(train.items), minlength=train.n_items),
                     jnp.float32)  # fmt: skip


def validation_split(data):
  """u1.base split 90/10 (seeded): ``(train, valid)``, the split every
  choice of these benchmarks is made on."""
  base, _ = mfjax.load_ratings(str(data / "u1.base"))
  held = np.random.default_rng(0).random(len(base)) < 0.1
  return base.subset(np.flatnonzero(~held)), base.subset(np.flatnonzero(held))


def choose(data):
  """``m`` and ``α`` by validation NDCG@10 on a split of u1.base."""
  train, valid = validation_split(data)
  params, counts = fit(train), counts_of(train)
  by_m = {m: ndcg(shrunk(params, counts, m), train, valid) for m in SHRINK}
  by_alpha = {a: ndcg(blended(params, counts, a), train, valid) for a in ALPHA}
  return by_m, by_alpha


def fold_run(doc: str, suite: str):
  """``(args, data folder, harness.Record)`` of a script over MovieLens folds:
  ``--data DIR`` and ``--folds 1,2,3,4,5``."""
  parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
  parser.add_argument("--data")
  parser.add_argument("--folds", default="1,2,3,4,5")
  args = parser.parse_args()
  return args, harness.data_dir(args.data), harness.Record(suite, args)


def main():
  args, data, record = fold_run(__doc__, "rating_lists")
  by_m, by_alpha = choose(data)
  m = max(by_m, key=by_m.get)
  alpha = max(by_alpha, key=by_alpha.get)
  print("validation NDCG@10 by m:", {k: round(v, 4) for k, v in by_m.items()})
  print("validation NDCG@10 by alpha:", {k: round(v, 4) for k, v in by_alpha.items()})
  print(f"chosen: m = {m}, alpha = {alpha}")
  rows = {"raw": [], f"shrink m={m}": [], f"blend alpha={alpha}": [], "popularity": []}
  for fold in args.folds.split(","):
    train, maps = mfjax.load_ratings(str(data / f"u{fold}.base"))
    test, _ = mfjax.load_ratings(str(data / f"u{fold}.test"), id_maps=maps)
    params, counts = fit(train), counts_of(train)
    found = {
      "raw": ndcg(params, train, test),
      f"shrink m={m}": ndcg(shrunk(params, counts, m), train, test),
      f"blend alpha={alpha}": ndcg(blended(params, counts, alpha), train, test),
      "popularity": ndcg(metrics.popularity_params(train), train, test),
    }
    for name, value in found.items():
      rows[name].append(value)
    print(f"u{fold}: " + ", ".join(f"{k} {v:.4f}" for k, v in found.items()))
  print(
    "\n| ordering | " + " | ".join(f"u{f}" for f in args.folds.split(",")) + " | mean |"
  )
  print("|---|" + "---|" * (len(args.folds.split(",")) + 1))
  for name, values in rows.items():
    cells = " | ".join(f"{v:.4f}" for v in values)
    print(f"| {name} | {cells} | **{statistics.mean(values):.4f}** |")
  record.results.update(validation_m=by_m, validation_alpha=by_alpha, chosen_m=m,
                        chosen_alpha=alpha, test=rows)  # fmt: skip
  record.write()


if __name__ == "__main__":
  main()
