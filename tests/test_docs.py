"""The README's code runs, and CI runs the README's test command."""

import re
from pathlib import Path

import numpy as np

from tests.conftest import ML100K

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(language):
  return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_ci_runs_the_readmes_test_command():
  install_demo, install_test = [b.strip() for b in _blocks("bash")[:2]]
  assert install_demo == "pip install . && mfjax demo"
  ci = (ROOT / ".ci" / "run").read_text().splitlines()
  assert install_test in ci


def test_python_examples_run(monkeypatch, tmp_path):
  quickstart, pipelines, own_file, recommend, notebook = _blocks("python")
  namespace = {}
  exec(compile(quickstart, "README.md", "exec"), namespace)  # noqa: S102
  import mfjax

  result = namespace["result"]
  assert float(result.best_loss) < 0.05  # Fits the 10 observed ratings.
  observed = namespace["ratings"] != 0
  pred = mfjax.predict(result.best_params, clip=(1, 5))
  assert float(abs(pred - namespace["ratings"])[observed].max()) < 0.5

  exec(compile(pipelines, "README.md", "exec"), namespace)  # noqa: S102
  assert namespace["ensemble"].losses.shape == (8, 100)
  assert namespace["sweep"].best_loss.shape == (8,)

  monkeypatch.chdir(ML100K)
  exec(compile(own_file, "README.md", "exec"), namespace)  # noqa: S102
  assert namespace["test_maps"].n_unknown == 32
  assert float(mfjax.rmse(namespace["result"].best_params, namespace["test"])) < 1.0

  monkeypatch.chdir(tmp_path)  # The data directory is read-only; save here.
  exec(compile(recommend, "README.md", "exec"), namespace)  # noqa: S102
  assert namespace["items"].shape == (3, 10)
  assert 0 <= float(namespace["metrics"].ndcg) <= 1
  assert namespace["folded"].user_factors.shape == (1, 32)
  loaded = namespace["model"]
  assert isinstance(loaded, mfjax.Model) and loaded.id_maps.users.shape == (943,)
  np.testing.assert_array_equal(
    loaded.params.item_factors, namespace["result"].best_params.item_factors
  )

  exec(compile(notebook, "README.md", "exec"), namespace)  # noqa: S102
  assert namespace["result"].losses.shape == (100,)
