"""mfjax.core.progress: the tqdm bar driven from the device, and its use by train."""

import builtins
import re

import chex
import jax
import numpy as np
import pytest

import mfjax
from mfjax.core import progress
from tests.conftest import planted_matrix

_, MATRIX, _ = planted_matrix(10, 6, 5, 2, 0.8)


def _no_widgets(monkeypatch):
  """Makes ``import ipywidgets`` fail, as outside Jupyter."""
  real_import = builtins.__import__

  def no_widgets(name, *args, **kwargs):
    if name == "ipywidgets":
      raise ImportError(name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_widgets)


def test_choose_tqdm_is_the_text_bar_without_ipywidgets(monkeypatch):
  from tqdm.std import tqdm as text_bar

  _no_widgets(monkeypatch)
  # tqdm.auto would warn (an error under this suite's filterwarnings) in Jupyter.
  assert progress.choose_tqdm() is text_bar


def test_progress_bar_counts_steps_and_shows_the_lowest_loss(capsys, monkeypatch):
  _no_widgets(monkeypatch)
  bar = progress.ProgressBar(3, "demo")
  # Under vmap each step is reported once per member: the first moves the bar.
  for step, losses in enumerate(([2.0, 3.0], [1.5, 0.25], [1.0, 0.125])):
    bar.update(np.array([step, step]), np.array(losses))
    bar.update(np.array([step, step]), np.array(losses))
  err = capsys.readouterr().err
  assert "demo" in err and "3/3" in err
  assert re.findall(r"3/3 .*loss=(\d+\.\d+)", err)[-1] == "0.1250"
  assert bar.finished
  # A new run of the same program starts a new bar.
  bar.update(np.array(0), np.array(5.0))
  assert not bar.finished and bar.bar.n == 1


def test_no_host_callback_in_the_loop_unless_progress():
  params = mfjax.init_params(jax.random.key(9), 6, 5, 2)
  quiet = str(jax.make_jaxpr(lambda p: mfjax.train(p, MATRIX, steps=5))(params))
  loud = str(
    jax.make_jaxpr(lambda p: mfjax.train(p, MATRIX, steps=5, progress=True))(params)
  )
  assert "callback" not in quiet
  assert "callback" in loud
  assert quiet.count("scan[") == 1


@pytest.mark.slow
def test_train_progress_bar_reports_every_step(capsys, monkeypatch):
  _no_widgets(monkeypatch)
  params = mfjax.init_params(jax.random.key(10), 6, 5, 2)
  result = mfjax.train(params, MATRIX, steps=7, progress=True)
  jax.effects_barrier()
  err = capsys.readouterr().err
  assert "mfjax train" in err and "7/7" in err
  quiet = mfjax.train(params, MATRIX, steps=7)
  chex.assert_trees_all_close(result, quiet)


@pytest.mark.slow
def test_train_progress_bar_under_jit_vmap_and_one_step(capsys, monkeypatch):
  _no_widgets(monkeypatch)
  keys = jax.random.split(jax.random.key(10), 3)
  run = jax.jit(
    jax.vmap(
      lambda k: mfjax.train(
        mfjax.init_params(k, 6, 5, 2), MATRIX, steps=4, progress=True
      )
    )
  )
  for _ in range(2):  # The second call of the compiled program gets its own bar.
    result = run(keys)
    jax.effects_barrier()
  err = capsys.readouterr().err
  assert err.count("4/4") == 2
  shown = re.findall(r"4/4 .*loss=(\d+\.\d+)", err)
  assert len(shown) == 2
  assert any(abs(float(shown[-1]) - float(v)) < 1e-4 for v in result.losses[:, -1])
  one = jax.jit(lambda p: mfjax.train(p, MATRIX, steps=1, progress=True))
  params = mfjax.init_params(keys[0], 6, 5, 2)
  for _ in range(2):
    one(params)
    jax.effects_barrier()
  assert capsys.readouterr().err.count("1/1") == 2
