"""The package's layout rules, read from the source: tiers, imports, privates, sizes.

Data flows one way through mfjax, so its modules must not import each other in
a circle (function-level imports included) and no tier imports one above it
(``TIERS``); no module may use another's ``_private`` names (the internal API
has public names, documented); no function body may exceed 80 lines (docstring
aside) and no module 800 lines.
"""

import ast
from pathlib import Path

import pytest

import mfjax

PACKAGE = Path(mfjax.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent
MAX_BODY_LINES = 80
MAX_MODULE_LINES = 800


def _dotted(path: Path) -> str:
  parts = ("mfjax", *path.relative_to(PACKAGE).with_suffix("").parts)
  return ".".join(parts).removesuffix(".__init__")


# Every module by dotted name: mfjax, mfjax.core, mfjax.core.kernels, ...
MODULES = {_dotted(p): p for p in sorted(PACKAGE.rglob("*.py"))}
SUBPACKAGES = sorted(
  name for name, p in MODULES.items() if p.name == "__init__.py" and name != "mfjax"
)
# Each subpackage and the tiers it may import (besides itself and the
# top-level leaves). The face, mfjax/__init__.py, and the notebook may import
# any; nothing but the face (and __main__) imports the cli.
LEAVES = {
  "mfjax.types",
  "mfjax.settings",
  "mfjax.validation",
  "mfjax.version",
  "mfjax.deprecation",
}
TIERS = {
  "mfjax.core": set(),
  "mfjax.data": set(),
  "mfjax.serving": {"mfjax.core"},
  "mfjax.fitting": {"mfjax.core", "mfjax.data", "mfjax.serving"},
  "mfjax.io": {"mfjax.core", "mfjax.serving"},
  "mfjax.distributed": {"mfjax.core", "mfjax.data", "mfjax.fitting"},
  "mfjax.cli": {
    "mfjax",
    "mfjax.core",
    "mfjax.data",
    "mfjax.fitting",
    "mfjax.serving",
    "mfjax.io",
    "mfjax.distributed",
    "mfjax.notebook",
  },
}


def _tree(path: Path) -> ast.Module:
  return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _known(name: str) -> str | None:
  """The longest module of MODULES that ``name`` is or lies in."""
  while name:
    if name in MODULES:
      return name
    name = name.rpartition(".")[0]
  return None


def _imported_modules(tree: ast.Module, here: str) -> set[str]:
  """mfjax modules an AST imports, anywhere in it (``mfjax`` for the face)."""
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      # `from mfjax.core import kernels` takes a module; `from mfjax import
      # fit`, the package's face.
      names = [
        f"{node.module}.{a.name}"
        if f"{node.module}.{a.name}" in MODULES
        else node.module
        for a in node.names
      ]
    else:
      continue
    for name in names:
      module = _known(name) if name.split(".")[0] == "mfjax" else None
      if module is not None and module != here:
        found.add(module)
  return found


def _graph() -> dict[str, set[str]]:
  return {name: _imported_modules(_tree(path), name) for name, path in MODULES.items()}


def _tier(module: str) -> str:
  """The subpackage a module lies in, or the module itself at the top."""
  parts = module.split(".")
  return ".".join(parts[:2]) if ".".join(parts[:2]) in SUBPACKAGES else module


def test_the_graph_reader_finds_known_edges():
  graph = _graph()
  assert "mfjax.types" in graph["mfjax.validation"]
  assert "mfjax.core.kernels" in graph["mfjax.core.model"]
  assert "mfjax.core.training" in graph["mfjax"]


def test_the_subpackages_are_the_tiers():
  assert set(SUBPACKAGES) == set(TIERS)


def test_no_tier_imports_one_above_it():
  wrong = []
  for module, imported in _graph().items():
    tier = _tier(module)
    if tier not in TIERS:
      continue
    allowed = TIERS[tier] | LEAVES | {tier}
    for other in imported:
      if _tier(other) not in allowed:
        wrong.append(f"{module} imports {other}")
  assert wrong == []


def test_the_leaves_and_core_import_no_tier_above():
  graph = _graph()
  for leaf in LEAVES:
    assert {_tier(m) for m in graph[leaf]} <= LEAVES, leaf
  core = [m for m in MODULES if _tier(m) == "mfjax.core"]
  for module in core:
    above = {_tier(m) for m in graph[module]} - LEAVES - {"mfjax.core"}
    assert above == set(), module


def test_the_direction_rule_catches_a_planted_import(tmp_path):
  planted = PACKAGE / "core" / "kernels.py"
  tree = ast.parse("from mfjax.data import loaders\nimport mfjax.cli.app\n")
  imported = _imported_modules(tree, _dotted(planted))
  assert imported == {"mfjax.data.loaders", "mfjax.cli.app"}
  assert all(_tier(m) not in TIERS["mfjax.core"] | LEAVES for m in imported)


def test_no_import_cycle_among_modules():
  graph = _graph()
  state: dict[str, int] = {}
  path: list[str] = []

  def visit(node):
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        cycle = path[path.index(nxt) :] + [nxt]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if nxt not in state:
        visit(nxt)
    path.pop()
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node)


def test_types_import_nothing_of_mfjax():
  assert _graph()["mfjax.types"] == set()


def _dotted_expr(node) -> str | None:
  """``a.b.c`` of an expression made of names and attributes, else None."""
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    base = _dotted_expr(node.value)
    return None if base is None else f"{base}.{node.attr}"
  return None


def _private_uses(path: Path) -> list[str]:
  """``module._name`` attribute reads and ``from mfjax.x import _name``."""
  tree = _tree(path)
  aliases = {}  # Local name -> mfjax module it stands for.
  uses = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mfjax"):
      for alias in node.names:
        if f"{node.module}.{alias.name}" in MODULES:
          aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif alias.name.startswith("_") and not alias.name.startswith("__"):
          uses.append(f"{node.module}.{alias.name}")
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("mfjax.") and alias.asname:
          aliases[alias.asname] = alias.name
  own = _dotted(path) if PACKAGE in path.parents else None
  for node in ast.walk(tree):
    if (
      isinstance(node, ast.Attribute)
      and node.attr.startswith("_")
      and not node.attr.startswith("__")
    ):
      base = _dotted_expr(node.value)
      if base is None:
        continue
      head, _, rest = base.partition(".")
      module = aliases.get(head, head) + (f".{rest}" if rest else "")
      if module in MODULES and module != own:
        uses.append(f"{module}.{node.attr} (line {node.lineno})")
    if (
      isinstance(node, ast.Subscript)
      and isinstance(node.value, ast.Attribute)
      and node.value.attr == "modules"
      and isinstance(node.value.value, ast.Name)
      and node.value.value.id == "sys"
    ):
      uses.append(f"sys.modules[...] (line {node.lineno})")
  return uses


def test_the_private_name_reader_finds_a_planted_use(tmp_path):
  planted = tmp_path / "planted.py"
  planted.write_text(
    "import sys\nfrom mfjax.core import kernels\nfrom mfjax.cli.app import _parser\n"
    "kernels._secret\nsys.modules['mfjax.cli.app']\nmfjax.io.checkpoint._MAGIC\n"
  )
  uses = _private_uses(planted)
  assert len(uses) == 4, uses


@pytest.mark.parametrize(
  "path",
  [*MODULES.values(), *sorted(TESTS.rglob("*.py"))],
  ids=lambda p: str(p.relative_to(p.parents[1])),
)
@pytest.mark.slow
def test_no_use_of_another_modules_private_names(path):
  assert _private_uses(path) == []


def _long_functions(path: Path) -> list[str]:
  long = []
  for node in ast.walk(_tree(path)):
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    body = node.body
    if (
      body
      and isinstance(body[0], ast.Expr)
      and isinstance(body[0].value, ast.Constant)
      and isinstance(body[0].value.value, str)
    ):
      body = body[1:]
    if not body:
      continue
    lines = body[-1].end_lineno - body[0].lineno + 1
    if lines > MAX_BODY_LINES:
      long.append(f"{node.name} ({lines} lines, line {node.lineno})")
  return long


@pytest.mark.parametrize("path", list(MODULES.values()), ids=_dotted)
def test_no_function_body_over_80_lines(path):
  assert _long_functions(path) == []


@pytest.mark.parametrize("path", list(MODULES.values()), ids=_dotted)
def test_no_module_over_800_lines(path):
  lines = len(path.read_text(encoding="utf-8").splitlines())
  assert lines <= MAX_MODULE_LINES, f"{_dotted(path)}: {lines} lines"


def test_each_subpackage_says_what_it_owns_and_may_import():
  for name in SUBPACKAGES:
    doc = ast.get_docstring(_tree(MODULES[name])) or ""
    assert "Owns:" in doc and "May import:" in doc, name
