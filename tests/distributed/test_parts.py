"""parts.load_ratings_part: parts read by several processes equal load_ratings.

The processes are threads here, joined by an in-memory exchange (the one over
real JAX processes is tested in test_distributed.py): for each file and number
of parts, the parts concatenated in order must be load_ratings' ratings of the
whole file, with its maps, its duplicates policy and its errors and warnings.
"""

import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from mfjax.data import loaders, textparse
from mfjax.distributed import parts


class Threads:
  """An exchange among ``count`` threads (exchange.Exchange), for tests."""

  def __init__(self, count):
    self.count = count
    self.barrier = threading.Barrier(count, timeout=60)
    self.slots = [None] * count

  def member(self, index):
    return Member(self, index)


class Member:
  def __init__(self, shared, index):
    self.shared, self.index, self.count = shared, index, shared.count

  def allgather(self, x):
    self.shared.slots[self.index] = np.array(x, copy=True)
    self.shared.barrier.wait()
    out = list(self.shared.slots)
    self.shared.barrier.wait()
    return out

  def broadcast(self, x, root):
    return self.allgather(x)[root].copy()


def read_in_parts(paths, count, **options):
  """Each thread's ``(part, maps, offset)`` or exception, and its warnings."""
  if isinstance(paths, str):
    paths = [paths] * count
  threads, results = Threads(count), [None] * count
  caught = [[] for _ in range(count)]

  def run(index):
    try:
      results[index] = parts.load_ratings_part(
        paths[index], threads.member(index), **options
      )
    except Exception as e:  # noqa: BLE001 (the test compares them)
      results[index] = e

  with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    workers = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for w in workers:
      w.start()
    for w in workers:
      w.join()
  for w in seen:
    caught[0].append(str(w.message))
  return results, caught[0]


def assert_parts_equal_whole(path, count, **options):
  whole, maps = loaders.load_ratings(path, **options)
  results, _ = read_in_parts(path, count, **options)
  for r in results:
    if isinstance(r, Exception):
      raise r
  offsets = [r[2] for r in results]
  lengths = [len(r[0]) for r in results]
  assert offsets == list(np.cumsum([0] + lengths[:-1]))
  for name in ("users", "items", "values"):
    joined = np.concatenate([np.asarray(getattr(r[0], name)) for r in results])
    np.testing.assert_array_equal(joined, np.asarray(getattr(whole, name)), name)
  for part, their_maps, _ in results:
    assert (part.n_users, part.n_items) == (whole.n_users, whole.n_items)
    np.testing.assert_array_equal(their_maps.users, maps.users)
    np.testing.assert_array_equal(their_maps.items, maps.items)
    assert their_maps.users.dtype.kind == maps.users.dtype.kind
    for field in ("scale", "n_lines", "n_duplicates", "n_unknown", "columns", "header"):
      assert getattr(their_maps, field) == getattr(maps, field), field
  return results, maps


def _write_numeric(path, n, seed, *, duplicates=0.1, header=None, sep="\t"):
  rng = np.random.default_rng(seed)
  users = rng.integers(1, 300, n)
  items = rng.integers(1, 40, n)
  values = rng.integers(1, 11, n) / 2
  lines = [f"{u}{sep}{i}{sep}{v:g}{sep}{880000000 + k}" for k, (u, i, v) in
           enumerate(zip(users, items, values, strict=True))]  # fmt: skip
  if duplicates:
    repeat = rng.choice(n, int(n * duplicates), replace=False)
    lines += [lines[k].rsplit(sep, 2)[0] + f"{sep}{rng.integers(1, 11) / 2:g}{sep}1"
              for k in repeat]  # fmt: skip
    rng.shuffle(lines)
  text = (header + "\n" if header else "") + "\n".join(lines) + "\n"
  path.write_text(text)
  return str(path)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("policy", ["last", "mean"])
def test_parts_of_a_numeric_file_with_duplicates_equal_the_whole(
  tmp_path, count, policy
):
  path = _write_numeric(tmp_path / "r.tsv", 3000, count)
  _, maps = assert_parts_equal_whole(path, count, duplicates=policy)
  assert maps.n_duplicates > 100  # Pairs rated in two parts among them.


@pytest.mark.parametrize("count", [2, 4])
def test_parts_of_a_csv_with_a_header_and_text_ids_equal_the_whole(tmp_path, count):
  rng = np.random.default_rng(0)
  rows = [f"m{rng.integers(50)},{rng.integers(5, 200)}x,{rng.integers(1, 6)},7"
          for _ in range(2000)]  # fmt: skip
  path = tmp_path / "ratings.csv"
  path.write_text("movieId,userId,rating,timestamp\n" + "\n".join(rows) + "\n\n\n")
  _, maps = assert_parts_equal_whole(str(path), count, duplicates="mean")
  assert maps.header == ("movieId", "userId", "rating", "timestamp")
  assert maps.users.dtype.kind == "U"


def test_more_parts_than_lines_leave_parts_empty(tmp_path):
  path = tmp_path / "tiny.tsv"
  path.write_text("1\t1\t5\n2\t1\t3\n")
  results, _ = assert_parts_equal_whole(str(path), 6)
  assert sorted(len(r[0]) for r in results)[:4] == [0, 0, 0, 0]


def test_a_test_file_in_parts_takes_the_training_maps(tmp_path):
  train = _write_numeric(tmp_path / "a.tsv", 2000, 1, duplicates=0)
  test = _write_numeric(tmp_path / "b.tsv", 800, 2, duplicates=0.05)
  _, maps = loaders.load_ratings(train)
  # Unknown users and items (ids beyond training's) never count as duplicates.
  with open(test, "a") as f:
    f.write("9999\t1\t3\t1\n9999\t1\t4\t1\n1\t9999\t2\t1\n")
  _, test_maps = assert_parts_equal_whole(test, 3, id_maps=maps)
  assert test_maps.n_unknown >= 3


def _replace_line(path, index, line):
  lines = Path(path).read_text().split("\n")
  lines[index] = line
  Path(path).write_text("\n".join(lines))


def _messages(results):
  assert all(isinstance(r, textparse.RatingsFileError) for r in results), results
  return [str(r) for r in results]


def test_a_duplicate_under_error_is_named_as_load_ratings_names_it(tmp_path):
  path = _write_numeric(tmp_path / "r.tsv", 3000, 7)
  with pytest.raises(textparse.RatingsFileError) as whole:
    loaders.load_ratings(path, duplicates="error")
  results, _ = read_in_parts(path, 3, duplicates="error")
  messages = _messages(results)
  assert messages[0] == str(whole.value)
  assert all(m.startswith(str(whole.value)) for m in messages)


def test_a_bad_line_in_a_later_part_is_named_in_every_process(tmp_path):
  path = _write_numeric(tmp_path / "r.tsv", 3000, 3, duplicates=0)
  _replace_line(path, 2500, "12\tnot-an-item\t4")
  with pytest.raises(textparse.RatingsFileError) as whole:
    loaders.load_ratings(path)
  assert ":2501:" in str(whole.value)
  messages = _messages(read_in_parts(path, 3)[0])
  assert messages[2] == str(whole.value)  # The process that read it.
  assert messages[0] == f"{whole.value} (in process 2)"


def test_the_scale_warning_names_the_same_line(tmp_path):
  path = _write_numeric(tmp_path / "r.tsv", 3000, 4, duplicates=0)
  _replace_line(path, 2222, "5\t5\t44\t1")
  with pytest.warns(loaders.ScaleWarning) as whole:
    loaders.load_ratings(path)
  results, seen = read_in_parts(path, 3)
  assert all(not isinstance(r, Exception) for r in results)
  assert len(seen) == 3 and set(seen) == {str(whole[0].message)}
  assert ":2223:" in seen[0]


def test_a_declared_scale_refuses_the_same_line(tmp_path):
  path = _write_numeric(tmp_path / "r.tsv", 3000, 5, duplicates=0)
  with pytest.raises(textparse.RatingsFileError) as whole:
    loaders.load_ratings(path, scale=(1, 4))
  messages = _messages(read_in_parts(path, 4, scale=(1, 4))[0])
  assert messages[0] == str(whole.value)


def test_a_file_only_some_processes_can_read_fails_in_all(tmp_path):
  path = _write_numeric(tmp_path / "r.tsv", 100, 0)
  missing = str(tmp_path / "elsewhere" / "r.tsv")
  messages = _messages(read_in_parts([path, missing, path], 3)[0])
  assert messages[1] == f"{missing}: no such file."
  assert messages[0] == messages[2] == f"{missing}: no such file. (in process 1)"


def test_different_files_under_one_name_fail_in_all(tmp_path):
  one = _write_numeric(tmp_path / "a.tsv", 100, 0)
  other = _write_numeric(tmp_path / "b.tsv", 120, 1)
  messages = _messages(read_in_parts([one, other], 2)[0])
  assert all("read different files" in m for m in messages)


@pytest.mark.parametrize("count", [2, 3])
def test_files_that_differ_only_in_the_middle_fail_in_all(tmp_path, count):
  # Issue 31: files of one size and the same first and last 64 KiB, different
  # in the middle, trained without a word on the wrong data.
  one = _write_numeric(tmp_path / "a.tsv", 30_000, 0, duplicates=0)
  text = Path(one).read_text()
  middle = len(text) // 2
  middle = text.index("\t", middle) + 1  # The first digit of an item id.
  digit = "2" if text[middle] == "1" else "1"
  other = tmp_path / "b.tsv"
  other.write_text(text[:middle] + digit + text[middle + 1 :])
  assert len(text) > 3 * 65536 and os.path.getsize(other) == os.path.getsize(one)
  # Process 1 trains on the changed part (the middle one of 2 or 3): every
  # process refuses. (A process whose file differs only in parts it neither
  # trains on nor checks trains on the same data as the others.)
  paths = [one, str(other)] + [one] * (count - 2)
  messages = _messages(read_in_parts(paths, count)[0])
  assert all("read different files" in m and "part 1 differs" in m for m in messages)
  assert_parts_equal_whole(one, count)  # The same file still reads.


def test_a_compressed_file_is_refused_in_every_process(tmp_path):
  import gzip

  path = tmp_path / "r.tsv.gz"
  with gzip.open(path, "wt") as f:
    f.write("1\t1\t5\n")
  messages = _messages(read_in_parts(str(path), 2)[0])
  assert "cannot be split between processes" in messages[0]


def test_a_blank_line_where_a_part_ends_is_refused_as_in_one_process(tmp_path):
  path = tmp_path / "r.tsv"
  lines = [f"{k}\t1\t3" for k in range(1, 400)]
  lines[199] = ""
  path.write_text("\n".join(lines) + "\n\n")
  with pytest.raises(textparse.RatingsFileError) as whole:
    loaders.load_ratings(str(path))
  for count in (2, 3):
    messages = _messages(read_in_parts(str(path), count)[0])
    assert min(messages, key=len) == str(whole.value)


def _write(path, text):
  Path(path).write_text(text, newline="")
  return str(path)


@pytest.mark.parametrize(
  "name, text, count",
  [
    # A header longer than a part's share: part 0 holds only the header.
    (
      "h.csv",
      "a_long_user_column_name,a_long_item_column_name,rating\n1,1,5\n2,1,3\n",
      2,
    ),
    ("few.tsv", "1 1 5\n", 7),  # More parts than bytes.
    ("blank.tsv", "".join(f"{k}\t1\t3\n" for k in range(50)) + "\n" * 2000, 2),
    (
      "crlf.csv",
      "user,item,rating\r\n" + "\r\n".join(f"{k},2,4" for k in range(40)),
      3,
    ),
  ],
)
def test_edge_files_in_parts_equal_the_whole(tmp_path, name, text, count):
  assert_parts_equal_whole(_write(tmp_path / name, text), count)


def test_a_header_without_ratings_is_refused_in_every_process(tmp_path):
  path = _write(tmp_path / "b.csv", "userId,movieId,rating\n")
  messages = _messages(read_in_parts(path, 2)[0])
  assert messages == [f"{path}: has a header but no ratings."] * 2


def test_a_rating_that_is_not_finite_is_named_before_one_outside_the_scale(tmp_path):
  lines = [f"{k}\t1\t3" for k in range(1, 400)]
  lines[10], lines[350] = "1\t1\t9", "1\t2\tnan"
  path = _write(tmp_path / "e.tsv", "\n".join(lines) + "\n")
  with pytest.raises(textparse.RatingsFileError) as whole:
    loaders.load_ratings(path, scale=(1, 5))
  assert ":351:" in str(whole.value)
  messages = _messages(read_in_parts(path, 2, scale=(1, 5))[0])
  assert messages[1] == str(whole.value)


def test_a_declared_scale_gives_no_scale_warning_in_parts(tmp_path):
  lines = [f"{k}\t1\t{k % 5 + 1}" for k in range(1, 400)]
  lines[100] = "3\t3\t90"
  path = _write(tmp_path / "a.tsv", "\n".join(lines) + "\n")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    loaders.load_ratings(path, scale=(1, 100))
  results, seen = read_in_parts(path, 2, scale=(1, 100))
  assert seen == [] and not any(isinstance(r, Exception) for r in results)


def test_a_mean_over_three_parts_sums_in_file_order(tmp_path):
  # 1e30 + 1 - 1e30 is 0 in file order, 1 in another.
  lines = [f"{k}\t1\t3" for k in range(2, 60)]
  lines[0], lines[29], lines[-1] = "1\t1\t1e30", "1\t1\t1", "1\t1\t-1e30"
  path = _write(tmp_path / "m.tsv", "\n".join(lines) + "\n")
  results, maps = assert_parts_equal_whole(path, 3, duplicates="mean")
  assert maps.n_duplicates == 2
  assert float(np.concatenate([r[0].values for r in results])[-1]) == 0.0
