"""The public surface: mfjax.__all__, the 0.2 module paths, the version and
the quickstart."""

import importlib
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax import deprecation

# The 0.1 names that moved into modules in 0.2 (docs/changes-0.2.md) warned for
# one release and are gone in 0.3, with the 0.1 names removed in 0.2.
REMOVED = [
  "BIASES",
  "FIT_DEFAULTS",
  "default_learning_rate",
  "default_optimizer",
  "observed_mean",
  "GridResult",
  "RankingMetrics",
  "memory_estimate",
  "MemoryWarning",
  "shard_ratings",
  "shard_params",
  "ensemble_params",
  "FORMAT_VERSION",
  "INITS",
  "NOTEBOOK_MATRIX",
  "NOTEBOOK_PRINTED",
  "notebook_optimizer",
  "notebook_params",
]
PACKAGE = Path(mfjax.__file__).resolve().parent
# Every module of the package, by dotted name (subpackages included).
MODULES = sorted(
  ".".join(("mfjax", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
    ".__init__"
  )
  for p in PACKAGE.rglob("*.py")
  if p.name != "__main__.py"
)


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


@pytest.mark.parametrize("old, new", sorted(deprecation.MOVED_MODULES.items()))
def test_0_2_module_paths_import_and_warn_on_use(old, new):
  module = importlib.import_module(old)
  homes = (new,) if isinstance(new, str) else new
  for home in homes:
    target = importlib.import_module(home)
    assert target.__all__, home
    for name in target.__all__:
      said = rf"{old} is now {home}" if home == new else rf"{old}\.{name} is now "
      with pytest.warns(DeprecationWarning, match=said):
        value = getattr(module, name)
      assert value is getattr(target, name), f"{old}.{name}"
  assert dir(module) == sorted(
    {n for home in homes for n in importlib.import_module(home).__all__}
  )


def test_0_2_module_path_from_import_warns_and_unknown_names_raise():
  with pytest.warns(DeprecationWarning, match="mfjax.fitting.ensemble"):
    from mfjax.ensemble import fit_program
  assert fit_program is mfjax.fitting.ensemble.fit_program
  with pytest.raises(AttributeError, match="'mfjax.ensemble' has no attribute 'nope'"):
    mfjax.ensemble.nope  # noqa: B018


def test_0_2_package_faces_keep_their_names():
  import mfjax.cli
  import mfjax.distributed

  # mfjax.data, .serving, .distributed and .cli were modules in 0.2; the
  # packages of the same name re-export what they held, without a warning.
  assert mfjax.data.kfold is mfjax.data.splits.kfold
  assert mfjax.serving.recommend is mfjax.serving.topk.recommend
  assert mfjax.distributed.launch is mfjax.distributed.runtime.launch
  assert mfjax.cli.main is mfjax.cli.app.main


@pytest.mark.parametrize("name", REMOVED)
def test_removed_names_are_gone(name):
  with pytest.raises(AttributeError, match=name):
    getattr(mfjax, name)


@pytest.mark.parametrize("module", MODULES)
def test_each_modules_all_exists(module):
  mod = importlib.import_module(module)
  names = getattr(mod, "__all__", [])
  assert len(set(names)) == len(names), module
  for name in names:
    assert hasattr(mod, name), f"{module}.{name}"


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


@pytest.mark.slow
def test_import_does_not_import_tqdm_or_torch():
  code = "import sys, mfjax; print('tqdm' in sys.modules, 'torch' in sys.modules)"
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, check=True
  )
  assert out.stdout.split() == ["False", "False"]
