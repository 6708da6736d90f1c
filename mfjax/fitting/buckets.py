"""The shapes a fit pads its data to, and the default mini-batch.

Ratings are padded with weight-0 entries to a few sizes per doubling (two
ratings counts, four table sizes), so that files of nearby sizes share one
compiled program and the persistent compilation cache; :func:`trim` cuts the
fitted params back to the data's users and items. The padded entries train
exactly as absent ones.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np

from mfjax import validation
from mfjax.types import Params, Ratings

__all__ = [
  "MIN_BATCH_SIZE",
  "BATCHES_PER_EPOCH",
  "batch_size_for",
  "bucket",
  "bucketable",
  "Bucketed",
  "pad_to_buckets",
  "pad_entries",
  "trim",
  "as_bucketed",
]


MIN_BATCH_SIZE = 4096
"""The smallest default mini-batch (:func:`batch_size_for`)."""


BATCHES_PER_EPOCH = 24
"""About this many default mini-batches per epoch (:func:`batch_size_for`)."""


def batch_size_for(n_entries: int, *, minimum: int = MIN_BATCH_SIZE) -> int:
  """The mini-batch size :func:`fit` takes when given none, for ``n_entries``.

  The defaults were tuned on MovieLens 100k with 4,096 ratings a batch, about
  20 batches of its 80,000 training ratings (24 of their bucket, 98,304
  entries: :func:`fit` passes the padded length). A fixed number of batches per
  epoch keeps the number of Adam steps, each of which updates the whole tables,
  the same on larger data: on a synthetic file of 810,000 training ratings the
  fit took 5.7 s instead of 11.9 s at a validation RMSE of 0.6156 instead of
  0.6174 (``benchmarks/RESULTS.md``, "Compiling once").

  Args:
    n_entries: the number of entries (the padded length).
    minimum: the smallest size to return.

  Returns:
    ``max(minimum, n_entries // 24)``.

  Examples:
    >>> from mfjax.fitting import buckets
    >>> buckets.batch_size_for(98304), buckets.batch_size_for(1048576)
    (4096, 43690)
  """
  return max(int(minimum), int(n_entries) // BATCHES_PER_EPOCH)


def bucket(n: int, *, per_octave: int = 2) -> int:
  """The padded size of ``n``: the next of ``per_octave`` sizes per doubling.

  With 2 per octave the sizes are ``2**e`` and ``1.5·2**e`` (..., 64k, 96k,
  128k, ...): at most half again as large, and MovieLens 100k's u1 to u5 and
  ua/ub training files all land in one bucket. At least 8.

  Args:
    n: a size (entries, users or items).
    per_octave: sizes per doubling; a power of 2.

  Returns:
    The smallest size of the grid that holds ``n``.

  Examples:
    >>> from mfjax.fitting import buckets
    >>> buckets.bucket(80000), buckets.bucket(90570), buckets.bucket(5)
    (98304, 98304, 8)
    >>> buckets.bucket(1650, per_octave=4)
    1792
  """
  n = max(int(n), 8)
  e = (n - 1).bit_length() - 1  # 2**e < n <= 2**(e+1), for n > 1.
  step = max(2**e // per_octave, 1)
  return -(-n // step) * step


def bucketable(*trees) -> bool:
  """Whether :func:`fit` pads these inputs on the host: concrete arrays, each
  NumPy or on one device (sharded ones keep the caller's placement), and few
  enough entries that a bucket stays within int32 indices."""
  for tree in trees:
    for x in jax.tree.leaves(tree):
      if not validation.is_concrete(x):
        return False
      if isinstance(x, jax.Array) and len(x.devices()) != 1:
        return False
      if np.ndim(x) and bucket(np.shape(x)[0]) >= 2**31 - 1:
        return False
  return True


class Bucketed(NamedTuple):
  """Ratings padded to bucket sizes by :func:`pad_to_buckets`.

  Attributes:
    ratings: the training ratings, ``bucket(max(n, min_entries))`` entries (the
      padding of weight 0 at the end), ``n_users`` and ``n_items`` rounded up
      with :func:`bucket` at 4 sizes per octave (the factor tables grow with
      them).
    validation: the validation ratings likewise, or None.
    sizes: int32 ``[n_data, n_users, n_items]`` of the unpadded training
      ratings: what :func:`fit_program` takes.
    n_users: the unpadded number of users (static, for :func:`trim`).
    n_items: the unpadded number of items.
  """

  ratings: Ratings
  validation: Ratings | None
  sizes: np.ndarray
  n_users: int
  n_items: int


def pad_to_buckets(
  ratings: Ratings,
  validation_data: Ratings | None = None,
  *,
  min_entries: int = 0,
) -> Bucketed:
  """Pads ``ratings`` (and ``validation_data``) to shared bucket sizes, on the host.

  Files of nearby sizes then give one shape, so that one compiled
  :func:`fit_program` (and the persistent compilation cache) serves them all.
  Padding entries have weight 0 and index 0; padding users and items have no
  ratings. Any ``n_padding`` of the input is dropped first.

  Args:
    ratings: the training ratings (concrete: NumPy or on one device).
    validation_data: optional ratings scored during training, padded likewise.
    min_entries: pad to the bucket of at least this many entries (the largest
      of several training sets that are to share one program).

  Returns:
    A :class:`Bucketed`.
  """
  tables = dict(
    n_users=bucket(ratings.n_users, per_octave=4),
    n_items=bucket(ratings.n_items, per_octave=4),
  )
  n_data = len(ratings) - ratings.n_padding
  train = pad_entries(ratings, bucket(max(n_data, min_entries)), **tables)
  valid = None
  if validation_data is not None:
    n_valid = len(validation_data) - validation_data.n_padding
    valid = pad_entries(validation_data, bucket(n_valid), **tables)
  sizes = np.array([n_data, ratings.n_users, ratings.n_items], np.int32)
  return Bucketed(train, valid, sizes, ratings.n_users, ratings.n_items)


def pad_entries(
  ratings: Ratings,
  size: int,
  *,
  n_users: int | None = None,
  n_items: int | None = None,
) -> Ratings:
  """``ratings`` with weight-0 entries (index 0) up to ``size``, on the host.

  Any ``n_padding`` of the input is dropped first; the result marks none (its
  padding is told by the weights, and by ``n_data`` where a program needs it).
  Weight-0 entries change no loss and no gradient, in any objective.

  Args:
    ratings: concrete ratings.
    size: the number of entries of the result, at least the data's.
    n_users, n_items: the result's table sizes (default the input's), at least
      the input's.

  Returns:
    :class:`mfjax.Ratings` of NumPy arrays, with weights.

  Examples:
    >>> import numpy as np, mfjax
    >>> from mfjax.fitting import buckets
    >>> r = mfjax.Ratings([0, 1], [1, 0], [4.0, 2.0], 2, 2)
    >>> p = buckets.pad_entries(r, 4, n_users=3)
    >>> len(p), p.n_users, p.weights.tolist()
    (4, 3, [1.0, 1.0, 0.0, 0.0])
  """
  n = len(ratings) - ratings.n_padding
  if size < n:
    raise ValueError(f"size must be at least the {n} entries; got {size}.")
  for name, given, least in (
    ("n_users", n_users, ratings.n_users),
    ("n_items", n_items, ratings.n_items),
  ):
    if given is not None and given < least:
      raise ValueError(f"{name} must be at least the ratings' {least}; got {given}.")
  weights = np.ones(n, np.float32) if ratings.weights is None else ratings.weights
  extend = lambda x, dtype: np.concatenate(
    [np.asarray(x, dtype)[:n], np.zeros(size - n, dtype)]
  )
  values = np.asarray(ratings.values)
  return Ratings(
    extend(ratings.users, np.int32),
    extend(ratings.items, np.int32),
    extend(values, values.dtype),
    ratings.n_users if n_users is None else n_users,
    ratings.n_items if n_items is None else n_items,
    weights=extend(weights, np.float32),
  )


def trim(tree, bucketed: Bucketed):
  """Every :class:`mfjax.Params` in ``tree`` cut to the unpadded users and items.

  On the host (NumPy slices of the fitted tables, then back on the default
  device), so that no program is compiled per data size.

  Args:
    tree: outputs of the program, e.g. ``(members, best_params)``; Params with a
      leading ensemble axis are cut along their row axis.
    bucketed: what :func:`pad_to_buckets` returned for the program's inputs.

  Returns:
    ``tree`` with every Params cut.
  """

  def cut(params: Params) -> Params:
    # device_put, not jnp.asarray: that compiles a small program per shape.
    first = lambda x, n, axis: jax.device_put(
      np.take(np.asarray(x), np.arange(n), axis=axis)
    )
    return params._replace(
      user_factors=first(params.user_factors, bucketed.n_users, -2),
      item_factors=first(params.item_factors, bucketed.n_items, -2),
      user_bias=first(params.user_bias, bucketed.n_users, -1),
      item_bias=first(params.item_bias, bucketed.n_items, -1),
    )

  return jax.tree.map(
    lambda x: cut(x) if isinstance(x, Params) else x,
    tree,
    is_leaf=lambda x: isinstance(x, Params),
  )


def as_bucketed(ratings: Ratings) -> Bucketed:
  """A :class:`Bucketed` of ratings that several processes read in parts
  (:func:`mfjax.distributed.read_ratings`), padded and sharded already: only
  the tables are padded to their buckets."""
  n_users, n_items = ratings.n_users, ratings.n_items
  padded = dataclasses.replace(
    ratings,
    n_users=bucket(n_users, per_octave=4),
    n_items=bucket(n_items, per_octave=4),
    n_padding=0,
  )
  sizes = np.array([len(ratings) - ratings.n_padding, n_users, n_items], np.int32)
  return Bucketed(padded, None, sizes, n_users, n_items)
