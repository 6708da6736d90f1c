"""Test settings: strict JAX numerics and shared fixtures."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

# MovieLens 100k: ../shared/data/ml-100k beside the repository, or the folder
# named by MFJAX_DATA (benchmarks/gpu.sh sets it where ../shared is absent).
ML100K = Path(
  os.environ.get(
    "MFJAX_DATA",
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ml-100k",
  )
)


def planted_matrix(seed, n_users, n_items, rank, density, noise=0.1):
  """A planted low-rank biased model: (full matrix, observed dense matrix, mask)."""
  rng = np.random.default_rng(seed)
  user_factors = rng.normal(size=(n_users, rank))
  item_factors = rng.normal(size=(n_items, rank))
  full = (
    3.5
    + 0.3 * rng.normal(size=(n_users, 1))
    + 0.3 * rng.normal(size=(1, n_items))
    + 0.8 * user_factors @ item_factors.T / np.sqrt(rank)
  )
  observed = rng.random((n_users, n_items)) < density
  noisy = full + noise * rng.normal(size=full.shape)
  matrix = np.where(observed, noisy, 0.0)
  return full.astype(np.float32), matrix.astype(np.float32), observed


@pytest.fixture
def planted():
  return planted_matrix
