"""How to weigh play counts in the ranking fit: linear, log or not at all
(issue 29, "no silent nonsense": counts of any size).

Synthetic play-count files, not MovieLens: a planted taste model picks which
(user, item) pairs occur (power-law users and items; a pair is kept with
probability ``sigmoid(2·s - 1)``, ``s`` the planted score), and each pair gets a
heavy-tailed count: ``ceil(activity_u · Pareto(1.1))`` with a log-normal
activity per user, either independent of the taste (``--kinds indep``) or
times ``exp(s)`` (``follow``). Counts reach 10⁵–10⁸, medians 1–2, as real play
counts do.

Each file is split 80/20 into train and test pairs, and train again 80/20
into fit and validation pairs. Every weighting is scored on validation
(fitted on the fit pairs) and on test (fitted on all of train): recall@20 of
held-out pairs, training pairs left out. The default is chosen on the
validation scores only; the test scores are reported beside them.

Usage: python benchmarks/ranking_counts.py [--seeds 3] [--kinds indep follow]
       python benchmarks/run.py ranking_counts [--quick]
Writes benchmarks/results/ranking_counts/ (harness.Record).
"""

from __future__ import annotations

import argparse
import statistics

import harness
import jax
import jax.numpy as jnp
import numpy as np

import mfjax

# (label, transform, confidence): what is compared.
WEIGHTINGS = [
  ("none (confidence 0)", "linear", 0.0),
  ("linear, confidence 1 (0.3.0 default)", "linear", 1.0),
  ("log, confidence 0.05", "log", 0.05),
  ("log, confidence 0.1", "log", 0.1),
  ("log, confidence 0.25", "log", 0.25),
  ("log, confidence 0.5", "log", 0.5),
  ("log, confidence 1", "log", 1.0),
]


def draw(seed: int, kind: str, n_users=2000, n_items=6000, rank=8, n=120_000):
  """(users, items, counts) of one synthetic play-count file."""
  rng = np.random.default_rng(seed)
  p = rng.normal(size=(n_users, rank))
  q = rng.normal(size=(n_items, rank))
  user_pop = 1.0 / np.arange(1, n_users + 1) ** 0.6
  item_pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
  users = rng.choice(n_users, 2 * n, p=user_pop / user_pop.sum())
  items = rng.choice(n_items, 2 * n, p=item_pop / item_pop.sum())
  s = np.einsum("nk,nk->n", p[users], q[items]) / np.sqrt(rank)
  keep = rng.random(users.size) < 1 / (1 + np.exp(-(2 * s - 1)))
  users, items, s = users[keep], items[keep], s[keep]
  _, first = np.unique(users.astype(np.int64) * n_items + items, return_index=True)
  users, items, s = users[first], items[first], s[first]
  activity = rng.lognormal(0.0, 1.5, n_users)[users]
  if kind == "follow":
    activity = activity * np.exp(s)
  counts = np.maximum(np.ceil(activity * rng.pareto(1.1, users.size)), 1.0)
  return users, items, counts, n_users, n_items


def as_ratings(users, items, values, n_users, n_items):
  return mfjax.Ratings(
    jnp.asarray(users, jnp.int32), jnp.asarray(items, jnp.int32),
    jnp.asarray(values, jnp.float32), n_users, n_items,
  )  # fmt: skip


def recall_at_20(params, train, held_out) -> float:
  users = jnp.asarray(np.unique(np.asarray(held_out.users)), jnp.int32)
  top, _ = mfjax.recommend(params, users, 20, exclude=train)
  return float(mfjax.ranking_metrics(top, users, held_out, k=20, threshold=0.5).recall)


def popularity(train):
  counts = np.bincount(np.asarray(train.items), minlength=train.n_items)
  return mfjax.Params(
    jnp.ones((train.n_users, 1)), jnp.asarray(counts, jnp.float32)[:, None],
    jnp.zeros(train.n_users), jnp.zeros(train.n_items), jnp.zeros(()),
  )  # fmt: skip


def score_file(seed, kind, quick):
  users, items, counts, n_users, n_items = draw(seed, kind)
  rng = np.random.default_rng(seed + 100)
  test = rng.random(users.size) < 0.2
  val = ~test & (rng.random(users.size) < 0.2)
  fit_part = ~test & ~val
  sizes = (n_users, n_items)
  out = {"pairs": int(users.size), "max": float(counts.max()),
         "median": float(np.median(counts))}  # fmt: skip
  for stage, train_mask, held in (("validation", fit_part, val), ("test", ~test, test)):
    train = as_ratings(users[train_mask], items[train_mask], counts[train_mask], *sizes)
    held_out = as_ratings(users[held], items[held], np.ones(held.sum()), *sizes)
    out[stage] = {"popularity": recall_at_20(popularity(train), train, held_out)}
    for label, transform, confidence in WEIGHTINGS[: 4 if quick else None]:
      fitted = mfjax.fit(
        jax.random.key(0), train, objective="ranking",
        confidence=confidence, confidence_transform=transform,
      )  # fmt: skip
      out[stage][label] = recall_at_20(fitted.best_params, train, held_out)
    default = mfjax.fit(jax.random.key(0), train, objective="ranking")
    out[stage]["mfjax default (auto)"] = recall_at_20(
      default.best_params, train, held_out
    )
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--kinds", nargs="+", default=["indep", "follow"])
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  record = harness.Record("ranking_counts", args)
  files = {}
  for kind in args.kinds:
    for seed in range(args.seeds):
      files[f"{kind}-{seed}"] = found = score_file(seed, kind, args.quick)
      print(f"{kind} seed {seed}: {found['pairs']} pairs, counts max "
            f"{found['max']:.0f}, median {found['median']:.0f}")  # fmt: skip
  record.results["files"] = files
  labels = list(next(iter(files.values()))["validation"])
  print("\n| weighting | validation recall@20, mean | test recall@20, mean |")
  print("|---|---|---|")
  means = {}
  for label in labels:
    means[label] = {
      stage: statistics.mean(f[stage][label] for f in files.values())
      for stage in ("validation", "test")
    }
    print(
      f"| {label} | {means[label]['validation']:.4f} | {means[label]['test']:.4f} |"
    )
  record.results["means"] = means
  record.write()


if __name__ == "__main__":
  main()
