"""Ratings in: text files, in-memory arrays and frames, splits and synthetic sets.

Owns: :mod:`~mfjax.data.loaders` (files and in-memory constructors) and
:mod:`~mfjax.data.splits` (``train_test_split``, ``kfold``, dense matrices,
synthetic ratings). This face also re-exports what ``mfjax.data`` held in 0.2.

May import: the top-level leaves (``types``, ``validation``) and NumPy, JAX
arrays. Nothing of ``core``'s training, nor ``fitting``, ``serving``, ``io``,
``distributed`` or ``cli``.
"""

from mfjax.data.loaders import (
  RatingsFileError,
  ScaleWarning,
  load_ratings,
  ratings_from_arrays,
  ratings_from_frame,
  ratings_from_sparse,
)
from mfjax.data.splits import kfold, ratings_from_dense, synthetic_ratings, train_test_split

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
