"""The mfjax command line (mfjax.cli.app), in this process and as ``python -m mfjax``.

tests/conftest.py gives the session one persistent compilation cache and names it
in MFJAX_COMPILATION_CACHE, which the command reads: in-process runs keep using
it, and subprocesses share the programs compiled in it.
"""

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax import cli, notebook
from mfjax.cli import common
from mfjax.core import objectives
from mfjax.serving.model import pairs_as_ratings
from tests.conftest import (
  ML100K,
  STOP_MID_SAVE,
  random_params,
  write_movielens_like,
)


@pytest.fixture(scope="module")
def demo():
  """``mfjax demo --notebook --seed 1``'s output, and the library's runs it
  reports."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main(["demo", "--notebook", "--seed", "1"]) == 0

  def runs(key):
    params = mfjax.init_params(key, 4, 6, notebook.RANK)
    return mfjax.reproduce_notebook(key), mfjax.train(params, notebook.MATRIX)

  # Compiled for speed of compilation, as the demo compiles its own program: at
  # this size compiling is most of the time (XLA's defaults take 5x longer).
  lowered = jax.jit(runs).lower(jax.random.key(1))
  try:
    compiled = lowered.compile(cli.demo.FAST_COMPILE)
  except jax.errors.JaxRuntimeError:  # An XLA without one of these options.
    compiled = lowered.compile()
  reproduced, defaults = compiled(jax.random.key(1))
  return out.getvalue(), reproduced, defaults


def test_demo_prints_the_notebook_run_and_the_defaults(demo):
  out, result, _ = demo
  assert f"best loss {float(result.best_loss):.4f}" in out
  assert "the notebook printed 0.7130" in out
  # All 100 losses, in rows of ten.
  table = re.findall(r"^ +\d+-\d+ +((?:[\d.]+ *){1,10})$", out, re.M)
  printed = np.array([float(v) for row in table for v in row.split()])
  assert printed.shape == (100,)
  np.testing.assert_allclose(printed, result.losses, atol=6e-5)
  # The clipped prediction, row by row, beside the input.
  pred = np.asarray(notebook.predict(result.best_params, scale=(1, 5)))
  for row in pred:
    assert " ".join(f"{v:5.2f}" for v in row) in out
  assert "mfjax defaults" in out and "The difference:" in out


def test_demo_difference_line_reports_the_missing_entry(demo):
  out, reproduced, defaults = demo
  line = next(s for s in out.splitlines() if s.startswith("The difference"))
  assert "(user 3, item 1)" in line
  nb, ours = map(float, re.findall(r"predicts? (\d\.\d\d)", line))
  expected_nb = notebook.predict(reproduced.best_params, scale=(1, 5))[3, 1]
  expected_ours = mfjax.predict(defaults.best_params, scale=(1, 5))[3, 1]
  assert nb == pytest.approx(float(expected_nb), abs=0.006)
  assert ours == pytest.approx(float(expected_ours), abs=0.006)


@pytest.mark.parametrize(
  "argv, message",
  [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["demo", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    (["demo", "--seed", "99999999999999999999"], "argument --seed: must be in"),
    (["demo", "--seed", "-1"], "argument --seed: must be in [0, 2**32); got -1"),
  ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
  assert cli.main(argv) == 2
  captured = capsys.readouterr()
  assert captured.out == ""
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("mfjax: error: ")
  assert message in lines[0]


@pytest.mark.slow
def test_python_dash_m_keeps_compiled_programs_where_the_variable_says(tmp_path):
  # This test checks the variable itself, so it names an empty folder of its
  # own; other tests leave it to the session's cache.
  env = dict(os.environ, MFJAX_COMPILATION_CACHE=str(tmp_path / "cache"))
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  run = subprocess.run(
    [sys.executable, "-m", "mfjax", "demo", "--seed", "2"],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert run.returncode == 0, run.stderr
  assert "test RMSE" in run.stdout
  assert any((tmp_path / "cache").iterdir())  # Compiled programs were kept.


@pytest.mark.slow
def test_python_dash_m_bad_arguments_exit_2():
  bad = subprocess.run(
    [sys.executable, "-m", "mfjax", "demo", "--seed"],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode == 2
  assert bad.stderr.strip() == "mfjax: error: argument --seed: expected one argument"


@pytest.fixture(scope="module", params=["movielens", "generated"])
def u1_fit(request, tmp_path_factory):
  """``mfjax fit u1.base --test u1.test --ensemble 1 --save MODEL --json``, once
  on MovieLens 100k and once on a generated folder in its formats (which a fresh
  clone without ../shared has too).

  Returns ``(printed lines, the JSON report, the model file, the data folder)``.
  """
  if request.param == "generated":
    data = write_movielens_like(tmp_path_factory.mktemp("movielens_like"))
  elif (ML100K / "u1.base").exists():
    data = ML100K
  else:
    pytest.skip(f"needs MovieLens 100k in {ML100K} (or the folder named by MFJAX_DATA)")
  base, test = str(data / "u1.base"), str(data / "u1.test")
  model = str(tmp_path_factory.mktemp("u1") / "u1.npz")
  argv = ["fit", base, "--test", test, "--ensemble", "1", "--save", model, "--json"]
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    assert cli.main(argv) == 0
  # --json: the report alone on stdout, the human table on stderr.
  lines = [*err.getvalue().strip().splitlines(), out.getvalue().strip()]
  return lines, json.loads(out.getvalue()), model, data


@pytest.mark.slow
def test_fit_end_to_end_on_movielens_u1(u1_fit):
  out, report, _, data = u1_fit
  for field in (
    "train_rmse",
    "test_rmse",
    "test_mae",
    "fit_seconds",
    "compile_seconds",
    "n_train",
    "n_test",
    "n_unknown_test",
  ):
    assert field in report
  settings = mfjax.FitSettings()
  assert (report["steps"], report["ensemble"]) == (settings.steps, 1)
  assert "epochs" not in report and "seeds" not in report  # 0.1's keys.
  base = np.loadtxt(data / "u1.base", dtype=np.int64)
  test = np.loadtxt(data / "u1.test", dtype=np.int64)
  unknown = ~np.isin(test[:, 0], base[:, 0]) | ~np.isin(test[:, 1], base[:, 1])
  assert (report["n_train"], report["n_test"], report["n_unknown_test"]) == (
    len(base),
    len(test),
    int(unknown.sum()),
  )
  if data == ML100K:
    assert report["n_unknown_test"] == 32
    assert 0.85 < report["test_rmse"] < 0.96
  assert report["test_mae"] < report["test_rmse"]
  assert report["train_rmse"] < report["test_rmse"]
  assert any(line.startswith("test_rmse") for line in out[:-1])  # The table.
  # No failure: no "failure" line in the table (the JSON has it as null).
  assert report["failure"] is None
  assert not any(line.startswith("failure") for line in out[:-1])


@pytest.mark.slow  # Compiles a fit program: several seconds.
def test_fit_with_a_test_fraction(capsys, tmp_path):
  rng = np.random.default_rng(0)
  lines = [
    f"u{u},i{i},{r}"
    for u, i, r in zip(
      rng.integers(0, 50, 2000),
      rng.integers(0, 40, 2000),
      rng.integers(1, 6, 2000),
      strict=True,
    )
  ]
  path = tmp_path / "r.csv"
  path.write_text("\n".join(lines) + "\n")
  fit = ["fit", str(path), "--test-fraction", "0.1", "--rank", "4", "--json"]
  assert cli.main([*fit, "--steps", "2", "--ensemble", "1"]) == 0
  report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert report["n_test"] == round(0.1 * (report["n_train"] + report["n_test"]))
  assert (report["steps"], report["ensemble"], report["rank"]) == (2, 1, 4)
  # The names of mfjax 0.1, --epochs and --seeds, are aliases: the same fit.
  assert cli.main([*fit, "--epochs", "2", "--seeds", "1"]) == 0
  again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  for name in ("train_rmse", "test_rmse", "test_mae", "steps", "ensemble"):
    assert again[name] == report[name], name


def test_version_names_mfjax_and_jax(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main(["--version"])
  assert exit_.value.code == 0
  printed = capsys.readouterr().out.strip()
  assert printed == f"mfjax {mfjax.__version__} (jax {jax.__version__}, jaxlib " + (
    f"{jax.lib.__version__})"
  )


@pytest.mark.slow  # Compiles fit programs: several seconds.
def test_fit_reads_a_gzipped_file_as_the_plain_one(capsys, tmp_path):
  import gzip

  rng = np.random.default_rng(1)
  triples = zip(
    rng.integers(0, 30, 600),
    rng.integers(0, 20, 600),
    rng.integers(1, 6, 600),
    strict=True,
  )
  text = "".join(f"{u}\t{i}\t{r}\n" for u, i, r in triples)
  (tmp_path / "r.tsv").write_text(text)
  with gzip.open(tmp_path / "r.tsv.gz", "wt") as f:
    f.write(text)
  reports = []
  for name in ("r.tsv", "r.tsv.gz"):
    argv = ["fit", str(tmp_path / name), "--test-fraction", "0.2", "--rank", "2"]
    assert cli.main([*argv, "--steps", "2", "--ensemble", "1", "--json"]) == 0
    reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
  for name in ("n_train", "n_test", "train_rmse", "test_rmse"):
    assert reports[0][name] == reports[1][name], name


@pytest.mark.parametrize(
  "args, message",
  [
    (["--rank", "0"], "argument --rank: must be an int >= 1; got 0"),
    (["--steps", "x"], "argument --steps/--epochs: invalid int value: 'x'"),
    (["--epochs", "0"], "argument --steps/--epochs: must be an int >= 1; got 0"),
    (["--ensemble", "-1"], "argument --ensemble/--seeds: must be an int >= 1"),
    (["--seeds", "1.5"], "argument --ensemble/--seeds: invalid int value: '1.5'"),
    (["--test-fraction", "1.5"], "argument --test-fraction: must lie in (0, 1)"),
    (["--lr", "-1"], "argument --lr: must be > 0"),
    (["--l2", "nan"], "argument --l2: must be finite"),
    (["--l2-bias", "-1"], "argument --l2-bias: must be >= 0"),
    (["--test", "a", "--test-fraction", "0.2"], "not allowed with argument"),
  ],
)
def test_fit_bad_options_exit_2(args, message, capsys, tmp_path):
  path = tmp_path / "r.csv"
  path.write_text("1,1,3\n")
  assert cli.main(["fit", str(path), *args]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize(
  "content, message",
  [
    (None, "no such file"),
    ("1,1,3\n2,x\n", "r.csv:2: expected 3 columns"),
    ("1,1,3\n2,2,bad\n", "r.csv:2: rating 'bad' is not a number"),
    ("", "is empty"),
  ],
)
def test_fit_bad_files_exit_2_naming_file_and_line(content, message, capsys, tmp_path):
  path = tmp_path / "r.csv"
  if content is not None:
    path.write_text(content)
  assert cli.main(["fit", str(path)]) == 2
  captured = capsys.readouterr()
  err = captured.err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("mfjax fit: error: ") and message in err[0]


def _json_line(capsys):
  """The JSON report: with --json it is all that stdout holds."""
  return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_fit_save_then_recommend_and_evaluate_on_movielens_u1(u1_fit, capsys):
  _, fitted, model_path, data = u1_fit
  base, test = str(data / "u1.base"), str(data / "u1.test")
  model = mfjax.load(model_path)
  settings = mfjax.FitSettings()
  assert (model.settings["ensemble"], model.settings["steps"]) == (1, settings.steps)
  assert "seeds" not in model.settings and "epochs" not in model.settings
  assert model.scale == (1.0, 5.0) and model.id_maps.n_lines == fitted["n_train"]

  # recommend: raw ids and titles, the user's training items left out, and the
  # same list as a NumPy top-5 of the saved model's predictions plus 0.5 x the
  # scale's width x log(1 + the item's ratings in --rated), with the predictions.
  items_file = str(data / "u.item")
  argv = ["recommend", model_path, "--user", "1", "-n", "5", "--json"]
  assert cli.main([*argv, "--items", items_file, "--rated", base]) == 0
  shown = _json_line(capsys)
  maps = model.id_maps
  user = int(maps.user_index([1])[0])
  rated = np.loadtxt(base, dtype=np.int64)
  seen = rated[rated[:, 0] == 1, 1]
  predicted = np.array(mfjax.predict(model.params, users=[user]))[0]
  counts = np.bincount(maps.item_index(rated[:, 1]), minlength=len(maps.items))
  for weight, flags in ((0.5, []), (0.0, ["--popularity-weight", "0"])):
    if flags:
      assert cli.main([*argv, "--rated", base, *flags]) == 0
      shown = _json_line(capsys)
    assert shown["popularity_weight"] == weight
    order = predicted + weight * 4.0 * np.log1p(counts)
    order[maps.item_index(seen)] = -np.inf
    top = np.argsort(-order, kind="stable")[:5]
    assert shown["items"] == maps.items[top].tolist()
    assert not set(shown["items"]) & set(seen.tolist())
    np.testing.assert_allclose(shown["scores"], predicted[top], rtol=1e-5)
  titles = {}
  with open(items_file, encoding="latin-1") as file:
    for line in file:
      fields = line.split("|")
      titles[int(fields[0])] = fields[1]
  assert cli.main([*argv, "--items", items_file, "--rated", base]) == 0
  shown = _json_line(capsys)
  assert shown["titles"] == [titles[i] for i in shown["items"]]

  # evaluate: the fit's test RMSE again, and the ranking metrics at 10.
  assert cli.main(["evaluate", model_path, test, "--train", base, "--json"]) == 0
  scored = _json_line(capsys)
  np.testing.assert_allclose(scored["test_rmse"], fitted["test_rmse"], rtol=1e-5)
  np.testing.assert_allclose(scored["test_mae"], fitted["test_mae"], rtol=1e-5)
  for name in ("precision_at_10", "recall_at_10", "ndcg_at_10"):
    assert 0 < scored[name] < 1 and 0 < scored[f"popularity_{name}"] < 1
  assert scored["n_users_ranked"] > (400 if data == ML100K else 20)
  assert scored["train_excluded"]


def test_recommend_and_evaluate_bad_input_exit_2(capsys, tmp_path):
  ratings = tmp_path / "r.csv"
  ratings.write_text("1,10,4\n1,11,3\n2,10,5\n2,12,1\n3,11,2\n")
  # A model of the file's ids, as `fit --save` writes it, and its bare params.
  params = random_params(0, 3, 3, 2)
  users, items = np.array([1, 2, 3], np.int64), np.array([10, 11, 12], np.int64)
  model_path = str(tmp_path / "m.npz")
  rated = np.array([[0, 0], [0, 1], [1, 0], [1, 2], [2, 1]], np.int32)  # r.csv's.
  maps = mfjax.IdMaps(users, items, (1.0, 5.0))
  mfjax.save(model_path, mfjax.Model(params, maps, rated=rated))
  no_pairs = str(tmp_path / "no_pairs.npz")  # As `fit --save --no-rated` writes.
  mfjax.save(no_pairs, mfjax.Model(params, maps))
  params_only = str(tmp_path / "p.npz")
  mfjax.save(params_only, params)
  not_a_model = tmp_path / "x.npz"
  not_a_model.write_text("hello")
  items = tmp_path / "u.item"
  items.write_text("10|Ten|\n11|Eleven|\n")  # No title for item 12.
  empty_items = tmp_path / "empty.item"
  empty_items.write_text("")
  bad_items = tmp_path / "bad.item"
  bad_items.write_text("10|Ten|\n11\n")
  cases = [
    (["recommend", no_pairs, "--user", "9"], "user '9' is not in the model, and"),
    (["recommend", model_path, "--user", "x", "--fallback", "none"], "user 'x' is not"),
    (["recommend", model_path, "--user", "1", "-n", "0"], "must be an int >= 1"),
    (["recommend", model_path, "--user", "1", "-n", "4"], "at most the model's 3"),
    (["recommend", model_path, "--user", "3", "--items", str(items)], "no title"),
    (["recommend", model_path, "--user", "3", "--items", str(empty_items)], "empty"),
    (
      ["recommend", model_path, "--user", "3", "--items", str(bad_items)],
      "bad.item:2: expected 'id|title|...'",
    ),
    (["recommend", str(not_a_model), "--user", "1"], "not an mfjax model"),
    (["recommend", str(tmp_path / "none.npz"), "--user", "1"], "No such file"),
    (["recommend", params_only, "--user", "1"], "bare parameters"),
    (["recommend", model_path], "--user"),
    (["evaluate", model_path, str(tmp_path / "none.csv")], "no such file"),
    (["evaluate", model_path, str(ratings), "-k", "5"], "at most the model's 3"),
  ]
  for argv, message in cases:
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], (argv, err)


def _model_file(tmp_path, name, items):
  """A saved model of one user (id 1), who rated none of the given int item ids
  in training (its training pairs are saved, as `fit --save` does: none)."""
  params = random_params(0, 1, len(items), 2)
  maps = mfjax.IdMaps(np.array([1], np.int64), np.array(items, np.int64), (1, 5))
  path = tmp_path / name
  rated = np.zeros((0, 2), np.int32)
  mfjax.save(path, mfjax.Model(params, id_maps=maps, rated=rated))
  return str(path), np.asarray(mfjax.predict(params))[0]


@pytest.mark.slow
def test_evaluate_leaves_out_the_saved_training_pairs_as_recommend_does(
  capsys, tmp_path
):
  # One user, three items; the model's saved training pair is (user 1, item 7).
  params = random_params(0, 1, 3, 2)
  maps = mfjax.IdMaps(np.array([1], np.int64), np.array([7, 8, 9], np.int64), (1, 5))
  path = str(tmp_path / "m.npz")
  mfjax.save(
    path, mfjax.Model(params, id_maps=maps, rated=np.array([[0, 0]], np.int32))
  )
  test = tmp_path / "t.csv"
  test.write_text("1,8,5\n")
  assert cli.main(["evaluate", path, str(test), "-k", "1", "--json"]) == 0
  report = _json_line(capsys)
  assert report["train_excluded"] and report["train_source"] == "model"
  # Item 7 left out, the list of one is item 8 or 9: a hit exactly when the
  # model scores 8 above 9, as recommend would list it.
  top = mfjax.load(path).recommend(1, 1)[0][0]
  assert report["hit_rate_at_1"] == (1.0 if top == 8 else 0.0)
  # A model saved --no-rated: nothing to leave out, and the report says so.
  bare = str(tmp_path / "bare.npz")
  mfjax.save(bare, mfjax.Model(params, id_maps=maps))
  assert cli.main(["evaluate", bare, str(test), "-k", "1"]) == 0
  captured = capsys.readouterr()
  assert "training items are not left out" in captured.out + captured.err


@pytest.mark.parametrize(
  ("lines", "given", "expected"),
  [
    ("u1,i1,1\nu2,i2,1\n", None, 1.0),  # One value: relevant means rated.
    ("u1,i1,1\nu2,i2,5\n", None, 4.0),
    ("u1,i1,1\nu2,i2,1\n", 3.0, 3.0),
  ],
)
def test_relevance_threshold_defaults_to_the_one_value_of_implicit_data(
  tmp_path, lines, given, expected
):
  path = tmp_path / "r.csv"
  path.write_text(lines)
  ratings, _ = mfjax.load_ratings(path)
  assert common.relevance_threshold(given, ratings) == expected


def test_item_titles_from_movies_csv_in_utf8_and_u_item_in_latin1(capsys, tmp_path):
  movies = tmp_path / "movies.csv"
  movies.write_text(
    'movieId,title,genres\n1,"Amélie (2001)",Comedy\n2,"Crow, The (1994)",Action\n',
    encoding="utf-8",
  )
  titles = {1: "Amélie (2001)", 2: "Crow, The (1994)"}
  model, scores = _model_file(tmp_path, "two.npz", [1, 2])
  argv = ["recommend", model, "--user", "1", "--items", str(movies), "--json"]
  assert cli.main(argv) == 0
  shown = _json_line(capsys)
  expected = [[1, 2][j] for j in np.argsort(-scores, kind="stable")]
  assert shown["items"] == expected
  assert shown["titles"] == [titles[i] for i in expected]
  u_item = tmp_path / "u.item"
  u_item.write_bytes("7|Café (1995)|01-Jan-1995||\n".encode("latin-1"))
  model, _ = _model_file(tmp_path, "one.npz", [7])
  argv = ["recommend", model, "--user", "1", "--items", str(u_item), "--json"]
  assert cli.main(argv) == 0
  assert _json_line(capsys)["titles"] == ["Café (1995)"]


def _ratings_csv(tmp_path, name="r.csv", n=2000, seed=0):
  rng = np.random.default_rng(seed)
  lines = [
    f"u{u},i{i},{r}"
    for u, i, r in zip(
      rng.integers(0, 50, n), rng.integers(0, 40, n), rng.integers(1, 6, n),
      strict=True,
    )
  ]  # fmt: skip
  path = tmp_path / name
  path.write_text("\n".join(lines) + "\n")
  return path


def test_fit_of_one_rating_value_exits_2_suggesting_the_ranking_objective(
  capsys, tmp_path
):
  path = tmp_path / "checkins.csv"
  path.write_text("".join(f"u{u % 7},i{u % 5},1\n" for u in range(40)))
  assert cli.main(["fit", str(path), "--save", str(tmp_path / "m.npz")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "every rating is 1" in err[0], err
  assert "--objective ranking" in err[0]
  assert not (tmp_path / "m.npz").exists()


@pytest.mark.slow  # Two fits compile (3 s); fitting/test_ensemble checks the note.
def test_a_fit_whose_l2_leaves_one_dimension_says_so_and_reports_it(capsys, tmp_path):
  train = _ratings_csv(tmp_path)
  fit = ["fit", str(train), "--objective", "ranking", "--rank", "4", "--steps", "2"]
  assert cli.main([*fit, "--l2", "30", "--json"]) == 0
  captured = capsys.readouterr()
  report = json.loads(captured.out)
  assert report["effective_rank"] <= 1 and report["rank"] == 4
  warning = [line for line in captured.err.splitlines() if "warning" in line]
  assert len(warning) == 1, captured.err
  assert warning[0].startswith("warning: the fitted factors keep ")  # Human text.
  assert "of their 4 dimensions: the others shrank" in warning[0]
  assert "A smaller --l2 keeps more (this fit's is 30," in warning[0]
  assert cli.main([*fit, "--json"]) == 0  # The default l2 keeps them.
  captured = capsys.readouterr()
  assert json.loads(captured.out)["effective_rank"] > 1
  assert "warning" not in captured.err


@pytest.mark.slow  # Several seconds of compiling on 2 CPU cores.
def test_ranking_fit_saves_its_objective_and_lists_every_user(capsys, tmp_path):
  train = _ratings_csv(tmp_path)
  model_path, lists = tmp_path / "ranker.npz", tmp_path / "lists.csv"
  fit = ["fit", str(train), "--test-fraction", "0.2", "--objective", "ranking"]
  assert cli.main([*fit, "--rank", "4", "--save", str(model_path), "--json"]) == 0
  report = _json_line(capsys)
  assert report["objective"] == "ranking" and "test_rmse" not in report
  assert 0 <= report["test_ndcg_at_10"] <= 1 and report["alpha0"] == 60.0
  model = mfjax.load(model_path)
  assert model.objective == "ranking" and model.settings["rank"] == 4
  # evaluate gives ranking metrics and says that RMSE does not apply.
  assert cli.main(["evaluate", str(model_path), str(train), "--json"]) == 0
  captured = capsys.readouterr()
  out = captured.out
  assert "RMSE and MAE do not apply" in captured.err  # Human text: stderr.
  evaluated = json.loads(out)
  assert "test_rmse" not in evaluated and "ndcg_at_10" in evaluated
  # --all: every user's top 5 as CSV, the same lists as recommend gives.
  argv = ["recommend", str(model_path), "--all", "-n", "5", "--rated", str(train)]
  assert cli.main([*argv, "--output", str(lists)]) == 0
  rows = lists.read_text().splitlines()
  assert rows[0] == "user,item,rank,score"
  maps = model.id_maps
  rated, _ = mfjax.load_ratings(str(train), id_maps=maps)
  users = np.arange(len(maps.users), dtype=np.int32)
  items, scores = mfjax.recommend(model.params, users, 5, exclude=rated)
  expected = [
    f"{maps.users[u]},{maps.items[items[u, r]]},{r + 1},{float(scores[u, r]):.6g}"
    for u in users
    for r in range(5)
    if items[u, r] >= 0
  ]
  assert rows[1:] == expected
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.slow
def test_recommend_all_over_many_users_writes_what_recommend_gives(capsys, tmp_path):
  # 20,000 users: more than one call of mfjax.recommend (chunks of users, their
  # excluded pairs padded); an id with a quote comes back as CSV quotes it.
  rng = np.random.default_rng(4)
  users = np.repeat(np.arange(20_000), 2)
  items = rng.integers(0, 30, users.size)
  train = tmp_path / "train.csv"
  names = {0: 'say"hi'}
  train.write_text(
    "".join(
      f"{names.get(u, f'u{u}')},{i},1\n" for u, i in zip(users, items, strict=True)
    )
  )
  model_path, lists = tmp_path / "m.npz", tmp_path / "lists.csv"
  fit = ["fit", str(train), "--objective", "ranking", "--rank", "2", "--steps", "1"]
  assert cli.main([*fit, "--save", str(model_path)]) == 0
  argv = ["recommend", str(model_path), "--all", "-n", "3", "--output", str(lists)]
  assert cli.main(argv) == 0
  capsys.readouterr()
  # A ranking model takes no popularity weight: one line, exit 2.
  assert cli.main([*argv, "--popularity-weight", "1"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--popularity-weight applies to rating models" in err[0]
  with open(lists, newline="") as f:
    rows = list(csv.reader(f))
  model = mfjax.load(model_path)
  maps = model.id_maps
  every = np.arange(len(maps.users), dtype=np.int32)
  rated = pairs_as_ratings(model.rated, len(every), len(maps.items))
  top, scores = map(np.asarray, mfjax.recommend(model.params, every, 3, exclude=rated))
  expected = [
    [
      str(maps.users[u]),
      str(maps.items[top[u, r]]),
      str(r + 1),
      f"{float(scores[u, r]):.6g}",
    ]
    for u in every
    for r in range(3)
    if top[u, r] >= 0
  ]
  assert rows[0] == ["user", "item", "rank", "score"] and rows[1:] == expected
  assert 'say"hi' in {row[0] for row in rows[1:]}
  assert lists.read_text().count('"say""hi",') == 3


@pytest.mark.parametrize(
  "argv, message",
  [
    (["fit", "{train}", "--objective", "ndcg"], "argument --objective: invalid"),
    (["fit", "{train}", "--alpha0", "-1"], "argument --alpha0: must be >= 0"),
    (["fit", "{train}", "--alpha0", "1"], "--alpha0 applies to --objective ranking"),
    (
      ["fit", "{train}", "--objective", "ranking", "--ensemble", "2"],
      "--ensemble does not apply to --objective ranking",
    ),
    (["fit", "{train}", "--save", "{tmp}/no/m.npz"], "/no does not exist"),
    (["recommend", "{model}", "--all"], "--all needs --output FILE"),
    (["recommend", "{model}", "--all", "--output", "{tmp}/no/x.csv"], "does not exist"),
    (["recommend", "{model}", "--all", "--output", "{tmp}"], "is a directory"),
    (["recommend", "{model}", "--all", "--user", "u1"], "not allowed with argument"),
    (
      ["recommend", "{model}", "--user", "u1", "--output", "{tmp}/x"],
      "goes with --all",
    ),
    (["recommend", "{model}", "--all", "-n", "41", "--output", "{tmp}/x"], "at most"),
  ],
)
def test_ranking_and_all_lists_bad_input_exit_2(argv, message, capsys, tmp_path):
  train = _ratings_csv(tmp_path, n=300)
  model = tmp_path / "m.npz"
  params = random_params(0, 50, 40, 2)
  maps = mfjax.load_ratings(str(train))[1]
  mfjax.save(model, mfjax.Model(params._replace(
    user_factors=params.user_factors[: len(maps.users)],
    user_bias=params.user_bias[: len(maps.users)],
    item_factors=params.item_factors[: len(maps.items)],
    item_bias=params.item_bias[: len(maps.items)],
  ), id_maps=maps, objective="ranking"))  # fmt: skip
  names = dict(train=train, tmp=tmp_path, model=model)
  assert cli.main([a.format(**names) for a in argv]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err
  assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_gibbs_fit_saves_a_model_that_recommends_and_evaluates(capsys, tmp_path):
  train, test = _ratings_csv(tmp_path), _ratings_csv(tmp_path, "t.csv", 200, 1)
  model_path = tmp_path / "bayes.npz"
  fit = ["fit", str(train), "--test", str(test), "--solver", "gibbs", "--rank", "3"]
  fit += [
    "--samples",
    "30",
    "--burn-in",
    "5",
    "--max-rank",
    "16",
    "--implicit",
    "users",
  ]
  assert cli.main([*fit, "--save", str(model_path), "--json"]) == 0
  report = _json_line(capsys)
  assert report["solver"] == "gibbs" and report["samples"] == 30
  assert report["burn_in"] == 5 and report["max_rank"] == 16
  assert report["implicit"] == "users"
  assert "l2" not in report and "learning_rate" not in report
  # 30 draws of rank 3 exceed 16: the posterior mean's rank-16 SVD is saved.
  assert report["saved_rank"] == 16 and report["failure"] is None
  model = mfjax.load(model_path)
  assert model.settings["samples"] == 30
  assert model.params.user_factors.shape[1] == 16
  # evaluate scores the saved model as fit did.
  assert cli.main(["evaluate", str(model_path), str(test), "--json"]) == 0
  evaluated = _json_line(capsys)
  assert evaluated["test_rmse"] == pytest.approx(report["test_rmse"], abs=1e-4)
  assert cli.main(["recommend", str(model_path), "--user", "u1", "-n", "3"]) == 0
  assert "top 3 items for user u1" in capsys.readouterr().out


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--solver", "gibbs", "--lr", "0.1"], "--lr does not apply to --solver gibbs"),
    (["--solver", "gibbs", "--steps", "3"], "--steps does not apply to --solver gibbs"),
    (["--samples", "10"], "--samples applies to --solver gibbs only"),
    (["--objective", "ranking", "--burn-in", "3"], "--burn-in does not apply to"),
    (["--objective", "ranking", "--solver", "gibbs"], "--solver gibbs cannot fit"),
    (["--solver", "adam", "--objective", "ranking"], "--solver adam cannot fit"),
    (["--solver", "gibbs", "--burn-in", "-1"], "argument --burn-in: must be an int"),
    (["--solver", "mcmc"], "argument --solver: invalid choice"),
    (["--implicit", "users"], "--implicit applies to --solver gibbs only"),
    (["--solver", "gibbs", "--implicit", "all"], "argument --implicit: invalid choice"),
  ],
)
def test_solver_options_refused_exit_2(argv, message, capsys, tmp_path):
  train = _ratings_csv(tmp_path, n=300)
  for command in ("fit", "cv"):
    assert cli.main([command, str(train), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.slow  # Compiles fit programs: several seconds.
def test_saved_pairs_fallback_fold_in_and_similar(capsys, tmp_path):
  train, test = _ratings_csv(tmp_path), _ratings_csv(tmp_path, "t.csv", 200, 1)
  model_path = tmp_path / "m.npz"
  fit = ["fit", str(train), "--test", str(test), "--rank", "3", "--steps", "2"]
  fit += ["--ensemble", "1"]
  assert cli.main([*fit, "--save", str(model_path), "--json"]) == 0
  report = _json_line(capsys)
  assert report["saved_rank"] == 3
  assert report["saved_bytes"] == os.path.getsize(model_path)
  model = mfjax.load(model_path)
  ratings, maps = mfjax.load_ratings(str(train))
  np.testing.assert_array_equal(model.rated, mfjax.serving.model.rated_pairs(ratings))
  # The saved pairs leave out the rated items as --rated TRAIN does.
  user = str(maps.users[0])
  lists = []
  for extra in ([], ["--rated", str(train)]):
    assert (
      cli.main(["recommend", str(model_path), "--user", user, *extra, "--json"]) == 0
    )
    lists.append(_json_line(capsys)["items"])
  assert lists[0] == lists[1]
  mine = np.asarray(ratings.items)[np.asarray(ratings.users) == 0]
  assert not set(lists[0]) & set(maps.items[mine].tolist())
  # An unknown user: the most-rated items, or exit 2 with --fallback none.
  assert cli.main(["recommend", str(model_path), "--user", "nobody", "--json"]) == 0
  out = _json_line(capsys)
  counts = np.bincount(np.asarray(ratings.items), minlength=ratings.n_items)
  top = np.lexsort((np.arange(ratings.n_items), -counts))[:10]
  assert out["fallback"] and out["items"] == maps.items[top].tolist()
  argv = ["recommend", str(model_path), "--user", "nobody", "--fallback", "none"]
  assert cli.main(argv) == 2
  assert "'nobody' is not in the model" in capsys.readouterr().err
  # --ratings: a new user's ratings folded in give the model's fold_in list.
  new = tmp_path / "new.csv"
  items = maps.items[:3].tolist()
  new.write_text("".join(f"newcomer,{i},5\n" for i in items))
  argv = ["recommend", str(model_path), "--user", "newcomer", "--ratings", str(new)]
  assert cli.main([*argv, "-n", "4", "--json"]) == 0
  folded = model.fold_in(["newcomer"] * 3, items, [5.0, 5.0, 5.0])
  expected, _ = folded.recommend("newcomer", 4)
  assert _json_line(capsys)["items"] == expected.tolist()
  # similar: the model's similar_items, raw ids.
  item = str(maps.items[2])
  assert (
    cli.main(["similar", str(model_path), "--item", item, "-n", "3", "--json"]) == 0
  )
  near, cosines = model.similar_items(maps.items[2], 3)
  out = _json_line(capsys)
  assert out["items"] == near.tolist()
  np.testing.assert_allclose(out["cosines"], cosines, rtol=1e-6)
  assert cli.main(["similar", str(model_path), "--item", "nope"]) == 2
  assert "item 'nope' is not in the model" in capsys.readouterr().err
  # --no-rated: no pairs in the file, and the fallback then asks for --rated.
  assert cli.main([*fit, "--save", str(model_path), "--no-rated"]) == 0
  capsys.readouterr()
  assert mfjax.load(model_path).rated is None
  assert cli.main(["recommend", str(model_path), "--user", "nobody"]) == 2
  assert "pass --rated TRAIN" in capsys.readouterr().err


def test_a_ranking_models_recommend_ratings_folds_in_with_its_saved_settings(
  capsys, tmp_path
):
  train, test = _ratings_csv(tmp_path), _ratings_csv(tmp_path, "t.csv", 200, 1)
  model_path = tmp_path / "ranker.npz"
  fit = ["fit", str(train), "--test", str(test), "--objective", "ranking"]
  fit += ["--rank", "3", "--steps", "2", "--alpha0", "30", "--l2", "0.05"]
  assert cli.main([*fit, "--save", str(model_path), "--json"]) == 0
  capsys.readouterr()
  model = mfjax.load(model_path)
  _, maps = mfjax.load_ratings(str(train))
  new = tmp_path / "new.csv"
  items = maps.items[:4].tolist()
  stars = [5, 4, 5, 3]
  new.write_text(
    "".join(f"newcomer,{i},{r}\n" for i, r in zip(items, stars, strict=True))
  )
  argv = ["recommend", str(model_path), "--user", "newcomer", "--ratings", str(new)]
  assert cli.main([*argv, "-n", "4", "--json"]) == 0
  listed = _json_line(capsys)["items"]
  # The fold-in the model's settings give: alpha0 30 at the training density.
  n_users, n_items = model.params.user_factors.shape[0], len(maps.items)
  folded = mfjax.fold_in(
    model.params,
    mfjax.Ratings(
      jnp.zeros(4, jnp.int32),
      jnp.asarray(maps.item_index(np.asarray(items))),
      jnp.asarray([5.0, 4.0, 5.0, 3.0]),
      n_users=1,
      n_items=n_items,
    ),
    l2=0.05,
    objective=objectives.Ranking(alpha0=30.0, confidence=1.0, per_density=True),
    density=model.settings["n_train"] / (n_users * n_items),
  )
  scores = np.array(folded.user_factors[0] @ folded.item_factors.T)
  scores[np.asarray(maps.item_index(np.asarray(items)))] = -np.inf
  assert listed == maps.items[np.argsort(-scores, kind="stable")[:4]].tolist()


@pytest.mark.slow
def test_a_ranking_fit_of_counts_weighs_them_by_log_and_says_so(capsys, tmp_path):
  rng = np.random.default_rng(3)
  plays = tmp_path / "plays.csv"
  plays.write_text(
    "".join(
      f"u{u},a{a},{c}\n"
      for u, a, c in zip(
        rng.integers(0, 30, 400), rng.integers(0, 25, 400),
        rng.integers(1, 5000, 400), strict=True,
      )
    )
  )  # fmt: skip
  model_path = tmp_path / "m.npz"
  fit = ["fit", str(plays), "--objective", "ranking", "--rank", "2", "--steps", "1"]
  assert cli.main([*fit, "--save", str(model_path), "--json"]) == 0
  report = _json_line(capsys)
  assert (report["confidence_transform"], report["confidence"]) == ("log", 0.0)
  saved = mfjax.load(model_path).settings
  assert (saved["confidence_transform"], saved["confidence"]) == ("log", 0.0)
  assert cli.main([*fit, "--confidence-transform", "linear", "--json"]) == 0
  report = _json_line(capsys)
  assert (report["confidence_transform"], report["confidence"]) == ("linear", 1.0)
  # Counts below 0 cannot be logged: one line, exit 2.
  negative = tmp_path / "negative.csv"
  negative.write_text("a,x,-3\nb,y,2\na,y,40\n")
  argv = ["fit", str(negative), "--objective", "ranking", "--confidence-transform"]
  assert cli.main([*argv, "log"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "'log' is for counts" in err[0], err
  # A setting of the ranking objective only.
  assert cli.main(["fit", str(plays), "--confidence-transform", "log"]) == 2
  assert "--confidence-transform" in capsys.readouterr().err


@pytest.mark.slow  # Compiles fit programs: several seconds.
def test_cv_prints_a_table_and_matches_cross_validate(capsys, tmp_path):
  path = _ratings_csv(tmp_path)
  argv = ["cv", str(path), "--folds", "3", "--rank", "2", "--steps", "2"]
  assert cli.main([*argv, "--ensemble", "1", "--json"]) == 0
  captured = capsys.readouterr()
  assert "3-fold cross-validation of the rating fit" in captured.err
  assert "Fit time (s)" in captured.err
  report = json.loads(captured.out)
  ratings, maps = mfjax.load_ratings(str(path))
  expected = mfjax.cross_validate(
    ratings, folds=3, rank=2, steps=2, ensemble=1, scale=maps.scale
  )
  np.testing.assert_allclose(report["rmse"], expected.metrics["rmse"], rtol=1e-5)
  assert report["rmse_mean"] == pytest.approx(expected.metrics["rmse"].mean())
  argv = ["cv", str(path), "--folds", "2", "--objective", "ranking", "--rank", "2"]
  assert cli.main([*argv, "--json"]) == 0
  report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert len(report["ndcg"]) == 2 and 0 <= report["ndcg_mean"] <= 1
  for bad, message in [
    (["--folds", "1"], "--folds must be at least 2"),
    (["--alpha0", "1"], "--alpha0 applies to --objective ranking only"),
    (["--objective", "ranking", "--lr", "0.1"], "--lr does not apply"),
  ]:
    assert cli.main(["cv", str(path), *bad]) == 2
    assert message in capsys.readouterr().err


# --- robustness: divergence, --json, closed pipes, lost reports --------------------


@pytest.mark.slow  # Compiles fit programs: several seconds.
def test_a_diverged_fit_exits_1_and_keeps_the_saved_model(capsys, tmp_path):
  train = _ratings_csv(tmp_path)
  model_path = tmp_path / "m.npz"
  model_path.write_bytes(b"an earlier model")
  fit = ["fit", str(train), "--rank", "2", "--steps", "3", "--ensemble", "1"]
  # lr 30: finite losses of 1e6 and more, never NaN.
  assert cli.main([*fit, "--lr", "30", "--save", str(model_path), "--json"]) == 1
  captured = capsys.readouterr()
  report = json.loads(captured.out)
  assert report["diverged"] and "training diverged" in report["failure"]
  assert "saved" not in report
  err = captured.err.strip().splitlines()
  assert err[-1].startswith("mfjax fit: error: training diverged: the loss grew to")
  assert f"{model_path} was not written" in err[-1] and "--allow-divergence" in err[-1]
  assert model_path.read_bytes() == b"an earlier model"
  # --allow-divergence: the best params (the initial ones here) saved, exit 0.
  argv = [*fit, "--lr", "30", "--save", str(model_path), "--allow-divergence"]
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  assert "warning: training diverged" in out
  params = mfjax.load(model_path).params
  assert np.abs(np.asarray(params.user_factors)).max() < 1.0  # No 1e6 scores.
  # A sane learning rate: no failure.
  assert cli.main([*fit, "--json"]) == 0
  assert _json_line(capsys)["failure"] is None


@pytest.mark.slow  # Compiles a fit program.
def test_cv_fails_on_a_diverged_fold(capsys, tmp_path):
  train = _ratings_csv(tmp_path)
  argv = ["cv", str(train), "--folds", "2", "--rank", "2", "--steps", "3"]
  assert cli.main([*argv, "--ensemble", "1", "--lr", "30", "--json"]) == 1
  captured = capsys.readouterr()
  assert all("diverged" in f for f in json.loads(captured.out)["failures"])
  err = captured.err.strip().splitlines()[-1]
  assert err.startswith("mfjax cv: error: fold 1 (and 1 more folds): training diverged")
  assert err.endswith("pass --allow-divergence to score the folds anyway.")


@pytest.mark.slow  # Compiles a fit program.
def test_a_failed_save_keeps_the_report_and_names_the_path(
  capsys, tmp_path, monkeypatch
):
  import errno

  train = _ratings_csv(tmp_path)
  target = str(tmp_path / "m.npz")

  def full_disk(path, model):
    raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))

  monkeypatch.setattr(mfjax, "save", full_disk)
  argv = ["fit", str(train), "--rank", "2", "--steps", "2", "--ensemble", "1"]
  assert cli.main([*argv, "--save", target]) == 2
  captured = capsys.readouterr()
  assert re.search(r"^test_rmse +\d\.\d{4}$", captured.out, re.M)  # Not lost.
  assert captured.err.strip() == (
    f"mfjax fit: error: {target}: No space left on device"
  )


def test_an_os_error_without_a_file_name_is_not_none_none(capsys, monkeypatch):
  def broken(args):
    raise OSError("the disk went away")

  monkeypatch.setattr(cli.similar, "run", broken)
  assert cli.main(["similar", "m.npz", "--item", "1"]) == 2
  err = capsys.readouterr().err.strip()
  assert err == "mfjax similar: error: the disk went away" and "None" not in err


def test_json_stdout_is_one_document_and_never_bare_nan(capsys, tmp_path):
  # A model whose users are not in the test file: the ranking metrics are NaN.
  model, _ = _model_file(tmp_path, "one.npz", [7, 8])
  test = tmp_path / "t.csv"
  test.write_text("2,7,5\n3,8,4\n")
  assert cli.main(["evaluate", model, str(test), "-k", "2", "--json"]) == 0
  captured = capsys.readouterr()
  text = captured.out
  report = json.loads(text)  # The whole of stdout: one document.
  assert "NaN" not in text and report["ndcg_at_2"] is None
  assert report["n_users_ranked"] == 0
  # The human report and the note went to stderr.
  assert "test_rmse" in captured.err
  assert "none of the test ratings is of a user and an item in the model" in (
    captured.err
  )
  for argv in (
    ["recommend", model, "--user", "1", "--json"],
    ["similar", model, "--item", "7", "-n", "1", "--json"],
  ):
    assert cli.main(argv) == 0
    json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly_with_status_141(tmp_path):
  model, _ = _model_file(tmp_path, "one.npz", [7, 8])
  # The reader is gone before the command writes (it imports jax first).
  process = subprocess.Popen(
    [sys.executable, "-m", "mfjax", "recommend", model, "--user", "1"],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )
  process.stdout.close()
  with process.stderr:
    err = process.stderr.read().decode()
  assert process.wait(timeout=120) == 141
  assert err == ""


def test_scale_option_refuses_a_typo_and_headers_say_their_columns(capsys, tmp_path):
  typo = tmp_path / "typo.csv"
  typo.write_text("1,1,5\n1,2,44\n")
  assert cli.main(["fit", str(typo), "--scale", "1,5"]) == 2
  err = capsys.readouterr().err.strip()
  assert err == (
    f"mfjax fit: error: {typo}:2: rating 44 is outside the declared scale [1, 5]."
  )
  for bad, message in (("5,1", "LO < HI"), ("1", "LO,HI"), ("1,x", "invalid number")):
    assert cli.main(["fit", str(typo), "--scale", bad]) == 2
    assert message in capsys.readouterr().err
  # Columns by name: items first in the file. fit says which is which as it
  # loads TRAIN (then stops here, before any compiling, on the missing --test).
  swapped = tmp_path / "swapped.csv"
  rows = _ratings_csv(tmp_path).read_text().splitlines()
  lines = ["movieId,userId,rating"] + [
    ",".join((i, u, r)) for u, i, r in (row.split(",") for row in rows)
  ]
  swapped.write_text("\n".join(lines) + "\n")
  missing = str(tmp_path / "missing.csv")
  assert cli.main(["fit", str(swapped), "--test", missing]) == 2
  assert capsys.readouterr().out == (
    f"{swapped}: columns item=movieId, user=userId, rating=rating\n"
  )
  _, maps = mfjax.load_ratings(str(swapped))
  assert all(str(u).startswith("u") for u in maps.users)
  # A header that does not name its roles: --columns says them.
  unnamed = tmp_path / "unnamed.csv"
  unnamed.write_text("\n".join(["book,user,stars"] + lines[1:]) + "\n")
  assert cli.main(["fit", str(unnamed), "--test", missing]) == 2
  assert "a header whose names do not say" in capsys.readouterr().err
  argv = ["fit", str(unnamed), "--columns", "item,user,rating", "--test", missing]
  assert cli.main(argv) == 2  # Stops at the missing --test, after TRAIN.
  captured = capsys.readouterr()
  assert captured.out == f"{unnamed}: columns item=book, user=user, rating=stars\n"
  assert "missing.csv" in captured.err
  assert cli.main(["fit", str(unnamed), "--columns", "item,person,rating"]) == 2
  assert "'person' is not a role" in capsys.readouterr().err


def test_a_rating_far_off_the_others_is_one_warning_line(capsys, tmp_path):
  path = tmp_path / "r.csv"
  lines = [f"{u},{i},{1 + (u + i) % 5}" for u in range(20) for i in range(5)]
  lines[13] = "2,3,44"
  path.write_text("\n".join(lines) + "\n")
  missing = str(tmp_path / "missing.csv")
  assert cli.main(["fit", str(path), "--test", missing]) == 2  # Stops after TRAIN.
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and err[0].startswith(f"mfjax: warning: {path}:14: rating 44")
  assert err[0].endswith("(--scale LO,HI)") and "missing.csv" in err[1]


# A child `mfjax fit --save` that stops in the middle of writing the model.
_INTERRUPTED_FIT = (
  STOP_MID_SAVE
  + """
from mfjax.cli import main

sys.exit(main(sys.argv[1:]))
"""
)


@pytest.mark.slow  # A child process fits and is killed mid-save.
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_mid_save_removes_the_temp_file_and_keeps_the_old_model(tmp_path):
  # The library installs no signal handler; the command turns SIGTERM into an
  # exception while it writes, so the save cleans up, then dies of the signal.
  data = _ratings_csv(tmp_path)
  path = tmp_path / "model.npz"
  fit = ["fit", str(data), "--steps", "1", "--ensemble", "1", "--rank", "2"]
  assert cli.main([*fit, "--save", str(path)]) == 0
  old = path.read_bytes()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
  env["MFJAX_COMPILATION_CACHE"] = "0"
  child = subprocess.Popen(
    [sys.executable, "-c", _INTERRUPTED_FIT, *fit, "--save", str(path)],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    env=env,
    cwd=tmp_path,
  )
  try:
    line = child.stderr.readline()
    while line and line != b"writing\n":
      line = child.stderr.readline()
    assert line == b"writing\n"
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == -signal.SIGTERM
  finally:
    child.kill()
    child.wait()
    child.stderr.close()
  assert path.read_bytes() == old  # Never a half-written model.
  assert sorted(os.listdir(tmp_path)) == ["model.npz", "r.csv"]  # No temp file.


@pytest.mark.slow
def test_recommend_with_a_model_saved_without_pairs_says_rated_items_stay(
  capsys, tmp_path
):
  data = _ratings_csv(tmp_path)
  path = tmp_path / "m.npz"
  fit = ["fit", str(data), "--steps", "1", "--ensemble", "1", "--rank", "2"]
  assert cli.main([*fit, "--save", str(path), "--no-rated"]) == 0
  capsys.readouterr()
  assert cli.main(["recommend", str(path), "--user", "u3", "-n", "40"]) == 0
  out, err = capsys.readouterr()
  assert "items the user rated are not left out" in err and "--rated TRAIN" in err
  assert len(re.findall(r"^\s+\d+\s+i\d+", out, re.M)) == 40  # All 40 items.
  assert cli.main(["recommend", str(path), "--user", "u3", "--rated", str(data)]) == 0
  out, err = capsys.readouterr()
  assert "not left out" not in err


@pytest.mark.slow
def test_a_negative_scale_parses_with_a_space_as_with_an_equals_sign(capsys, tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / "signed.csv"
  rows = zip(
    rng.integers(0, 30, 600),
    rng.integers(0, 20, 600),
    rng.integers(-10, 11, 600),
    strict=True,
  )
  path.write_text("".join(f"{u},{i},{r}\n" for u, i, r in rows))
  fit = ["fit", str(path), "--steps", "1", "--ensemble", "1", "--rank", "2", "--json"]
  reports = []
  for scale in (["--scale", "-10,10"], ["--scale=-10,10"]):
    assert cli.main([*fit, *scale]) == 0
    reports.append(_json_line(capsys))
  assert reports[0]["test_rmse"] == reports[1]["test_rmse"]
  assert cli.main([*fit, "--scale", "-10,-20"]) == 2  # Parsed, then refused: LO < HI.
  assert "LO < HI" in capsys.readouterr().err


@pytest.mark.slow  # A child process compiles a fit and is killed.
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_during_a_long_fit_ends_the_process_at_once(tmp_path):
  # No Python handler is held while the compiled fit runs: one would only run
  # between bytecodes, so SIGTERM would wait for the whole fit.
  data = _ratings_csv(tmp_path)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
  fit = [sys.executable, "-m", "mfjax", "fit", str(data), "--steps", "1000000"]
  child = subprocess.Popen(
    [*fit, "--ensemble", "1", "--progress", "--save", str(tmp_path / "m.npz")],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    env=env,
  )
  try:
    seen = ""
    while "mfjax train" not in seen and child.poll() is None:
      seen += child.stderr.read(1)
    assert child.poll() is None, seen[-2000:]
    child.send_signal(signal.SIGTERM)
    start = time.monotonic()
    assert child.wait(30) == -signal.SIGTERM
    assert time.monotonic() - start < 10
  finally:
    child.kill()
    child.wait()
    child.stderr.close()
  assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
  "error, code, line",
  [
    (MemoryError(), 2, "mfjax similar: error: out of memory on the host; try"),
    (
      RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 8 GiB\nmore"),
      2,
      "mfjax similar: error: out of memory on the device (RESOURCE_EXHAUSTED: Out",
    ),
    (RecursionError("deep"), 2, "mfjax similar: error: an input nested too deeply"),
    (
      ZeroDivisionError("division by zero"),
      1,
      "mfjax similar: internal error: ZeroDivisionError: division by zero (please",
    ),
    (KeyError("x\ny"), 1, "mfjax similar: internal error: KeyError: 'x"),
  ],
  ids=["memory", "device-memory", "recursion", "bug", "multi-line"],
)
def test_every_exception_class_ends_in_one_line_and_an_exit_code(
  error, code, line, capsys, monkeypatch
):
  def broken(args):
    raise error

  monkeypatch.setattr(cli.similar, "run", broken)
  assert cli.main(["similar", "m.npz", "--item", "1"]) == code
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(line), err


def test_recommend_shows_ratings_on_the_scale_and_labels_ranking_scores(
  capsys, tmp_path
):
  """A rating model's list shows predicted ratings clipped to its scale (as
  Model.predict), a ranking model's its raw scores, said to be no ratings."""
  params = random_params(0, 3, 5, 2)._replace(mean=jnp.float32(6.0))  # Above 5.
  maps = mfjax.IdMaps(users=np.array([1, 2, 3]), items=np.arange(5), scale=(1.0, 5.0))
  path = tmp_path / "m.npz"
  mfjax.save(path, mfjax.Model(params, id_maps=maps))
  assert cli.main(["recommend", str(path), "--user", "2", "-n", "3", "--json"]) == 0
  captured = capsys.readouterr()
  report = json.loads(captured.out)
  model = mfjax.load(path)
  expected = model.predict(np.full(3, 2), np.asarray(report["items"]))
  np.testing.assert_allclose(report["ratings"], expected, rtol=1e-6)
  assert max(report["scores"]) > 5 and max(report["ratings"]) == 5.0
  assert "rating" in captured.err.splitlines()[1]
  ranking = tmp_path / "r.npz"
  mfjax.save(ranking, mfjax.Model(params, id_maps=maps, objective="ranking"))
  assert cli.main(["recommend", str(ranking), "--user", "2", "-n", "3", "--json"]) == 0
  captured = capsys.readouterr()
  assert "ratings" not in json.loads(captured.out)
  assert "they are not ratings" in captured.err
