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
  """A fresh folder of kept programs for this test (JAX's persistent cache
  stays the session's), and nothing compiled in memory, as in a new `mfjax
  fit`: an executable that another test read back from the persistent cache
  would be kept without its kernels (see the test of that below)."""
  jax.clear_caches()
  kept = tmp_path / "jax-cache" / "programs"
  kept.mkdir(parents=True, mode=0o700)
  monkeypatch.setattr(programs, "folder", lambda: kept)
  return kept


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_program_the_persistent_cache_holds_is_kept_compiled_afresh(
  cache, monkeypatch
):
  # An executable JAX's persistent cache read back serialises without its
  # kernels: kept, it failed its first run (NOT_FOUND ..._kernel, CI of
  # 5496be4) and every other `mfjax fit` compiled again.
  fit_plan = _plan(n=2800, seed=3)
  expected = _run(ensemble.compile_program(fit_plan.program, fit_plan.inputs), fit_plan)
  hits = []

  def count(event, **_):
    if event == "/jax/compilation_cache/cache_hits":
      hits.append(event)

  jax.clear_caches()  # The next compile reads the session's persistent cache.
  jax.monitoring.register_event_listener(count)
  try:
    ensemble.compile_program(fit_plan.program, fit_plan.inputs)
  finally:
    jax.monitoring.unregister_event_listener(count)
  assert hits, "the persistent cache did not hold the program"
  jax.clear_caches()  # As in a new `mfjax fit`: nothing compiled in memory.
  programs.compile_or_load(fit_plan.program, fit_plan.inputs, _recipe(fit_plan))
  assert len(list(cache.iterdir())) == 1
  _no_compiles(monkeypatch)
  again = programs.compile_or_load(fit_plan.program, fit_plan.inputs, _recipe(fit_plan))
  np.testing.assert_array_equal(
    _run(again, fit_plan).user_factors, expected.user_factors
  )


@pytest.mark.slow
def test_other_settings_or_shapes_get_other_programs(cache):
  base = _plan()
  key = programs.key(base.program, base.inputs, _recipe(base))
  ranked = _plan(rank=5)
  assert programs.key(ranked.program, ranked.inputs, _recipe(ranked)) != key
  bigger = _plan(n=20000)  # Another bucket: other shapes.
  assert programs.key(bigger.program, bigger.inputs, _recipe(base)) != key
  assert programs.key(base.program, base.inputs, _recipe(base)) == key


@pytest.mark.slow
def test_an_edited_source_gets_another_key(cache, monkeypatch):
  base = _plan()
  key = programs.key(base.program, base.inputs, _recipe(base))
  monkeypatch.setattr(programs, "source_digest", lambda: "edited")
  assert programs.key(base.program, base.inputs, _recipe(base)) != key


@pytest.mark.parametrize("damage", ["truncated", "garbage", "shared"])
@pytest.mark.slow
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


@pytest.mark.slow
def test_the_folder_keeps_at_most_max_files(cache, monkeypatch):
  monkeypatch.setattr(programs, "MAX_FILES", 2)
  for rank in (2, 3, 4):
    fit_plan = _plan(rank=rank)
    programs.compile_or_load(fit_plan.program, fit_plan.inputs, _recipe(fit_plan))
  assert len(list(cache.iterdir())) == 2


@pytest.mark.slow
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


@pytest.mark.slow
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
