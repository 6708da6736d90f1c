"""The public surface: mfjax.__all__, the moved names, the version, the quickstart."""

import importlib
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax

# The 0.1 names that moved into modules (docs/changes-0.2.md): each still works
# until 0.3, with a DeprecationWarning, and is the module's object.
MOVED = {
  "GridResult": "mfjax.grid.GridResult",
  "RankingMetrics": "mfjax.metrics.RankingMetrics",
  "memory_estimate": "mfjax.memory.memory_estimate",
  "MemoryWarning": "mfjax.memory.MemoryWarning",
  "shard_ratings": "mfjax.sharding.shard_ratings",
  "shard_params": "mfjax.sharding.shard_params",
  "ensemble_params": "mfjax.ensemble.ensemble_params",
  "FORMAT_VERSION": "mfjax.checkpoint.FORMAT_VERSION",
  "INITS": "mfjax.model.INITS",
  "NOTEBOOK_MATRIX": "mfjax.notebook.MATRIX",
  "NOTEBOOK_PRINTED": "mfjax.notebook.PRINTED",
  "notebook_optimizer": "mfjax.notebook.optimizer",
  "notebook_params": "mfjax.notebook.printed_params",
}
# The 0.1 names that are gone (their meaning changed or they have no use now).
REMOVED = [
  "BIASES",
  "FIT_DEFAULTS",
  "default_learning_rate",
  "default_optimizer",
  "observed_mean",
]
MODULES = [
  "types",
  "validation",
  "kernels",
  "model",
  "objectives",
  "solvers",
  "shuffle",
  "progress",
  "training",
  "ensemble",
  "grid",
  "notebook",
  "loaders",
  "data",
  "metrics",
  "serving",
  "checkpoint",
  "sharding",
  "memory",
  "cli",
]


def _resolve(path):
  module, name = path.rsplit(".", 1)
  return getattr(importlib.import_module(module), name)


def test_all_has_at_most_34_names_and_each_exists():
  # 30 in 0.2; the in-memory constructors and cross-validation may add four.
  assert len(mfjax.__all__) <= 34
  assert len(set(mfjax.__all__)) == len(mfjax.__all__)
  for name in mfjax.__all__:
    assert hasattr(mfjax, name), name
  # The functions a first user meets are there.
  for name in ("init_params", "train", "predict", "loss", "fit", "load_ratings"):
    assert name in mfjax.__all__


def test_all_names_are_those_of_their_modules():
  for name in mfjax.__all__:
    value = getattr(mfjax, name)
    module = getattr(value, "__module__", None)
    if module is not None and module.startswith("mfjax."):
      assert getattr(importlib.import_module(module), name) is value, name


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_moved_names_warn_and_are_the_modules_objects(old, new):
  assert old not in mfjax.__all__
  with pytest.warns(DeprecationWarning, match=rf"mfjax\.{old} is now {new}"):
    value = getattr(mfjax, old)
  assert value is _resolve(new)


def test_moved_name_from_import_warns_too():
  with pytest.warns(DeprecationWarning, match="mfjax.memory.memory_estimate"):
    from mfjax import memory_estimate
  from mfjax.memory import memory_estimate as new

  assert memory_estimate is new


@pytest.mark.parametrize("name", REMOVED)
def test_removed_names_are_gone(name):
  with pytest.raises(AttributeError, match=name):
    getattr(mfjax, name)


@pytest.mark.parametrize("module", MODULES)
def test_each_modules_all_exists(module):
  mod = importlib.import_module(f"mfjax.{module}")
  names = getattr(mod, "__all__", [])
  assert len(set(names)) == len(names), module
  for name in names:
    assert hasattr(mod, name), f"mfjax.{module}.{name}"


def test_version_matches_pyproject():
  try:
    import tomllib
  except ModuleNotFoundError:  # Python 3.10: tomllib's forerunner.
    tomllib = pytest.importorskip("tomli")
  pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
  with pyproject.open("rb") as file:
    version = tomllib.load(file)["project"]["version"]
  assert mfjax.__version__ == version


def test_quickstart_trains_and_predicts():
  """The README quickstart: a 4x4 matrix, 0 = not rated."""
  ratings = jnp.array(
    [
      [5.0, 3.0, 0.0, 1.0],
      [4.0, 0.0, 0.0, 1.0],
      [1.0, 1.0, 0.0, 5.0],
      [0.0, 1.0, 5.0, 4.0],
    ]
  )
  params = mfjax.init_params(jax.random.key(0), n_users=4, n_items=4, rank=2)
  result = mfjax.train(params, ratings, steps=200, l2=0.01)
  assert isinstance(result, mfjax.TrainResult)
  assert abs(float(result.best_loss) - 0.0129) < 5e-5
  full = mfjax.predict(result.best_params, scale=(1, 5))
  observed = np.asarray(ratings) != 0
  # The observed ratings are fitted, within the 0.01 L2 pull.
  np.testing.assert_allclose(np.asarray(full)[observed], ratings[observed], atol=0.01)
  expected_missing = [3.63, 2.25, 3.36, 5.0, 1.57]  # As the README prints them.
  np.testing.assert_allclose(np.asarray(full)[~observed], expected_missing, atol=0.006)
  one = mfjax.predict(result.best_params, users=[1], items=[2])
  np.testing.assert_allclose(one, [3.36], atol=0.005)
  np.testing.assert_allclose(result.best_params.mean, 31 / 11, rtol=1e-6)


def test_import_does_not_import_tqdm_or_torch():
  code = "import sys, mfjax; print('tqdm' in sys.modules, 'torch' in sys.modules)"
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, check=True
  )
  assert out.stdout.split() == ["False", "False"]
