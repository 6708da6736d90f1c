"""Ratings from memory, and ratings made from ratings: splits and synthetic data.

Files are :mod:`mfjax.data.loaders`' job; everything here takes arrays or
:class:`mfjax.Ratings` and gives :class:`mfjax.Ratings`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.deprecation import renamed_argument
from mfjax.types import Params, Ratings

__all__ = [
  "ratings_from_dense",
  "train_test_split",
  "kfold",
  "synthetic_ratings",
]


def ratings_from_dense(matrix: ArrayLike) -> Ratings:
  """The non-zero entries of a dense ``[n_users, n_items]`` matrix as ``Ratings``."""
  matrix = validation.check_real_array("matrix", matrix, ndim=2)
  matrix = np.asarray(matrix, np.float32)
  users, items = np.nonzero(matrix)
  return Ratings(
    users=jnp.asarray(users, jnp.int32),
    items=jnp.asarray(items, jnp.int32),
    values=jnp.asarray(matrix[users, items]),
    n_users=int(matrix.shape[0]),
    n_items=int(matrix.shape[1]),
  )


def _check_fraction(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
    raise TypeError(f"{name} must be a number in (0, 1); got {value!r}.")
  if not 0.0 < float(value) < 1.0:
    raise ValueError(f"{name} must lie in (0, 1); got {value!r}.")
  return float(value)


def _without_padding(ratings: Ratings) -> Ratings:
  """``ratings`` without its trailing padding entries (host-side)."""
  if not ratings.n_padding:
    return ratings
  return ratings.subset(np.arange(len(ratings) - ratings.n_padding))


def train_test_split(
  ratings: Ratings, *, test_fraction: float = 0.2, seed: int = 0, stratify: bool = False
) -> tuple[Ratings, Ratings]:
  """A seeded random split of ``ratings`` into ``(train, test)``.

  Args:
    ratings: the ratings to split.
    test_fraction: the share of ratings held out, in (0, 1).
    seed: the NumPy seed of the shuffle.
    stratify: hold out ``test_fraction`` of each user's ratings (rounded down, and
      never a user's only rating) instead of a fraction of all ratings, so that
      every user is in the training part.

  Returns:
    ``(train, test)``, both with the model's ``n_users``/``n_items``. Weights go
    with their ratings; padding (``n_padding``) is dropped first.
  """
  validation.check_ratings("ratings", ratings)
  test_fraction = _check_fraction("test_fraction", test_fraction)
  ratings = _without_padding(ratings)
  rng = np.random.default_rng(seed)
  n = len(ratings)
  if not stratify:
    order = rng.permutation(n)
    n_test = int(round(n * test_fraction))
    test, train = order[:n_test], order[n_test:]
  else:
    users = np.asarray(ratings.users)
    order = rng.permutation(n)
    order = order[np.argsort(users[order], kind="stable")]  # Shuffled within user.
    starts = np.searchsorted(users[order], np.arange(ratings.n_users))
    counts = np.bincount(users, minlength=ratings.n_users)
    rank = np.arange(n) - np.repeat(starts, counts)
    held = np.floor(counts * test_fraction).astype(np.int64)
    held = np.where(counts > 1, np.minimum(held, counts - 1), 0)
    is_test = rank < np.repeat(held, counts)
    test, train = order[is_test], order[~is_test]
  return ratings.subset(np.sort(train)), ratings.subset(np.sort(test))


def kfold(ratings: Ratings, folds: int | None = None, *, seed: int = 0, k=None):
  """Yields ``folds`` seeded ``(train, test)`` splits; each rating is tested once.

  Weights go with their ratings; padding (``n_padding``) is dropped first.

  Args:
    ratings: the ratings to split.
    folds: how many splits (default 5), as :func:`mfjax.cross_validate`'s
      ``folds``.
    seed: the NumPy seed of the shuffle.
    k: the 0.2 name of ``folds`` (a ``DeprecationWarning``; gone in 0.4).

  Examples:
    >>> import jax.numpy as jnp, mfjax
    >>> ratings = mfjax.ratings_from_dense(jnp.arange(1.0, 13.0).reshape(3, 4))
    >>> [(len(train), len(test)) for train, test in mfjax.kfold(ratings, 3)]
    [(8, 4), (8, 4), (8, 4)]
  """
  folds = renamed_argument("kfold", "k", "folds", k, folds)
  folds = 5 if folds is None else folds
  validation.check_ratings("ratings", ratings)
  folds = validation.check_positive_int("folds", folds)
  ratings = _without_padding(ratings)
  if folds < 2 or folds > len(ratings):
    raise ValueError(
      f"folds must lie in [2, {len(ratings)}] (the number of ratings); got {folds}."
    )
  parts = np.array_split(np.random.default_rng(seed).permutation(len(ratings)), folds)
  for j in range(folds):
    train = np.sort(np.concatenate(parts[:j] + parts[j + 1 :]))
    yield ratings.subset(train), ratings.subset(np.sort(parts[j]))


def synthetic_ratings(
  key: ArrayLike,
  n_users: int,
  n_items: int,
  n_ratings: int,
  rank: int,
  *,
  noise: float = 0.5,
  popularity: float = 1.0,
  mean: float = 3.5,
  scale: tuple[float, float] | None = (1.0, 5.0),
) -> tuple[Ratings, Any]:
  """Ratings drawn from a planted biased low-rank model, on the device.

  Users and items are drawn with power-law popularity: the ``j``-th most popular
  has weight ``(j + 1) ** -popularity`` (0 gives uniform draws), so a few users
  rate a lot and a few items are rated a lot, as in real data. Pairs may repeat.

  Args:
    key: a JAX PRNG key.
    n_users, n_items, n_ratings, rank: sizes, static ints >= 1.
    noise: standard deviation of the Gaussian noise on each rating.
    popularity: the power-law exponent of user and item popularity, >= 0.
    mean: the global mean rating.
    scale: ratings are clipped to it (None: not clipped).

  Returns:
    ``(ratings, planted)``: the :class:`Ratings` and the planted ``Params``.
  """
  validation.check_key("key", key)
  n_users = validation.check_positive_int("n_users", n_users)
  n_items = validation.check_positive_int("n_items", n_items)
  n_ratings = validation.check_positive_int("n_ratings", n_ratings)
  rank = validation.check_positive_int("rank", rank)
  validation.check_nonnegative("noise", noise)
  validation.check_nonnegative("popularity", popularity)
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  keys = jax.random.split(key, 7)
  planted = Params(
    user_factors=jax.random.normal(keys[0], (n_users, rank)) / rank**0.25,
    item_factors=jax.random.normal(keys[1], (n_items, rank)) / rank**0.25,
    user_bias=0.3 * jax.random.normal(keys[2], (n_users,)),
    item_bias=0.3 * jax.random.normal(keys[3], (n_items,)),
    mean=jnp.float32(mean),
  )

  def draw(k, n):
    weights = jnp.exp(-popularity * jnp.log1p(jnp.arange(n, dtype=jnp.float32)))
    cdf = jnp.cumsum(weights) / jnp.sum(weights)
    # Inverse-CDF sampling needs O(n_ratings) memory; jax.random.categorical
    # would build an [n_ratings, n] array.
    u = jax.random.uniform(k, (n_ratings,))
    picks = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n - 1)
    # A random permutation, so that popularity is not tied to the index order.
    ranks = jax.random.permutation(jax.random.fold_in(k, 1), n)
    return ranks[picks].astype(jnp.int32)

  users, items = draw(keys[4], n_users), draw(keys[5], n_items)
  values = (
    planted.mean
    + planted.user_bias[users]
    + planted.item_bias[items]
    + jnp.sum(planted.user_factors[users] * planted.item_factors[items], axis=-1)
    + noise * jax.random.normal(keys[6], (n_ratings,))
  )
  if scale is not None:
    values = jnp.clip(values, scale[0], scale[1])
  ratings = Ratings(users, items, values.astype(jnp.float32), n_users, n_items)
  return ratings, planted
