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
