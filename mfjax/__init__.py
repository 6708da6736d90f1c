"""mfjax: explicit-feedback recommenders by biased matrix factorisation, in JAX.

The public API is the names below, ``mfjax.<name>``; ``__all__`` lists them once.
Subpackages hold what a deeper user needs, by tier, each importing only the
tiers below it:

- ``mfjax.core``: pure JAX: params, kernels, objectives, solvers, training,
  metrics, memory estimates, sharding;
- ``mfjax.data``: ratings files, in-memory constructors, splits;
- ``mfjax.fitting``: the ensemble fit, grids, cross-validation;
- ``mfjax.serving``: top-N lists, fold-in, raw-id model methods;
- ``mfjax.io``: model files, atomic writes;
- ``mfjax.distributed``: several processes and hosts;
- ``mfjax.cli``: the command line.

``types``, ``validation``, ``version``, ``notebook`` and ``deprecation`` sit at
the top. The 0.2 module paths (``mfjax.ensemble``, ...) still import, with a
``DeprecationWarning``, until 0.4 (``docs/changes-0.3.md``).
"""

from mfjax import deprecation
from mfjax.core.metrics import mae, popularity_params, ranking_metrics, rmse
from mfjax.core.model import init_params, predict
from mfjax.core.objectives import loss
from mfjax.core.training import TrainResult, train
from mfjax.data.arrays import (
  ratings_from_arrays,
  ratings_from_frame,
  ratings_from_sparse,
)
from mfjax.data.loaders import load_ratings
from mfjax.data.splits import (
  kfold,
  ratings_from_dense,
  synthetic_ratings,
  train_test_split,
)
from mfjax.data.textparse import RatingsFileError
from mfjax.fitting.crossval import cross_validate
from mfjax.fitting.grid import train_grid
from mfjax.fitting.plan import FitResult, fit
from mfjax.io.checkpoint import load, save
from mfjax.io.npzread import ModelFileError
from mfjax.notebook import reproduce_notebook
from mfjax.serving.model import Model
from mfjax.serving.topk import fold_in, recommend
from mfjax.settings import FitSettings
from mfjax.types import UNKNOWN, IdMaps, Params, Ratings
from mfjax.version import __version__ as __version__

deprecation.install()  # The 0.2 module paths (mfjax.ensemble, ...) still import.


def __getattr__(name: str):
  # `mfjax.ensemble` without an import of it first, as in 0.2.
  if f"mfjax.{name}" in deprecation.MOVED_MODULES:
    import importlib

    return importlib.import_module(f"mfjax.{name}")
  raise AttributeError(f"module 'mfjax' has no attribute {name!r}")


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
