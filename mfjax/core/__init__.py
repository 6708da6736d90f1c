"""The pure JAX core: parameters, the prediction kernels, objectives, solvers and
the one ``lax.scan`` that trains.

Owns: :mod:`~mfjax.core.model` (``init_params``, ``predict``),
:mod:`~mfjax.core.kernels`, :mod:`~mfjax.core.objectives`,
:mod:`~mfjax.core.solvers`, :mod:`~mfjax.core.shuffle`,
:mod:`~mfjax.core.training`, :mod:`~mfjax.core.metrics`,
:mod:`~mfjax.core.memory`, :mod:`~mfjax.core.sharding`,
:mod:`~mfjax.core.progress`, :mod:`~mfjax.core.gibbs` (Bayesian MF by Gibbs
sampling), :mod:`~mfjax.core.sketch` and :mod:`~mfjax.core.eager` (one
program for an eager call).

May import: JAX, optax, NumPy and mfjax's top-level leaves (``types``,
``settings``, ``validation``). Nothing above it: not ``data``, ``fitting``,
``serving``, ``io``, ``distributed`` or ``cli`` (``tests/test_layout.py``).
"""

from mfjax.core.metrics import mae, popularity_params, ranking_metrics, rmse
from mfjax.core.model import init_params, predict
from mfjax.core.objectives import loss
from mfjax.core.training import TrainResult, train

__all__ = [
  "init_params",
  "predict",
  "loss",
  "train",
  "TrainResult",
  "rmse",
  "mae",
  "ranking_metrics",
  "popularity_params",
]
