"""Which rank should the ranking fit take by default? Validation splits of
synthetic implicit files of several sizes (issue 29, "defaults that carry").

MovieLens 100k validated rank 32 (64 was no better there), but on a real
check-in set of ~1M interactions (30k users, 41k items) rank 32 reached 82 % of
the recall@20 of implicit's ALS at 128 factors. Larger data holds more
structure a factor model can find, so the rank should grow with it. This script
measures how, on files that are *not* the ones we report on:

Each file is drawn from a planted model with a long spectrum: user and item
vectors of 128 dimensions whose variance decays as ``1 / k`` (the k-th
dimension), so that a larger file could make more of them identifiable. User u
picks n_u items (log-normal, median 25 to 33 by file, at least 5) without
replacement, with probability proportional to ``pop_i ** 0.5 · exp(6 ·
p_u·q_i)`` (Gumbel top-n; ``pop_i`` power-law), every value 1, as check-ins,
clicks or purchases. 20 % of each file is held out (never read here); the
training part is split again 90/10 and **only that validation split is
scored**: recall@20 and NDCG@10 (relevant = any held-out pair, training pairs
left out, lists from ``mfjax.recommend``).

For each file: mfjax's ranking fit over ranks × passes × l2 (alpha0 and the
rest at their defaults), and implicit's ALS (``OPENBLAS_NUM_THREADS=1``) over
factors × regularization × alpha, both with warm fit times.

Usage: python benchmarks/ranking_rank_rule.py [--files s100k,s300k,s1m]
         [--ranks 32,64,128] [--passes 8] [--l2s 0.01] [--seed 0] [--no-implicit]
       python benchmarks/run.py ranking_rank_rule [--quick] [...]
Writes benchmarks/results/ranking_rank_rule/ (harness.Record).
"""

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # implicit warns otherwise.

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402

import harness  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from ranking_other_data import NO_IMPLICIT, fit_als  # noqa: E402

import mfjax  # noqa: E402
from mfjax.core import metrics  # noqa: E402

FILES = {  # name: (users, items, median interactions per user)
  "s100k": (4_000, 5_000, 25),
  "s300k": (10_000, 14_000, 30),
  "s1m": (30_000, 40_000, 33),
}
ALS_GRID = dict(
  factors=(32, 64, 128), regularization=(0.1, 1.0, 10.0), alpha=(1.0, 10.0, 40.0)
)


def draw(name, seed, dims=128, decay=1.0, beta=6.0, pop=0.5):
  """(train, test) Ratings of a synthetic implicit file (every value 1)."""
  n_users, n_items, median = FILES[name]
  rng = np.random.default_rng(seed)
  sd = (1.0 + np.arange(dims)) ** (-decay / 2)
  sd /= np.sqrt(np.sum(sd**2))  # p·q has variance about 1
  p = (rng.normal(size=(n_users, dims)) * sd).astype(np.float32)
  q = (rng.normal(size=(n_items, dims)) * sd).astype(np.float32)
  log_pop = (-pop * np.log1p(rng.permutation(n_items))).astype(np.float32)
  counts = np.clip(rng.lognormal(np.log(median), 0.9, n_users), 5, n_items // 4)
  counts = counts.astype(int)
  users, items = [], []
  for start in range(0, n_users, 1024):
    block = slice(start, min(start + 1024, n_users))
    logits = log_pop + beta * (p[block] @ q.T)
    logits += rng.gumbel(size=logits.shape).astype(np.float32)
    top = counts[block].max()
    picked = np.argpartition(-logits, top, axis=1)[:, :top]
    order = np.argsort(-np.take_along_axis(logits, picked, 1), axis=1)
    picked = np.take_along_axis(picked, order, 1)
    for offset, n in enumerate(counts[block]):
      users.append(np.full(n, start + offset, np.int32))
      items.append(picked[offset, :n].astype(np.int32))
  users, items = np.concatenate(users), np.concatenate(items)
  test = rng.random(len(users)) < 0.2

  def make(m):
    ones = jnp.ones(int(m.sum()), jnp.float32)
    return mfjax.Ratings(
      jnp.asarray(users[m]), jnp.asarray(items[m]), ones, n_users, n_items
    )

  return make(~test), make(test)


def score(params, train, valid):
  users = np.unique(np.asarray(valid.users)).astype(np.int32)
  items, _ = mfjax.recommend(params, users, 20, exclude=train)
  at20 = metrics.ranking_metrics(items, users, valid, k=20, threshold=1.0)
  at10 = metrics.ranking_metrics(items[:, :10], users, valid, k=10, threshold=1.0)
  return {"recall20": float(at20.recall), "ndcg10": float(at10.ndcg)}


def fit_mfjax(train, **settings):
  key = jax.random.key(0)
  jax.block_until_ready(mfjax.fit(key, train, objective="ranking", **settings))
  start = time.perf_counter()  # warm: the program is compiled above
  fitted = mfjax.fit(key, train, objective="ranking", **settings)
  params = jax.block_until_ready(fitted.best_params)
  return params, time.perf_counter() - start


def run_file(name, args):
  start = time.perf_counter()
  train, _ = draw(name, args.seed)  # the 20 % test part is never read
  sub, valid = mfjax.train_test_split(train, test_fraction=0.1, seed=1)
  n = train.users.shape[0]
  print(
    f"\n## {name}: {train.n_users} users x {train.n_items} items, {n} training "
    f"pairs ({n / train.n_users:.1f} a user, {n / train.n_items:.1f} an item); "
    f"drawn in {time.perf_counter() - start:.0f} s; load {os.getloadavg()[0]:.1f}",
    flush=True,
  )
  out = {"shape": [train.n_users, train.n_items, n], "mfjax": [], "als": []}
  pop = score(metrics.popularity_params(sub), sub, valid)
  out["popularity"] = pop
  print(f"popularity: recall@20 {pop['recall20']:.4f}  ndcg@10 {pop['ndcg10']:.4f}")
  for rank, passes, l2 in itertools.product(args.ranks, args.passes, args.l2s):
    params, seconds = fit_mfjax(sub, rank=rank, steps=passes, l2=l2)
    m = score(params, sub, valid) | {
      "rank": rank,
      "passes": passes,
      "l2": l2,
      "fit_s": seconds,
    }
    out["mfjax"].append(m)
    print(
      f"mfjax rank {rank:4d} passes {passes:3d} l2 {l2:<6g}: recall@20 "
      f"{m['recall20']:.4f}  ndcg@10 {m['ndcg10']:.4f}  warm fit {seconds:.2f} s",
      flush=True,
    )
  grid = (
    [] if (args.no_implicit or NO_IMPLICIT) else itertools.product(*ALS_GRID.values())
  )
  for combo in grid:
    settings = dict(zip(ALS_GRID, combo, strict=True))
    params, seconds = fit_als(sub, **settings)
    m = score(params, sub, valid) | settings | {"fit_s": seconds}
    out["als"].append(m)
    print(
      f"ALS {settings}: recall@20 {m['recall20']:.4f}  ndcg@10 {m['ndcg10']:.4f}  "
      f"fit {seconds:.2f} s",
      flush=True,
    )
  print(f"({time.perf_counter() - start:.0f} s; load {os.getloadavg()[0]:.1f})")
  return out


def ints(text):
  return tuple(int(x) for x in text.split(","))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--files", default="s100k,s300k,s1m")
  parser.add_argument("--ranks", type=ints, default=(32, 64, 128))
  parser.add_argument("--passes", type=ints, default=(8,))
  parser.add_argument(
    "--l2s", type=lambda t: tuple(float(x) for x in t.split(",")), default=(0.01,)
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no-implicit", action="store_true")
  args = parser.parse_args()
  record = harness.Record("ranking_rank_rule", args, ("implicit", "scipy"))
  if NO_IMPLICIT and not args.no_implicit:
    print(f"# implicit ALS: skipped: {NO_IMPLICIT}")
  for name in args.files.split(","):
    record.results[name] = run_file(name, args)
  record.write()


if __name__ == "__main__":
  main()
