"""Robustness section: property tests (hypothesis) and fuzzing of the loader.

Every test of the ``robustness`` section lives in this module:

- properties of ``loss`` and ``train`` over random shapes, ranks, masks,
  penalties and learning rates, checked against small NumPy references;
- ``load_ratings`` id maps: raw ids round-trip through the maps, and a second
  file read against them maps known ids to the same indices and unknown ones to
  ``UNKNOWN``;
- loader fuzzing: random bytes, mangled delimited text and small read blocks.
  ``load_ratings`` must return valid ``Ratings`` whose every rating is a line of
  the file, or raise ``mfjax.RatingsFileError``; any other exception or a
  warning is a bug.

JAX compiles once per shape, so shapes come from small sets and the JAX calls are
jitted (one program per shape instead of one per operation and shape). Examples
are derandomized, so every run draws the same ones; set
``MFJAX_HYPOTHESIS_SCALE=20`` for a deeper run with fresh random examples.

The tests named after a loader bug reproduce one that this file found and that
is fixed; the fuzz sweeps keep their reproducers as explicit examples.
"""

import functools
import os
import re
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mfjax
from mfjax import data as data_lib

pytestmark = pytest.mark.robustness  # The robustness section: pytest -m robustness

_SCALE = int(os.environ.get("MFJAX_HYPOTHESIS_SCALE", "1"))


def _settings(max_examples):
  return settings(
    max_examples=max_examples * _SCALE,
    deadline=None,
    database=None,  # Leave no .hypothesis folder in the repository.
    derandomize=_SCALE == 1,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
  )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
  """A folder for the files the tests write; each test uses its own names."""
  return tmp_path_factory.mktemp("robustness")


# --- loss and train -----------------------------------------------------------

_SHAPES = ((1, 1), (2, 5), (4, 3))
_RANKS = (1, 3)
_FACTORS = st.floats(-3, 3, width=32)
_NONZERO = st.one_of(st.floats(-10, -0.25, width=32), st.floats(0.25, 10, width=32))
_MAYBE_MISSING = st.one_of(st.just(0.0), st.just(0.0), _NONZERO)  # 0 = missing.
_L2 = st.floats(0, 10, width=32)

_LOSS = jax.jit(mfjax.loss, static_argnames="bias")
_VALUE_AND_GRAD = jax.jit(jax.value_and_grad(mfjax.loss), static_argnames="bias")


def _draw_params(draw, n_users, n_items, rank):
  def array(shape, elements=_FACTORS):
    return jnp.asarray(draw(hnp.arrays(np.float32, shape, elements=elements)))

  return mfjax.Params(
    user_factors=array((n_users, rank)),
    item_factors=array((n_items, rank)),
    user_bias=array((n_users,)),
    item_bias=array((n_items,)),
    mean=array((), st.floats(-5, 5, width=32)),
  )


def _draw_ratings(draw, n_users, n_items, n, values=_NONZERO):
  def index(size):
    return draw(hnp.arrays(np.int32, n, elements=st.integers(0, size - 1)))

  return mfjax.Ratings(
    users=jnp.asarray(index(n_users)),
    items=jnp.asarray(index(n_items)),
    values=jnp.asarray(draw(hnp.arrays(np.float32, n, elements=values))),
    n_users=n_users,
    n_items=n_items,
  )


def _reference_predictions(params, users, items, bias):
  user_factors, item_factors, user_bias, item_bias, mean = (
    np.asarray(x, np.float64) for x in params
  )
  dot = np.sum(user_factors[users] * item_factors[items], axis=-1)
  if bias == "additive":
    return mean + user_bias[users] + item_bias[items] + dot
  return mean + user_bias[users] * item_bias[items] + 1.0 + dot


def _reference_penalty(params, l2, l2_bias):
  user_factors, item_factors, user_bias, item_bias, _ = (
    np.asarray(x, np.float64) for x in params
  )
  factors = np.sum(user_factors**2) + np.sum(item_factors**2)
  return l2 * factors + l2_bias * (np.sum(user_bias**2) + np.sum(item_bias**2))


def _reference_dense_loss(params, matrix, mask, l2, l2_bias, bias):
  users, items = np.indices(matrix.shape).reshape(2, -1)
  predictions = _reference_predictions(params, users, items, bias)
  observed = (matrix != 0) if mask is None else (np.asarray(mask) != 0)
  weight = observed.ravel()
  squares = np.sum(weight * (predictions - matrix.ravel().astype(np.float64)) ** 2)
  return (squares + _reference_penalty(params, l2, l2_bias)) / max(weight.sum(), 1)


def _reference_sparse_loss(params, ratings, l2, l2_bias, bias):
  users, items, values = (
    np.asarray(x) for x in (ratings.users, ratings.items, ratings.values)
  )
  predictions = _reference_predictions(params, users, items, bias)
  squares = np.sum((predictions - values.astype(np.float64)) ** 2)
  return (squares + _reference_penalty(params, l2, l2_bias)) / len(values)


def _draw_mask(draw, shape):
  return draw(
    st.one_of(
      st.none(),
      hnp.arrays(np.bool_, shape),
      # Non-zero marks an observed entry, whatever its value.
      hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0, 0.5, -2.0])),
    )
  )


@_settings(30)
@given(st.data())
def test_dense_loss_is_nonnegative_and_matches_numpy(data):
  n_users, n_items = data.draw(st.sampled_from(_SHAPES), label="shape")
  rank = data.draw(st.sampled_from(_RANKS), label="rank")
  params = _draw_params(data.draw, n_users, n_items, rank)
  shape = (n_users, n_items)
  matrix = data.draw(hnp.arrays(np.float32, shape, elements=_MAYBE_MISSING))
  mask = _draw_mask(data.draw, shape)
  l2, l2_bias = data.draw(_L2, label="l2"), data.draw(_L2, label="l2_bias")
  bias = data.draw(st.sampled_from(mfjax.BIASES), label="bias")
  value = float(_LOSS(params, matrix, mask=mask, l2=l2, l2_bias=l2_bias, bias=bias))
  assert value >= 0.0
  expected = _reference_dense_loss(params, matrix, mask, l2, l2_bias, bias)
  np.testing.assert_allclose(value, expected, rtol=2e-4, atol=1e-5)


@_settings(25)
@given(st.data())
def test_sparse_loss_is_nonnegative_and_matches_numpy(data):
  n_users, n_items = data.draw(st.sampled_from(_SHAPES), label="shape")
  rank = data.draw(st.sampled_from(_RANKS), label="rank")
  params = _draw_params(data.draw, n_users, n_items, rank)
  n = data.draw(st.sampled_from((1, 7)), label="n_ratings")
  # Pairs may repeat and a rating of 0 is a rating: Ratings list what is observed.
  values = st.one_of(st.just(0.0), _NONZERO)
  ratings = _draw_ratings(data.draw, n_users, n_items, n, values)
  l2 = data.draw(_L2, label="l2")
  l2_bias = data.draw(st.one_of(st.none(), _L2), label="l2_bias")  # None: l2.
  bias = data.draw(st.sampled_from(mfjax.BIASES), label="bias")
  value = float(_LOSS(params, ratings, l2=l2, l2_bias=l2_bias, bias=bias))
  assert value >= 0.0
  same = l2 if l2_bias is None else l2_bias
  expected = _reference_sparse_loss(params, ratings, l2, same, bias)
  np.testing.assert_allclose(value, expected, rtol=2e-4, atol=1e-5)


@_settings(15)
@given(st.data())
def test_sparse_and_dense_losses_and_gradients_agree(data):
  n_users, n_items = data.draw(st.sampled_from(((1, 1), (4, 3))), label="shape")
  params = _draw_params(data.draw, n_users, n_items, 2)
  # A few counts of ratings only: each count is a shape, compiled once.
  size = n_users * n_items
  count = data.draw(st.sampled_from(sorted({1, (size + 1) // 2, size})), label="count")
  cells = data.draw(st.permutations(range(size)), label="cells")[:count]
  matrix = np.zeros(size, np.float32)
  matrix[cells] = data.draw(hnp.arrays(np.float32, count, elements=_NONZERO))
  matrix = matrix.reshape(n_users, n_items)
  ratings = mfjax.ratings_from_dense(matrix)
  assert len(ratings) == count and ratings.shape == matrix.shape
  np.testing.assert_array_equal(ratings.to_dense(), matrix)
  l2, l2_bias = data.draw(_L2, label="l2"), data.draw(_L2, label="l2_bias")
  bias = data.draw(st.sampled_from(mfjax.BIASES), label="bias")
  kwargs = dict(l2=l2, l2_bias=l2_bias, bias=bias)
  dense, dense_grads = _VALUE_AND_GRAD(params, matrix, **kwargs)
  sparse, sparse_grads = _VALUE_AND_GRAD(params, ratings, **kwargs)
  np.testing.assert_allclose(sparse, dense, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(sparse_grads, dense_grads, rtol=1e-4, atol=1e-5)
  # The default mask of a dense matrix is its non-zero entries.
  masked = _LOSS(params, matrix, mask=matrix != 0, **kwargs)
  np.testing.assert_allclose(masked, dense, rtol=1e-6)


def test_losses_agree_on_data_without_ratings():
  params = mfjax.init_params(jax.random.key(0), 4, 3, 2)
  matrix = np.zeros((4, 3), np.float32)
  ratings = mfjax.ratings_from_dense(matrix)
  for l2 in (0.0, 0.5):
    dense = _LOSS(params, matrix, l2=l2)
    try:
      sparse = _LOSS(params, ratings, l2=l2)
    except ValueError:
      continue  # Rejecting Ratings without ratings would fix it too.
    np.testing.assert_allclose(sparse, dense, rtol=1e-6)


_TRAIN_STEPS = 12
_TRAIN_SHAPES = ((1, 1, 1), (4, 3, 2))
# Plain SGD with a learning rate up to 1e8 diverges to inf, then NaN.
_LEARNING_RATES = (1e-3, 0.1, 3.0, 1e3, 1e8)


@functools.partial(jax.jit, static_argnames="steps")
def _train_sgd(params, data, learning_rate, l2, *, steps=_TRAIN_STEPS):
  return mfjax.train(
    params, data, optimizer=optax.sgd(learning_rate), steps=steps, l2=l2
  )


def _check_best(result, data, l2):
  """The best-loss bookkeeping of ``train``, as TrainResult documents it."""
  losses = np.asarray(result.losses)
  assert losses.shape == (_TRAIN_STEPS,)
  assert np.isfinite(losses[0])  # Finite data and parameters.
  best = float(result.best_loss)
  assert best <= losses[0]
  finite = np.isfinite(losses)
  assert best == losses[finite].min()
  for leaf in jax.tree.leaves(result.best_params):
    assert np.all(np.isfinite(leaf))
  diverged = int(result.diverged_step)
  if finite.all():
    assert diverged == -1 and not bool(result.diverged)
  else:
    assert diverged == int(np.argmin(finite)) > 0 and bool(result.diverged)
  # best_loss is the loss of best_params, computed before their update.
  recomputed = float(_LOSS(result.best_params, data, l2=l2))
  np.testing.assert_allclose(recomputed, best, rtol=1e-3, atol=1e-6)


@_settings(12)
@given(st.data())
def test_best_loss_never_exceeds_the_first_loss(data):
  n_users, n_items, rank = data.draw(st.sampled_from(_TRAIN_SHAPES), label="shape")
  params = _draw_params(data.draw, n_users, n_items, rank)
  if data.draw(st.booleans(), label="sparse"):
    # As many ratings as cells, so that each shape compiles once; pairs repeat.
    train_data = _draw_ratings(data.draw, n_users, n_items, n_users * n_items)
  else:
    shape = (n_users, n_items)
    train_data = data.draw(hnp.arrays(np.float32, shape, elements=_MAYBE_MISSING))
  learning_rate = np.float32(data.draw(st.sampled_from(_LEARNING_RATES), label="lr"))
  l2 = np.float32(data.draw(st.floats(0, 1, width=32), label="l2"))
  _check_best(_train_sgd(params, train_data, learning_rate, l2), train_data, l2)


@pytest.mark.parametrize("sparse", [False, True])
def test_diverging_training_keeps_the_best_finite_params(sparse):
  params = mfjax.init_params(jax.random.key(0), 4, 3, 2)
  matrix = np.arange(1, 13, dtype=np.float32).reshape(4, 3) % 5 + 1
  train_data = mfjax.ratings_from_dense(matrix) if sparse else matrix
  result = _train_sgd(params, train_data, np.float32(1e8), np.float32(0.0))
  assert bool(result.diverged)  # So that _check_best sees a divergence.
  _check_best(result, train_data, np.float32(0.0))


# --- id maps --------------------------------------------------------------------

_SEPS = (",", "\t", "::", ";", "|")
_NATIVE_FORMAT = {"\t": "ml-100k", "::": "ml-1m", ",": "ml-latest"}
# Integer ids of at most 15 characters, sign included; longer ones are text.
_INT_IDS = st.one_of(st.integers(0, 30), st.integers(1 - 10**14, 10**14))
# Text ids: no separator, line break, control or BOM character, no surrounding
# space (stripped), and not all digits (so they stay text).
_TEXT_IDS = st.text(
  st.characters(exclude_categories=("Cs", "Cc"), exclude_characters=":,;|\t\n\r\ufeff"),
  min_size=1,
  max_size=5,
).filter(lambda s: s == s.strip() and not s.lstrip("-").isdigit())
_VALUES = st.floats(-100, 100)
# Eighths: float32 sums of these are exact, so their means are too (other means
# are checked in test_mean_of_duplicates).
_EIGHTHS = st.integers(-800, 800).map(lambda n: n / 8)


def _write(path, lines, sep, ending, header, timestamps):
  rows = [sep.join(map(str, (u, i, repr(v)))) for u, i, v in lines]
  if timestamps:
    rows = [f"{row}{sep}{881250949 + j}" for j, row in enumerate(rows)]
  if header:
    names = ["user", "item", "rating"] + ["timestamp"] * timestamps
    rows.insert(0, sep.join(names))
  path.write_bytes((ending.join(rows) + ending).encode())
  return path


def _draw_format(draw, sep):
  how = draw(st.sampled_from(("auto", "delimited", "sep", "native")))
  if how == "sep":
    return dict(format="delimited", sep=sep)
  if how == "native":
    return dict(format=_NATIVE_FORMAT.get(sep, "auto"))
  return dict(format=how)


@_settings(80)
@given(st.data())
def test_raw_ids_round_trip_through_the_id_maps(scratch, data):
  text_ids = data.draw(st.booleans(), label="text ids")
  ids = _TEXT_IDS if text_ids else _INT_IDS
  users = data.draw(st.lists(ids, min_size=1, max_size=6, unique=True), label="users")
  items = data.draw(st.lists(ids, min_size=1, max_size=6, unique=True), label="items")
  policy = data.draw(st.sampled_from(("last", "mean")), label="duplicates")
  values = _VALUES if policy == "last" else _EIGHTHS
  lines = data.draw(
    st.lists(
      st.tuples(st.sampled_from(users), st.sampled_from(items), values),
      min_size=1,
      max_size=15,
    ),
    label="lines",
  )
  sep = data.draw(st.sampled_from(_SEPS), label="sep")
  ending = data.draw(st.sampled_from(("\n", "\r\n")), label="ending")
  header = data.draw(st.booleans(), label="header")
  timestamps = data.draw(st.booleans(), label="timestamps")
  kwargs = _draw_format(data.draw, sep)
  path = _write(scratch / "train.txt", lines, sep, ending, header, timestamps)
  ratings, maps = mfjax.load_ratings(path, duplicates=policy, **kwargs)

  _check_valid(ratings, maps)
  pairs = [(u, i) for u, i, _ in lines]
  kept = [j for j, pair in enumerate(pairs) if pair not in pairs[j + 1 :]]
  assert len(ratings) == len(kept)
  assert (maps.n_lines, maps.n_duplicates, maps.n_unknown) == (
    len(lines),
    len(lines) - len(kept),
    0,
  )
  assert maps.users.dtype.kind == ("U" if text_ids else "i")
  np.testing.assert_array_equal(maps.users, np.unique([u for u, _, _ in lines]))
  np.testing.assert_array_equal(maps.items, np.unique([i for _, i, _ in lines]))
  index_users, index_items = np.asarray(ratings.users), np.asarray(ratings.items)
  # Ratings keep the order of the file (the last line of a repeated pair).
  np.testing.assert_array_equal(maps.users[index_users], [lines[j][0] for j in kept])
  np.testing.assert_array_equal(maps.items[index_items], [lines[j][1] for j in kept])
  np.testing.assert_array_equal(
    maps.user_index([lines[j][0] for j in kept]), index_users
  )
  np.testing.assert_array_equal(
    maps.item_index([lines[j][1] for j in kept]), index_items
  )
  if not text_ids:  # Integer maps take the ids as text too.
    np.testing.assert_array_equal(
      maps.user_index([str(lines[j][0]) for j in kept]), index_users
    )
  values = np.float32([v for _, _, v in lines])
  assert maps.scale == (float(values.min()), float(values.max()))
  for position, j in enumerate(kept):
    rated = values[[k for k, pair in enumerate(pairs) if pair == pairs[j]]]
    expected = rated[-1] if policy == "last" else rated.astype(np.float64).mean()
    np.testing.assert_allclose(ratings.values[position], expected, rtol=1e-6, atol=1e-4)

  # A second file against the maps: known ids keep their index, others are -1.
  more_users = data.draw(st.lists(ids, min_size=1, max_size=4), label="new users")
  more_items = data.draw(st.lists(ids, min_size=1, max_size=4), label="new items")
  test_lines = data.draw(
    st.lists(
      st.tuples(
        st.sampled_from(users + more_users),
        st.sampled_from(items + more_items),
        _VALUES,
      ),
      min_size=1,
      max_size=10,
      unique_by=lambda line: line[:2],
    ),
    label="test lines",
  )
  path = _write(scratch / "test.txt", test_lines, sep, ending, header, timestamps)
  test, test_maps = mfjax.load_ratings(path, id_maps=maps, **kwargs)
  _check_valid(test, test_maps, against_maps=True)
  assert test.shape == ratings.shape
  np.testing.assert_array_equal(test_maps.users, maps.users)
  np.testing.assert_array_equal(test_maps.items, maps.items)
  assert test_maps.scale == maps.scale
  user_at = {u: j for j, u in enumerate(maps.users.tolist())}
  item_at = {i: j for j, i in enumerate(maps.items.tolist())}
  expected_users = [user_at.get(u, mfjax.UNKNOWN) for u, _, _ in test_lines]
  expected_items = [item_at.get(i, mfjax.UNKNOWN) for _, i, _ in test_lines]
  np.testing.assert_array_equal(test.users, expected_users)
  np.testing.assert_array_equal(test.items, expected_items)
  np.testing.assert_array_equal(
    maps.user_index([u for u, _, _ in test_lines]), expected_users
  )
  unknown = sum(
    u < 0 or i < 0 for u, i in zip(expected_users, expected_items, strict=True)
  )
  assert (test_maps.n_lines, test_maps.n_duplicates, test_maps.n_unknown) == (
    len(test_lines),
    0,
    unknown,
  )
  np.testing.assert_array_equal(test.values, np.float32([v for _, _, v in test_lines]))


# --- loader fuzzing ---------------------------------------------------------------


def _check_valid(ratings, maps, *, against_maps=False):
  """What any Ratings from load_ratings must satisfy.

  ``against_maps``: read with ``id_maps=`` (unknown ids, the training scale).
  """
  users, items, values = (
    np.asarray(x) for x in (ratings.users, ratings.items, ratings.values)
  )
  assert (users.dtype, items.dtype, values.dtype) == (np.int32, np.int32, np.float32)
  assert users.ndim == 1 and users.shape == items.shape == values.shape
  assert len(ratings) == len(values) >= 1
  assert type(ratings.n_users) is int and type(ratings.n_items) is int
  assert ratings.n_users == len(maps.users) >= 1
  assert ratings.n_items == len(maps.items) >= 1
  floor = mfjax.UNKNOWN if against_maps else 0
  assert np.all((users >= floor) & (users < ratings.n_users))
  assert np.all((items >= floor) & (items < ratings.n_items))
  assert np.all(np.isfinite(values))
  for ids in (maps.users, maps.items):
    assert ids.ndim == 1 and (ids.dtype == np.int64 or ids.dtype.kind == "U")
    assert np.all(ids[1:] > ids[:-1])  # Sorted, no repeats.
  everyone = np.arange(len(maps.users))
  np.testing.assert_array_equal(maps.user_index(maps.users), everyone)
  np.testing.assert_array_equal(maps.item_index(maps.items), np.arange(len(maps.items)))
  if not against_maps:
    lo, hi = maps.scale
    assert lo <= values.min() and values.max() <= hi
    assert len(set(zip(users.tolist(), items.tolist(), strict=True))) == len(users)
    assert len(ratings) + maps.n_duplicates == maps.n_lines and maps.n_unknown == 0


_INT_LITERAL = re.compile(r"[+-]?[0-9]+")


def _same_id(field, raw):
  if isinstance(raw, str):
    return field == raw
  if _INT_LITERAL.fullmatch(field):
    return int(field) == int(raw)  # Exactly: 16+ digits must not be rounded.
  try:
    return float(field) == int(raw)  # "1e3" or "4.0" as an integer id.
  except ValueError:
    return False


def _same_value(field, value):
  try:
    number = float(field)
  except ValueError:
    return False
  with np.errstate(over="ignore"):
    return np.float32(number) == value


def _file_lines(content):
  """The lines of a file as the loader should see them: no BOM, no \\r, and no
  blank lines at the end (those are tolerated)."""
  text = content.decode("utf-8-sig", errors="replace").replace("\r", "")
  lines = text.split("\n")
  while lines and not lines[-1].strip():
    lines.pop()
  return lines


def _check_against_file(content, ratings, maps, sep, duplicates, *, strict):
  """Each rating read is a line of the file, under some separator.

  ``strict`` also checks that no empty line was skipped (a fixed bug skipped
  those before an unterminated last line).
  """
  lines = _file_lines(content)
  if strict:
    assert all(line.strip() for line in lines), "a blank line was skipped"
  n_lines = sum(bool(line.strip()) for line in lines)
  assert maps.n_lines in (n_lines, n_lines - 1)  # Minus a header.
  rows = []
  for line in lines:
    for candidate in {"::", "\t", ",", ";", "|", None, sep}:
      fields = [
        f.strip() for f in (line.split(candidate) if candidate else line.split())
      ]
      if len(fields) in (3, 4):
        rows.append(fields)
  raw_users = maps.users[np.asarray(ratings.users)].tolist()
  raw_items = maps.items[np.asarray(ratings.items)].tolist()
  for user, item, value in zip(
    raw_users, raw_items, np.asarray(ratings.values), strict=True
  ):
    assert any(
      _same_id(row[0], user)
      and _same_id(row[1], item)
      and (duplicates == "mean" or _same_value(row[2], value))
      for row in rows
    ), f"({user!r}, {item!r}, {value}) is no line of the file"


def _load(path, **kwargs):
  """``load_ratings`` with warnings as errors: ``(ratings, maps, None)`` or the
  RatingsFileError as ``(None, None, error)``; anything else propagates."""
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    try:
      return (*mfjax.load_ratings(path, **kwargs), None)
    except mfjax.RatingsFileError as error:
      return None, None, error


def _check_error(error, path, content, *, strict):
  """A RatingsFileError names the file; ``strict``: and a line of it, if any."""
  message = str(error)
  assert message.startswith(str(path)), message
  line = re.match(re.escape(str(path)) + r":(\d+):", message)
  if strict and line:
    n_lines = content.count(b"\n") + (not content.endswith(b"\n"))
    assert 1 <= int(line.group(1)) <= max(n_lines, 1), message


def _fuzz_one(path, content, duplicates, sep, *, strict):
  """Loads ``content`` in every format: valid Ratings or RatingsFileError.

  ``strict`` adds the checks of the fixed loader bugs (the tests named after them).
  """
  path.write_bytes(content)
  for fmt in data_lib.FORMATS:
    ratings, maps, error = _load(path, format=fmt, sep=sep, duplicates=duplicates)
    event("RatingsFileError" if error is not None else "loaded")
    if error is not None:
      _check_error(error, path, content, strict=strict)
      continue
    _check_valid(ratings, maps)
    _check_against_file(content, ratings, maps, sep, duplicates, strict=strict)


# Tokens of well-formed lines, odd ones, and those of fixed loader bugs.
_INT_ID_TOKENS = (
  "1", "2", "7", "42", "0", "-3", "007", "2147483648", "12345678901234", " 5 ",
)  # fmt: skip
_TEXT_ID_TOKENS = ("a", "b", "ü", "用户", "x y", "nan", "A-1", "ß")
# "+4", "4.0" and "1e3" are integers to np.loadtxt but text to the first line.
_ODD_ID_TOKENS = ("", "1.5", "nan", "-", "a,b", "1e-3", "-0", "+4", "4.0", "1e3")
_BUGGY_ID_TOKENS = (
  "inf", "-inf", "99999999999999999999", "9007199254740993", "\u2460", "\u0661",
  "--5",
)  # fmt: skip
_RATING_TOKENS = (
  "1", "4.5", "-2", "0", "3.", ".5", "1e-50", " 2 ", "5", "0.1", "3.14159",
  "-7.25e-3", "1e30",
)  # fmt: skip
_ODD_RATING_TOKENS = ("nan", "NaN", "inf", "-inf", "x", "", "4,5")
# "3e38" is fine, but the mean of two is inf (test_mean_of_duplicates).
_BUGGY_RATING_TOKENS = ("1e300", "-1e39", "1_0", "\u0663", "3e38")
_TIMESTAMP_TOKENS = ("881250949", "0", "1.5")
_ODD_TIMESTAMP_TOKENS = ("-1", "1e9")
_BUGGY_TIMESTAMP_TOKENS = ("x", "")
_FUZZ_SEPS = (",", "\t", "::", ";", "|", " ", "  ", " , ", "\t ", ", ")
_BUGGY_SEPS = ("\u3000",)
_EXPLICIT_SEPS = (None, None, None, ",", "\t", "::", ";", "|")
_BUGGY_EXPLICIT_SEPS = ("||",)
_DEFECT_KINDS = ("id", "rating", "timestamp", "drop", "extra", "blank", "indent")
_DEFECTS = ("",) * 60 + _DEFECT_KINDS  # About one line in ten has a defect.
_BOM = "\ufeff".encode()


@st.composite
def _delimited_files(draw, buggy=False, noise=True, blanks=True):
  """Delimited text, mostly well formed, with odd lines, bytes and cuts."""

  def pick(tokens, more=()):
    return draw(st.sampled_from(tokens + more if buggy else tokens))

  sep = pick(_FUZZ_SEPS, _BUGGY_SEPS)
  ncols = draw(st.sampled_from((3, 4)))
  ids = _TEXT_ID_TOKENS if draw(st.booleans()) else _INT_ID_TOKENS
  rows = []
  if draw(st.booleans()):
    rows.append(sep.join(("userId", "movieId", "rating", "timestamp")[:ncols]))
  for _ in range(draw(st.integers(1, 8))):
    fields = [pick(ids), pick(ids), pick(_RATING_TOKENS)]
    if ncols == 4:
      fields.append(pick(_TIMESTAMP_TOKENS))
    defect = draw(st.sampled_from(_DEFECTS))
    if defect == "blank" and not blanks:
      defect = ""
    if defect == "id":
      fields[draw(st.integers(0, 1))] = pick(_ODD_ID_TOKENS, _BUGGY_ID_TOKENS)
    elif defect == "rating":
      fields[2] = pick(_ODD_RATING_TOKENS, _BUGGY_RATING_TOKENS)
    elif defect == "timestamp":
      fields.append(pick(_ODD_TIMESTAMP_TOKENS, _BUGGY_TIMESTAMP_TOKENS))
      del fields[3:-1]  # Replaces the timestamp, or adds one to 3 columns.
    elif defect == "drop":
      fields.pop(draw(st.integers(0, len(fields) - 1)))
    elif defect == "extra":
      fields.append("9")
    row = sep.join(fields)
    rows.append("" if defect == "blank" else " " * (defect == "indent") + row)
  ending = draw(st.sampled_from(("\n",) * 4 + ("\r\n",) * 2 + ("\r",)))
  text = ending.join(rows) + draw(st.sampled_from((ending, ending, "")))
  content = text.encode()
  if buggy and draw(st.booleans()):
    content = _BOM + content
  if noise and draw(st.integers(0, 3)) == 0:
    blobs = st.one_of(
      st.binary(min_size=1, max_size=3), st.text(min_size=1, max_size=3).map(str.encode)
    )
    inserts = st.tuples(st.integers(0, 1 << 16), blobs)
    for position, blob in draw(st.lists(inserts, min_size=1, max_size=2)):
      position %= len(content) + 1
      content = content[:position] + blob + content[position:]
  if noise and draw(st.integers(0, 3)) == 0:  # A truncated file, maybe mid-character.
    content = content[: len(content) - draw(st.integers(0, len(content)))]
  return content


@_settings(300)
@given(
  content=_delimited_files(),
  duplicates=st.sampled_from(("last", "mean", "error")),
  sep=st.sampled_from(_EXPLICIT_SEPS),
)
def test_loader_fuzz_delimited_text(scratch, content, duplicates, sep):
  _fuzz_one(scratch / "fuzz.txt", content, duplicates, sep, strict=True)


@_settings(200)
@given(
  content=st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=100).map(lambda tail: b"1,2,3\n" + tail),
    st.binary(max_size=100).map(lambda tail: b"user\titem\trating\n" + tail),
    st.text(max_size=60).map(lambda tail: ("1\t2\t3\n" + tail).encode()),
  ),
  duplicates=st.sampled_from(("last", "error")),
)
def test_loader_fuzz_random_bytes(scratch, content, duplicates):
  _fuzz_one(scratch / "bytes.bin", content, duplicates, None, strict=True)


@_settings(150)
@given(
  content=_delimited_files(buggy=True),
  duplicates=st.sampled_from(("last", "mean", "error")),
  sep=st.sampled_from(_EXPLICIT_SEPS + _BUGGY_EXPLICIT_SEPS),
)
@example(content=b"1,2,3\ninf,2,4\n", duplicates="last", sep=None)
@example(content=b"1,2,3\n99999999999999999999,2,4\n", duplicates="last", sep=None)
@example(content=b"1,2,3\n9007199254740993,2,4\n", duplicates="last", sep=None)
@example(content=_BOM + b"1,2,3\n1,3,4\n", duplicates="last", sep=None)
@example(content=b"1,2,3\n1,3,1e300\n", duplicates="last", sep=None)
@example(content=b"1,2,3,x\n", duplicates="last", sep=None)
@example(content="\u2460,\u2461,3\n".encode(), duplicates="last", sep=None)
@example(content=b"1||2||3\n", duplicates="last", sep="||")
@example(content=b"a,b,1\n\nc,d,2", duplicates="last", sep=None)
@example(content=b"2,2,3e38\n2,2,3e38\n", duplicates="mean", sep=None)
def test_loader_fuzz_with_known_bugs(scratch, content, duplicates, sep):
  _fuzz_one(scratch / "buggy.txt", content, duplicates, sep, strict=True)


@st.composite
def _files_with_one_odd_field(draw, buggy=False):
  """A well-formed file but for one field: ``(content, number of that line)``."""
  sep = draw(st.sampled_from(_SEPS))
  ids = draw(st.sampled_from((_INT_ID_TOKENS, _TEXT_ID_TOKENS)))
  ncols = draw(st.sampled_from((3, 4)))
  columns = [ids, ids, _RATING_TOKENS, _TIMESTAMP_TOKENS][:ncols]
  rows = [
    [draw(st.sampled_from(tokens)) for tokens in columns]
    for _ in range(draw(st.integers(1, 6)))
  ]
  header = draw(st.booleans())
  line, column = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, ncols - 1))
  odd = [_ODD_ID_TOKENS, _ODD_ID_TOKENS, _ODD_RATING_TOKENS, _ODD_TIMESTAMP_TOKENS]
  buggy_tokens = [_BUGGY_ID_TOKENS, _BUGGY_ID_TOKENS, _BUGGY_RATING_TOKENS]
  buggy_tokens.append(_BUGGY_TIMESTAMP_TOKENS)
  pool = odd[column] + (buggy_tokens[column] if buggy else ())
  rows[line][column] = draw(st.sampled_from(pool))
  names = ["userId", "movieId", "rating", "timestamp"][:ncols]
  text = "\n".join(sep.join(row) for row in [names] * header + rows) + "\n"
  return text.encode(), line + 1 + header


def _check_odd_field(path, content, line):
  """Valid Ratings, or a RatingsFileError that names the odd line."""
  path.write_bytes(content)
  for fmt in ("auto", "delimited"):
    ratings, maps, error = _load(path, format=fmt)
    event("RatingsFileError" if error is not None else "loaded")
    if error is None:
      _check_valid(ratings, maps)
      _check_against_file(content, ratings, maps, None, "last", strict=True)
      continue
    _check_error(error, path, content, strict=True)
    named = re.match(re.escape(str(path)) + r":(\d+):", str(error))
    if named and line > 1:  # The first line sets the columns the others need.
      assert int(named.group(1)) == line, (str(error), line)


@_settings(150)
@given(file=_files_with_one_odd_field())
def test_loader_fuzz_one_odd_field(scratch, file):
  _check_odd_field(scratch / "odd_field.txt", *file)


@_settings(150)
@given(file=_files_with_one_odd_field(buggy=True))
@example(file=(b"1,2,3\ninf,2,4\n", 2))
@example(file=(b"1,2,3\n1,3,1e300\n", 2))
@example(file=(b"1,2,3,x\n", 1))
@example(file=(b"1,2,3\n+4,2,3\n,2,3\n", 3))
def test_loader_fuzz_one_odd_field_with_known_bugs(scratch, file):
  _check_odd_field(scratch / "odd_field_bugs.txt", *file)


def _first_two_lines(content):
  """Bytes up to the end of the second non-blank line (the loader sniffs those)."""
  end, found = 0, 0
  for line in content.split(b"\n"):
    end += len(line) + 1
    found += bool(line.strip())
    if found == 2:
      break
  return end


# Without empty lines (those are checked in
# test_empty_line_at_the_end_of_a_block_is_rejected).
@_settings(80)
@given(content=_delimited_files(noise=False, blanks=False), extra=st.integers(0, 40))
def test_loader_reads_the_same_in_small_blocks(scratch, content, extra):
  path = scratch / "blocks.txt"
  path.write_bytes(content)
  expected = _load(path)
  with pytest.MonkeyPatch.context() as patch:
    # Blocks of a few lines: line numbers and columns must carry across blocks.
    patch.setattr(data_lib, "_CHUNK_BYTES", _first_two_lines(content) + extra + 1)
    got = _load(path)
  if expected[2] is not None or got[2] is not None:
    # The same file and line (the wording may differ: when np.loadtxt fails on
    # a block, the bad line is found by other checks).
    where = lambda error: re.match(r"[^:]*(:\d+)?", str(error)).group()
    assert got[2] is not None and expected[2] is not None
    assert where(got[2]) == where(expected[2]), (str(got[2]), str(expected[2]))
    return
  for name in ("users", "items", "values"):
    np.testing.assert_array_equal(getattr(got[0], name), getattr(expected[0], name))
  assert got[0].shape == expected[0].shape
  for name in ("users", "items"):
    a, b = getattr(got[1], name), getattr(expected[1], name)
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  assert (got[1].scale, got[1].n_lines, got[1].n_duplicates) == (
    expected[1].scale,
    expected[1].n_lines,
    expected[1].n_duplicates,
  )


@pytest.mark.parametrize(
  "content",
  [
    b"",
    b"\n\n\n",
    b"\r\n",
    b"userId,movieId,rating,timestamp\n",
    b"userId,movieId,rating,timestamp\r\n\r\n",
    b"\t \t\n",
    b"1,2\n",
    b"1,2,3,4,5\n",
    b"1,2,3\n4,5,nan\n",
    b"1,2,3\n4,5,-inf\n",
    b"1,2,3\n\n4,5,6\n",
    b"\x00\x01",
    b"1,2,3\n\xff\xfe,2,3\n",
    "1,2,3\n\u00e9".encode("latin-1"),
    b"1,2,3\n1,2",  # Truncated last line.
  ],
)
def test_documented_errors_of_bad_files(scratch, content):
  path = scratch / "bad.txt"
  path.write_bytes(content)
  for fmt in data_lib.FORMATS:
    _, _, error = _load(path, format=fmt)
    assert isinstance(error, mfjax.RatingsFileError), fmt
    _check_error(error, path, content, strict=True)


@pytest.mark.parametrize(
  "text, users, items, values",
  [
    ("1,10,4\r\n2,10,3\r\n", [1, 2], [10], [4, 3]),
    ("u\ti\tr\n1\t10\t4\n", [1], [10], [4]),
    ("1 10  4\n2\t10 \t3\n", [1, 2], [10], [4, 3]),  # Any run of whitespace.
    ("1;10;4\n", [1], [10], [4]),
    ("1|10|4\n", [1], [10], [4]),
    ("1::10::4::5\n", [1], [10], [4]),
    ("1, 10 , 4\n", [1], [10], [4]),  # Spaces around fields.
    ("123456789012345,1,2\n", [123456789012345], [1], [2]),  # 15 digits: int.
    ("1234567890123456,1,2\n", ["1234567890123456"], ["1"], [2]),  # 16: text.
    ("99999999999999999999,1,2\n", ["99999999999999999999"], ["1"], [2]),
    ("用户,物品,4\nü,物品,3\n", ["ü", "用户"], ["物品"], [4, 3]),
    ("-5,2,3\n", [-5], [2], [3]),
  ],
)
def test_odd_but_valid_files(scratch, text, users, items, values):
  path = scratch / "odd.txt"
  path.write_bytes(text.encode())
  ratings, maps, error = _load(path)
  assert error is None, error
  _check_valid(ratings, maps)
  assert maps.users.tolist() == users and maps.items.tolist() == items
  np.testing.assert_array_equal(ratings.values, np.float32(values))


# --- known loader bugs --------------------------------------------------------


def _load_text(path, content, **kwargs):
  path.write_bytes(content)
  return _load(path, **kwargs)


@pytest.mark.parametrize(
  "content, exact",
  [
    (b"1,2,3\ninf,2,4\n", None),
    (b"1,2,3\n99999999999999999999,2,4\n", None),
    (b"1,2,3\n9007199254740993,2,4\n", [1, 9007199254740993]),
  ],
)
def test_integer_ids_are_exact_or_rejected(scratch, content, exact):
  ratings, maps, error = _load_text(scratch / "ids.txt", content)
  if error is not None:
    assert re.search(r"ids\.txt:2: ", str(error)), error
  else:
    assert exact is not None and maps.users.tolist() == exact


def test_byte_order_mark_is_not_part_of_the_first_id(scratch):
  ratings, maps, error = _load_text(scratch / "bom.txt", _BOM + b"1,2,3\n1,3,4\n")
  assert error is None, error
  assert maps.users.tolist() == [1] and maps.items.tolist() == [2, 3]


@pytest.mark.parametrize("content", [b"1,2,3\n1,3,1e300\n", b"a,b,3\na,c,-1e39\n"])
def test_ratings_beyond_float32_are_rejected_without_warnings(scratch, content):
  _, _, error = _load_text(scratch / "big.txt", content)
  assert error is not None and "big.txt:2: " in str(error)


@pytest.mark.parametrize(
  "content, line",
  [
    (b"1,2,3,x\n", 1),
    (b"1,2,3\n1,2,1_0\n", 2),
    ("1\u30002\u30003\n".encode(), 1),
    ("1,2,3\n1,2,\u0663\n".encode(), 2),
    (b"1,2,3\n+4,2,3\n,2,3\n", 3),
  ],
)
def test_errors_name_the_bad_line(scratch, content, line):
  path = scratch / "line.txt"
  _, _, error = _load_text(path, content)
  if error is not None:
    named = re.match(re.escape(str(path)) + r":(\d+):", str(error))
    assert named is not None and int(named.group(1)) == line, str(error)


@pytest.mark.parametrize("first", ["\u2460,\u2461", "\u0661,\u0662", "\u00b2,\u00b3"])
def test_non_ascii_digit_ids_are_text(scratch, first):
  content = f"{first},3\nb,c,4\n".encode()
  ratings, maps, error = _load_text(scratch / "digits.txt", content)
  assert error is None, error
  assert maps.users.dtype.kind == "U" and first.split(",")[0] in maps.users.tolist()


def test_lookups_of_huge_ids_are_unknown(scratch):
  train, maps, _ = _load_text(scratch / "train.txt", b"1,2,3\n5,6,4\n")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert maps.user_index([2**70]).tolist() == [mfjax.UNKNOWN]
    assert maps.item_index(["9" * 20]).tolist() == [mfjax.UNKNOWN]
  content = b"99999999999999999999,2,3\n1,2,4\n"
  test, test_maps, error = _load_text(scratch / "test.txt", content, id_maps=maps)
  assert error is None, error
  assert np.asarray(test.users).tolist() == [mfjax.UNKNOWN, 0]
  assert test_maps.n_unknown == 1


def test_fractional_ids_are_unknown_to_integer_maps(scratch):
  _, maps, _ = _load_text(scratch / "train.txt", b"1,2,3\n5,6,4\n")
  assert maps.user_index([5.0]).tolist() == [1]
  assert maps.user_index([1.5, 5.5]).tolist() == [mfjax.UNKNOWN] * 2


def test_multi_character_separators(scratch):
  ratings, maps, error = _load_text(
    scratch / "sep.txt", b"1||2||3\n4||2||5\n", sep="||"
  )
  assert error is None, error
  assert maps.users.tolist() == [1, 4] and maps.items.tolist() == [2]


@pytest.mark.parametrize(
  "content, line",
  [(b"a,b,1\n\nc,d,2", 2), (b"1,1,1\n\n\n2,2,2", 2), (b"1,1,1\n\n2,2,5,x", 2)],
)
def test_empty_lines_are_rejected_wherever_they_are(scratch, content, line):
  _, _, error = _load_text(scratch / "empty.txt", content)
  assert error is not None and f"empty.txt:{line}: " in str(error), error


def test_empty_line_at_the_end_of_a_block_is_rejected(scratch):
  path = scratch / "block_end.txt"
  path.write_bytes(b"1,1,1\n\n2,2,2\n")
  assert "block_end.txt:2: " in str(_load(path)[2])
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(data_lib, "_CHUNK_BYTES", 7)  # The first block is "1,1,1\n\n".
    assert "block_end.txt:2: " in str(_load(path)[2])


@pytest.mark.parametrize(
  "kwargs, name",
  [
    (dict(format="xml"), "format"),
    (dict(duplicates="first"), "duplicates"),
    (dict(scale=(5, 1)), "scale"),
    (dict(scale=3), "scale"),
    (dict(id_maps={}), "id_maps"),
  ],
)
def test_bad_arguments_name_the_argument(scratch, kwargs, name):
  path = scratch / "arguments.txt"
  path.write_bytes(b"1,2,3\n")
  with pytest.raises((ValueError, TypeError), match=name) as raised:
    mfjax.load_ratings(path, **kwargs)
  assert not isinstance(raised.value, mfjax.RatingsFileError)


@pytest.mark.parametrize("sep", ["", 5, "\n"])
def test_bad_separators_name_sep(scratch, sep):
  path = scratch / "arguments.txt"
  path.write_bytes(b"1 2 3\n")
  with pytest.raises((ValueError, TypeError), match=r"\bsep\b") as raised:
    mfjax.load_ratings(path, sep=sep)
  assert not isinstance(raised.value, mfjax.RatingsFileError)


@pytest.mark.parametrize(
  "line", [b"2,2,3e38\n", b"a,b,1.390586650985881\n", b"1,1,-3.3e38\n"]
)
def test_mean_of_duplicates(scratch, line):
  ratings, maps, error = _load_text(scratch / "mean.txt", line * 3, duplicates="mean")
  assert error is None, error
  value = float(line.split(b",")[2])
  assert ratings.values.tolist() == [np.float32(value)] and maps.n_duplicates == 2
  assert maps.scale[0] <= ratings.values[0] <= maps.scale[1]


# --- save/load and recommend ------------------------------------------------------

_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


@_settings(25)
@given(st.data())
def test_save_then_load_is_the_identity(scratch, data):
  n_users = data.draw(st.integers(1, 6), label="n_users")
  n_items = data.draw(st.integers(1, 5), label="n_items")
  rank = data.draw(st.integers(1, 3), label="rank")
  dtype = data.draw(st.sampled_from(_DTYPES), label="dtype")
  # Drawn as float32 and cast to the dtype under test before saving.
  values = st.integers(-255, 255).map(lambda n: n / 4)

  def table(*shape):
    return jnp.asarray(data.draw(hnp.arrays(np.float32, shape, elements=values)), dtype)

  params = mfjax.Params(
    table(n_users, rank), table(n_items, rank), table(n_users), table(n_items), table()
  )
  if data.draw(st.booleans(), label="bare params"):
    saved = params
  else:
    text_ids = data.draw(st.booleans(), label="text ids")
    ids = _TEXT_IDS if text_ids else st.integers(-(2**62), 2**62)
    users = sorted(data.draw(st.sets(ids, min_size=n_users, max_size=n_users)))
    items = sorted(data.draw(st.sets(ids, min_size=n_items, max_size=n_items)))
    lo = data.draw(st.floats(-10, 10), label="lo")
    scale = (lo, lo + data.draw(st.floats(0, 10), label="width"))
    maps = mfjax.IdMaps(
      users=np.array(users, dtype=str if text_ids else np.int64),
      items=np.array(items, dtype=str if text_ids else np.int64),
      scale=scale,
      n_lines=data.draw(st.integers(0, 10**6), label="n_lines"),
    )
    settings_ = data.draw(
      st.dictionaries(_TEXT_IDS, st.integers(-5, 5) | st.booleans() | _TEXT_IDS),
      label="settings",
    )
    saved = mfjax.Model(params, id_maps=maps, settings=settings_)
  path = scratch / "round_trip.npz"
  mfjax.save(path, saved)
  loaded = mfjax.load(path)
  assert type(loaded) is type(saved)
  loaded_params = loaded if isinstance(loaded, mfjax.Params) else loaded.params
  for got, want in zip(loaded_params, params, strict=True):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(
      np.asarray(got, np.float32), np.asarray(want, np.float32)
    )
  if isinstance(saved, mfjax.Model):
    np.testing.assert_array_equal(loaded.id_maps.users, saved.id_maps.users)
    np.testing.assert_array_equal(loaded.id_maps.items, saved.id_maps.items)
    assert loaded.id_maps.users.dtype.kind == saved.id_maps.users.dtype.kind
    assert loaded.scale == saved.id_maps.scale and loaded.settings == saved.settings
    assert loaded.id_maps.n_lines == saved.id_maps.n_lines


@_settings(25)
@given(st.data())
def test_recommend_never_returns_an_excluded_item(data):
  n_users, n_items = data.draw(
    st.sampled_from(((5, 4), (7, 9), (3, 12))), label="shape"
  )
  key = jax.random.key(data.draw(st.integers(0, 2**31), label="seed"))
  params = mfjax.init_params(key, n_users, n_items, 2)
  # Coarse biases make ties likely, which must not let an excluded item through.
  bias = data.draw(
    hnp.arrays(np.float32, n_items, elements=st.sampled_from([0.0, 1.0]))
  )
  params = params._replace(item_bias=jnp.asarray(bias))
  pairs = data.draw(
    st.sets(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1))),
    label="excluded",
  )
  pairs = sorted(pairs)
  exclude = mfjax.Ratings(
    users=jnp.array([u for u, _ in pairs], jnp.int32).reshape(-1),
    items=jnp.array([i for _, i in pairs], jnp.int32).reshape(-1),
    values=jnp.ones(len(pairs), jnp.float32),
    n_users=n_users,
    n_items=n_items,
  )
  k = data.draw(st.integers(1, n_items), label="k")
  block_size = data.draw(st.sampled_from([1, 2, 3, 1024]), label="block_size")
  users = data.draw(st.lists(st.integers(0, n_users - 1), min_size=1, max_size=6))
  items, scores = mfjax.recommend(
    params, users, k, exclude=exclude, block_size=block_size
  )
  items, scores = np.asarray(items), np.asarray(scores)
  excluded = {}
  for u, i in pairs:
    excluded.setdefault(u, set()).add(i)
  for row, user in enumerate(users):
    listed = [int(i) for i in items[row] if i >= 0]
    assert not set(listed) & excluded.get(user, set())
    assert (
      len(listed) == len(set(listed)) == min(k, n_items - len(excluded.get(user, ())))
    )
    assert np.all(items[row][len(listed) :] == -1)
    assert np.all(np.diff(scores[row][: len(listed)]) <= 0)
