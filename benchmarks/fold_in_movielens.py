"""Fold-in of new users against a full retrain, on MovieLens 100k (u.data).

For each --splits seed: hold out --new-users users entirely (seeded choice), train
the CLI's default model (``mfjax fit``: ``mfjax.fitting.ensemble.fit_program`` with
``FitSettings()``, an ensemble of ``ensemble`` models merged by
``ensemble_params``) on the other users, then fold the held-out users in from 80%
of their ratings (a seeded split per user) and score RMSE, clipped to the rating
scale, on their other 20%. The reference is a full retrain, same program and key,
on the other users plus the held-out users' 80%, scored on the same 20%.

The ensemble is S models of rank k merged into one of rank S·k whose factors are
the members' concatenated and scaled by 1/sqrt(S). Fold-in variants:

  members   fold into each member with the fit's l2 / l2_bias, then merge with
            ensemble_params: what training each member with the user would give.
  joint ×c  fold into the merged rank-S·k model once, with l2·c (bias weight
            l2_bias unchanged), for c in 1/S, 1, S.
  biases    the user bias alone (factors forced to 0; huge l2), for scale.

Usage: python benchmarks/fold_in_movielens.py [--data ../shared/data/ml-100k]
                                              [--splits 0,1,2,3,4] [--new-users 50]
       python benchmarks/run.py fold_in_movielens [--quick] [...]
Writes benchmarks/results/fold_in_movielens/ (harness.Record).
"""

import argparse
import os
import platform
import time
from pathlib import Path

import harness
import jax
import jax.numpy as jnp
import numpy as np

import mfjax
from mfjax import fold_in
from mfjax.fitting.ensemble import FitSettings, ensemble_params, fit_program


def _ratings(users, items, values, n_users, n_items):
  return mfjax.Ratings(
    jnp.asarray(users, jnp.int32),
    jnp.asarray(items, jnp.int32),
    jnp.asarray(values, jnp.float32),
    n_users=n_users,
    n_items=n_items,
  )


def _split(ratings, seed, n_new, test_fraction=0.2):
  """(rest, new_train, new_test, full_train, new_test_in_full) on the host."""
  users = np.asarray(ratings.users)
  items = np.asarray(ratings.items)
  values = np.asarray(ratings.values)
  rng = np.random.default_rng(seed)
  new = rng.choice(ratings.n_users, n_new, replace=False)
  new_index = np.full(ratings.n_users, -1)
  new_index[new] = np.arange(n_new)
  is_new = new_index[users] >= 0
  old = np.setdiff1d(np.arange(ratings.n_users), new)
  old_index = np.full(ratings.n_users, -1)
  old_index[old] = np.arange(old.size)

  # A seeded 80/20 split of each new user's ratings.
  rows = np.flatnonzero(is_new)
  rows = rows[rng.permutation(rows.size)]
  rows = rows[np.argsort(new_index[users[rows]], kind="stable")]
  owner = new_index[users[rows]]
  counts = np.bincount(owner, minlength=n_new)
  rank = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
  n_test = np.maximum(1, np.round(counts * test_fraction)).astype(int)
  test_rows = rows[rank < np.repeat(n_test, counts)]
  train_rows = rows[rank >= np.repeat(n_test, counts)]

  n_old, n_items = old.size, ratings.n_items
  rest_rows = np.flatnonzero(~is_new)
  rest = _ratings(
    old_index[users[rest_rows]],
    items[rest_rows],
    values[rest_rows],
    n_old,
    n_items,
  )
  new_train = _ratings(
    new_index[users[train_rows]], items[train_rows], values[train_rows], n_new, n_items
  )
  new_test = _ratings(
    new_index[users[test_rows]], items[test_rows], values[test_rows], n_new, n_items
  )
  # In the full retrain the new users come after the others.
  full_rows = np.concatenate([rest_rows, train_rows])
  full_users = np.where(
    is_new[full_rows],
    n_old + new_index[users[full_rows]],
    old_index[users[full_rows]],
  )
  full = _ratings(
    full_users, items[full_rows], values[full_rows], n_old + n_new, n_items
  )
  full_test = _ratings(
    n_old + new_index[users[test_rows]],
    items[test_rows],
    values[test_rows],
    n_old + n_new,
    n_items,
  )
  return rest, new_train, new_test, full, full_test


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--splits", default="0,1,2,3,4")
  parser.add_argument("--new-users", type=int, default=50)
  parser.add_argument("--seed", type=int, default=0, help="training key")
  args = parser.parse_args()
  data = harness.data_dir(args.data)
  record = harness.Record("fold_in_movielens", vars(args) | {"data": data})
  record.results["splits"] = splits = []
  d = FitSettings()
  print(
    f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
    f"({jax.default_backend()}), mfjax {mfjax.__version__}; fit defaults {d}"
  )
  ratings, maps = mfjax.load_ratings(data / "u.data")
  scale = maps.scale
  program = fit_program(d, patience=None, progress=False)
  l2, l2_bias, n_models = d.l2, d.l2_bias, d.ensemble
  key = jax.random.key(args.seed)

  def fit(train):
    inputs = (key, train, np.float32(l2), np.float32(l2_bias), None, scale)
    return jax.block_until_ready(program(*inputs))

  # Under jit: the ensemble's members are a vmap batch.
  fold_members = jax.jit(
    jax.vmap(lambda p, r: fold_in(p, r, l2=l2, l2_bias=l2_bias), in_axes=(0, None))
  )
  variants = ["members", "joint x1/S", "joint x1", "joint xS", "biases"]
  table = {name: [] for name in ["retrain"] + variants}
  for split in map(int, args.splits.split(",")):
    rest, new_train, new_test, full, full_test = _split(ratings, split, args.new_users)
    start = time.perf_counter()
    results, merged = fit(rest)
    _, retrained = fit(full)
    fit_s = time.perf_counter() - start

    start = time.perf_counter()
    members = jax.block_until_ready(fold_members(results.best_params, new_train))
    fold_cold = time.perf_counter() - start
    start = time.perf_counter()
    members = jax.block_until_ready(fold_members(results.best_params, new_train))
    fold_warm = time.perf_counter() - start
    folded = {"members": ensemble_params(members)}
    for name, c in (
      ("joint x1/S", 1 / n_models),
      ("joint x1", 1),
      ("joint xS", n_models),
    ):
      folded[name] = fold_in(merged, new_train, l2=l2 * c, l2_bias=l2_bias)
    folded["biases"] = fold_in(merged, new_train, l2=1e12, l2_bias=l2_bias)

    row = {"retrain": float(mfjax.rmse(retrained, full_test, scale=scale))}
    for name in variants:
      row[name] = float(mfjax.rmse(folded[name], new_test, scale=scale))
    for name, value in row.items():
      table[name].append(value)
    splits.append(dict(
      split=split, rmse=row, fits_s=fit_s, fold_in_cold_s=fold_cold,
      fold_in_warm_s=fold_warm,
    ))  # fmt: skip
    print(
      f"split {split}: {len(new_train)} fold-in / {len(new_test)} test ratings of "
      f"{args.new_users} users; two fits {fit_s:.1f} s (with compilation), "
      f"member fold-in (jit) {fold_warm * 1e3:.1f} ms warm, "
      f"{fold_cold * 1e3:.0f} ms cold"
    )
    print(
      "  " + "  ".join(f"{name} {value:.4f}" for name, value in row.items()),
      flush=True,
    )

  retrain = np.array(table["retrain"])
  print(f"\nRMSE on the new users' held-out 20% ({len(retrain)} splits):")
  print(f"  {'':<12} {'mean':>7} {'min':>7} {'max':>7}   gap to retrain (mean, max)")
  for name, values in table.items():
    values = np.array(values)
    gap = values - retrain
    print(
      f"  {name:<12} {values.mean():7.4f} {values.min():7.4f} {values.max():7.4f}"
      + ("" if name == "retrain" else f"   {gap.mean():+.4f}, {gap.max():+.4f}")
    )
  for name in ("members", "joint x1"):
    worst = max(np.array(table[name]) - retrain)
    verdict = "met" if worst <= 0.02 else "NOT met"
    print(f"target gap <= 0.02 on every split, {name}: {verdict} ({worst:+.4f})")
  record.write()


if __name__ == "__main__":
  main()
