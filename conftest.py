"""Marks for the doctests in mfjax/ (the tests' own settings are tests/conftest.py).

A doctest has no decorator to carry ``@pytest.mark.slow``; these are the ones
over about a second on 2 CPU cores whose lines faster tests also run
(benchmarks/RESULTS.md, "The fast loop").
"""

import pytest

SLOW_DOCTESTS = frozenset(
  {
    "mfjax.core.metrics.ranking_metrics",
    "mfjax.fitting.plan.FitResult.model",
    "mfjax.fitting.plan.fit",
    "mfjax.serving.topk.fold_in",
  }
)


def pytest_collection_modifyitems(items):
  for item in items:
    if isinstance(item, pytest.DoctestItem) and item.name in SLOW_DOCTESTS:
      item.add_marker(pytest.mark.slow)
  stale = [name for name in sorted(SLOW_DOCTESTS) if not _has_examples(name)]
  if stale:  # Renamed, or its examples gone: the mark would silently drop.
    raise pytest.UsageError(f"conftest.py's SLOW_DOCTESTS names no doctest: {stale}")


def _has_examples(name: str) -> bool:
  """Whether the object ``name`` (``package.module.Class.method``) has a
  docstring with examples."""
  import importlib

  parts = name.split(".")
  for cut in range(len(parts) - 1, 0, -1):
    try:
      target = importlib.import_module(".".join(parts[:cut]))
    except ImportError:
      continue
    for attribute in parts[cut:]:
      target = getattr(target, attribute, None)
    return ">>>" in (getattr(target, "__doc__", None) or "")
  return False
