"""Where does the best all-pairs weight sit as the file's shape changes?

For files drawn as ``ranking_other_data.py`` draws them (its ``FILES``, plus
``ml``: MovieLens 100k's shape on integer stars, ``3x-items`` and
``10x-users``), fits mfjax's ranking objective on a 90/10 validation split of
each file's training part over a grid of ``alpha0`` (per unit of density, as
``RankingSettings.alpha0``) and ``l2``, and prints the validation NDCG@10 of
each, the best cell and the best weight per pair (``alpha0 × density``). The
test split is never scored. It is the evidence for how ``alpha0`` should scale
with the data (benchmarks/RESULTS.md, "Ranking defaults on other data").

Usage: python benchmarks/ranking_alpha0_grid.py [--files ml,3x-items,10x-items]
                                                [--grid full|quick]
       python benchmarks/run.py ranking_alpha0_grid [--quick] [...]
--grid quick: two alpha0 values and one l2 (a smoke test). Writes
benchmarks/results/ranking_alpha0_grid/ (harness.Record).
"""

import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import ranking_other_data as rod  # noqa: E402

import mfjax  # noqa: E402

rod.FILES.update(
  {
    "ml": (943, 1682, 1.0),
    "3x-items": (943, 5046, 0.5),
    "10x-users": (9430, 1682, 1.0),
  }
)
ALPHA0S = (15.0, 30.0, 60.0, 120.0, 240.0, 480.0)
L2S = (0.003, 0.01, 0.03)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--files", default="ml,3x-items,10x-items,10x-users,10x-both")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--grid", choices=("full", "quick"), default="full")
  args = parser.parse_args()
  record = harness.Record("ranking_alpha0_grid", args)
  alpha0s, l2s = (ALPHA0S[2:4], L2S[1:2]) if args.grid == "quick" else (ALPHA0S, L2S)
  print(f"# mfjax {mfjax.__version__}; load average {os.getloadavg()}")
  for name in args.files.split(","):
    start = time.perf_counter()
    train, _ = rod.draw(name, args.seed)
    sub, valid = mfjax.train_test_split(train, test_fraction=0.1, seed=1)
    n = sub.users.shape[0]
    density = n / (sub.n_users * sub.n_items)
    ndcg = {}
    for alpha0, l2 in itertools.product(alpha0s, l2s):
      params, _ = rod.fit_mfjax(sub, alpha0=alpha0, l2=l2)
      ndcg[alpha0, l2] = rod.score(params, sub, valid)["ndcg"]
    best = max(ndcg, key=ndcg.get)
    print(
      f"{name}: {sub.n_users} users, {sub.n_items} items, {n} ratings, density "
      f"{density:.5f}, {n / sub.n_items:.1f} ratings per item; best (alpha0, l2) "
      f"{best} NDCG@10 {ndcg[best]:.4f}, {best[0] * density:.3f} per pair "
      f"({time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.1f})",
      flush=True,
    )
    for l2 in l2s:
      cells = " ".join(f"{a:g}:{ndcg[a, l2]:.4f}" for a in alpha0s)
      print(f"  l2 {l2}: {cells}", flush=True)
    record.results[name] = dict(
      n_users=sub.n_users, n_items=sub.n_items, n=n, density=density, best=best,
      ndcg=[{"alpha0": a, "l2": x, "ndcg": v} for (a, x), v in ndcg.items()],
    )  # fmt: skip
  record.write()


if __name__ == "__main__":
  main()
