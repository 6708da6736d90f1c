"""``mfjax demo``: the generated film catalogue (mfjax.cli.films) and what the
demo prints of it, checked against the same fit recomputed here."""

import contextlib
import io
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax import cli
from mfjax.cli import demo, films, programs


def test_generate_is_a_function_of_its_seed():
  a, b, c = films.generate(4), films.generate(4), films.generate(5)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.stars, c.stars)


def test_the_catalogue_is_well_formed():
  data = films.generate(0)
  assert len(set(data.titles)) == len(data.titles) == 120
  assert set(data.genres) == set(films.GENRES)
  assert set(np.unique(data.stars)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
  pairs = data.users * len(data.titles) + data.items
  assert len(np.unique(pairs)) == len(pairs)  # One rating per user and film.
  per_user = np.bincount(data.users, minlength=data.n_users)
  assert per_user.min() >= 15 and per_user.max() <= 59
  assert 0.17 < data.test.mean() < 0.23
  train, test = data.matrix(held_out=False), data.matrix(held_out=True)
  assert not np.any((train != 0) & (test != 0))
  assert (train != 0).sum() + (test != 0).sum() == len(data.stars)
  assert (
    train[data.users[~data.test][0], data.items[~data.test][0]]
    == (data.stars[~data.test][0])
  )


def _demo_output(*argv):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main(["demo", *argv]) == 0
  return out.getvalue()


@pytest.fixture(scope="module")
def seed3():
  """The demo's output for seed 3, and the same fit recomputed here."""
  data = films.generate(3)
  train, test = data.matrix(held_out=False), data.matrix(held_out=True)

  @jax.jit
  def fit(key, train):
    params = mfjax.init_params(key, *train.shape, demo.RANK)
    best = mfjax.train(params, train, steps=demo.STEPS, l2=demo.L2).best_params
    return best, mfjax.predict(best, scale=(1, 5))

  params, predicted = jax.device_get(fit(jax.random.key(3), jnp.asarray(train)))
  return _demo_output("--seed", "3"), data, train, test, params, predicted


def _section(out, start):
  lines = out.split(start, 1)[1].split("\n\n", 1)[0].splitlines()[1:]
  return [line.split(None, 1) for line in lines]


def test_the_demo_reports_the_test_rmse_of_its_fit(seed3):
  out, _, train, test, _, predicted = seed3
  seen = test != 0
  expected = np.sqrt(np.mean((predicted - test)[seen] ** 2))
  printed = float(re.search(r"test RMSE (\d\.\d+)", out).group(1))
  assert printed == pytest.approx(expected, abs=0.002)
  counts = (train != 0).sum(0)
  film_mean = np.where(counts > 0, train.sum(0) / np.maximum(counts, 1), 0)
  film_mean = np.where(film_mean > 0, film_mean, train[train != 0].mean())
  baseline = np.sqrt(np.mean((film_mean[None, :] - test)[seen] ** 2))
  assert f"each film's mean rating instead: {baseline:.3f}" in out
  assert printed < baseline - 0.1  # The planted genres are learnt.


def test_the_top_10_leaves_out_rated_films_best_first(seed3):
  out, data, train, _, _, predicted = seed3
  top = _section(out, f"top 10 for user {demo.USER}")
  assert len(top) == 10
  index = {title: i for i, title in enumerate(data.titles)}
  scores = [float(score) for score, _ in top]
  assert scores == sorted(scores, reverse=True)
  for score, rest in top:
    item = index[rest.rsplit(None, 1)[0]]
    assert train[demo.USER, item] == 0
    assert float(score) == pytest.approx(predicted[demo.USER, item], abs=0.02)
  # Nothing unrated scores above the last one listed (up to the printed rounding).
  unrated = np.flatnonzero(train[demo.USER] == 0)
  listed = {index[rest.rsplit(None, 1)[0]] for _, rest in top}
  others = [predicted[demo.USER, i] for i in unrated if i not in listed]
  assert max(others) <= scores[-1] + 0.02


def test_the_neighbours_are_other_films_mostly_of_the_same_genre(seed3):
  out, data, train, _, _, _ = seed3
  query = re.search(r'films nearest "([^"]+)" \((\w+);', out)
  title, genre = query.groups()
  rated = np.flatnonzero(train[demo.USER])
  assert title == data.titles[rated[np.argmax(train[demo.USER, rated])]]
  near = _section(out, "films nearest")
  assert len(near) == 5
  titles = [rest.rsplit(None, 1)[0] for _, rest in near]
  assert title not in titles
  same = sum(data.genres[list(data.titles).index(t)] == genre for t in titles)
  assert same >= 4


def test_a_kept_demo_program_prints_the_same(tmp_path, monkeypatch):
  kept = tmp_path / "programs"
  kept.mkdir(mode=0o700)
  monkeypatch.setattr(programs, "folder", lambda: kept)
  first = _demo_output("--seed", "5")
  assert len(list(kept.iterdir())) == 1
  second = _demo_output("--seed", "5")
  drop_time = lambda s: re.sub(r"\d+\.\d s from the data", "", s)
  assert drop_time(first) == drop_time(second)
