"""Surprise's SVD on one MovieLens split as a whole process: the yardstick of
``benchmarks/cold_start.py`` for a first ``mfjax fit``.

Loads ``uN.base`` and ``uN.test``, fits SVD with its defaults, prints the test
RMSE, as a user's script would.

Usage: python benchmarks/surprise_fit.py DATA_DIR u1
"""

import sys
from pathlib import Path

from surprise import SVD, Dataset, Reader, accuracy
from surprise.model_selection import PredefinedKFold


def main():
  folder, split = Path(sys.argv[1]), sys.argv[2]
  reader = Reader(line_format="user item rating timestamp", sep="\t")
  data = Dataset.load_from_folds(
    [(str(folder / f"{split}.base"), str(folder / f"{split}.test"))], reader
  )
  [(train, test)] = PredefinedKFold().split(data)
  algo = SVD(random_state=0)
  algo.fit(train)
  accuracy.rmse(algo.test(test))


if __name__ == "__main__":
  main()
