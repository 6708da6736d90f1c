"""Runs the example notebooks and checks their committed outputs.

    python notebooks/run.py              # run both; fail on an error or changed output
    python notebooks/run.py --write      # run both and save their outputs in place
    python notebooks/run.py movielens.ipynb --timeout 300

Each notebook runs with nbclient in a fresh kernel of the Python that runs this
script (whatever kernel specs are installed), with ``notebooks/`` as the working
directory. Without ``--write``, the notebooks are executed in memory and the run
fails (exit code 1) when a cell raises, or when a cell tagged ``check`` prints
something other than its committed output: the text of its ``stdout`` streams and
``text/plain`` results must be identical. Those cells print only deterministic,
rounded figures (fixed keys and seeds); plots, progress bars and timings are
never compared. With ``--write``, the executed notebooks are saved without
volatile metadata (timings, the Python version), so that diffs stay small.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ("reproduce_notebook.ipynb", "movielens.ipynb")
CHECK_TAG = "check"


class _ThisPython(KernelSpecManager):
  """Every kernel name means an IPython kernel of ``sys.executable``.

  So the notebooks always run against the mfjax this script imports, in a fresh
  virtual environment or beside a user-level ``python3`` kernel of another Python.
  """

  def get_kernel_spec(self, kernel_name):
    return KernelSpec(
      argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      display_name="Python 3 (ipykernel)",
      language="python",
      name=kernel_name,
    )


class _KernelManager(AsyncKernelManager):
  def __init__(self, **kwargs):
    super().__init__(kernel_spec_manager=_ThisPython(), **kwargs)


def execute(path: Path, timeout: int) -> nbformat.NotebookNode:
  """The notebook at ``path``, executed; raises ``CellExecutionError``."""
  nb = nbformat.read(path, as_version=4)
  client = NotebookClient(
    nb,
    kernel_name="python3",
    kernel_manager_class=_KernelManager,
    timeout=timeout,
    record_timing=False,
    coalesce_streams=True,  # One stream per cell; a tqdm bar's \r updates collapse.
    resources={"metadata": {"path": str(path.parent)}},
  )
  client.execute()
  return nb


def _strip_volatile(nb: nbformat.NotebookNode) -> None:
  nb.metadata.pop("widgets", None)
  nb.metadata.get("language_info", {}).pop("version", None)
  nb.metadata["kernelspec"] = {
    "name": "python3",
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
  }
  for cell in nb.cells:
    cell.metadata.pop("execution", None)


def checked_text(cell: nbformat.NotebookNode) -> str:
  """What a ``check`` cell printed: its stdout and its plain-text results."""
  parts = []
  for output in cell.get("outputs", []):
    kind = output.get("output_type")
    if kind == "stream" and output.get("name") == "stdout":
      parts.append(output.get("text", ""))
    elif kind in ("execute_result", "display_data"):
      data = output.get("data", {})
      if "text/plain" in data and "image/png" not in data:
        parts.append(data["text/plain"])
  return "".join(parts)


def _label(index: int, cell: nbformat.NotebookNode) -> str:
  first = next((line for line in cell.source.splitlines() if line.strip()), "")
  return f"cell {index} ({cell.get('id', '?')}): {first[:60]}"


def compare(committed, executed, name: str) -> list[str]:
  """Messages for each ``check`` cell whose output changed (none when all agree)."""
  problems = []
  n_checked = 0
  for index, (old, new) in enumerate(zip(committed.cells, executed.cells, strict=True)):
    if CHECK_TAG not in old.metadata.get("tags", []):
      continue
    n_checked += 1
    before, after = checked_text(old), checked_text(new)
    if not before:
      problems.append(
        f"{name} {_label(index, old)}: no committed output to check; run "
        "`python notebooks/run.py --write` and commit the notebook."
      )
    elif before != after:
      diff = difflib.unified_diff(
        before.splitlines(),
        after.splitlines(),
        "committed",
        "now",
        lineterm="",
        n=1,
      )
      problems.append(
        f"{name} {_label(index, old)}: output changed\n" + "\n".join(diff)
      )
  if n_checked == 0:
    problems.append(f"{name}: has no cell tagged {CHECK_TAG!r}; nothing was checked.")
  return problems


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "notebooks", nargs="*", default=NOTEBOOKS, help=f"default: {' '.join(NOTEBOOKS)}"
  )
  parser.add_argument(
    "--write", action="store_true", help="save the executed notebooks in place"
  )
  parser.add_argument(
    "--timeout", type=int, default=600, help="seconds per cell (default 600)"
  )
  args = parser.parse_args(argv)
  failed = False
  for name in args.notebooks:
    path = HERE / name
    committed = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
      executed = execute(path, args.timeout)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
      message = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # No terminal colours.
      print(f"{name}: FAILED, {type(e).__name__}:\n{message}", file=sys.stderr)
      failed = True
      continue
    seconds = time.perf_counter() - start
    _strip_volatile(executed)
    if args.write:
      nbformat.validate(executed)
      nbformat.write(executed, path)
      print(f"{name}: ran in {seconds:.1f} s; outputs written")
      continue
    problems = compare(committed, executed, name)
    for problem in problems:
      print(problem, file=sys.stderr)
    failed |= bool(problems)
    status = "FAILED" if problems else "ok"
    print(f"{name}: ran in {seconds:.1f} s; checked outputs {status}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
