"""mfjax: explicit-feedback recommenders by biased matrix factorisation, in JAX.

The public API lives here; import ``mfjax`` and use ``mfjax.<name>``.
"""

from mfjax.checkpoint import FORMAT_VERSION, Model, ModelFileError, load, save
from mfjax.data import (
  UNKNOWN,
  IdMaps,
  Ratings,
  RatingsFileError,
  kfold,
  load_ratings,
  ratings_from_dense,
  synthetic_ratings,
  train_test_split,
)
from mfjax.grid import GridResult, train_grid
from mfjax.metrics import (
  RankingMetrics,
  mae,
  popularity_params,
  ranking_metrics,
  rmse,
)
from mfjax.model import BIASES, INITS, Params, init_params, loss, predict
from mfjax.notebook import (
  NOTEBOOK_MATRIX,
  NOTEBOOK_PRINTED,
  notebook_optimizer,
  notebook_params,
  reproduce_notebook,
)
from mfjax.recommend import fold_in, recommend
from mfjax.sharding import (
  MemoryWarning,
  memory_estimate,
  shard_params,
  shard_ratings,
)
from mfjax.train import (
  FIT_DEFAULTS,
  FitResult,
  TrainResult,
  default_learning_rate,
  default_optimizer,
  ensemble_params,
  fit,
  observed_mean,
  train,
)

__version__ = "0.1.0"

__all__ = [
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
  "BIASES",
  "INITS",
  "NOTEBOOK_MATRIX",
  "NOTEBOOK_PRINTED",
  "Params",
  "TrainResult",
  "default_learning_rate",
  "default_optimizer",
  "ensemble_params",
  "init_params",
  "loss",
  "notebook_optimizer",
  "notebook_params",
  "observed_mean",
  "predict",
  "reproduce_notebook",
  "train",
]
