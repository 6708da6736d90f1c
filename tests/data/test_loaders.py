"""Ratings files (mfjax.data.loaders): formats, id maps, duplicates, errors, fuzzing.

The example tests come first. Then the property tests of the robustness section
(``pytest -m robustness``): raw ids round-trip through the id maps, and fuzzing:
``load_ratings`` must return valid ``Ratings`` whose every rating is a line of
the file, or raise ``mfjax.RatingsFileError``; any other exception or a warning
is a bug. The tests named after a loader bug reproduce one that the fuzzing
found and that is fixed; the fuzz sweeps keep their reproducers as explicit
examples.

Examples are derandomized, so every run draws the same ones; set
``MFJAX_HYPOTHESIS_SCALE=20`` for a deeper run with fresh random examples.
"""

import io
import re
import tracemalloc
import warnings

import jax
import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

import mfjax
from mfjax.data import folding, loaders, textparse
from tests.conftest import ML100K, hypothesis_settings, random_params

needs_ml100k = pytest.mark.skipif(
  not (ML100K / "u1.base").exists(),
  reason=f"needs MovieLens 100k in {ML100K} (or the folder named by MFJAX_DATA)",
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
  """A folder for the files the tests write; each test uses its own names."""
  return tmp_path_factory.mktemp("loaders")


def _write(tmp_path, name, text, mode="w"):
  path = tmp_path / name
  if mode == "wb":
    path.write_bytes(text)
  else:
    path.write_text(text)
  return path


# --- formats and MovieLens -------------------------------------------------------


@pytest.mark.parametrize(
  "name, text, fmt",
  [
    (
      "u.data",
      "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t1\n",
      "auto",
    ),
    (
      "ratings.dat",
      "1::1193::5::978300760\n1::661::3::978302109\n2::661::4::1\n",
      "auto",
    ),
    (
      "ratings.csv",
      "userId,movieId,rating,timestamp\n1,1,4.0,9\n1,3,4.5,9\n5,3,0.5,9\n",
      "auto",
    ),
    ("plain.csv", "a,x,4\nb,y,2\na,y,1\n", "auto"),
    ("win.csv", "1,10,4\r\n2,10,3\r\n1,20,2\r\n", "auto"),
    (
      "u.data",
      "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t1\n",
      "ml-100k",
    ),
  ],
)
def test_loader_formats(tmp_path, name, text, fmt):
  ratings, maps = mfjax.load_ratings(_write(tmp_path, name, text), format=fmt)
  assert len(ratings) == 3 and maps.n_lines == 3
  lines = [line for line in text.replace("\r", "").splitlines() if line]
  if not lines[0][0].isdigit() and "," in lines[0] and "userId" in lines[0]:
    lines = lines[1:]
  sep = "::" if "::" in lines[0] else ("\t" if "\t" in lines[0] else ",")
  for j, line in enumerate(lines):
    user, item, value = line.split(sep)[:3]
    assert str(maps.users[int(ratings.users[j])]) == user
    assert str(maps.items[int(ratings.items[j])]) == item
    assert float(ratings.values[j]) == float(value)
  assert maps.scale == (
    min(float(x.split(sep)[2]) for x in lines),
    max(float(x.split(sep)[2]) for x in lines),
  )


@needs_ml100k
def test_loader_movielens_100k_and_test_ids_against_training_maps():
  train, maps = mfjax.load_ratings(ML100K / "u1.base")
  assert (len(train), train.n_users, train.n_items) == (80000, 943, 1650)
  assert maps.scale == (1.0, 5.0) and maps.users.dtype.kind == "i"
  test, test_maps = mfjax.load_ratings(ML100K / "u1.test", id_maps=maps)
  assert len(test) == 20000 and test.shape == train.shape
  raw = np.loadtxt(ML100K / "u1.test", dtype=np.int64)
  unknown_items = ~np.isin(raw[:, 1], maps.items)
  assert test_maps.n_unknown == int(unknown_items.sum()) > 0
  items = np.asarray(test.items)
  assert np.all(items[unknown_items] == mfjax.UNKNOWN)
  np.testing.assert_array_equal(
    maps.items[items[~unknown_items]], raw[~unknown_items, 1]
  )
  np.testing.assert_array_equal(maps.users[np.asarray(test.users)], raw[:, 0])


@needs_ml100k
def test_unknown_ids_are_predicted_from_mean_and_known_bias():
  train, maps = mfjax.load_ratings(ML100K / "u1.base")
  test, _ = mfjax.load_ratings(ML100K / "u1.test", id_maps=maps)
  params = random_params(0, train.n_users, train.n_items, 4, mean=3.5)
  pred = np.asarray(mfjax.predict(params, test.users, test.items))
  users, items = np.asarray(test.users), np.asarray(test.items)
  unknown = items == mfjax.UNKNOWN
  # An unknown item: the mean and the user's bias; no factor, no item bias.
  np.testing.assert_allclose(
    pred[unknown], 3.5 + np.asarray(params.user_bias)[users[unknown]], rtol=1e-6
  )
  p = jax.tree.map(np.asarray, params)
  known = ~unknown
  full = (
    p.mean
    + p.user_bias[users[known]]
    + p.item_bias[items[known]]
    + np.sum(p.user_factors[users[known]] * p.item_factors[items[known]], axis=1)
  )
  np.testing.assert_allclose(pred[known], full, rtol=1e-5, atol=1e-5)
  errors = pred - np.asarray(test.values)
  np.testing.assert_allclose(
    float(mfjax.rmse(params, test)), np.sqrt(np.mean(errors**2)), rtol=1e-5
  )


def test_declared_scale_is_enforced_and_recorded(tmp_path):
  path = _write(tmp_path, "s.csv", "1,1,1\n1,2,5\n2,1,3\n")
  _, maps = mfjax.load_ratings(path, scale=(0.5, 5.0))
  assert maps.scale == (0.5, 5.0)
  with pytest.raises(
    mfjax.RatingsFileError,
    match=r"s.csv:2: rating 5 is outside the declared scale \[1, 4\]",
  ):
    mfjax.load_ratings(path, scale=(1, 4))


# --- duplicates -------------------------------------------------------------------


def test_duplicates_policies(tmp_path):
  path = _write(tmp_path, "d.csv", "1,1,2\n1,2,3\n1,1,4\n2,2,5\n")
  ratings, maps = mfjax.load_ratings(path)
  assert maps.n_duplicates == 1 and len(ratings) == 3
  dense = ratings.to_dense()
  assert dense[0, 0] == 4.0  # The last one wins.
  ratings, maps = mfjax.load_ratings(path, duplicates="mean")
  assert ratings.to_dense()[0, 0] == 3.0
  with pytest.raises(
    mfjax.RatingsFileError, match=r"d.csv:3: duplicate rating of the pair on line 1 "
  ):
    mfjax.load_ratings(path, duplicates="error")


def _numpy_duplicates(users, items, values):
  """Reference of the "last" and "mean" policies: ``(kept rows, last, mean)``.

  ``kept`` are the rows of the last rating of each pair, in file order.
  """
  pairs = users.astype(np.int64) * (items.max() + 1) + items
  # The first occurrence of each pair in the reversed file is its last rating.
  _, last_from_end = np.unique(pairs[::-1], return_index=True)
  kept = np.sort(len(pairs) - 1 - last_from_end)
  _, inverse = np.unique(pairs, return_inverse=True)
  sums = np.bincount(inverse, weights=values.astype(np.float64))
  counts = np.bincount(inverse)
  return kept, values[kept], (sums / counts)[inverse[kept]]


@pytest.fixture(scope="module")
def many_duplicates(tmp_path_factory):
  """1.2M ratings of 1000 × 1000 pairs: most pairs repeat, across the whole file.

  More than 2**20 lines, so the duplicate search runs over several chunks of
  keys, and about 11 MB, so the file is read in several blocks.
  """
  rng = np.random.default_rng(0)
  n = 1_200_000
  users = rng.integers(0, 1000, n)
  items = rng.integers(0, 1000, n)
  values = rng.integers(1, 11, n) / 2  # Halves: float32 means of them are exact.
  path = tmp_path_factory.mktemp("duplicates") / "dups.csv"
  lines = map("{},{},{}\n".format, users.tolist(), items.tolist(), values.tolist())
  path.write_text("".join(lines))
  return path, users, items, values


@pytest.mark.slow
def test_duplicates_match_a_reference_in_a_large_file(many_duplicates):
  path, users, items, values = many_duplicates
  kept, last, mean = _numpy_duplicates(users, items, values)
  for policy, expected in (("last", last), ("mean", mean)):
    ratings, maps = mfjax.load_ratings(path, duplicates=policy)
    assert (maps.n_lines, maps.n_duplicates) == (len(users), len(users) - len(kept))
    np.testing.assert_array_equal(maps.users[np.asarray(ratings.users)], users[kept])
    np.testing.assert_array_equal(maps.items[np.asarray(ratings.items)], items[kept])
    np.testing.assert_allclose(ratings.values, expected, rtol=1e-6)
  with pytest.raises(mfjax.RatingsFileError) as error:
    mfjax.load_ratings(path, duplicates="error")
  later, earlier = map(
    int, re.search(r"dups.csv:(\d+): .* line (\d+)", str(error.value)).groups()
  )
  assert earlier < later
  assert (users[earlier - 1], items[earlier - 1]) == (
    users[later - 1],
    items[later - 1],
  )


# --- bad files --------------------------------------------------------------------


@pytest.mark.parametrize(
  "content, match",
  [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("1,2,3\n1,2\n", r"bad.csv:2: expected 3 columns"),
    ("1,2,3\n1,2,3,4,5\n", r"bad.csv:2: expected 3 columns"),
    ("1,2,3\n4,5,x\n", r"bad.csv:2: rating 'x' is not a number"),
    ("1,2,3\n4,5,nan\n", r"bad.csv:2: rating nan is not finite"),
    ("1,2,3\n4,5,inf\n", r"bad.csv:2: rating inf is not finite"),
    ("1,2\n", r"bad.csv:1: expected 3 columns"),
    ("1,2,3\n\n4,5,6\n", r"bad.csv:2: expected 3 columns"),
    (
      "1,2,3\nu,5,6\n",
      r"bad.csv:2: ids must be integers of at most 15 digits, or all text",
    ),
    ("userId,movieId,rating\n", "has a header but no ratings"),
  ],
)
def test_malformed_files_name_file_and_line(tmp_path, content, match):
  path = _write(tmp_path, "bad.csv", content)
  with pytest.raises(mfjax.RatingsFileError, match=match):
    mfjax.load_ratings(path)
  for fmt in textparse.FORMATS:  # Every format: a RatingsFileError naming a line.
    _, _, error = _load(path, format=fmt)
    assert isinstance(error, mfjax.RatingsFileError), fmt
    _check_error(error, path, content.encode(), strict=True)


def test_missing_binary_and_non_utf8_files(tmp_path):
  with pytest.raises(mfjax.RatingsFileError, match="no such file"):
    mfjax.load_ratings(tmp_path / "nope.csv")
  with pytest.raises(mfjax.RatingsFileError, match="not a regular file"):
    mfjax.load_ratings(tmp_path)
  with pytest.raises(mfjax.RatingsFileError, match="binary file"):
    mfjax.load_ratings(_write(tmp_path, "b.bin", b"\x00\x01\x02abc", "wb"))
  # Issue 31: UTF-16 text (with or without its byte order mark) was "binary".
  text = "1,2,3\n4,5,1\n"
  for name, data in [
    ("bom.csv", text.encode("utf-16")),
    ("le.csv", text.encode("utf-16-le")),
    ("be.csv", text.encode("utf-16-be")),
  ]:
    with pytest.raises(mfjax.RatingsFileError, match=f"{name}: looks like UTF-16"):
      mfjax.load_ratings(_write(tmp_path, name, data, "wb"))
  with pytest.raises(mfjax.RatingsFileError, match=r"latin.csv:2: not UTF-8"):
    mfjax.load_ratings(_write(tmp_path, "latin.csv", b"a,b,1\n\xe9,b,2\n", "wb"))
  assert issubclass(mfjax.RatingsFileError, ValueError)


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(format="xml"), ValueError, "format must be one of 'auto', 'ml-100k'"),
    (dict(duplicates="first"), ValueError, "duplicates must be one of 'last'"),
    (dict(scale=(5, 1)), ValueError, r"scale must satisfy lo <= hi; got \(5, 1\)"),
    (dict(scale=3), TypeError, "scale must be a pair"),
    (dict(id_maps={}), TypeError, "id_maps must be mfjax.IdMaps; got dict"),
    (dict(sep=""), ValueError, "sep must be a non-empty string"),
    (dict(sep="\n"), ValueError, "sep must be a non-empty string without line"),
    (dict(sep=5), TypeError, "sep must be a string or None; got int"),
    (dict(columns="user,item,rating"), TypeError, "columns must be None or a seq"),
    (dict(columns=("user", "item")), ValueError, "'rating' once each"),
    (dict(columns=("user", "item", "rating", "user")), ValueError, "once each"),
    (dict(columns=("user", "item", "stars")), ValueError, "columns must hold 'user'"),
  ],
)
def test_bad_arguments_name_the_argument(scratch, kwargs, error, match):
  path = scratch / "arguments.txt"
  path.write_bytes(b"1 2 3\n")
  with pytest.raises(error, match=match) as raised:
    mfjax.load_ratings(path, **kwargs)
  assert not isinstance(raised.value, mfjax.RatingsFileError)


# --- IdMaps lookups --------------------------------------------------------------


def test_id_maps_look_up_raw_ids():
  maps = mfjax.IdMaps(np.array([3, 7, 42], np.int64), np.array(["a", "b"]), (1, 5))
  assert maps.user_index([42, 3, 5, -1]).tolist() == [2, 0, -1, -1]
  assert maps.user_index(np.array(["7", "x", "42"])).tolist() == [1, -1, 2]
  assert maps.item_index(["b", "c", "a"]).tolist() == [1, -1, 0]
  assert maps.item_index([1]).tolist() == [-1]  # 1 is no text id "1".
  assert maps.user_index(np.array([[7, 0], [3, 42]])).tolist() == [[1, -1], [0, 2]]
  # Ids of mixed kinds, and one beyond int64: each looked up on its own.
  assert maps.user_index(np.array([7, "x", 2**70, 42.0], object)).tolist() == [
    1,
    -1,
    -1,
    2,
  ]


# --- robustness: raw ids round-trip through the id maps (property) --------------

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


def _write_lines(path, lines, sep, ending, header, timestamps):
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


@pytest.mark.robustness
@pytest.mark.filterwarnings("ignore::mfjax.data.loaders.ScaleWarning")  # Drawn ratings.
@hypothesis_settings(80)
@given(st.data())
@pytest.mark.slow
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
  path = _write_lines(scratch / "train.txt", lines, sep, ending, header, timestamps)
  ratings, maps = mfjax.load_ratings(path, duplicates=policy, **kwargs)

  _check_valid(ratings, maps)
  assert maps.columns == textparse.ROLES[: 3 + timestamps]
  assert maps.header == (textparse.ROLES[: 3 + timestamps] if header else ())
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
  path = _write_lines(scratch / "test.txt", test_lines, sep, ending, header, timestamps)
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


# --- robustness: loader fuzzing ---------------------------------------------------


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
  RatingsFileError as ``(None, None, error)``; anything else propagates.

  But for the ScaleWarning of a rating far from the others, which fuzzed ratings
  ("1e30" among "1" and "2") are meant to give (test_scale_warning_*), and
  the IdSpellingWarning of fuzzed ids such as "007" (tested on its own).
  """
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    warnings.simplefilter("ignore", loaders.ScaleWarning)
    warnings.simplefilter("ignore", textparse.IdSpellingWarning)
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
  for fmt in textparse.FORMATS:
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
_HEADER = ("userId", "movieId", "rating", "timestamp")


def _draw_row(draw, pick, ids, ncols, sep, blanks):
  """One line of a delimited file; about one in ten has a defect."""
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
  return "" if defect == "blank" else " " * (defect == "indent") + row


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
    rows.append(sep.join(_HEADER[:ncols]))
  for _ in range(draw(st.integers(1, 8))):
    rows.append(_draw_row(draw, pick, ids, ncols, sep, blanks))
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


@pytest.mark.robustness
@hypothesis_settings(300)
@given(
  content=_delimited_files(),
  duplicates=st.sampled_from(("last", "mean", "error")),
  sep=st.sampled_from(_EXPLICIT_SEPS),
)
@pytest.mark.slow
def test_loader_fuzz_delimited_text(scratch, content, duplicates, sep):
  _fuzz_one(scratch / "fuzz.txt", content, duplicates, sep, strict=True)


@pytest.mark.robustness
@hypothesis_settings(200)
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


@pytest.mark.robustness
@hypothesis_settings(150)
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
@pytest.mark.slow
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


@pytest.mark.robustness
@hypothesis_settings(150)
@given(file=_files_with_one_odd_field())
def test_loader_fuzz_one_odd_field(scratch, file):
  _check_odd_field(scratch / "odd_field.txt", *file)


@pytest.mark.robustness
@hypothesis_settings(150)
@given(file=_files_with_one_odd_field(buggy=True))
@example(file=(b"1,2,3\ninf,2,4\n", 2))
@example(file=(b"1,2,3\n1,3,1e300\n", 2))
@example(file=(b"1,2,3,x\n", 1))
@example(file=(b"1,2,3\n+4,2,3\n,2,3\n", 3))
def test_loader_fuzz_one_odd_field_with_known_bugs(scratch, file):
  _check_odd_field(scratch / "odd_field_bugs.txt", *file)


# load_ratings reads a file in blocks of 4 MiB (1 << 22 bytes, mfjax.data.loaders) and
# parses each block on its own. There is no public way to shrink the blocks, so
# these tests make files a little over 4 MiB: well-formed filler lines, with ids
# of their own, put a block boundary where the test wants it. (Were the block
# size to change, they would still pass but test the boundary less; a public
# block-size knob would let them use small files and more examples.)
_BLOCK_BYTES = 1 << 22


def _filler(length, sep, ncols, text_ids, rating, ending):
  """Well-formed lines of exactly ``length`` bytes: ``(bytes, number of lines)``.

  Each line rates a pair of its own, with ids that no fuzzed line has (integers of
  9 or 10 digits; text ids of 100 or 101 characters, ``f0...`` or ``g0...``), and
  ``rating``, so that they change neither the scale nor the duplicates.
  """

  def ids(j, wide):
    if text_ids:  # Long: text is parsed line by line in Python; fewer lines.
      return f"g{j:0100d}" if wide else f"f{j:099d}"
    return str((10**9 if wide else 10**8) + j)

  tail = [rating] + ["0"] * (ncols == 4)
  base = len(sep.join([ids(0, False), ids(0, False), *tail]) + ending)
  n = length // (base + 1)
  extra = length - n * base  # Characters to add: one per wide id, <= 2n.
  assert n >= base and 0 <= extra <= 2 * n
  lines = [
    sep.join([ids(j, 2 * j < extra), ids(j, 2 * j + 1 < extra), *tail]) + ending
    for j in range(n)
  ]
  content = "".join(lines).encode()
  assert len(content) == length
  return content, n


def _is_filler(raw):
  if isinstance(raw, str):
    return raw[:1] in ("f", "g") and raw[1:].isdigit()
  return 10**8 <= raw < 2 * 10**9


def _across_a_block_boundary(head, tail, extra, **filler):
  """``head`` + filler + ``tail``, a block ending ``extra`` bytes into ``tail``.

  Returns ``(content, number of filler lines)``.
  """
  lines, n = _filler(_BLOCK_BYTES - len(head) - extra, **filler)
  return head + lines + tail, n


@st.composite
def _files_to_split(draw):
  """A delimited file to read across a block boundary.

  Its first two lines (those the loader sniffs the format from) are well formed;
  the others may have defects, but no file has blank lines or stray bytes.
  Returns ``(head, tail, extra, filler arguments)``.
  """
  pick = lambda tokens, more=(): draw(st.sampled_from(tokens))
  sep = pick(_FUZZ_SEPS)
  ncols = draw(st.sampled_from((3, 4)))
  text_ids = draw(st.booleans())
  ids = _TEXT_ID_TOKENS if text_ids else _INT_ID_TOKENS
  # No space inside a first-line id: with a whitespace separator it would make
  # another column than the filler's.
  head_ids = tuple(t for t in ids if " " not in t.strip())
  head = [sep.join(_HEADER[:ncols])] if draw(st.booleans()) else []
  while len(head) < 2:
    row = [pick(head_ids), pick(head_ids), pick(_RATING_TOKENS)]
    head.append(sep.join(row + [pick(_TIMESTAMP_TOKENS)] * (ncols == 4)))
  rating = head[-1].split(sep)[2].strip()  # The first data line's.
  rows = [
    _draw_row(draw, pick, ids, ncols, sep, blanks=False)
    for _ in range(draw(st.integers(1, 8)))
  ]
  ending = draw(st.sampled_from(("\n", "\r\n")))
  head = "".join(row + ending for row in head).encode()
  tail = (ending.join(rows) + draw(st.sampled_from((ending, "")))).encode()
  extra = draw(st.integers(0, len(tail)))
  filler = dict(sep=sep, ncols=ncols, text_ids=text_ids, rating=rating, ending=ending)
  return head, tail, extra, filler


def _line_named(error, path):
  named = re.match(re.escape(str(path)) + r"(?::(\d+):)?", str(error))
  assert named is not None, str(error)  # The message starts with the path.
  return named.group(1) and int(named.group(1))


@pytest.mark.robustness
@pytest.mark.slow
@hypothesis_settings(10)
@given(file=_files_to_split())
def test_loader_reads_the_same_across_a_block_boundary(scratch, file):
  """Line numbers, columns and ids carry across blocks, wherever a block ends."""
  head, tail, extra, filler = file
  small, big = scratch / "small.txt", scratch / "big.txt"
  small.write_bytes(head + tail)
  content, n_filler = _across_a_block_boundary(head, tail, extra, **filler)
  big.write_bytes(content)
  expected, got = _load(small), _load(big)
  if expected[2] is not None or got[2] is not None:
    # The same line (the wording may differ: when np.loadtxt fails on a block,
    # the bad line is found by other checks).
    assert got[2] is not None and expected[2] is not None, (got[2], expected[2])
    line = _line_named(expected[2], small)
    if line and line > 2:  # After the head, past the filler.
      line += n_filler
    assert _line_named(got[2], big) == line, (str(got[2]), str(expected[2]))
    return
  (ratings, maps, _), (want, want_maps, _) = got, expected
  users = maps.users[np.asarray(ratings.users)]
  items = maps.items[np.asarray(ratings.items)]
  mine = np.array([not _is_filler(u) for u in users.tolist()], bool)
  assert len(ratings) - mine.sum() == n_filler
  np.testing.assert_array_equal(users[mine], want_maps.users[np.asarray(want.users)])
  np.testing.assert_array_equal(items[mine], want_maps.items[np.asarray(want.items)])
  np.testing.assert_array_equal(np.asarray(ratings.values)[mine], want.values)
  for name in ("users", "items"):
    ids, want_ids = getattr(maps, name), getattr(want_maps, name)
    assert ids.dtype.kind == want_ids.dtype.kind  # str ids: U10 and U1 alike.
    own = np.array([not _is_filler(x) for x in ids.tolist()], bool)
    np.testing.assert_array_equal(ids[own], want_ids)
  assert (maps.scale, maps.n_lines, maps.n_duplicates) == (
    want_maps.scale,
    want_maps.n_lines + n_filler,
    want_maps.n_duplicates,
  )


_INT_FILLER = dict(sep=",", ncols=3, text_ids=False, rating="1", ending="\n")


@pytest.mark.robustness
@pytest.mark.parametrize(
  "head, tail, extra, line",
  [
    # The first block ends with a blank line: "1,1,1\n" ... "\n" | "2,2,2\n".
    (b"1,1,1\n1,2,1\n", b"\n2,2,2\n", 1, 3),
    # The first line of the second block is bad, or the last one of the first.
    (b"1,1,1\n1,2,1\n", b"3,x,1\n", 0, 3),
    (b"1,1,1\n1,2,1\n", b"3,x,1\n", 6, 3),
    # A bad line cut in two by the block boundary, and one after it.
    (b"1,1,1\n1,2,1\n", b"3,3,3,3\n", 3, 3),
    (b"1,1,1\n1,2,1\n", b"3,3,3\n4,4,nan\n", 3, 4),
    # A carriage return inside a line, just after the boundary or before it.
    (b"1,1,1\n1,2,1\n", b"3,3\r,3\n", 0, 3),
    (b"1,1,1\n1,2,1\n", b"3,3\r,3\n", 4, 3),
  ],
)
@pytest.mark.slow
def test_errors_name_the_line_across_a_block_boundary(scratch, head, tail, extra, line):
  path = scratch / "block_end.txt"
  content, n_filler = _across_a_block_boundary(head, tail, extra, **_INT_FILLER)
  path.write_bytes(content)
  _, _, error = _load(path)
  assert _line_named(error, path) == line + n_filler, str(error)


# "用户,ü,1\r\n": the boundary inside "用" (3 bytes), or between "\r" and "\n".
@pytest.mark.robustness
@pytest.mark.parametrize("extra", [2, 12])
def test_text_cut_by_a_block_boundary(scratch, extra):
  text = dict(_INT_FILLER, text_ids=True, ending="\r\n")
  head, tail = "ü,用户,1\r\nß,用户,1\r\n".encode(), "用户,ü,1\r\n".encode()
  content, n_filler = _across_a_block_boundary(head, tail, extra, **text)
  (scratch / "cut.txt").write_bytes(content)
  ratings, maps = mfjax.load_ratings(scratch / "cut.txt")
  assert (len(ratings), maps.n_lines) == (n_filler + 3,) * 2
  users = maps.users[np.asarray(ratings.users)].tolist()
  items = maps.items[np.asarray(ratings.items)].tolist()
  assert (users[:2], items[:2]) == (["ü", "ß"], ["用户", "用户"])
  assert (users[-1], items[-1]) == ("用户", "ü")
  np.testing.assert_array_equal(ratings.values, np.ones(n_filler + 3, np.float32))


@pytest.mark.robustness
def test_wide_ids_in_a_later_block(scratch):
  """Blocks of int32 ids, then one of int64 ids: no id is truncated."""
  head, tail = b"1,1,1\n1,2,1\n", b"4294967296,2,1\n"
  content, n_filler = _across_a_block_boundary(head, tail, 5, **_INT_FILLER)
  (scratch / "wide.txt").write_bytes(content)
  ratings, maps = mfjax.load_ratings(scratch / "wide.txt")
  assert maps.users.dtype == np.int64 and maps.users[-1] == 4294967296
  assert maps.users[np.asarray(ratings.users)][-1] == 4294967296


# Bad files beyond those of test_malformed_files_name_file_and_line (which reads
# its files in every format too).
@pytest.mark.robustness
@pytest.mark.parametrize(
  "content",
  [
    b"\r\n",
    b"userId,movieId,rating,timestamp\r\n\r\n",
    b"\t \t\n",
    b"1,2,3\n4,5,-inf\n",
    b"\x00\x01",
    b"1,2,3\n\xff\xfe,2,3\n",
    "1,2,3\n\u00e9".encode("latin-1"),
    b"1,2,3\n1,2",  # Truncated last line.
  ],
)
def test_documented_errors_of_bad_files(scratch, content):
  path = scratch / "bad.txt"
  path.write_bytes(content)
  for fmt in textparse.FORMATS:
    _, _, error = _load(path, format=fmt)
    assert isinstance(error, mfjax.RatingsFileError), fmt
    _check_error(error, path, content, strict=True)


@pytest.mark.robustness
@pytest.mark.parametrize(
  "text, users, items, values",
  [
    ("User\tItem\tRating\n1\t10\t4\n", [1], [10], [4]),
    ("1 10  4\n2\t10 \t3\n", [1, 2], [10], [4, 3]),  # Any run of whitespace.
    ("1;10;4\n", [1], [10], [4]),
    ("1|10|4\n", [1], [10], [4]),
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


# --- robustness: known loader bugs, fixed ---------------------------------------


def _load_text(path, content, **kwargs):
  path.write_bytes(content)
  return _load(path, **kwargs)


@pytest.mark.robustness
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


@pytest.mark.robustness
def test_byte_order_mark_is_not_part_of_the_first_id(scratch):
  ratings, maps, error = _load_text(scratch / "bom.txt", _BOM + b"1,2,3\n1,3,4\n")
  assert error is None, error
  assert maps.users.tolist() == [1] and maps.items.tolist() == [2, 3]


@pytest.mark.robustness
@pytest.mark.parametrize("content", [b"1,2,3\n1,3,1e300\n", b"a,b,3\na,c,-1e39\n"])
def test_ratings_beyond_float32_are_rejected_without_warnings(scratch, content):
  _, _, error = _load_text(scratch / "big.txt", content)
  assert error is not None and "big.txt:2: " in str(error)


@pytest.mark.robustness
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


@pytest.mark.robustness
@pytest.mark.parametrize("first", ["\u2460,\u2461", "\u0661,\u0662", "\u00b2,\u00b3"])
def test_non_ascii_digit_ids_are_text(scratch, first):
  content = f"{first},3\nb,c,4\n".encode()
  ratings, maps, error = _load_text(scratch / "digits.txt", content)
  assert error is None, error
  assert maps.users.dtype.kind == "U" and first.split(",")[0] in maps.users.tolist()


@pytest.mark.robustness
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


@pytest.mark.robustness
def test_fractional_ids_are_unknown_to_integer_maps(scratch):
  _, maps, _ = _load_text(scratch / "train.txt", b"1,2,3\n5,6,4\n")
  assert maps.user_index([5.0]).tolist() == [1]
  assert maps.user_index([1.5, 5.5]).tolist() == [mfjax.UNKNOWN] * 2


@pytest.mark.robustness
def test_multi_character_separators(scratch):
  ratings, maps, error = _load_text(
    scratch / "sep.txt", b"1||2||3\n4||2||5\n", sep="||"
  )
  assert error is None, error
  assert maps.users.tolist() == [1, 4] and maps.items.tolist() == [2]


@pytest.mark.robustness
@pytest.mark.parametrize(
  "content, line",
  [(b"a,b,1\n\nc,d,2", 2), (b"1,1,1\n\n\n2,2,2", 2), (b"1,1,1\n\n2,2,5,x", 2)],
)
def test_empty_lines_are_rejected_wherever_they_are(scratch, content, line):
  _, _, error = _load_text(scratch / "empty.txt", content)
  assert error is not None and f"empty.txt:{line}: " in str(error), error


@pytest.mark.robustness
@pytest.mark.parametrize(
  "line", [b"2,2,3e38\n", b"a,b,1.390586650985881\n", b"1,1,-3.3e38\n"]
)
def test_mean_of_duplicates(scratch, line):
  ratings, maps, error = _load_text(scratch / "mean.txt", line * 3, duplicates="mean")
  assert error is None, error
  value = float(line.split(b",")[2])
  assert ratings.values.tolist() == [np.float32(value)] and maps.n_duplicates == 2
  assert maps.scale[0] <= ratings.values[0] <= maps.scale[1]


# In memory: arrays, frames, SciPy sparse, open and compressed files.


def _same_load(a, b):
  """Two (Ratings, IdMaps) results are identical, field by field."""
  (ra, ma), (rb, mb) = a, b
  for field in ("users", "items", "values"):
    np.testing.assert_array_equal(getattr(ra, field), getattr(rb, field))
  assert ra.shape == rb.shape
  np.testing.assert_array_equal(ma.users, mb.users)
  np.testing.assert_array_equal(ma.items, mb.items)
  assert ma.users.dtype.kind == mb.users.dtype.kind
  assert ma.items.dtype.kind == mb.items.dtype.kind
  assert (ma.scale, ma.n_lines, ma.n_duplicates, ma.n_unknown, ma.columns) == (
    mb.scale,
    mb.n_lines,
    mb.n_duplicates,
    mb.n_unknown,
    mb.columns,
  )


ROWS = [
  (196, 242, 3.0),
  (186, 302, 3.0),
  (22, 377, 1.0),
  (244, 51, 2.0),
  (196, 51, 5.0),
  (22, 242, 4.5),
  (196, 242, 4.0),  # A duplicate of the first pair.
]


@pytest.mark.parametrize("duplicates", ["last", "mean"])
@pytest.mark.parametrize("ids", ["int", "str"])
def test_ratings_from_arrays_equal_load_ratings(tmp_path, duplicates, ids):
  rows = [(f"u{u}", f"i{i}", r) if ids == "str" else (u, i, r) for u, i, r in ROWS]
  path = _write(tmp_path, "r.tsv", "".join(f"{u}\t{i}\t{r}\n" for u, i, r in rows))
  users, items, values = zip(*rows, strict=True)
  from_file = mfjax.load_ratings(path, duplicates=duplicates)
  _same_load(
    mfjax.ratings_from_arrays(users, items, values, duplicates=duplicates), from_file
  )
  _same_load(
    mfjax.ratings_from_arrays(
      np.array(users), np.array(items), np.array(values), duplicates=duplicates
    ),
    from_file,
  )
  frame = {"u": list(users), "i": list(items), "r": list(values)}
  _same_load(
    mfjax.ratings_from_frame(
      frame, user="u", item="i", rating="r", duplicates=duplicates
    ),
    from_file,
  )
  # Test ratings against the training maps: unknown ids are -1 and counted.
  test_rows = [rows[0], ("9999" if ids == "str" else 9999, rows[1][1], 2.0)]
  test_path = _write(
    tmp_path, "t.tsv", "".join(f"{u}\t{i}\t{r}\n" for u, i, r in test_rows)
  )
  maps = from_file[1]
  _same_load(
    mfjax.ratings_from_arrays(*zip(*test_rows, strict=True), id_maps=maps),
    mfjax.load_ratings(test_path, id_maps=maps),
  )


class _Column:
  """A column of a frame-like table that is not a dict (as pandas and polars)."""

  def __init__(self, values):
    self.values = values

  def to_numpy(self):
    return np.asarray(self.values)


class _Frame:
  def __init__(self, **columns):
    self.columns = list(columns)
    self._data = {name: _Column(v) for name, v in columns.items()}

  def __getitem__(self, name):
    return self._data[name]


def test_ratings_from_frame_reads_named_columns_of_a_frame():
  frame = _Frame(movieId=[10, 20, 10], userId=[1, 1, 2], rating=[4.0, 3.0, 5.0])
  ratings, maps = mfjax.ratings_from_frame(frame, user="userId", item="movieId")
  assert isinstance(maps, mfjax.IdMaps) and maps.columns == ("user", "item", "rating")
  assert maps.header == ("userId", "movieId", "rating")
  np.testing.assert_array_equal(maps.users, [1, 2])
  np.testing.assert_array_equal(maps.items, [10, 20])
  np.testing.assert_array_equal(ratings.to_dense(), [[4.0, 3.0], [5.0, 0.0]])
  # Unnamed, the columns are found as load_ratings finds a header's.
  found, found_maps = mfjax.ratings_from_frame(frame)
  np.testing.assert_array_equal(found.to_dense(), ratings.to_dense())
  assert found_maps.header == ("userId", "movieId", "rating")
  with pytest.raises(ValueError, match=r"no column 'who'.*\['movieId', 'userId'"):
    mfjax.ratings_from_frame(frame, user="who")
  other = _Frame(a=[1], USER=[1], Rating=[4.0])
  with pytest.raises(ValueError, match=r"no column for the items .*\['a', 'USER'"):
    mfjax.ratings_from_frame(other)
  assert mfjax.ratings_from_frame(other, item="a")[1].header == ("USER", "a", "Rating")
  both = _Frame(userId=[1], user_id=[2], item=[3], rating=[4.0])
  with pytest.raises(
    ValueError, match=r"columns \['userId', 'user_id'\] for the users"
  ):
    mfjax.ratings_from_frame(both)
  exact = _Frame(user=[1], user_id=[2], item=[3], rating=[4.0])  # 0.2's names win.
  assert mfjax.ratings_from_frame(exact)[1].header == ("user", "item", "rating")
  with pytest.raises(TypeError, match="data frame"):
    mfjax.ratings_from_frame([[1, 2, 3.0]])


class NAType:
  """Stands for pandas' NA (``pandas.NA``), known by its type's name: pandas is
  not a dependency of the tests."""

  def __repr__(self):
    return "<NA>"


NA_LIKE = NAType()


@pytest.mark.parametrize(
  "args, kwargs, error, match",
  [
    (([1, 2], [1], [3.0, 4.0]), {}, ValueError, "one length; got 2, 1 and 2"),
    (([], [], []), {}, ValueError, "no ratings"),
    (([1, 2], [1, 2], [3.0, np.nan]), {}, ValueError, "row 1: rating nan"),
    (
      ([1, 2], [1, 2], [3.0, 9.0]),
      {"scale": (1, 5)},
      ValueError,
      r"row 1: rating 9 is outside",
    ),
    (
      ([1, 1], [2, 2], [3.0, 4.0]),
      {"duplicates": "error"},
      ValueError,
      "row 1: duplicate rating of the pair on row 0",
    ),
    (([1, None], [1, 2], [3.0, 4.0]), {}, ValueError, "None: a missing id"),
    (([1.5, 2.0], [1, 2], [3.0, 4.0]), {}, ValueError, r"users\[0\] is 1.5"),
    # Issue 31: 1e19, 2e19 and 3e19 became one user (int64 overflow); a float
    # beyond 2**53 is not one integer; pandas' NA became a user named '<NA>'.
    (
      ([1e19, 2e19, 3e19], [1, 2, 3], [3.0, 4.0, 5.0]),
      {},
      ValueError,
      r"users\[0\] is 1e\+19: a float id beyond 2\*\*53",
    ),
    (([2.0**53 + 2, 1.0], [1, 2], [3.0, 4.0]), {}, ValueError, "beyond 2"),
    (([1, 2**70], [1, 2], [3.0, 4.0]), {}, ValueError, "ids beyond int64"),
    ((np.array(["a", NA_LIKE], object), [1, 2], [3.0, 4.0]), {}, ValueError, "missing"),
    ((np.array(["a", np.nan], object), [1, 2], [3.0, 4.0]), {}, ValueError, "missing"),
    ((np.array(["a", {}], object), [1, 2], [3.0, 4.0]), {}, TypeError, r"got '\{\}'"),
    ((np.array(["a", True], object), [1, 2], [3.0, 4.0]), {}, TypeError, "True"),
    (([True, False], [1, 2], [3.0, 4.0]), {}, TypeError, "not booleans"),
    (([[1, 2]], [1, 2], [3.0, 4.0]), {}, ValueError, "users must be 1-D"),
    (([1, 2], [1, 2], ["a", "b"]), {}, TypeError, "ratings must be 1-D numbers"),
    ((5, [1], [3.0]), {}, TypeError, "users must be a 1-D sequence"),
    (([1], [1], [3.0]), {"duplicates": "first"}, ValueError, "duplicates"),
    (([1], [1], [3.0]), {"id_maps": {}}, TypeError, "id_maps must be mfjax.IdMaps"),
  ],
)
def test_ratings_from_arrays_refuses_bad_input(args, kwargs, error, match):
  with pytest.raises(error, match=match):
    mfjax.ratings_from_arrays(*args, **kwargs)


def test_a_sparse_matrix_of_mostly_empty_rows_or_columns_says_so():
  import scipy.sparse

  from mfjax.data.arrays import EMPTY_WARNING

  # Issue 31: 5M empty users were trained and took 17 GB without a word.
  n = EMPTY_WARNING + 3
  entries = ([4.0, 3.0, 5.0], ([0, 10, n - 1], [0, 1, 2]))
  with pytest.warns(UserWarning, match=f"{n:,} rows but only 3 hold ratings") as seen:
    ratings = mfjax.ratings_from_sparse(scipy.sparse.coo_matrix(entries, shape=(n, 3)))
  assert ratings.n_users == n and "ratings_from_arrays" in str(seen[0].message)
  assert seen[0].filename == __file__  # Where the caller called it.
  flipped = (entries[0], entries[1][::-1])
  with pytest.warns(UserWarning, match=f"{n:,} columns .* each of the {n - 3:,} empty"):
    mfjax.ratings_from_sparse(scipy.sparse.csr_matrix(flipped, shape=(3, n)))
  # As many empty ones as full, or fewer than the threshold: no word.
  half = ([1.0] * n, (np.arange(n) * 2 % (2 * n), np.zeros(n, int)))
  for matrix in (
    scipy.sparse.coo_matrix(half, shape=(2 * n, 1)),
    scipy.sparse.coo_matrix(
      (entries[0], ([0, 10, EMPTY_WARNING - 1], [0, 1, 2])), shape=(EMPTY_WARNING, 3)
    ),
  ):
    mfjax.ratings_from_sparse(matrix)  # filterwarnings = error: none comes.


def test_ratings_from_sparse_keeps_entries_and_shape():
  import scipy.sparse  # jax depends on SciPy, so it is always there.

  dense = np.array([[5.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [4.0, 2.0, 0.0, 0.0]])
  for kind in (
    scipy.sparse.csr_matrix,
    scipy.sparse.csc_matrix,
    scipy.sparse.coo_array,
  ):
    ratings = mfjax.ratings_from_sparse(kind(dense))
    assert ratings.shape == (3, 4)  # The empty row and column stay.
    expected = mfjax.ratings_from_dense(dense)
    for field in ("users", "items", "values"):
      np.testing.assert_array_equal(getattr(ratings, field), getattr(expected, field))
  # Repeated COO entries mean their sum, as in SciPy.
  coo = scipy.sparse.coo_matrix(([1.0, 2.0], ([0, 0], [1, 1])), shape=(1, 2))
  np.testing.assert_array_equal(mfjax.ratings_from_sparse(coo).values, [3.0])
  with pytest.raises(ValueError, match=r"entry \(0, 1\): rating 3 is outside"):
    mfjax.ratings_from_sparse(coo, scale=(1, 2))
  with pytest.raises(ValueError, match="no ratings"):
    mfjax.ratings_from_sparse(scipy.sparse.csr_matrix((2, 3)))
  with pytest.raises(TypeError, match="ratings_from_dense"):
    mfjax.ratings_from_sparse(dense)
  # Issue 31: a row index of 3e9 wrapped to a negative user index (int32).
  huge = scipy.sparse.coo_matrix(([4.0], ([3 * 10**9], [0])), shape=(3 * 10**9 + 1, 1))
  with pytest.raises(ValueError, match=r"at most 2\*\*31 - 1 users and items"):
    mfjax.ratings_from_sparse(huge)


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_compressed_files_load_as_the_plain_file(tmp_path, suffix):
  import bz2
  import gzip
  import lzma

  text = "".join(f"{u}\t{i}\t{r}\n" for u, i, r in ROWS)
  plain = _write(tmp_path, "r.tsv", text)
  opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
  packed = tmp_path / f"r.tsv{suffix}"
  with opener(packed, "wt") as f:
    f.write(text)
  _same_load(mfjax.load_ratings(packed), mfjax.load_ratings(plain))
  broken = tmp_path / f"broken{suffix}"
  broken.write_bytes(packed.read_bytes()[: len(packed.read_bytes()) // 2])
  with pytest.raises(mfjax.RatingsFileError, match=f"broken{suffix}: not a readable"):
    mfjax.load_ratings(broken)
  # A valid header, then a damaged block.
  data = bytearray(packed.read_bytes())
  middle = len(data) // 2
  data[middle : middle + 16] = bytes(16)
  damaged = tmp_path / f"damaged{suffix}"
  damaged.write_bytes(bytes(data))
  with pytest.raises(mfjax.RatingsFileError, match=f"damaged{suffix}: not a readable"):
    mfjax.load_ratings(damaged)


def test_a_gz_whose_deflate_block_is_invalid_is_a_ratings_file_error(tmp_path):
  import gzip

  data = bytearray(gzip.compress(b"1\t2\t3\n" * 100))  # No name: 10-byte header.
  data[10] |= 0b110  # The first block's type: 3, reserved. zlib.error, not OSError.
  path = tmp_path / "bad.tsv.gz"
  path.write_bytes(bytes(data))
  with pytest.raises(mfjax.RatingsFileError, match=r"bad.tsv.gz: not a readable .gz"):
    mfjax.load_ratings(path)


def test_open_files_load_as_the_path(tmp_path):
  import io

  text = "user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in ROWS)
  path = _write(tmp_path, "r.csv", text)
  from_path = mfjax.load_ratings(path)
  _same_load(mfjax.load_ratings(io.StringIO(text)), from_path)
  _same_load(mfjax.load_ratings(io.BytesIO(text.encode())), from_path)
  with open(path) as f:
    _same_load(mfjax.load_ratings(f), from_path)
    assert not f.closed
  with pytest.raises(mfjax.RatingsFileError, match=r"<StringIO>:2: rating 'x'"):
    mfjax.load_ratings(io.StringIO("1,2,3\n4,5,x\n"))
  with pytest.raises(TypeError, match="path must be a file path or an open file"):
    mfjax.load_ratings(42)


# --- hostile files: headers, carriage returns, typos, long lines -----------------

_ROWS_BY_ROLE = [
  {"user": 1, "item": 10, "rating": 4, "timestamp": "1997-12-04", None: "Heat (1995)"},
  {"user": 1, "item": 20, "rating": 3, "timestamp": "1997-12-05", None: "x y"},
  {"user": 2, "item": 10, "rating": 5, "timestamp": "1997-12-06", None: ""},
]


@pytest.mark.parametrize(
  "header, roles",
  [
    ("userId,movieId,rating,timestamp", ("user", "item", "rating", "timestamp")),
    ("movieId,userId,rating,timestamp", ("item", "user", "rating", "timestamp")),
    ("RATING,ITEM_ID,USER_ID", ("rating", "item", "user")),
    ("ts,stars,product_id,uid", ("timestamp", "rating", "item", "user")),
    ("iid,title,userID,score,genres", ("item", None, "user", "rating", None)),
    ("date,Movie_Id,User,Value", ("timestamp", "item", "user", "rating")),
    ("itemId,ratings,time,user_id", ("item", "rating", "timestamp", "user")),
  ],
)
@pytest.mark.parametrize("text_ids", [False, True])
def test_header_names_say_which_column_is_which(tmp_path, header, roles, text_ids):
  """Columns by name, in any order; others (and timestamps) are not read."""
  rows = [dict(row) for row in _ROWS_BY_ROLE]
  if text_ids:
    for row in rows:
      row["user"], row["item"] = f"u{row['user']}", f"i{row['item']}"
  text = (
    header + "\n" + "".join(",".join(str(r[k]) for k in roles) + "\n" for r in rows)
  )
  ratings, maps = mfjax.load_ratings(_write(tmp_path, "h.csv", text))
  assert maps.columns == roles and maps.header == tuple(header.split(","))
  users, items = ([1, 2], [10, 20]) if not text_ids else (["u1", "u2"], ["i10", "i20"])
  assert maps.users.tolist() == users and maps.items.tolist() == items
  np.testing.assert_array_equal(ratings.to_dense(), [[4, 3], [5, 0]])
  assert maps.n_lines == 3 and maps.scale == (3, 5)
  # A line with a column too many or too few is still an error, with its line.
  bad = text + ",".join(["1"] * (len(roles) + 1)) + "\n"
  with pytest.raises(
    mfjax.RatingsFileError, match=rf"h2\.csv:5: expected {len(roles)} "
  ):
    mfjax.load_ratings(_write(tmp_path, "h2.csv", bad))


@pytest.mark.parametrize(
  "first", ["u,i,r", "a,b,c", "user,movie,rating", "who,what,4x", "user_id,book,stars"]
)
def test_a_header_of_unknown_names_is_read_in_the_usual_order(tmp_path, first):
  # No known name contradicts user, item, rating: the usual order, said.
  path = _write(tmp_path, "names.csv", first + "\n1,2,3\n4,5,1\n")
  ratings, maps = mfjax.load_ratings(path)
  assert maps.columns == ("user", "item", "rating")
  assert maps.header == tuple(first.split(","))
  np.testing.assert_array_equal(maps.users[np.asarray(ratings.users)], [1, 4])
  np.testing.assert_array_equal(maps.items[np.asarray(ratings.items)], [2, 5])


@pytest.mark.parametrize(
  "first, missing",
  [
    ("userId,itemId", "rating"),
    ("name", "user, item or rating"),
    ("movieId,a,b", "user or rating"),  # A known name where the user would be.
    ("rating,x,y", "user or item"),
    ("book,user,rating", "item"),
  ],
)
def test_a_header_that_does_not_say_the_roles_is_an_error_naming_line_1(
  tmp_path, first, missing
):
  path = _write(tmp_path, "names.csv", first + "\n1,2,3\n")
  with pytest.raises(mfjax.RatingsFileError) as raised:
    mfjax.load_ratings(path)
  message = str(raised.value)
  assert message.startswith(
    f"{path}:1: a header whose names do not say which column is the {missing}: "
  ), message
  assert repr(first) in message and "--columns on the command line" in message
  for names in textparse.COLUMN_NAMES.values():
    assert ", ".join(names) in message
  with pytest.raises(mfjax.RatingsFileError, match=r"two user columns \('user' and"):
    mfjax.load_ratings(_write(tmp_path, "twice.csv", "user,uid,rating\n1,2,3\n"))


@pytest.mark.parametrize(
  "content, match",
  [
    # Numbers on the first line: data, never a header to drop.
    ("1,2,abc\n3,4,5\n", r"first\.csv:1: rating 'abc' is not a number: '1,2,abc'"),
    ("1,2,rating\n3,4,5\n", r"first\.csv:1: rating 'rating' is not a number"),
    ("1,2,3,time\n3,4,5,6\n", r"first\.csv:1: timestamp 'time' is not a number"),
    ("movieId,b,x\nc,d,4\n", r"first\.csv:1: a header whose names do not say"),
    # A header is the first line only.
    ("1,2,3\nuser,item,rating\n", r"first\.csv:2: ids must be integers"),
    ("a,b,3\nuser,item,rating\n", r"first\.csv:2: rating 'rating' is not a number"),
  ],
)
def test_a_first_line_is_a_header_only_if_it_looks_like_one(tmp_path, content, match):
  with pytest.raises(mfjax.RatingsFileError, match=match):
    mfjax.load_ratings(_write(tmp_path, "first.csv", content))


def test_columns_declares_which_column_is_which(tmp_path):
  path = _write(tmp_path, "c.csv", "10,1,4\n20,1,3\n10,2,5\n")
  ratings, maps = mfjax.load_ratings(path, columns=["item", "user", "rating"])
  assert maps.columns == ("item", "user", "rating") and maps.header == ()
  assert maps.users.tolist() == [1, 2] and maps.items.tolist() == [10, 20]
  np.testing.assert_array_equal(ratings.to_dense(), [[4, 3], [5, 0]])
  # A header of any names is skipped; None marks a column not read.
  text = "i;u;r;title\n10;1;4;Heat\n20;1;3;Up\n10;2;5;Heat\n"
  roles = ("item", "user", "rating", None)
  again, maps = mfjax.load_ratings(_write(tmp_path, "d.csv", text), columns=roles)
  assert maps.columns == roles and maps.header == ("i", "u", "r", "title")
  np.testing.assert_array_equal(again.to_dense(), ratings.to_dense())
  with pytest.raises(mfjax.RatingsFileError, match=r"c\.csv:1: expected 4 columns"):
    mfjax.load_ratings(path, columns=roles)
  # Under columns=, a timestamp without a header must be a number, as by default.
  bad = _write(tmp_path, "e.csv", "10,1,4,x\n")
  with pytest.raises(mfjax.RatingsFileError, match=r"e\.csv:1: timestamp 'x'"):
    mfjax.load_ratings(bad, columns=("item", "user", "rating", "timestamp"))


@pytest.mark.parametrize(
  "content, line",
  [
    (b"1,2,4\r5\n3,4,5\n", 1),  # Would read as rating 45.
    (b"1\r,2,4\n3,4,5\n", 1),
    (b"1,2,4\n3,4,5\r6\n", 2),
    (b"1,2,4\r\n3\r,4,5\r\n", 2),
    (b"a,b,4\nc,d,\r5\n", 2),  # Text ids.
    (b"user,item,rating\r\n1,2,3\r\n1,3,4\r\r\n", 3),
    (b"user\r,item,rating\n1,2,3\n", 1),
    (b"1,2,3\r4,5,6\r", 1),  # Old Mac line ends.
    (b"1,2,3\n4,5,6\r7", 2),  # A last line without a newline.
  ],
)
def test_a_carriage_return_inside_a_line_is_an_error(scratch, content, line):
  path = scratch / "cr.txt"
  path.write_bytes(content)
  for fmt in ("auto", "delimited"):  # ml-1m, say, reads "1,2,3" as one column.
    with pytest.raises(mfjax.RatingsFileError, match=rf"cr\.txt:{line}: a carriage"):
      mfjax.load_ratings(path, format=fmt)
  with pytest.raises(mfjax.RatingsFileError, match=rf"<BytesIO>:{line}: a carriage"):
    mfjax.load_ratings(io.BytesIO(content))


@pytest.mark.parametrize(
  "content",
  [b"1,2,4\r\n3,4,5\r\n", b"1,2,4\r\n3,4,5\r", b"user,item,rating\r\n1,2,4\r\n3,4,5"],
)
def test_crlf_line_ends_are_fine(scratch, content):
  ratings, maps, error = _load_text(scratch / "crlf.txt", content)
  assert error is None, error
  assert maps.users.tolist() == [1, 3] and ratings.values.tolist() == [4, 5]


def _typo_file(tmp_path, rating):
  lines = [f"{u},{i},{1 + (u + i) % 5}" for u in range(4) for i in range(5)]
  lines[13] = f"2,3,{rating}"  # Line 14.
  return _write(tmp_path, "typo.csv", "\n".join(lines) + "\n")


@pytest.mark.parametrize(
  "rating, side, scale", [(44, "above", (1, 44)), (-40, "below", (-40, 5))]
)
def test_scale_warning_names_the_line_of_a_rating_far_from_the_others(
  tmp_path, rating, side, scale
):
  path = _typo_file(tmp_path, rating)
  match = (
    rf"typo\.csv:14: rating {rating} lies far {side} the others \(1 to 5\): a typo\?"
    rf" It makes the scale \({scale[0]}, {scale[1]}\)"
  )
  with pytest.warns(loaders.ScaleWarning, match=match) as caught:
    _, maps = mfjax.load_ratings(path)
  assert maps.scale == scale and caught[0].filename == __file__
  # A declared scale: the rating is an error naming its line and value.
  declared = rf"typo\.csv:14: rating {rating} is outside the declared scale \[1, 5\]"
  with pytest.raises(mfjax.RatingsFileError, match=declared):
    mfjax.load_ratings(path, scale=(1, 5))
  mfjax.load_ratings(path, scale=scale)  # Declared: no warning (they are errors).
  # Against training maps the scale is the training one; still a warning.
  with pytest.warns(loaders.ScaleWarning, match=r"typo\.csv:14: .*a typo\? Declare"):
    mfjax.load_ratings(path, id_maps=maps)
  # The same ratings in memory: the row is named.
  users, items, values = zip(
    *(map(float, line.split(",")) for line in path.read_text().split()), strict=True
  )
  with pytest.warns(loaders.ScaleWarning, match=rf"^row 13: rating {rating} lies") as w:
    mfjax.ratings_from_arrays(users, items, values)
  assert w[0].filename == __file__
  frame = {"user": users, "item": items, "rating": values}
  with pytest.raises(ValueError, match=rf"row 13: rating {rating} is outside"):
    mfjax.ratings_from_frame(frame, scale=(1, 5))
  with pytest.warns(loaders.ScaleWarning, match="row 13"):
    mfjax.ratings_from_frame(frame)


@pytest.mark.parametrize(
  "values",
  [
    [1, 2, 3, 4, 5] * 4,
    [1] * 19 + [5],  # The others have no range: nothing to compare with.
    [1, 2] * 4 + [44],  # Under 10 ratings.
    [1, 2, 3, 4, 5] * 400 + [44] * 3,  # 3 in 2003: more than one in a thousand.
    list(range(1, 11)) * 2 + [25],  # Not twice the others' range away.
    [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0] * 3,
  ],
)
def test_no_scale_warning_for_ratings_near_the_others(values):
  n = len(values)
  mfjax.ratings_from_arrays(np.arange(n), np.arange(n) % 7, values)  # Warnings fail.


def test_loaded_maps_save_in_a_model_file_as_before(tmp_path):
  path = _write(tmp_path, "r.csv", "movieId,userId,rating\n10,1,4\n20,1,3\n10,2,5\n")
  ratings, maps = mfjax.load_ratings(path)
  assert isinstance(maps, mfjax.IdMaps)
  params = random_params(0, ratings.n_users, ratings.n_items, 2, mean=3.5)
  mfjax.save(tmp_path / "m.npz", mfjax.Model(params, maps))
  loaded = mfjax.load(tmp_path / "m.npz").id_maps
  np.testing.assert_array_equal(loaded.users, maps.users)
  np.testing.assert_array_equal(loaded.items, maps.items)
  assert (loaded.scale, loaded.n_lines) == (maps.scale, maps.n_lines)


def _write_long_line(path, head, length, tail=b"\n"):
  """``head``, then ``length`` bytes of "9", then ``tail``, written in 1 MiB pieces."""
  with open(path, "wb") as f:
    f.write(head)
    piece = b"9" * (1 << 20)
    for start in range(0, length, len(piece)):
      f.write(piece[: length - start])
    f.write(tail)
  return path


def test_a_50_mb_line_is_refused_in_bounded_memory(tmp_path):
  path = _write_long_line(tmp_path / "one_line.csv", b"1,2,", 50 << 20, b"")
  tracemalloc.start()
  try:
    with pytest.raises(mfjax.RatingsFileError) as raised:
      mfjax.load_ratings(path)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  message = str(raised.value)
  assert message.startswith(f"{path}:1: a line over 65,536 bytes"), message
  assert len(message) < 400 and "'1,2,999" in message
  assert peak < path.stat().st_size / 5, peak


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_a_10_mb_field_is_refused_with_its_line(tmp_path, suffix):
  import gzip

  head = b"1,2,3\n2,2,4\n3,"
  path = _write_long_line(tmp_path / "field.csv", head, 10 << 20, b",5\n4,4,4\n")
  if suffix:
    packed = tmp_path / "field.csv.gz"
    packed.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    path = packed
  with pytest.raises(mfjax.RatingsFileError) as raised:
    mfjax.load_ratings(path)
  assert str(raised.value).startswith(f"{path}:3: a line over 65,536 bytes")
  assert len(str(raised.value)) < 400


def test_the_line_limit_is_exact(scratch):
  limit = textparse.MAX_LINE_BYTES
  longest = b"a" * (limit - len(b",b,1")) + b",b,1"
  assert len(longest) == limit
  ratings, maps, error = _load_text(scratch / "limit.txt", b"c,d,2\n" + longest + b"\n")
  assert error is None and len(maps.users[0]) == limit - 4
  _, _, error = _load_text(scratch / "limit.txt", b"c,d,2\n" + b"a" + longest + b"\n")
  assert str(error).startswith(f"{scratch / 'limit.txt'}:2: a line over 65,536")


@pytest.mark.parametrize(
  "content, line",
  [
    (b"1,2,3\n1,2," + b"x" * 60000 + b"\n", 2),
    (b"1,2,3\n1,2,3," + b"x" * 60000 + b"\n", 2),
    (b"a,b,3\n" + b"c" * 60000 + b",d,x\n", 2),
    (b"1,2,3," + b"x" * 60000 + b"\n", 1),
    (b"item," + b"n" * 60000 + b",c\n1,2,3\n", 1),
    (b"1,2,3\r" + b"x" * 60000 + b"\n", 1),
    (b"user,user," + b"r" * 60000 + b"\n1,2,3\n", 1),
  ],
)
def test_errors_quote_at_most_80_characters_of_a_line(scratch, content, line):
  path = scratch / "quote.txt"
  _, _, error = _load_text(path, content)
  message = str(error)
  assert message.startswith(f"{path}:{line}: "), message
  # 77 characters of the line at most (the list of recognised header names makes
  # that message longer than the others).
  assert len(message) < 600 and not re.search(r"([nrxc])\1{77}", message), message


def _lines_with_repeats(n=6000, seed=0, strings=False):
  rng = np.random.default_rng(seed)
  users, items = rng.integers(0, 40, n), rng.integers(0, 25, n)
  ratings = rng.integers(1, 11, n) / 2
  name = (lambda x: f"u{x}") if strings else str
  rows = [f"{name(u)},{i},{r}" for u, i, r in zip(users, items, ratings, strict=True)]
  return "userId,movieId,rating\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize("duplicates", ["last", "mean"])
@pytest.mark.parametrize("strings", [False, True])
def test_folding_repeated_pairs_while_streaming_gives_the_whole_files_result(
  duplicates, strings, monkeypatch
):
  # Issue 31: a compressed file of identical lines held every line (9.5 GB
  # for 600 MB of them). Folded every 500 lines, the result is the one read
  # whole: the same pairs, ratings, order, line and duplicate counts.
  text = _lines_with_repeats(strings=strings)
  whole, whole_maps = mfjax.load_ratings(io.StringIO(text), duplicates=duplicates)
  monkeypatch.setattr(folding, "FOLD_ENTRIES", 500)
  folded, maps = mfjax.load_ratings(io.StringIO(text), duplicates=duplicates)
  for field in ("users", "items"):
    np.testing.assert_array_equal(getattr(folded, field), getattr(whole, field))
  np.testing.assert_allclose(folded.values, whole.values, rtol=1e-6)
  assert (maps.n_lines, maps.n_duplicates) == (
    whole_maps.n_lines,
    whole_maps.n_duplicates,
  )
  assert maps.n_lines == 6000 and maps.n_duplicates == 6000 - len(whole)
  np.testing.assert_array_equal(maps.users, whole_maps.users)


def test_a_bad_rating_on_a_line_a_fold_drops_is_still_named(monkeypatch):
  monkeypatch.setattr(folding, "FOLD_ENTRIES", 100)
  lines = ["1,1,3"] * 150 + ["1,1,9"] + ["1,1,3"] * 150  # Line 151 is outside.
  with pytest.raises(mfjax.RatingsFileError, match=r":151: rating 9 is outside"):
    mfjax.load_ratings(io.StringIO("\n".join(lines) + "\n"), scale=(1, 5))


@pytest.mark.slow
def test_a_compressed_file_of_identical_lines_is_read_in_memory_of_its_pairs(
  tmp_path, monkeypatch
):
  import gzip

  n = 300_000
  path = tmp_path / "same.tsv.gz"
  path.write_bytes(gzip.compress(b"7\t3\t5\n" * n, compresslevel=1))
  monkeypatch.setattr(folding, "FOLD_ENTRIES", 1 << 12)
  monkeypatch.setattr(textparse, "CHUNK_BYTES", 1 << 15)  # Small parser blocks.
  tracemalloc.start()
  try:
    ratings, maps = mfjax.load_ratings(path)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert (len(ratings), maps.n_lines, maps.n_duplicates) == (1, n, n - 1)
  # Read whole, the lines' ids and ratings alone take 12 bytes a line, twice
  # while they are joined (22.8 MB measured); folded, the peak is a fold of
  # 2**12 lines and the parser's blocks of 32 KiB (0.65 MB measured).
  assert peak < 12 * n / 2, peak


@pytest.mark.slow  # Waits out the bar's 2 s delay.
def test_a_long_read_shows_a_bar_of_the_bytes_read_and_a_short_one_does_not(
  capsys, monkeypatch
):
  # Issue 31: a 2 GB decompression read for 120 s with no output.
  import time

  class Slow(io.BytesIO):
    def read(self, size=-1):
      time.sleep(0.5)
      return super().read(size)

  monkeypatch.setattr(textparse, "CHUNK_BYTES", 1 << 10)
  text = "".join(f"{u},{u % 7},{1 + u % 5}\n" for u in range(600)).encode()
  ratings, _ = mfjax.load_ratings(Slow(text), progress=True)
  assert len(ratings) == 600 and "reading" in capsys.readouterr().err
  mfjax.load_ratings(io.BytesIO(text), progress=True)
  assert capsys.readouterr().err == ""
  with pytest.raises(TypeError, match="progress must be True or False"):
    mfjax.load_ratings(io.BytesIO(text), progress="yes")


@pytest.mark.parametrize(
  "odd, plain",
  [("007", "7"), ("+7", "7"), ("7e0", "7"), ("1e3", "1000")],
)
def test_an_id_spelled_otherwise_than_plainly_is_said_to_merge(odd, plain):
  # Issue 31: `007` and `7`, `1e3` and `1000` merged without a word.
  text = f"1\t{plain}\t4\n2\t8\t3\n3\t{odd}\t5\n"
  match = rf":3: id '{re.escape(odd)}' is read as the integer {plain}"
  with pytest.warns(textparse.IdSpellingWarning, match=match):
    _, maps = mfjax.load_ratings(io.StringIO(text))
  assert maps.items.tolist() == sorted([int(plain), 8])  # One id, as said.


@pytest.mark.parametrize(
  "sep, lead", [("\t", ""), (",", ""), ("::", ""), (" ", ""), ("  ", "  ")]
)
def test_an_id_with_a_decimal_point_is_said_to_merge_beside_half_star_ratings(
  sep, lead
):
  # Issue 31: `7.0` and `7` merged without a word, where `007` was caught: a
  # point was no alarm, since ratings hold points too.
  rows = [("1", "7", "4.5", "11.5"), ("2", "8", "3.5", "12.5"), ("7.0", "9", "5", "1")]
  text = "".join(lead + sep.join(row) + "\n" for row in rows)
  with pytest.warns(textparse.IdSpellingWarning, match=":3: id '7.0' is read as the"):
    _, maps = mfjax.load_ratings(io.StringIO(text))
  assert maps.users.tolist() == [1, 2, 7]
  # In the item column, and on the last line without its newline.
  rows[2] = ("3", "8.0", "5", "1")
  text = "".join(lead + sep.join(row) + "\n" for row in rows)
  for last in (text, text.rstrip("\n")):
    with pytest.warns(textparse.IdSpellingWarning, match=":3: id '8.0' is read"):
      _, maps = mfjax.load_ratings(io.StringIO(last))
    assert maps.items.tolist() == [7, 8]


def test_plain_ids_ratings_with_leading_zeros_and_decimals_give_no_spelling_warning():
  text = "1\t7\t04\t0881250949\n10\t100\t3.5\t881250949.5\n"
  with warnings.catch_warnings():
    warnings.simplefilter("error", textparse.IdSpellingWarning)
    for sep in ("\t", ",", "::", " "):  # Points in the ratings and timestamps.
      ratings, _ = mfjax.load_ratings(io.StringIO(text.replace("\t", sep)))
      assert len(ratings) == 2


@pytest.mark.parametrize("duplicates", ["last", "mean"])
def test_folding_keeps_the_scale_and_outlier_warning_of_every_line(
  duplicates, monkeypatch
):
  # Review of issue 31's folding: a fold dropped the line of a 300 among 1..5,
  # and the inferred scale and the warning changed with it.
  lines = [f"{k},1,{k % 5 + 1}" for k in range(1, 20)] + ["1,1,300", "1,1,3"]
  text = "\n".join(lines) + "\n"
  with pytest.warns(loaders.ScaleWarning, match=r":20: rating 300 lies far above"):
    _, whole = mfjax.load_ratings(io.StringIO(text), duplicates=duplicates)
  monkeypatch.setattr(folding, "FOLD_ENTRIES", 4)
  with pytest.warns(loaders.ScaleWarning, match=r":20: rating 300 lies far above"):
    _, maps = mfjax.load_ratings(io.StringIO(text), duplicates=duplicates)
  assert maps.scale == whole.scale == (1.0, 300.0)


def test_folded_means_are_the_whole_files_means_exactly(monkeypatch):
  ratings = [4.5, 1, 3, 4, 4.5, 3, 2.5, 5, 1.5]
  text = "".join(f"1,1,{r}\n2,{k},3\n" for k, r in enumerate(ratings))
  whole, _ = mfjax.load_ratings(io.StringIO(text), duplicates="mean")
  monkeypatch.setattr(folding, "FOLD_ENTRIES", 2)
  folded, _ = mfjax.load_ratings(io.StringIO(text), duplicates="mean")
  np.testing.assert_array_equal(folded.values, whole.values)


@pytest.mark.parametrize("fold", [2, 1 << 25])
def test_errors_are_the_same_with_folding_and_without(fold, monkeypatch):
  monkeypatch.setattr(folding, "FOLD_ENTRIES", fold)
  # A rating outside the scale on line 1, one that is not finite on line 32:
  # the one that is not finite is named, as the whole file's check does.
  text = "1,1,9\n" + "2,2,3\n" * 30 + "3,3,nan\n"
  with pytest.raises(mfjax.RatingsFileError, match=r":32: rating nan is not finite"):
    mfjax.load_ratings(io.StringIO(text), scale=(1, 5))
  # Ratings are checked as float32 holds them: 5.0000000001 is 5.
  text = "a,x,5.0000000001\n" + "b,y,3\n" * 5
  ratings, _ = mfjax.load_ratings(io.StringIO(text), scale=(1, 5))
  assert float(ratings.values.max()) == 5.0


@pytest.mark.parametrize("fold", [4, 1 << 25])
def test_a_repeat_under_error_is_named_alike_while_streaming(fold, monkeypatch):
  # Under duplicates="error" nothing folds: a repeat is found while the file
  # streams in (no need to hold 600 MB of identical lines first), and named as
  # the whole file's check names it.
  monkeypatch.setattr(folding, "FOLD_ENTRIES", fold)
  text = "1,1,3\n2,2,4\n3,3,5\n2,2,1\n4,4,2\n5,5,3\n6,6,4\n"
  with pytest.raises(
    mfjax.RatingsFileError, match=r":4: duplicate rating of the pair on line 2"
  ):
    mfjax.load_ratings(io.StringIO(text), duplicates="error")
