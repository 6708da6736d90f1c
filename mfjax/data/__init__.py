"""Ratings in: text files, in-memory arrays and frames, splits and synthetic sets.

Owns: :mod:`~mfjax.data.loaders` (``load_ratings``: a file to ``Ratings`` and
id maps, duplicates, outliers), :mod:`~mfjax.data.textparse` (the text: blocks,
layouts, headers, parsing), :mod:`~mfjax.data.folding` (repeated pairs
folded while a file streams in), :mod:`~mfjax.data.arrays` (arrays, frames and
sparse matrices in memory) and :mod:`~mfjax.data.splits` (``train_test_split``,
``kfold``, dense matrices, synthetic ratings). This face also re-exports what
``mfjax.data`` held in 0.2.

May import: the top-level leaves (``types``, ``validation``) and NumPy, JAX
arrays. Nothing of ``core``'s training, nor ``fitting``, ``serving``, ``io``,
``distributed`` or ``cli``.
"""

from mfjax.data.arrays import (
  ratings_from_arrays,
  ratings_from_frame,
  ratings_from_sparse,
)
from mfjax.data.loaders import ScaleWarning, load_ratings
from mfjax.data.splits import (
  kfold,
  ratings_from_dense,
  synthetic_ratings,
  train_test_split,
)
from mfjax.data.textparse import RatingsFileError

__all__ = [
  "load_ratings",
  "RatingsFileError",
  "ScaleWarning",
  "ratings_from_arrays",
  "ratings_from_frame",
  "ratings_from_sparse",
  "ratings_from_dense",
  "train_test_split",
  "kfold",
  "synthetic_ratings",
]
