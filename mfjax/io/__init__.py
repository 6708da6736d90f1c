"""Model files and atomic writes: what the library writes to disk and reads back.

Owns: :mod:`~mfjax.io.checkpoint` (``save``, ``load``, the model file's
format), :mod:`~mfjax.io.npzread` (reading an untrusted ``.npz`` within bounds)
and :mod:`~mfjax.io.atomic` (``atomic_write``).

May import: :mod:`mfjax.serving` (the ``Model`` it stores), :mod:`mfjax.core`
and the top-level leaves. Not ``fitting``, ``distributed`` or ``cli``.
"""

from mfjax.io.atomic import atomic_write
from mfjax.io.checkpoint import load, save
from mfjax.io.npzread import ModelFileError

__all__ = ["save", "load", "ModelFileError", "atomic_write"]
