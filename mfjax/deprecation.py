"""Old module paths that moved, kept for one release with a warning.

mfjax 0.3 grouped its 25 flat modules into subpackages (``docs/changes-0.3.md``).
Each 0.2 path in :data:`MOVED_MODULES`, e.g. ``mfjax.ensemble``, still
imports (a finder on ``sys.meta_path`` makes it, with no file of its own); its
attributes come from the new home with a :class:`DeprecationWarning`. The old
paths go in 0.4. Importing an old path alone does not warn; using a name does.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable

__all__ = [
  "REMOVED_IN",
  "MOVED_MODULES",
  "moved_module",
  "renamed",
  "renamed_argument",
  "install",
]

REMOVED_IN = "0.4"

# The 0.2 module -> its 0.3 home. mfjax.data, .serving, .distributed and .cli
# are packages now whose faces re-export the old modules' names.
MOVED_MODULES = {
  "mfjax.kernels": "mfjax.core.kernels",
  "mfjax.model": "mfjax.core.model",
  "mfjax.objectives": "mfjax.core.objectives",
  "mfjax.solvers": "mfjax.core.solvers",
  "mfjax.shuffle": "mfjax.core.shuffle",
  "mfjax.training": "mfjax.core.training",
  "mfjax.metrics": "mfjax.core.metrics",
  "mfjax.memory": "mfjax.core.memory",
  "mfjax.sharding": "mfjax.core.sharding",
  "mfjax.progress": "mfjax.core.progress",
  "mfjax.ensemble": (
    "mfjax.fitting.plan",
    "mfjax.fitting.ensemble",
    "mfjax.fitting.buckets",
    "mfjax.settings",
  ),
  "mfjax.grid": "mfjax.fitting.grid",
  "mfjax.crossval": "mfjax.fitting.crossval",
  "mfjax.loaders": (
    "mfjax.data.loaders",
    "mfjax.data.textparse",
    "mfjax.data.arrays",
    "mfjax.distributed.parts",
    "mfjax.distributed.exchange",
  ),
  "mfjax.rawids": "mfjax.serving.model",
  "mfjax.checkpoint": (
    "mfjax.io.checkpoint",
    "mfjax.io.npzread",
    "mfjax.io.atomic",
    "mfjax.serving.model",
  ),
}


def moved_module(old: str, new: str | tuple[str, ...]) -> tuple[Callable, Callable]:
  """``(__getattr__, __dir__)`` for the module ``old``, now at ``new``.

  Args:
    old: the 0.2 dotted path, e.g. ``"mfjax.ensemble"``.
    new: where its names live now, e.g. ``"mfjax.fitting.ensemble"``, or the
      modules it was split into, searched in order.

  Examples:
    >>> import warnings
    >>> getattr_, _ = moved_module("mfjax.old", "mfjax.core.kernels")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...   warnings.simplefilter("always")
    ...   f = getattr_("predict_pairs")
    >>> f.__module__, caught[0].category.__name__
    ('mfjax.core.kernels', 'DeprecationWarning')
  """

  homes = (new,) if isinstance(new, str) else tuple(new)

  def __getattr__(name: str):
    if name.startswith("__") and name.endswith("__"):
      raise AttributeError(f"module {old!r} has no attribute {name!r}")
    modules = [importlib.import_module(home) for home in homes]
    # The module that exports the name, else the first that has it.
    found = [m for m in modules if name in getattr(m, "__all__", ())] or [
      m for m in modules if hasattr(m, name)
    ]
    if not found:
      raise AttributeError(f"module {old!r} has no attribute {name!r}")
    home = found[0].__name__
    value = getattr(found[0], name)
    where = home if len(homes) == 1 else f"{home}.{name}"
    what = old if len(homes) == 1 else f"{old}.{name}"
    warnings.warn(
      f"{what} is now {where} (mfjax 0.3); the old path goes in mfjax {REMOVED_IN}.",
      DeprecationWarning,
      stacklevel=2,
    )
    return value

  def __dir__() -> list[str]:
    names = set()
    for home in homes:
      names.update(getattr(importlib.import_module(home), "__all__", ()))
    return sorted(names)

  return __getattr__, __dir__


def renamed(where: str, old: str, new: str, *, stacklevel: int = 3) -> None:
  """Warn that the argument or name ``old`` of ``where`` is now ``new``.

  Examples:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...   warnings.simplefilter("always")
    ...   renamed("Model.recommend", "n", "k")
    >>> str(caught[0].message)
    "Model.recommend: 'n' is now 'k' (mfjax 0.3); the old name goes in mfjax 0.4."
  """
  warnings.warn(
    f"{where}: {old!r} is now {new!r} (mfjax 0.3); the old name goes in mfjax "
    f"{REMOVED_IN}.",
    DeprecationWarning,
    stacklevel=stacklevel,
  )


def renamed_argument(where: str, old: str, new: str, old_value, new_value):
  """The value of an argument renamed from ``old`` to ``new``, for one release.

  Returns ``new_value`` when ``old`` was not given (``old_value`` is None);
  else warns and returns ``old_value``. Giving both is a ``TypeError``.

  Examples:
    >>> import warnings
    >>> renamed_argument("kfold", "k", "folds", None, 5)
    5
    >>> with warnings.catch_warnings(record=True):
    ...   warnings.simplefilter("always")
    ...   renamed_argument("kfold", "k", "folds", 3, None)
    3
  """
  if old_value is None:
    return new_value
  if new_value is not None:
    raise TypeError(f"{where}: give {new!r} only ({old!r} is its 0.2 name).")
  renamed(where, old, new, stacklevel=4)
  return old_value


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Makes each old path of :data:`MOVED_MODULES` a module of forwarding names."""

  def find_spec(self, fullname, path=None, target=None):
    if fullname not in MOVED_MODULES:
      return None
    return importlib.machinery.ModuleSpec(fullname, self, is_package=False)

  def create_module(self, spec):
    return None  # The default module object.

  def exec_module(self, module) -> None:
    new = MOVED_MODULES[module.__name__]
    homes = new if isinstance(new, str) else ", ".join(new)
    module.__doc__ = f"Deprecated: {module.__name__} is {homes} since 0.3."
    module.__getattr__, module.__dir__ = moved_module(module.__name__, new)
    module.__all__ = module.__dir__()  # `from mfjax.ensemble import *`, warned.


def install() -> None:
  """Put the finder of the old paths on ``sys.meta_path`` (once)."""
  if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
