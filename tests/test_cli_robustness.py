"""The command line under hostile input (issue 31): every case is refused in one
line with its exit code, before any work, and nothing the user gave is lost.

Each test reproduces a failure the red team found (the input and what it did
then), and checks what the command does now.
"""

import os
import stat

import numpy as np
import pytest

import mfjax
from mfjax import cli
from tests.conftest import random_params


@pytest.fixture()
def files(tmp_path):
  """A ratings file, a test file, an item file and a model of their ids."""
  ratings = tmp_path / "r.csv"
  ratings.write_text("1,10,4\n1,11,3\n2,10,5\n2,12,1\n3,11,2\n")
  test = tmp_path / "t.csv"
  test.write_text("1,12,4\n3,10,2\n")
  items = tmp_path / "u.item"
  items.write_text("10|Ten|\n11|Eleven|\n12|Twelve|\n")
  maps = mfjax.IdMaps(np.array([1, 2, 3]), np.array([10, 11, 12]), (1.0, 5.0))
  model = tmp_path / "m.npz"
  mfjax.save(model, mfjax.Model(random_params(0, 3, 3, 2), maps))
  return {"ratings": ratings, "test": test, "items": items, "model": model}


def _one_line(capsys, argv, code=2):
  """Runs the command line; checks its exit code and one line on stderr."""
  assert cli.main([str(a) for a in argv]) == code, argv
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, (argv, err)
  return err[0]


def _snapshot(*paths):
  return {str(p): (p.read_bytes(), os.stat(p).st_ino) for p in paths}


# Cause 3: `fit --save` onto the training or test file replaced it with a model
# (exit 0); `recommend --all --output` onto the --rated file or the model
# replaced them; a FIFO or device at the output path became a regular file.
@pytest.mark.parametrize(
  "argv, message",
  [
    (["fit", "{ratings}", "--save", "{ratings}"], "is TRAIN"),
    (["fit", "{ratings}", "--test", "{test}", "--save", "{test}"], "is --test"),
    (["fit", "{ratings}", "--save", "{link_to_ratings}"], "is TRAIN"),
    (["recommend", "{model}", "--all", "--output", "{model}"], "is MODEL"),
    (
      [
        "recommend",
        "{model}",
        "--all",
        "--output",
        "{ratings}",
        "--rated",
        "{ratings}",
      ],
      "is --rated",
    ),
    (
      ["recommend", "{model}", "--all", "--output", "{test}", "--ratings", "{test}"],
      "is --ratings",
    ),
    (["fit", "{ratings}", "--save", "{fifo}"], "not a regular file"),
    (["recommend", "{model}", "--all", "--output", "{fifo}"], "not a regular file"),
    (["fit", "{ratings}", "--save", "/dev/null"], "not a regular file"),
    (["fit", "{ratings}", "--save", "{new}/"], "ends in a separator"),
    (["fit", "{ratings}", "--save", "{long}"], "longer than"),
  ],
)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_an_output_that_is_an_input_or_not_a_regular_file_is_refused_first(
  argv, message, files, tmp_path, capsys
):
  os.symlink(files["ratings"], tmp_path / "link.csv")
  os.mkfifo(tmp_path / "fifo")
  names = dict(
    files,
    link_to_ratings=tmp_path / "link.csv",
    fifo=tmp_path / "fifo",
    new=tmp_path / "new",
    long=tmp_path / ("m" * 300 + ".npz"),
  )
  before = _snapshot(files["ratings"], files["test"], files["model"])
  line = _one_line(capsys, [a.format(**names) for a in argv])
  assert message in line, line
  assert _snapshot(files["ratings"], files["test"], files["model"]) == before
  assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
  assert not (tmp_path / "new").exists()


def test_the_library_refuses_to_save_over_a_fifo(tmp_path):
  os.mkfifo(tmp_path / "fifo")
  with pytest.raises(ValueError, match="not a regular file"):
    mfjax.save(tmp_path / "fifo", random_params(0, 2, 2, 1))
  assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


# Also weak: errors spanning lines when a path holds a newline; item ids and
# titles from a model or item file printed raw (a forged "mfjax recommend:
# error:" line; ANSI escapes reached the terminal).
def test_control_characters_in_ids_titles_and_paths_are_shown_escaped(tmp_path, capsys):
  forged = "x\nmfjax recommend: error: forged"
  maps = mfjax.IdMaps(
    np.array(["u1"]), np.array(sorted([forged, "\x1b[31mred", "plain"])), (1.0, 5.0)
  )
  model = tmp_path / "m.npz"
  mfjax.save(model, mfjax.Model(random_params(0, 1, 3, 2), maps))
  items = tmp_path / "items.csv"
  items.write_text(
    'movieId,title\n"x\nmfjax recommend: error: forged",T1\n'
    '"\x1b[31mred",T2\nplain,"\x1b]0;title\x07"\n'
  )
  assert cli.main(["recommend", str(model), "--user", "u1", "--items", str(items)]) == 0
  out = capsys.readouterr().out
  assert "\x1b" not in out and "\x07" not in out
  assert len(out.strip().splitlines()) == 2 + 3  # Heading, column names, 3 items.
  assert "x\\nmfjax recommend: error: forged" in out and "\\x1b[31mred" in out
  assert cli.main(["similar", str(model), "--item", "plain"]) == 0
  out = capsys.readouterr().out
  assert "\x1b" not in out and len(out.strip().splitlines()) == 2 + 2
  newline_path = tmp_path / "a\nmfjax fit: error: forged.csv"
  line = _one_line(capsys, ["fit", newline_path])
  assert "a\\nmfjax fit: error: forged.csv" in line


# Cause 1: a valid model of 0 users raised IndexError (exit 1 and "internal
# error" from the CLI; from Model.predict, recommend and fold_in).
def _model_of_no_users(tmp_path, rated=True):
  params = random_params(0, 1, 3, 2)
  params = params._replace(
    user_factors=params.user_factors[:0], user_bias=params.user_bias[:0]
  )
  maps = mfjax.IdMaps(np.array([], np.int64), np.array([10, 11, 12]), (1.0, 5.0))
  path = tmp_path / "none.npz"
  pairs = np.zeros((0, 2), np.int32) if rated else None
  mfjax.save(path, mfjax.Model(params, maps, rated=pairs))
  return path


@pytest.mark.parametrize(
  "argv, code, message",
  [
    (["recommend", "{model}", "--user", "1", "--fallback", "none"], 2, "no users"),
    (["evaluate", "{model}", "{test}"], 2, "has no users"),
    (["similar", "{model}", "--item", "10", "-n", "1"], 0, None),
    (["recommend", "{model}", "--all", "--output", "{out}"], 0, None),
  ],
)
def test_a_model_of_no_users_answers_in_one_line(
  argv, code, message, files, tmp_path, capsys
):
  names = dict(files, model=_model_of_no_users(tmp_path), out=tmp_path / "o.csv")
  assert cli.main([a.format(**names) for a in argv]) == code
  err = capsys.readouterr().err.strip().splitlines()
  if message is None:
    assert err == []
  else:
    assert len(err) == 1 and message in err[0], err


# Also weak: Ctrl-C during a save printed a traceback.
def test_ctrl_c_mid_write_is_one_line_exit_130_and_the_old_file_stays(
  files, tmp_path, capsys, monkeypatch
):
  out = tmp_path / "lists.csv"
  out.write_text("the old lists\n")

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt  # As Ctrl-C would, while the lists are written.

  monkeypatch.setattr(mfjax, "recommend", interrupted)
  argv = [
    "recommend",
    files["model"],
    "--all",
    "--output",
    out,
    "--rated",
    files["ratings"],
  ]
  assert cli.main([str(a) for a in argv]) == 130
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "interrupted" in err[0], err
  assert out.read_text() == "the old lists\n"
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# Cause 4: float32 factors of 1e20 loaded; predictions were NaN and evaluate
# exited 0 with a finite RMSE; `similar` printed -inf and nan.
@pytest.mark.parametrize(
  "command", [["evaluate", "{test}"], ["similar", "--item", "10"]]
)
def test_a_model_whose_predictions_would_overflow_is_refused(
  command, files, tmp_path, capsys
):
  params = random_params(0, 3, 3, 2)
  params = params._replace(
    user_factors=params.user_factors * 0 + 1e20,
    item_factors=params.item_factors * 0 + 1e20,
  )
  maps = mfjax.IdMaps(np.array([1, 2, 3]), np.array([10, 11, 12]), (1.0, 5.0))
  model = tmp_path / "huge.npz"
  mfjax.save(model, mfjax.Model(params, maps))
  argv = [command[0], model, *(a.format(**files) for a in command[1:])]
  assert "too large to compute with" in _one_line(capsys, argv)


def test_item_titles_that_open_a_quote_are_read_as_written(files, tmp_path, capsys):
  # u.item is not CSV-quoted: a title starting with '"' must not swallow the
  # lines after it; an unclosed quote in movies.csv is one line, not a
  # traceback ("field larger than field limit").
  items = tmp_path / "quoted.item"
  items.write_text('10|"Weird Al" Live|\n11|Eleven|\n12|Twelve|\n')
  assert (
    cli.main(["recommend", str(files["model"]), "--user", "1", "--items", str(items)])
    == 0
  )
  out = capsys.readouterr().out  # All 3 items, each with its own title.
  assert all(t in out for t in ('"Weird Al" Live', "Eleven", "Twelve")), out
  movies = tmp_path / "movies.csv"
  movies.write_text('movieId,title\n10,"open\n' + "x" * 200_000 + "\n")
  argv = ["recommend", str(files["model"]), "--user", "1", "--items", str(movies)]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert "field larger than field limit" in err[-1] and "movies.csv:3" in err[-1]
  assert all(line.startswith(("note:", "mfjax recommend: error:")) for line in err)


@pytest.mark.slow  # Compiles a fit program: several seconds.
def test_a_model_that_trained_is_saved_before_scoring_can_fail(
  tmp_path, capsys, monkeypatch
):
  # Issue 31: an out-of-memory error after training had finished left the
  # --save never written.
  rng = np.random.default_rng(0)
  rows = zip(
    rng.integers(0, 30, 600),
    rng.integers(0, 20, 600),
    rng.integers(1, 6, 600),
    strict=True,
  )
  train = tmp_path / "r.csv"
  train.write_text("".join(f"{u},{i},{r}\n" for u, i, r in rows))

  def exhausted(*args, **kwargs):
    raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9e12 bytes.")

  monkeypatch.setattr(mfjax, "rmse", exhausted)
  model = tmp_path / "m.npz"
  argv = ["fit", train, "--steps", "2", "--ensemble", "1", "--save", model]
  line = _one_line(capsys, argv)
  assert "out of memory on the device" in line
  assert mfjax.load(model).params.user_factors.shape == (30, 12)


def test_a_long_step_on_a_terminal_says_what_runs_and_clears_its_line():
  # Also weak: fits were silent for 45-200 s without --progress.
  import io
  import time

  from mfjax.cli import common

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  screen = Terminal()
  with common.still_working("mfjax fit: fitting", screen, delay=0.05, every=0.05):
    time.sleep(0.3)
  text = screen.getvalue()
  assert "\rmfjax fit: fitting... 0 s" in text and text.endswith("\r")
  assert text.rstrip("\r ").count("\n") == 0  # One line, rewritten in place.
  quick = Terminal()
  with common.still_working("mfjax fit: fitting", quick, delay=5):
    pass
  assert quick.getvalue() == ""
  piped = io.StringIO()  # Not a terminal: nothing, however long.
  with common.still_working("mfjax fit: fitting", piped, delay=0, every=0.01):
    time.sleep(0.05)
  assert piped.getvalue() == ""


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_an_item_file_that_is_not_a_regular_file_is_refused_unread(
  kind, files, tmp_path, capsys
):
  # Issue 31: `--items /dev/zero` ran out of memory; `--items FIFO` hung.
  items = {"fifo": tmp_path / "fifo", "device": "/dev/zero", "directory": tmp_path}[
    kind
  ]
  if kind == "fifo":
    os.mkfifo(items)
  argv = ["recommend", files["model"], "--user", "1", "--items", items]
  argv += ["--rated", files["ratings"]]  # No note about rated items.
  assert "not a regular file; not an item file" in _one_line(capsys, argv)
