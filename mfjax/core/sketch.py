"""A one-pass randomized sketch of a sum of low-rank products ``Σ P Qᵀ``.

Tropp, Yurtsever, Udell and Cevher, "Practical sketching algorithms for low-rank
matrix approximation" (2017): two thin random projections of the sum are
added to per term, never the ``n × m`` matrix itself, and its best rank-``r``
approximation is recovered at the end. :func:`mfjax.core.gibbs.sample` keeps
the posterior mean of many draws this way once their factors side by side
would pass its rank bound.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Sketch", "sketch_init", "sketch_add", "sketch_factors"]


class Sketch(NamedTuple):
  """A randomized sketch of the sum of the draws' ``P Qᵀ`` (Tropp, Yurtsever,
  Udell and Cevher, "Practical sketching algorithms for low-rank matrix
  approximation", 2017): ``range = Σ P (Qᵀ Ω)`` and ``co_range = Σ (Ψ P) Qᵀ``,
  added to after each draw in ``O((n_users + n_items)·rank·width)``, never the
  ``n_users × n_items`` matrix itself."""

  omega: jax.Array  # shape=(n_items, width)
  psi: jax.Array  # shape=(2·width + 1, n_users), at most n_users rows
  range: jax.Array  # shape=(n_users, width)
  co_range: jax.Array  # shape=(2·width + 1, n_items)


def sketch_init(key: jax.Array, n_users: int, n_items: int, width: int) -> Sketch:
  """An empty sketch of ``width`` columns (cut to the matrix's size)."""
  width = min(width, n_users, n_items)
  co_width = min(2 * width + 1, n_users)
  both = jax.random.normal(key, (n_items * width + co_width * n_users,))
  omega = both[: n_items * width].reshape(n_items, width)
  psi = both[n_items * width :].reshape(co_width, n_users)
  zeros = jnp.zeros
  return Sketch(
    omega,
    psi,
    zeros((n_users, width), jnp.float32),
    zeros((co_width, n_items), jnp.float32),
  )


def sketch_add(
  sketch: Sketch, user_factors: jax.Array, item_factors: jax.Array
) -> Sketch:
  """The sketch with one more draw's ``user_factors @ item_factors.T`` added."""
  return sketch._replace(
    range=sketch.range + user_factors @ (item_factors.T @ sketch.omega),
    co_range=sketch.co_range + (sketch.psi @ user_factors) @ item_factors.T,
  )


def sketch_factors(sketch: Sketch, count, rank: int) -> tuple[jax.Array, jax.Array]:
  """``(U, V)`` of rank ``min(rank, width)`` with ``U Vᵀ`` the best rank-``rank``
  approximation (up to the sketch's error) of the sketched sum over ``count``:
  ``Q = qr(range)``, ``X = (Ψ Q)⁺ co_range``, then an SVD of ``X``, its
  singular values split evenly between the two sides."""
  basis, _ = jnp.linalg.qr(sketch.range)
  core, *_ = jnp.linalg.lstsq(sketch.psi @ basis, sketch.co_range / count)
  left, values, right = jnp.linalg.svd(core, full_matrices=False)
  rank = min(rank, values.shape[0])
  root = jnp.sqrt(values[:rank])
  return (basis @ left[:, :rank]) * root[None], right[:rank].T * root[None]
