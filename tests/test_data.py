"""Ratings, load_ratings, splits and synthetic data."""

import re
import sys

import jax
import numpy as np
import pytest

import mfjax
import mfjax.data  # noqa: F401
from tests.conftest import ML100K


def _write(tmp_path, name, text, mode="w"):
  path = tmp_path / name
  if mode == "wb":
    path.write_bytes(text)
  else:
    path.write_text(text)
  return path


def test_ratings_is_a_pytree_with_static_sizes():
  r = mfjax.Ratings(np.array([0, 1]), np.array([2, 0]), np.array([4.0, 3.0]), 2, 3)
  leaves, treedef = jax.tree.flatten(r)
  assert len(leaves) == 3
  again = jax.tree.unflatten(treedef, leaves)
  assert again.n_users == 2 and again.n_items == 3
  doubled = jax.jit(lambda r: r.values * r.n_items)(r)
  np.testing.assert_allclose(doubled, [12.0, 9.0])
  np.testing.assert_array_equal(r.to_dense(), [[0, 0, 4], [3, 0, 0]])


def test_ratings_from_dense_round_trip():
  dense = np.array([[5, 0, 3], [0, 1, 0]], np.float32)
  r = mfjax.ratings_from_dense(dense)
  assert len(r) == 3 and r.shape == (2, 3)
  np.testing.assert_array_equal(r.to_dense(), dense)


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


def test_unknown_ids_are_predicted_from_mean_and_known_bias():
  train, maps = mfjax.load_ratings(ML100K / "u1.base")
  test, _ = mfjax.load_ratings(ML100K / "u1.test", id_maps=maps)
  params = mfjax.init_params(jax.random.key(0), train.n_users, train.n_items, 4)
  params = params._replace(
    item_bias=params.item_bias + 0.5,
    user_bias=params.user_bias + 0.25,
    mean=np.float32(3.5),
  )
  pred = np.asarray(mfjax.predict(params, test.users, test.items))
  unknown = np.asarray(test.items) == -1
  np.testing.assert_allclose(pred[unknown], 3.5 + 0.25, rtol=1e-6)
  assert np.isfinite(float(mfjax.rmse(params, test)))


def test_duplicates_policies(tmp_path):
  path = _write(tmp_path, "d.csv", "1,1,2\n1,2,3\n1,1,4\n2,2,5\n")
  ratings, maps = mfjax.load_ratings(path)
  assert maps.n_duplicates == 1 and len(ratings) == 3
  dense = ratings.to_dense()
  assert dense[0, 0] == 4.0  # The last one wins.
  ratings, maps = mfjax.load_ratings(path, duplicates="mean")
  assert ratings.to_dense()[0, 0] == 3.0
  with pytest.raises(
    mfjax.RatingsFileError, match=r"d.csv:3: duplicate rating of the pair on line 1"
  ):
    mfjax.load_ratings(path, duplicates="error")


def test_duplicates_match_a_reference_across_chunks(tmp_path, monkeypatch):
  # Many repeats (pairs seen 2-4 times), spread over several key chunks.
  monkeypatch.setattr(sys.modules["mfjax.data"], "_KEY_CHUNK", 64)
  rng = np.random.default_rng(0)
  lines = [
    (u * 7 % 13, i * 5 % 11, 1 + r % 5) for u, i, r in rng.integers(1, 30, (500, 3))
  ]
  path = _write(tmp_path, "dups.csv", "".join(f"{u},{i},{r}\n" for u, i, r in lines))
  last, sums, counts = {}, {}, {}
  for u, i, r in lines:
    last[u, i] = r
    sums[u, i] = sums.get((u, i), 0) + r
    counts[u, i] = counts.get((u, i), 0) + 1
  for policy, expected in (
    ("last", last),
    ("mean", {pair: sums[pair] / counts[pair] for pair in sums}),
  ):
    ratings, maps = mfjax.load_ratings(path, duplicates=policy)
    assert maps.n_duplicates == len(lines) - len(last) and len(ratings) == len(last)
    got = {
      (int(maps.users[u]), int(maps.items[i])): float(r)
      for u, i, r in zip(ratings.users, ratings.items, ratings.values, strict=True)
    }
    assert got.keys() == expected.keys()
    np.testing.assert_allclose(
      [got[pair] for pair in expected], list(expected.values()), rtol=1e-6
    )
  with pytest.raises(mfjax.RatingsFileError) as error:
    mfjax.load_ratings(path, duplicates="error")
  later, earlier = map(
    int, re.search(r"dups.csv:(\d+): .* line (\d+)", str(error.value)).groups()
  )
  assert earlier < later and lines[earlier - 1][:2] == lines[later - 1][:2]


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
  with pytest.raises(mfjax.RatingsFileError, match=match):
    mfjax.load_ratings(_write(tmp_path, "bad.csv", content))


def test_missing_binary_and_non_utf8_files(tmp_path):
  with pytest.raises(mfjax.RatingsFileError, match="no such file"):
    mfjax.load_ratings(tmp_path / "nope.csv")
  with pytest.raises(mfjax.RatingsFileError, match="not a regular file"):
    mfjax.load_ratings(tmp_path)
  with pytest.raises(mfjax.RatingsFileError, match="binary file"):
    mfjax.load_ratings(_write(tmp_path, "b.bin", b"\x00\x01\x02abc", "wb"))
  with pytest.raises(mfjax.RatingsFileError, match=r"latin.csv:2: not UTF-8"):
    mfjax.load_ratings(_write(tmp_path, "latin.csv", b"a,b,1\n\xe9,b,2\n", "wb"))


def test_declared_scale_is_enforced_and_recorded(tmp_path):
  path = _write(tmp_path, "s.csv", "1,1,1\n1,2,5\n2,1,3\n")
  _, maps = mfjax.load_ratings(path, scale=(0.5, 5.0))
  assert maps.scale == (0.5, 5.0)
  with pytest.raises(
    mfjax.RatingsFileError,
    match=r"s.csv:2: rating 5 is outside the declared scale \[1, 4\]",
  ):
    mfjax.load_ratings(path, scale=(1, 4))
  with pytest.raises(ValueError, match="format must be one of"):
    mfjax.load_ratings(path, format="xml")


def test_train_test_split_and_kfold():
  ratings, _ = mfjax.load_ratings(ML100K / "u1.test")
  train, test = mfjax.train_test_split(ratings, test_fraction=0.25, seed=3)
  assert len(test) == 5000 and len(train) == 15000
  pairs = lambda r: set(
    zip(np.asarray(r.users).tolist(), np.asarray(r.items).tolist(), strict=True)
  )
  assert not pairs(train) & pairs(test)
  again, _ = mfjax.train_test_split(ratings, test_fraction=0.25, seed=3)
  np.testing.assert_array_equal(again.values, train.values)
  strat_train, strat_test = mfjax.train_test_split(
    ratings, test_fraction=0.2, stratify=True
  )
  counts = np.bincount(np.asarray(ratings.users), minlength=ratings.n_users)
  held = np.bincount(np.asarray(strat_test.users), minlength=ratings.n_users)
  expected = np.where(counts > 1, np.minimum(np.floor(counts * 0.2), counts - 1), 0)
  np.testing.assert_array_equal(held, expected)
  assert set(np.unique(np.asarray(strat_train.users))) == set(np.flatnonzero(counts))
  folds = list(mfjax.kfold(ratings, 4, seed=1))
  assert len(folds) == 4
  tested = np.concatenate([np.asarray(t.values) for _, t in folds])
  assert len(tested) == len(ratings)
  assert all(len(tr) + len(te) == len(ratings) for tr, te in folds)
  for bad in (0.0, 1.0, -0.5):
    with pytest.raises(ValueError, match="test_fraction must lie in"):
      mfjax.train_test_split(ratings, test_fraction=bad)
  with pytest.raises(ValueError, match="k must lie in"):
    next(mfjax.kfold(ratings, 1))


def test_synthetic_ratings_planted_and_power_law():
  ratings, planted = mfjax.synthetic_ratings(
    jax.random.key(0), 2000, 1000, 200_000, 8, noise=0.1, scale=None
  )
  assert len(ratings) == 200_000 and ratings.shape == (2000, 1000)
  truth = mfjax.predict(planted, ratings.users, ratings.items)
  resid = np.asarray(ratings.values) - np.asarray(truth)
  assert abs(resid.std() - 0.1) < 0.005
  counts = np.sort(np.bincount(np.asarray(ratings.items), minlength=1000))[::-1]
  assert counts[0] > 20 * np.median(counts)  # A heavy head, as in real data.
  uniform, _ = mfjax.synthetic_ratings(
    jax.random.key(0), 2000, 1000, 200_000, 8, popularity=0.0
  )
  counts = np.bincount(np.asarray(uniform.items), minlength=1000)
  assert counts.max() < 2 * counts.mean()
