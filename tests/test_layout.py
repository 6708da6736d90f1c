"""The package's layout rules, read from the source: imports, privates, sizes.

Data flows one way through mfjax, so its modules must not import each other in
a circle (function-level imports included); no module may use another's
``_private`` names (the internal API has public names, documented); no function
body may exceed 80 lines (docstring aside).
"""

import ast
from pathlib import Path

import pytest

import mfjax

PACKAGE = Path(mfjax.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent
MODULES = {p.stem: p for p in sorted(PACKAGE.glob("*.py"))}
MAX_BODY_LINES = 80


def _tree(path: Path) -> ast.Module:
  return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imported_modules(tree: ast.Module) -> set[str]:
  """mfjax modules an AST imports, anywhere in it (``mfjax`` for the package)."""
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module == "mfjax":
      # `from mfjax import kernels` takes a module; `from mfjax import fit`, the
      # package's face.
      names = [f"mfjax.{a.name}" if a.name in MODULES else "mfjax" for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [node.module]
    else:
      continue
    for name in names:
      parts = name.split(".")
      if parts[0] != "mfjax":
        continue
      if len(parts) > 1 and parts[1] in MODULES:
        found.add(parts[1])
      elif len(parts) == 1:
        found.add("__init__")
  return found


def _graph() -> dict[str, set[str]]:
  return {
    name: _imported_modules(_tree(path)) - {name} for name, path in MODULES.items()
  }


def test_the_graph_reader_finds_a_known_edge():
  graph = _graph()
  assert "types" in graph["validation"]
  assert "kernels" in graph["model"]
  assert "training" in graph["__init__"]


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
  assert _graph()["types"] == set()


def _private_uses(path: Path) -> list[str]:
  """``module._name`` attribute reads and ``from mfjax.x import _name``."""
  tree = _tree(path)
  aliases = {}  # Local name -> mfjax module it stands for.
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module == "mfjax":
      for alias in node.names:
        if alias.name in MODULES:
          aliases[alias.asname or alias.name] = alias.name
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mfjax."):
      for alias in node.names:
        if alias.name.startswith("_") and not alias.name.startswith("__"):
          found = f"{node.module}.{alias.name}"
          aliases.setdefault("\0" + found, found)
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("mfjax.") and alias.asname:
          aliases[alias.asname] = alias.name.split(".")[1]
  uses = [k[1:] for k in aliases if k.startswith("\0")]
  own = path.stem if path.parent == PACKAGE else None
  for node in ast.walk(tree):
    if (
      isinstance(node, ast.Attribute)
      and node.attr.startswith("_")
      and not node.attr.startswith("__")
    ):
      base = node.value
      if isinstance(base, ast.Name) and base.id in aliases and aliases[base.id] != own:
        uses.append(f"{aliases[base.id]}.{node.attr} (line {node.lineno})")
      if (
        isinstance(base, ast.Attribute)
        and isinstance(base.value, ast.Name)
        and base.value.id == "mfjax"
        and base.attr in MODULES
      ):
        uses.append(f"mfjax.{base.attr}.{node.attr} (line {node.lineno})")
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
    "import sys\nfrom mfjax import kernels\nfrom mfjax.cli import _parser\n"
    "kernels._secret\nsys.modules['mfjax.cli']\n"
  )
  uses = _private_uses(planted)
  assert len(uses) == 3, uses


@pytest.mark.parametrize(
  "path",
  [*MODULES.values(), *sorted(TESTS.glob("*.py"))],
  ids=lambda p: f"{p.parent.name}/{p.name}",
)
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


@pytest.mark.parametrize("path", list(MODULES.values()), ids=lambda p: p.name)
def test_no_function_body_over_80_lines(path):
  assert _long_functions(path) == []
