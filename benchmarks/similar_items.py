"""An item's neighbours in a rating model: cosine alone, or shrunk by how
often the neighbour was rated (issue 29: ``similar --item 1`` on MovieLens
100k listed films rated a few times).

There is no ground truth for "similar", so this scores neighbour lists the
way a "more like this" row is used: for each user with a relevant test item
(rating ≥ 4), the query is the user's highest-rated training item (the first
of them in file order), and the list is its 10 nearest items by the ordering
under test, the user's training items left out; NDCG@10 against the user's
relevant test items. Orderings: the cosine of the item factors (what
``Model.similar_items`` gives), and the cosine × ``n_j / (n_j + s)``, ``n_j``
the neighbour's training ratings (a shrinkage like Surprise's for its
similarities), ``s`` chosen on a 10 % validation split of u1.base, then every
uN.test scored. Popularity (the most-rated items) is the baseline.

That proxy rewards popularity. A second measure asks MovieLens's own judges:
each film's genres in ``u.item`` (19 flags, set by the data's curators, read
by no fit). For every film with a training rating, the mean Jaccard overlap of
its genre set with each of its 10 neighbours' (``genre agreement``), and the
median training count of the neighbours: cosine, the shrunk cosine at the
validated ``s``, and the most-rated items; the shrinkages of the grid are also
reported on the model of the validation split (u1.base's 90 %).

Usage: python benchmarks/similar_items.py [--data DIR] [--folds 1,2,3,4,5]
Writes benchmarks/results/similar_items/ (harness.Record).
"""

from __future__ import annotations

import statistics

import numpy as np
import rating_lists
from rating_lists import fit

import mfjax

SHRINKAGE = (0, 5, 10, 25, 50, 100, 200, 500)


def unit_rows(item_factors):
  """The item factors scaled to length 1 (zero rows stay 0): cosines by dot."""
  factors = np.asarray(item_factors, np.float64)
  norms = np.linalg.norm(factors, axis=1)
  return factors / np.where(norms > 0, norms, 1.0)[:, None]


def neighbour_ndcg(item_factors, counts, train, test, shrinkage, k=10):
  """Mean NDCG@k of the query items' neighbour lists (see the module)."""
  unit = unit_rows(item_factors)
  weight = np.ones(len(counts)) if shrinkage is None else counts / (counts + shrinkage)
  t_users, t_items = np.asarray(test.users), np.asarray(test.items)
  relevant = np.asarray(test.values) >= 4
  users, items = np.asarray(train.users), np.asarray(train.items)
  values = np.asarray(train.values)
  gains = 1 / np.log2(np.arange(2, k + 2))
  scores = []
  for u in np.unique(t_users[relevant]):
    mine = users == u
    if not mine.any():
      continue
    query = items[mine][np.argmax(values[mine])]
    if shrinkage is None:  # Popularity: the most-rated items.
      order = counts.astype(np.float64).copy()
    else:
      order = (unit @ unit[query]) * weight
    order[items[mine]] = -np.inf
    top = np.argsort(-order, kind="stable")[:k]
    wanted = set(t_items[(t_users == u) & relevant].tolist())
    hits = np.array([t in wanted for t in top.tolist()], float)
    ideal = gains[: min(k, len(wanted))].sum()
    scores.append(float(hits @ gains) / ideal)
  return statistics.mean(scores)


def genres_of(data, item_ids):
  """``[n_items, 19]`` bools: each model item's genre flags from ``u.item``."""
  flags = {}
  for line in (data / "u.item").read_text(encoding="latin-1").splitlines():
    fields = line.split("|")
    flags[fields[0]] = np.array(fields[5:], int).astype(bool)
  return np.stack([flags[str(i)] for i in item_ids])


def genre_agreement(item_factors, counts, genres, shrinkage, k=10):
  """Mean genre Jaccard of each rated film with its ``k`` neighbours, and the
  neighbours' median training count (see the module); ``shrinkage`` None:
  the most-rated items."""
  unit = unit_rows(item_factors)
  weight = np.ones(len(counts)) if not shrinkage else counts / (counts + shrinkage)
  overlaps, support = [], []
  for query in np.flatnonzero(counts > 0):
    if shrinkage is None:
      order = counts.astype(np.float64).copy()
    else:
      order = (unit @ unit[query]) * weight
    order[query] = -np.inf
    top = np.argsort(-order, kind="stable")[:k]
    both = (genres[top] & genres[query]).sum(1)
    either = (genres[top] | genres[query]).sum(1)
    overlaps.append(np.mean(both / np.maximum(either, 1)))
    support.append(np.median(counts[top]))
  return float(np.mean(overlaps)), float(np.median(support))


def counts_of(train):
  """Each item's training ratings, as NumPy floats."""
  return np.asarray(rating_lists.counts_of(train), np.float64)


def main():
  args, data, record = rating_lists.fold_run(__doc__, "similar_items")
  train, valid = rating_lists.validation_split(data)
  params, counts = fit(train), counts_of(train)
  by_s = {s: neighbour_ndcg(params.item_factors, counts, train, valid, s)
          for s in SHRINKAGE}  # fmt: skip
  s = max(by_s, key=by_s.get)
  print("validation NDCG@10 by shrinkage:", {k: round(v, 4) for k, v in by_s.items()})
  _, maps = mfjax.load_ratings(str(data / "u1.base"))
  genres = genres_of(data, maps.items)  # u1.base's items: the split's model
  by_genre = {s: genre_agreement(params.item_factors, counts, genres, s)
              for s in SHRINKAGE}  # fmt: skip
  print(
    "genre agreement (median neighbour count) by shrinkage, validation model: "
    + ", ".join(f"{k}: {v[0]:.4f} ({v[1]:g})" for k, v in by_genre.items())
  )
  genre_rows = {"cosine": [], f"cosine x n/(n + {s})": [], "popularity": []}
  rows = {"cosine": [], f"cosine x n/(n + {s})": [], "popularity": []}
  folds = args.folds.split(",")
  for fold in folds:
    train, maps = mfjax.load_ratings(str(data / f"u{fold}.base"))
    test, _ = mfjax.load_ratings(str(data / f"u{fold}.test"), id_maps=maps)
    params, counts = fit(train), counts_of(train)
    genres = genres_of(data, maps.items)
    for name, shrink in zip(rows, (0, s, None), strict=True):
      rows[name].append(
        neighbour_ndcg(params.item_factors, counts, train, test, shrink)
      )
      genre_rows[name].append(
        genre_agreement(params.item_factors, counts, genres, shrink)
      )
    print(f"u{fold}: " + ", ".join(f"{n} {v[-1]:.4f}" for n, v in rows.items()))
  print("\n| neighbours by | " + " | ".join(f"u{f}" for f in folds) + " | mean |")
  print("|---|" + "---|" * (len(folds) + 1))
  for name, values in rows.items():
    cells = " | ".join(f"{v:.4f}" for v in values)
    print(f"| {name} | {cells} | **{statistics.mean(values):.4f}** |")
  print("\n| genre agreement (neighbours' median count) | " + " | ".join(
    f"u{f}" for f in folds) + " | mean |")  # fmt: skip
  print("|---|" + "---|" * (len(folds) + 1))
  for name, values in genre_rows.items():
    cells = " | ".join(f"{v:.4f} ({c:g})" for v, c in values)
    mean = statistics.mean(v for v, _ in values)
    print(f"| {name} | {cells} | **{mean:.4f}** |")
  record.results.update(
    validation=by_s, chosen=s, test=rows, genre_validation=by_genre,
    genre_agreement=genre_rows,
  )  # fmt: skip
  record.write()


if __name__ == "__main__":
  main()
