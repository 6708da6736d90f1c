"""Model files and atomic writes: what the library writes to disk and reads back.

Owns: :mod:`~mfjax.io.checkpoint` (``save``, ``load``, ``atomic_write``, the
file format).

May import: :mod:`mfjax.serving` (the ``Model`` it stores), :mod:`mfjax.core`
and the top-level leaves. Not ``fitting``, ``distributed`` or ``cli``.
"""

from mfjax.io.checkpoint import Model, ModelFileError, atomic_write, load, save

__all__ = ["save", "load", "Model", "ModelFileError", "atomic_write"]
