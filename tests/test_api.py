"""The public surface: every documented name is importable from ``mfjax``."""

import subprocess
import sys

import mfjax

PUBLIC = [
  "UNKNOWN",
  "IdMaps",
  "Ratings",
  "RatingsFileError",
  "kfold",
  "load_ratings",
  "ratings_from_dense",
  "synthetic_ratings",
  "train_test_split",
  "mae",
  "rmse",
  "RankingMetrics",
  "popularity_params",
  "ranking_metrics",
  "FORMAT_VERSION",
  "Model",
  "ModelFileError",
  "load",
  "save",
  "fold_in",
  "recommend",
  "GridResult",
  "train_grid",
  "fit",
  "FitResult",
  "FIT_DEFAULTS",
  "MemoryWarning",
  "memory_estimate",
  "shard_params",
  "shard_ratings",
  "Params",
  "TrainResult",
  "init_params",
  "predict",
  "loss",
  "train",
  "reproduce_notebook",
  "notebook_optimizer",
  "notebook_params",
  "default_optimizer",
  "ensemble_params",
  "default_learning_rate",
  "observed_mean",
  "NOTEBOOK_MATRIX",
  "NOTEBOOK_PRINTED",
  "BIASES",
  "INITS",
]


def test_public_names_exist():
  for name in PUBLIC:
    assert hasattr(mfjax, name), name


def test_all_matches_public_names():
  assert sorted(mfjax.__all__) == sorted(PUBLIC)
  assert len(set(mfjax.__all__)) == len(mfjax.__all__)


def test_version_matches_metadata():
  from importlib.metadata import version

  assert mfjax.__version__ == version("mfjax")


def test_import_does_not_import_tqdm_or_torch():
  code = "import sys, mfjax; print('tqdm' in sys.modules, 'torch' in sys.modules)"
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, check=True
  )
  assert out.stdout.split() == ["False", "False"]
