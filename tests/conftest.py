"""Test settings: strict JAX numerics and shared fixtures."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax

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


def random_params(seed=0, n_users=5, n_items=7, rank=3, mean=3.2):
  """Params with N(0, 1) factors and biases (non-zero everywhere) and ``mean``."""
  rng = np.random.default_rng(seed)
  return mfjax.Params(
    user_factors=jnp.asarray(rng.normal(size=(n_users, rank)), jnp.float32),
    item_factors=jnp.asarray(rng.normal(size=(n_items, rank)), jnp.float32),
    user_bias=jnp.asarray(rng.normal(size=n_users), jnp.float32),
    item_bias=jnp.asarray(rng.normal(size=n_items), jnp.float32),
    mean=jnp.float32(mean),
  )
