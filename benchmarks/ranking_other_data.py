"""Do the ranking defaults carry to other data? Synthetic files, no retuning.

``RankingSettings()`` was tuned on validation splits of MovieLens 100k
u1.base (integer stars 1-5, 943 users, 1,682 items). This script draws files of
another shape from a planted model of *which items a user picks* and *how they
rate them*, and compares, on each file's test split:

- popularity (items by their number of training ratings);
- mfjax ranking at ``RankingSettings()`` (not retuned);
- implicit's ALS at its library defaults and at the settings tuned on MovieLens
  (``--als``, default: the setting ``ranking_movielens.py`` chose on
  validation, RESULTS.md), both not retuned;
- implicit's ALS retuned on a validation split of this file's training part (a
  reference that has seen this data, which mfjax has not);
- mfjax ranking's alpha0 and l2 varied around the default, scored on the same
  validation split, to show where the default sits (not used for the test rows).

The files (``--files``):

- ``half-star``: MovieLens 100k's shape (943 users, 1,682 items, ~100k ratings),
  ratings on a half-star scale 0.5-5;
- ``10x-items``: the same users and ratings per user, 16,820 items;
- ``10x-both``: 9,430 users, 16,820 items, ~1M ratings.

Each user u picks n_u items (n_u log-normal, median ~65, at least 20, as in
MovieLens) without replacement, with probability proportional to
``pop_i · exp(beta · p_u·q_i)`` (Gumbel top-n; ``pop_i`` power-law), and rates
item i ``3.3 + 0.8·p_u·q_i + quality_i + noise``, rounded to the scale's step and
clipped. 20% of the ratings are held out as the test split; relevant = test
rating >= 4. Lists of 10 leave out training items; metrics and lists come from
``mfjax.recommend`` and ``mfjax.ranking_metrics`` for every model.

Usage: python benchmarks/ranking_other_data.py [--files half-star,10x-items]
                                               [--seed 0] [--als 64,30,1.0,ratings]
                                               [--grid full|quick]
       python benchmarks/run.py ranking_other_data [--quick] [...]
--grid quick: the validation grids shrink to mfjax's default cell and one ALS
setting (a smoke test). Without implicit (or scipy), its rows are skipped, the
reason printed. Writes benchmarks/results/ranking_other_data/ (harness.Record).
"""

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # implicit warns otherwise.

import argparse  # noqa: E402
import datetime  # noqa: E402
import itertools  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import harness  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import mfjax  # noqa: E402
from mfjax.core import metrics  # noqa: E402
from mfjax.fitting.ensemble import RankingSettings  # noqa: E402

try:
  import implicit
  import scipy.sparse
  from implicit.als import AlternatingLeastSquares

  NO_IMPLICIT = None
except ImportError as error:
  implicit = None
  NO_IMPLICIT = f"implicit not importable ({error!r})"

NAMES = ("precision", "recall", "ndcg", "map", "hit_rate")
FILES = {
  # name: (n_users, n_items, step of the rating scale)
  "half-star": (943, 1682, 0.5),
  "10x-items": (943, 16820, 0.5),
  "10x-both": (9430, 16820, 1.0),
}
RANK, BETA = 16, 1.5
ALS_GRID = dict(
  factors=(16, 64),
  regularization=(1.0, 10.0, 30.0),
  alpha=(0.5, 1.0, 2.0),
  values=("ones", "ratings"),
)
ALPHA0S = (15.0, 30.0, 60.0, 120.0, 240.0)  # per unit of density
L2S = (0.001, 0.003, 0.01)


def draw(name, seed):
  """(train, test) Ratings of a synthetic file, users/items as indices."""
  n_users, n_items, step = FILES[name]
  rng = np.random.default_rng(seed)
  p = rng.normal(size=(n_users, RANK)) / RANK**0.25
  q = rng.normal(size=(n_items, RANK)) / RANK**0.25
  popularity = -1.0 * np.log1p(rng.permutation(n_items))
  quality = 0.4 * rng.normal(size=n_items)
  counts = np.clip(rng.lognormal(np.log(65), 0.9, n_users), 20, n_items // 2)
  items = []
  for start in range(0, n_users, 512):  # blocks of users: bounded memory
    block = slice(start, min(start + 512, n_users))
    logits = popularity + BETA * (p[block] @ q.T)
    logits += rng.gumbel(size=logits.shape)
    order = np.argsort(-logits, axis=1)
    for row, n in zip(order, counts[block].astype(int), strict=True):
      items.append(row[:n])
  users = np.concatenate([np.full(len(i), u, np.int32) for u, i in enumerate(items)])
  items = np.concatenate(items).astype(np.int32)
  raw = 3.3 + 0.8 * np.sum(p[users] * q[items], 1) + quality[items]
  raw += 0.6 * rng.normal(size=raw.shape)
  lo = step  # half-star scale 0.5-5, or stars 1-5
  values = np.clip(np.round(raw / step) * step, lo, 5.0).astype(np.float32)
  test = rng.random(len(values)) < 0.2
  make = lambda m: mfjax.Ratings(
    jnp.asarray(users[m]),
    jnp.asarray(items[m]),
    jnp.asarray(values[m]),
    n_users,
    n_items,
  )
  return make(~test), make(test)


def score(params, train, test, k=10, threshold=4.0):
  users = np.unique(np.asarray(test.users)).astype(np.int32)
  items, _ = mfjax.recommend(params, users, k, exclude=train)
  result = metrics.ranking_metrics(items, users, test, k=k, threshold=threshold)
  items = np.asarray(items)
  return {n: float(getattr(result, n)) for n in NAMES} | {
    "coverage": len(np.unique(items[items >= 0])) / train.n_items
  }


def fit_mfjax(train, **settings):
  start = time.perf_counter()
  fitted = mfjax.fit(jax.random.key(0), train, objective="ranking", **settings)
  params = jax.block_until_ready(fitted.best_params)
  return params, time.perf_counter() - start


def fit_als(train, factors=100, regularization=0.01, alpha=1.0, values="ones"):
  users, items = np.asarray(train.users), np.asarray(train.items)
  data = np.asarray(train.values, np.float32)
  matrix = scipy.sparse.csr_matrix(
    (np.ones_like(data) if values == "ones" else data, (users, items)),
    shape=(train.n_users, train.n_items),
  )
  model = AlternatingLeastSquares(
    factors=factors, regularization=regularization, alpha=alpha, random_state=0
  )
  start = time.perf_counter()
  model.fit(matrix, show_progress=False)
  seconds = time.perf_counter() - start
  p = jnp.asarray(model.user_factors, jnp.float32)
  q = jnp.asarray(model.item_factors, jnp.float32)
  params = mfjax.Params(
    p, q, jnp.zeros(p.shape[0]), jnp.zeros(q.shape[0]), jnp.zeros(())
  )
  return params, seconds


def row(label, m, seconds=None):
  cells = " | ".join(f"{m[n]:.4f}" for n in NAMES)
  timing = "" if seconds is None else f"{seconds:.2f}"
  return f"| {label} | {cells} | {m['coverage']:.3f} | {timing} |"


def run_file(name, seed, als_tuned, quick=False):
  """Prints the file's validation line and test table; returns them."""
  default = RankingSettings()
  als_grid = (
    {key: values[:1] for key, values in ALS_GRID.items()} if quick else ALS_GRID
  )
  alpha0s, l2s = ((default.alpha0,), (default.l2,)) if quick else (ALPHA0S, L2S)
  out = {"test": {}}
  start = time.perf_counter()
  train, test = draw(name, seed)
  sub, valid = mfjax.train_test_split(train, test_fraction=0.1, seed=1)
  print(
    f"\n## {name}: {train.n_users} users, {train.n_items} items, "
    f"{train.users.shape[0] + test.users.shape[0]} ratings "
    f"(values {sorted(set(np.asarray(train.values).tolist()))[:3]}...); "
    f"drawn in {time.perf_counter() - start:.0f} s",
    flush=True,
  )
  # Validation: ALS retuned; mfjax's alpha0 and l2 around the default, shown only.
  als_scores = {}
  for combo in itertools.product(*als_grid.values()) if implicit else ():
    settings = dict(zip(als_grid, combo, strict=True))
    als_scores[combo] = score(fit_als(sub, **settings)[0], sub, valid)["ndcg"]
  if als_scores:
    als_best = dict(zip(als_grid, max(als_scores, key=als_scores.get), strict=True))
    als_line = f"{max(als_scores.values()):.4f} at {als_best}"
  else:
    als_best, als_line = None, f"skipped: {NO_IMPLICIT}"
  ours = {}
  for alpha0, l2 in itertools.product(alpha0s, l2s):
    ours[alpha0, l2] = score(fit_mfjax(sub, alpha0=alpha0, l2=l2)[0], sub, valid)[
      "ndcg"
    ]
  print(
    f"validation NDCG@10 (90/10 split of the training part): mfjax default "
    f"{ours[default.alpha0, default.l2]:.4f}; best of mfjax's alpha0 x l2 grid "
    f"{max(ours.values()):.4f} at {max(ours, key=ours.get)}; implicit ALS retuned "
    f"{als_line}"
  )
  print(
    "mfjax alpha0 \\ l2: "
    + "; ".join(
      f"{a:g}: " + ", ".join(f"{ours[a, x]:.4f}" for x in l2s) for a in alpha0s
    )
  )
  out["validation"] = {
    "mfjax": [{"alpha0": a, "l2": x, "ndcg": v} for (a, x), v in ours.items()],
    "als": [
      dict(zip(als_grid, c, strict=True)) | {"ndcg": v} for c, v in als_scores.items()
    ],
    "als_best": als_best,
  }
  header = "| model | " + " | ".join(f"{n}@10" for n in NAMES)
  print(f"\n{header} | coverage | warm fit s |\n" + "|---" * 8 + "|")
  popular = out["test"]["popularity"] = score(
    metrics.popularity_params(train), train, test
  )
  print(row("popularity", popular))
  fit_mfjax(train)  # compile
  params, seconds = fit_mfjax(train)
  label = "mfjax ranking, defaults (not retuned)"
  out["test"][label] = score(params, train, test) | {"fit_s": seconds}
  print(row(label, score(params, train, test), seconds))
  peers = (
    ("implicit ALS, defaults", {}),
    (f"implicit ALS, tuned on MovieLens {als_tuned}", als_tuned),
    (f"implicit ALS, retuned on this file {als_best}", als_best),
  )
  for label, settings in peers if implicit else ():
    params, seconds = fit_als(train, **settings)
    out["test"][label] = score(params, train, test) | {"fit_s": seconds}
    print(row(label, score(params, train, test), seconds))
  print(f"({time.perf_counter() - start:.0f} s; load average {os.getloadavg()})")
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--files", default="half-star,10x-items")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--als",
    default="64,30,1.0,ratings",
    help="factors,regularization,alpha,values of implicit's ALS tuned on MovieLens",
  )
  parser.add_argument("--grid", choices=("full", "quick"), default="full")
  args = parser.parse_args()
  record = harness.Record("ranking_other_data", args, ("implicit", "scipy"))
  factors, reg, alpha, values = args.als.split(",")
  als_tuned = dict(
    factors=int(factors), regularization=float(reg), alpha=float(alpha), values=values
  )
  print(
    f"# {datetime.datetime.now().isoformat(timespec='seconds')}  python "
    f"{platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}, "
    f"implicit {implicit.__version__ if implicit else None}, "
    f"mfjax {mfjax.__version__}; "
    f"{os.cpu_count()} cpus; load average {os.getloadavg()}"
  )
  print(f"# {RankingSettings()}; seed {args.seed}")
  if NO_IMPLICIT:
    print(f"# implicit ALS: skipped: {NO_IMPLICIT}")
  for name in args.files.split(","):
    quick = args.grid == "quick"
    record.results[name] = run_file(name, args.seed, als_tuned, quick)
  record.write()


if __name__ == "__main__":
  main()
