"""The README and docs/: their code runs and prints what they show; they match the API.

Every ```python block of a page runs, in order, in one namespace per page, in a
temporary directory. A ```text block right after a ```python block is its
expected output. A block that reads MovieLens files (u1.base, u.item, ...) runs
in a test of its own, after the page's other blocks before it, in a directory of
links to the MovieLens 100k files (without them it is skipped, saying why); the
page's later blocks run without it, so none can depend on it. Every
``mfjax ...`` command in a ```bash block, every ``--flag`` in the prose and every
flag of docs/cli.md's synopsis is an option of the real command line.
"""

import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import math
import re
import shlex
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mfjax
from mfjax import cli, deprecation
from tests.conftest import ML100K

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
API = ROOT / "docs" / "api.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MOVIELENS = re.compile(r"\bu(?:[1-5ab])?\.(?:base|test|data|item)\b")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
FLAG = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")
COMMANDS = ("demo", "fit", "recommend", "evaluate", "similar", "cv", "launch")


def _blocks(page):
  """``[(language, code, expected output or None)]`` of a page, in order."""
  text = page.read_text()
  fences = list(FENCE.finditer(text))
  pairs = zip(fences, fences[1:], strict=False)
  adjacent = [not text[a.end() : b.start()].strip() for a, b in pairs] + [False]
  blocks = []
  for j, fence in enumerate(fences):
    language, code = fence.groups()
    after_python = j > 0 and adjacent[j - 1] and fences[j - 1].group(1) == "python"
    if language == "text" and after_python:
      continue  # The output of the block before.
    output = None
    if language == "python" and adjacent[j] and fences[j + 1].group(1) == "text":
      output = fences[j + 1].group(2)
    blocks.append((language, code, output))
  return blocks


def _python_blocks(page):
  return [(code, out) for lang, code, out in _blocks(page) if lang == "python"]


def _needs_movielens(code):
  return bool(MOVIELENS.search(code))


def _assert_prints(actual, expected, where):
  """The same text, with numbers equal to the shown precision (±0.011)."""
  shape = lambda s: NUMBER.sub("#", s).split()
  assert shape(actual) == shape(expected), f"{where} printed:\n{actual}"
  pairs = zip(NUMBER.findall(actual), NUMBER.findall(expected), strict=True)
  for got, shown in pairs:
    assert math.isclose(float(got), float(shown), abs_tol=0.011), (
      f"{where} printed {got} where the page shows {shown}:\n{actual}"
    )


def _run(code, namespace, expected, where):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(code, where, "exec"), namespace)  # noqa: S102
  if expected is not None:
    _assert_prints(out.getvalue(), expected, where)


def _check_readme(ns):
  ratings, result = ns["ratings"], ns["result"]
  observed = np.asarray(ratings) != 0
  prediction = np.asarray(mfjax.predict(result.best_params, scale=(1, 5)))
  assert np.abs(prediction - np.asarray(ratings))[observed].max() < 0.5
  assert ns["jitted"].losses.shape == (50,)
  assert ns["ensemble"].losses.shape == (4, 50)
  # Stronger regularisation cannot fit the ratings better.
  assert float(ns["sweep"].best_loss[0]) < float(ns["sweep"].best_loss[-1])


def _check_guide(ns):
  assert ns["result"].best_params.user_factors.shape == (60, 4)
  assert np.isfinite(float(ns["result"].best_loss))
  assert float(ns["robust"].best_loss) < float(ns["robust"].losses[0])
  # Fold-in: the new user who rated items 3 and 7 highly is predicted above 3.
  folded = ns["folded"]
  assert float(mfjax.predict(folded, users=[0], items=[3])[0]) > 3.0
  assert not set(np.asarray(ns["new_items"]).tolist()) & {3, 7}
  assert 0.0 <= float(ns["ranked"].ndcg) <= 1.0


def _check_notebook(ns):
  result = ns["result"]
  assert float(result.best_loss) == pytest.approx(float(np.nanmin(result.losses)))
  assert isinstance(result.best_params, mfjax.notebook.NotebookParams)


def _check_scaling(ns):
  assert tuple(ns["placed"].values.sharding.spec) == ("data",)
  assert float(ns["result"].best_loss) < float(ns["result"].losses[0])
  grid = ns["grid"]
  assert int(grid.best_index) == int(np.argmin(np.asarray(grid.scores)))


CHECKS = {
  "README.md": _check_readme,
  "guide.md": _check_guide,
  "notebook.md": _check_notebook,
  "scaling.md": _check_scaling,
}
PYTHON_PAGES = [p for p in PAGES if _python_blocks(p)]
# Pages whose examples compile many programs (XLA on CPU: seconds each).
SLOW_PAGES = {"guide.md", "scaling.md"}
MOVIELENS_BLOCKS = [
  pytest.param(page, j, id=f"{page.name}-{j}", marks=pytest.mark.slow)
  for page in PYTHON_PAGES
  for j, (code, _) in enumerate(_python_blocks(page))
  if _needs_movielens(code)
]


@pytest.mark.parametrize(
  "page",
  [
    pytest.param(p, id=p.name, marks=[pytest.mark.slow] * (p.name in SLOW_PAGES))
    for p in PYTHON_PAGES
  ],
)
@pytest.mark.slow
def test_python_blocks_run_and_print_what_the_page_shows(page, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "__docs__"}
  for j, (code, expected) in enumerate(_python_blocks(page)):
    if not _needs_movielens(code):  # test_movielens_blocks_run runs those.
      _run(code, namespace, expected, f"{page.name} block {j}")
  CHECKS[page.name](namespace)


@pytest.mark.parametrize("page, index", MOVIELENS_BLOCKS)
def test_movielens_blocks_run(page, index, tmp_path, monkeypatch):
  if not ML100K.is_dir():
    pytest.skip(f"needs MovieLens 100k in {ML100K} (or the folder in MFJAX_DATA)")
  blocks = _python_blocks(page)
  namespace = {"__name__": "__docs__"}
  monkeypatch.chdir(tmp_path)
  for j, (code, expected) in enumerate(blocks[:index]):
    if not _needs_movielens(code):
      _run(code, namespace, expected, f"{page.name} block {j}")
  data = tmp_path / "ml-100k"
  data.mkdir()
  for file in ML100K.iterdir():
    (data / file.name).symlink_to(file)  # Links: the data is never copied.
  monkeypatch.chdir(data)
  code, expected = blocks[index]
  _run(code, namespace, expected, f"{page.name} block {index}")


def test_every_page_with_code_is_checked():
  assert {p.name for p in PYTHON_PAGES} == set(CHECKS)
  assert SLOW_PAGES < set(CHECKS)
  assert MOVIELENS_BLOCKS  # At least one example on real data.
  outputs = [out for p in PYTHON_PAGES for _, out in _python_blocks(p) if out]
  assert len(outputs) >= 15


def test_readme_is_short_and_opens_with_the_two_set_up_commands():
  text = README.read_text()
  assert len(text.encode()) <= 12_000
  bash = [code.strip() for lang, code, _ in _blocks(README) if lang == "bash"]
  assert bash[:2] == [
    "pip install . && mfjax demo",
    'pip install -e ".[test]" && pytest',
  ]
  first_screen = "\n".join(text.splitlines()[:45])
  assert bash[0] in first_screen and bash[1] in first_screen
  assert 'pytest -m "not slow"' in text
  for target in ("guide", "notebook", "scaling", "cli", "api"):
    assert f"(docs/{target}.md)" in text
  assert "(benchmarks/RESULTS.md)" in text
  quickstart = _python_blocks(README)[0][0]
  assert "mfjax.train(params, ratings" in quickstart
  assert "mfjax.predict(result.best_params, scale=(1, 5))" in quickstart


# A figure the README's Results quote: a ratio (the number before ×) or a
# decimal, alone or as a range a–b.
_QUOTED = re.compile(
  r"(?<![\w.])\d+(?:\.\d+)?(?:–\d+(?:\.\d+)?)?(?=×)"
  r"|(?<![\w.])\d+\.\d+(?:–\d+(?:\.\d+)?)?"
)


def _rounds_to(quoted: str, recorded: list[str]) -> bool:
  """Whether one of the ``recorded`` numbers, to ``quoted``'s decimals, is it."""
  places = len(quoted.partition(".")[2])
  return any(
    len(r.partition(".")[2]) >= places and f"{float(r):.{places}f}" == quoted
    for r in recorded
  )


def test_every_figure_the_readmes_results_quote_is_in_results_md():
  text = README.read_text()
  results = text[
    text.index("## Results") : text.index("\n## ", text.index("## Results"))
  ]
  recorded = re.findall(
    r"(?<![\w.])\d+(?:\.\d+)?(?!\d)",
    (ROOT / "benchmarks" / "RESULTS.md").read_text().replace(",", ""),
  )
  quoted = [part for figure in _QUOTED.findall(results) for part in figure.split("–")]
  assert len(quoted) >= 40  # The pattern still finds the figures.
  assert "0.9048" in quoted and "1.88" in quoted
  missing = [q for q in quoted if not _rounds_to(q, recorded)]
  assert not missing, f"README figures not in benchmarks/RESULTS.md: {missing}"
  # Rounded from a longer figure matches; a near miss or a shorter one does not.
  assert _rounds_to("0.408", ["0.4077"]) and _rounds_to("4.1", ["4.06"])
  assert not _rounds_to("0.4078", ["0.4077", "0.40774"])
  assert not _rounds_to("0.41", ["0.4"])


def test_ci_runs_the_readmes_test_command():
  install_test = [c.strip() for lang, c, _ in _blocks(README) if lang == "bash"][1]
  assert install_test in (ROOT / ".ci" / "run").read_text().splitlines()


def _public_table():
  """``{name: parameters as shown, or None}`` from docs/api.md's public names."""
  text = API.read_text()
  start = text.index("## The public names")
  table = text[start : text.index("\n## ", start)]
  cells = re.findall(r"^\| `([^`]*)` \|", table, re.M)
  rows = [re.fullmatch(r"(\w+)(?:\((.*)\))?", cell).groups() for cell in cells]
  assert len(rows) == len({name for name, _ in rows}), "a name listed twice"
  return dict(rows)


def test_api_page_lists_exactly_the_public_names():
  assert set(_public_table()) == set(mfjax.__all__)
  assert len(mfjax.__all__) == len(set(mfjax.__all__)) == 34


def _split_top_level(text):
  parts, depth, current = [], 0, ""
  for char in text:
    depth += (char in "([{") - (char in ")]}")
    if char == "," and depth == 0:
      parts.append(current.strip())
      current = ""
    else:
      current += char
  return [p for p in [*parts, current.strip()] if p]


def test_api_page_signatures_match_the_code():
  for name, shown in _public_table().items():
    if shown is None:
      continue
    actual = inspect.signature(getattr(mfjax, name)).parameters
    keyword_only, names = False, []
    for part in _split_top_level(shown):
      if part == "*":
        keyword_only = True
        continue
      param, _, default = part.partition("=")
      if param.startswith("**"):  # **settings: the code's VAR_KEYWORD.
        param = param[2:]
        assert actual[param].kind == inspect.Parameter.VAR_KEYWORD, name
        names.append(param)
        continue
      names.append(param)
      assert param in actual, f"{name} has no parameter {param}"
      real = actual[param]
      assert (real.kind == real.KEYWORD_ONLY) == keyword_only, f"{name}: {param}"
      assert (real.default is not real.empty) == bool(default), f"{name}: {param}"
      try:
        value = ast.literal_eval(default)
      except (ValueError, SyntaxError):
        continue  # float32, optax.adam: not literals.
      assert value == real.default, f"{name}: {param}={default}"
    assert names == list(actual), name


def test_api_page_module_names_exist():
  text = API.read_text()
  sections = re.findall(r"^### `mfjax\.([\w.]+)`\n(.*?)(?=^#)", text, re.S | re.M)
  assert len(sections) >= 10
  for module, body in sections:
    exported = set(importlib.import_module(f"mfjax.{module}").__all__)
    heads = re.findall(r"^- (.*?):(?:\s|$)", body, re.M)
    names = {n for head in heads for n in re.findall(r"`(\w+)`", head)}
    assert names, module
    assert names <= exported, (module, names - exported)


def _is_module(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, AttributeError, ValueError):  # A parent that is no package.
    return False


# The 0.2 module paths (mfjax.ensemble, ...): they still import, with a
# warning, but the docs name the 0.3 homes (docs/changes-0.3.md lists both).
_OLD_PATHS = {old.removeprefix("mfjax.") for old in deprecation.MOVED_MODULES}


def test_every_mfjax_name_in_the_docs_exists():
  """``mfjax.x`` and ``mfjax.module.y`` resolve, with no name of mfjax 0.1.

  docs/changes-0.2.md and changes-0.3.md name the old spellings on purpose and
  are left out.
  """
  for page in PAGES:
    if page.name in ("changes-0.2.md", "changes-0.3.md"):
      continue
    for dotted in re.findall(r"\bmfjax((?:\.\w+)+)", page.read_text()):
      parts = dotted[1:].split(".")
      if parts[0].startswith("__"):
        assert hasattr(mfjax, parts[0]), (page.name, dotted)
        continue
      # The longest prefix that is a module; what follows is one of its names.
      at = len(parts)
      while at and not _is_module("mfjax." + ".".join(parts[:at])):
        at -= 1
      if at == 0:
        assert parts[0] in mfjax.__all__, (page.name, dotted)
        continue
      module = importlib.import_module("mfjax." + ".".join(parts[:at]))
      rest = parts[at:]
      assert not rest or rest[0] in vars(module), (page.name, dotted)
      assert ".".join(parts[:at]) not in _OLD_PATHS, (page.name, dotted)


def _anchor(heading):
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_and_anchors_resolve():
  for page in PAGES:
    for target, anchor in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", page.read_text()):
      linked = (page.parent / target) if target else page
      assert linked.exists(), (page.name, target)
      if anchor:
        headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.M)
        assert anchor in {_anchor(h) for h in headings}, (page.name, target, anchor)


@pytest.fixture(scope="module")
def options():
  """Each command's option strings, from its real ``--help``."""
  found = {}
  for command in COMMANDS:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
      cli.main([command, "--help"])
    assert exit_.value.code == 0
    listed = re.findall(r"^  (-\S.*?)(?:  |$)", out.getvalue(), re.M)
    found[command] = {flag for line in listed for flag in FLAG.findall(line)}
  return found


def _documented_commands():
  for page in PAGES:
    for lang, code, _ in _blocks(page):
      for line in code.splitlines() if lang == "bash" else ():
        for part in line.split("&&"):
          words = shlex.split(part, comments=True)
          if words[:1] == ["mfjax"]:
            yield page.name, words


def test_documented_commands_use_real_options(options):
  assert {"--steps", "--ensemble", "--test-fraction", "--save"} <= options["fit"]
  used = set()
  for page, words in _documented_commands():
    assert words[1] in COMMANDS, (page, words)
    if words[1] == "launch":  # mfjax launch ... -- fit ...: fit's options after.
      inner = words.index("--")
      words, launched = words[:inner], ["mfjax", *words[inner + 1 :]]
      assert launched[1] == "fit", (page, launched)
      assert set(w for w in launched[2:] if w.startswith("-")) <= options["fit"]
    for word in words[2:]:
      if word.startswith("-"):
        assert word in options[words[1]], (page, " ".join(words))
    used.add(words[1])
  assert used == set(COMMANDS)


def test_options_in_the_prose_and_the_synopsis_exist(options):
  every = set().union(*options.values(), {"--version"})  # mfjax --version
  for page in PAGES:
    for flag in re.findall(r"`(--[a-z][\w-]*)", page.read_text()):
      assert flag in every, (page.name, flag)
  text = (ROOT / "docs" / "cli.md").read_text()
  synopsis = textwrap.dedent(re.search(r"\n\n((?: {4}.*\n)+)", text).group(1))
  lines = re.split(r"\n(?=mfjax )", synopsis.strip())
  assert [line.split()[1] for line in lines] == list(COMMANDS)
  for line in lines:
    command = line.split()[1]
    flags = set(FLAG.findall(line))
    assert flags <= options[command], (command, flags - options[command])
    # And every option is in it, but --help and the old spellings.
    missing = options[command] - flags - {"-h", "--help", "--epochs", "--seeds"}
    assert not missing, (command, missing)


def test_the_readmes_layout_names_every_module_and_no_other():
  text = README.read_text()
  block = text[text.index("## Layout") :]
  block = block[: block.index("    tests/")]
  package = ROOT / "mfjax"
  modules = {p.stem for p in package.rglob("*.py")} - {"__init__", "__main__"}
  subpackages = {p.parent.name for p in package.glob("*/__init__.py")}
  words = set(re.findall(r"\b\w+\b", block))
  listed = {w for pair in re.findall(r"(\w+) ·|· (\w+)", block) for w in pair if w}
  assert modules | subpackages <= words, (modules | subpackages) - words
  assert listed <= modules, listed - modules
