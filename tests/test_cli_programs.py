"""mfjax.cli.programs: compiled fit programs kept on disk between runs of
``mfjax fit``, read back only when everything they depend on matches."""

import contextlib
import io
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

import mfjax
from mfjax import cli
from mfjax.cli import programs
from mfjax.fitting import ensemble, plan
from tests.conftest import write_movielens_like


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """A fresh JAX cache folder for this test (the programs go in it).

  JAX's persistent compilation cache is off meanwhile: the session shares one
  between the xdist workers, and a program another worker compiled came from
  it; kept and read back, such a program once failed its first run (XLA:
  "NOT_FOUND: Function iota.21_kernel not found", CI of 479d3f1), and
  compile_or_load then compiles instead (correct, slower; the test forbids it).
  Here every program is compiled in this process, as a first `mfjax fit` does.
  """
  folder = tmp_path / "jax-cache"
  folder.mkdir()
  kept = folder / "programs"
  kept.mkdir(mode=0o700)
  monkeypatch.setattr(programs, "folder", lambda: kept)
  enabled = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  yield kept
  jax.config.update("jax_enable_compilation_cache", enabled)


def _plan(n=3000, seed=0, **settings):
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(seed), 60, 40, n, 3)
  return plan.plan(jax.random.key(1), ratings, steps=2, ensemble=2, **settings)


def _recipe(fit_plan):
  return (type(fit_plan.settings).__name__, tuple(fit_plan.settings))


def _no_compiles(monkeypatch):
  def refuse(*_):
    raise AssertionError("compiled although a kept program matched")

  monkeypatch.setattr(ensemble, "compile_program", refuse)


def _run(compiled, fit_plan):
  return fit_plan.finish(compiled(*fit_plan.inputs)).best_params


def test_a_second_run_reads_the_program_back_with_the_same_result(cache, monkeypatch):
  first_plan = _plan()
  first = programs.compile_or_load(
    first_plan.program, first_plan.inputs, _recipe(first_plan)
  )
  assert len(list(cache.iterdir())) == 1
  expected = _run(first, first_plan)
  # Another file of the same bucket: the same program, read back.
  other = _plan(n=2900, seed=2)
  expected_other = _run(ensemble.compile_program(other.program, other.inputs), other)
  _no_compiles(monkeypatch)
  again = programs.compile_or_load(other.program, other.inputs, _recipe(other))
  np.testing.assert_array_equal(
    _run(again, other).user_factors, expected_other.user_factors
  )
  np.testing.assert_array_equal(
    _run(again, first_plan).user_factors, expected.user_factors
  )


def test_other_settings_or_shapes_get_other_programs(cache):
  base = _plan()
  key = programs.key(base.program, base.inputs, _recipe(base))
  ranked = _plan(rank=5)
  assert programs.key(ranked.program, ranked.inputs, _recipe(ranked)) != key
  bigger = _plan(n=20000)  # Another bucket: other shapes.
  assert programs.key(bigger.program, bigger.inputs, _recipe(base)) != key
  assert programs.key(base.program, base.inputs, _recipe(base)) == key


def test_an_edited_source_gets_another_key(cache, monkeypatch):
  base = _plan()
  key = programs.key(base.program, base.inputs, _recipe(base))
  monkeypatch.setattr(programs, "source_digest", lambda: "edited")
  assert programs.key(base.program, base.inputs, _recipe(base)) != key


@pytest.mark.parametrize("damage", ["truncated", "garbage", "shared"])
def test_a_damaged_or_shared_file_is_ignored_and_compiled_over(cache, damage):
  fit_plan = _plan()
  recipe = _recipe(fit_plan)
  expected = _run(
    programs.compile_or_load(fit_plan.program, fit_plan.inputs, recipe), fit_plan
  )
  (path,) = cache.iterdir()
  if damage == "truncated":
    path.write_bytes(path.read_bytes()[:1000])
  elif damage == "garbage":
    path.write_bytes(b"not a program")
  else:  # Writable by others: never loaded (loading runs code).
    os.chmod(path, 0o666)
    assert programs.load(path) is None
  again = programs.compile_or_load(fit_plan.program, fit_plan.inputs, recipe)
  np.testing.assert_array_equal(
    _run(again, fit_plan).user_factors, expected.user_factors
  )


def test_the_folder_follows_jax_cache_and_is_none_without_it(tmp_path):
  before = jax.config.jax_compilation_cache_dir
  assert programs.folder() == (None if before is None else Path(before) / "programs")
  with _jax_cache_dir(None):
    assert programs.folder() is None
  with _jax_cache_dir(str(tmp_path)):
    assert programs.folder() == tmp_path / "programs"
    assert (tmp_path / "programs").stat().st_mode & 0o777 == 0o700
  os.chmod(tmp_path / "programs", 0o777)  # Others could plant programs there.
  with _jax_cache_dir(str(tmp_path)):
    assert programs.folder() is None


@contextlib.contextmanager
def _jax_cache_dir(path):
  before = jax.config.jax_compilation_cache_dir
  jax.config.update("jax_compilation_cache_dir", path)
  try:
    yield
  finally:
    jax.config.update("jax_compilation_cache_dir", before)


def test_the_folder_keeps_at_most_max_files(cache, monkeypatch):
  monkeypatch.setattr(programs, "MAX_FILES", 2)
  for rank in (2, 3, 4):
    fit_plan = _plan(rank=rank)
    programs.compile_or_load(fit_plan.program, fit_plan.inputs, _recipe(fit_plan))
  assert len(list(cache.iterdir())) == 2


def test_mfjax_fit_twice_reports_the_same_model(tmp_path, cache):
  write_movielens_like(tmp_path)
  train, test = str(tmp_path / "u1.base"), str(tmp_path / "u1.test")
  reports = []
  for _ in range(2):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      assert cli.main(["fit", train, "--test", test, "--json"]) == 0
    reports.append(json.loads(out.getvalue()))
  assert len(list(cache.iterdir())) == 1
  for name in ("train_rmse", "test_rmse", "test_mae"):
    assert reports[0][name] == reports[1][name]


def test_a_kept_program_that_loads_but_fails_to_run_is_compiled_over(cache):
  """A program for other shapes planted under this plan's name loads, fails on
  its first run, and is replaced: the fit's numbers stay right."""
  small, big = _plan(), _plan(n=20000)
  programs.compile_or_load(small.program, small.inputs, _recipe(small))
  (planted,) = cache.iterdir()
  name = programs.key(big.program, big.inputs, _recipe(big))
  planted.rename(cache / f"{name}{planted.suffix}")
  expected = _run(ensemble.compile_program(big.program, big.inputs), big)
  again = programs.compile_or_load(big.program, big.inputs, _recipe(big))
  np.testing.assert_array_equal(_run(again, big).user_factors, expected.user_factors)
  assert not (cache / f"{name}{planted.suffix}").exists()  # Removed, not rewritten.
