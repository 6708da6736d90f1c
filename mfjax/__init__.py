"""mfjax: explicit-feedback recommenders by biased matrix factorisation, in JAX.

The public API is the names below, ``mfjax.<name>``; ``__all__`` lists them once.
Modules hold what a deeper user needs (``mfjax.objectives``, ``mfjax.solvers``,
``mfjax.sharding``, ``mfjax.memory``, ``mfjax.notebook``, ``mfjax.ensemble``, ...).
"""

from mfjax.checkpoint import Model, ModelFileError, load, save
from mfjax.crossval import cross_validate
from mfjax.data import kfold, ratings_from_dense, synthetic_ratings, train_test_split
from mfjax.ensemble import FitResult, FitSettings, fit
from mfjax.grid import train_grid
from mfjax.loaders import (
  RatingsFileError,
  load_ratings,
  ratings_from_arrays,
  ratings_from_frame,
  ratings_from_sparse,
)
from mfjax.metrics import mae, popularity_params, ranking_metrics, rmse
from mfjax.model import init_params, predict
from mfjax.notebook import reproduce_notebook
from mfjax.objectives import loss
from mfjax.serving import fold_in, recommend
from mfjax.training import TrainResult, train
from mfjax.types import UNKNOWN, IdMaps, Params, Ratings
from mfjax.version import __version__ as __version__

# Names of mfjax 0.1 that moved into modules: still reachable, with a warning,
# for one release (removed in 0.3). Names whose meaning changed are not here.
_MOVED = {
  "GridResult": ("mfjax.grid", "GridResult"),
  "RankingMetrics": ("mfjax.metrics", "RankingMetrics"),
  "FORMAT_VERSION": ("mfjax.checkpoint", "FORMAT_VERSION"),
  "MemoryWarning": ("mfjax.memory", "MemoryWarning"),
  "memory_estimate": ("mfjax.memory", "memory_estimate"),
  "shard_params": ("mfjax.sharding", "shard_params"),
  "shard_ratings": ("mfjax.sharding", "shard_ratings"),
  "ensemble_params": ("mfjax.ensemble", "ensemble_params"),
  "INITS": ("mfjax.model", "INITS"),
  "NOTEBOOK_MATRIX": ("mfjax.notebook", "MATRIX"),
  "NOTEBOOK_PRINTED": ("mfjax.notebook", "PRINTED"),
  "notebook_optimizer": ("mfjax.notebook", "optimizer"),
  "notebook_params": ("mfjax.notebook", "printed_params"),
}


def __getattr__(name: str):
  if name not in _MOVED:
    raise AttributeError(f"module 'mfjax' has no attribute {name!r}")
  import importlib
  import warnings

  module, new = _MOVED[name]
  warnings.warn(
    f"mfjax.{name} is now {module}.{new}; the old name goes in mfjax 0.3.",
    DeprecationWarning,
    stacklevel=2,
  )
  return getattr(importlib.import_module(module), new)


__all__ = [
  # Types.
  "Params",
  "Ratings",
  "IdMaps",
  "UNKNOWN",
  # The model and its training.
  "init_params",
  "predict",
  "loss",
  "train",
  "TrainResult",
  "fit",
  "FitSettings",
  "FitResult",
  "train_grid",
  "reproduce_notebook",
  # Data.
  "load_ratings",
  "RatingsFileError",
  "ratings_from_dense",
  "ratings_from_arrays",
  "ratings_from_frame",
  "ratings_from_sparse",
  "train_test_split",
  "kfold",
  "cross_validate",
  "synthetic_ratings",
  # Scores, lists, new users.
  "rmse",
  "mae",
  "ranking_metrics",
  "popularity_params",
  "recommend",
  "fold_in",
  # Files.
  "save",
  "load",
  "Model",
  "ModelFileError",
]
