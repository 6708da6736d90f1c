"""The shared types (mfjax.types): Params, Ratings and their pytree structure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax import types
from tests.conftest import padded_ratings, random_params, random_ratings


def test_the_types_are_the_top_level_names():
  assert (mfjax.Params, mfjax.Ratings, mfjax.IdMaps) == (
    types.Params,
    types.Ratings,
    types.IdMaps,
  )
  assert mfjax.UNKNOWN == types.UNKNOWN == -1


def test_params_is_a_pytree_of_five_leaves():
  params = random_params(0, 3, 4, 2)
  leaves, treedef = jax.tree.flatten(params)
  assert [leaf.shape for leaf in leaves] == [(3, 2), (4, 2), (3,), (4,), ()]
  again = jax.tree.unflatten(treedef, [leaf + 1 for leaf in leaves])
  assert type(again) is mfjax.Params
  np.testing.assert_array_equal(again.mean, params.mean + 1)


def test_ratings_is_a_pytree_with_static_sizes():
  r = mfjax.Ratings(np.array([0, 1]), np.array([2, 0]), np.array([4.0, 3.0]), 2, 3)
  leaves, treedef = jax.tree.flatten(r)
  assert len(leaves) == 3  # weights None is no leaf.
  again = jax.tree.unflatten(treedef, leaves)
  assert again.n_users == 2 and again.n_items == 3
  assert len(r) == 2 and r.shape == (2, 3)
  doubled = jax.jit(lambda r: r.values * r.n_items)(r)
  np.testing.assert_allclose(doubled, [12.0, 9.0])
  np.testing.assert_array_equal(r.to_dense(), [[0, 0, 4], [3, 0, 0]])


def test_ratings_with_weights_is_a_pytree():
  padded = padded_ratings(random_ratings(9, n=10), 2)
  leaves, treedef = jax.tree.flatten(padded)
  assert len(leaves) == 4
  again = jax.tree.unflatten(treedef, leaves)
  assert (again.n_padding, len(again)) == (2, 12)
  assert jax.jit(lambda r: r.weights.sum())(padded) == 10.0


def test_to_dense_leaves_out_weight_zero_and_unknown_ids():
  test = mfjax.Ratings(
    jnp.array([0, 0, 0, -1], jnp.int32),
    jnp.array([1, 2, 3, 4], jnp.int32),
    jnp.array([5.0, 4.0, 3.0, 2.0]),
    1,
    5,
    weights=jnp.array([1.0, 0.0, 2.0, 1.0]),
  )
  np.testing.assert_array_equal(test.to_dense(), [[0, 5, 0, 3, 0]])


def test_subset_carries_weights_and_drops_padding():
  ratings = random_ratings(8, n=40)
  weights = np.arange(40, dtype=np.float32)
  padded = padded_ratings(ratings, 5, weights)
  part = padded.subset([3, 1, 44])
  np.testing.assert_array_equal(part.weights, [3.0, 1.0, 0.0])
  users, values = np.asarray(ratings.users), np.asarray(ratings.values)
  np.testing.assert_array_equal(part.users, [users[3], users[1], 0])  # 44: padding.
  np.testing.assert_array_equal(part.values, [values[3], values[1], 0.0])
  assert part.n_padding == 0 and part.shape == ratings.shape
  assert ratings.subset([2]).weights is None


def test_ratings_from_python_lists():
  ratings = mfjax.Ratings([0, 1, 2], [2, 0, 1], [4.0, 3.5, 5], 3, 3, [1, 2, 1])
  assert ratings.users.dtype == np.int32 and ratings.items.dtype == np.int32
  assert ratings.values.dtype == np.float32 and ratings.weights.dtype == np.float32
  params = random_params(0, 3, 3, 2)
  arrays = mfjax.Ratings(
    jnp.array([0, 1, 2]), jnp.array([2, 0, 1]), jnp.array([4.0, 3.5, 5]), 3, 3,
    jnp.array([1.0, 2.0, 1.0]),
  )  # fmt: skip
  assert float(mfjax.rmse(params, ratings)) == float(mfjax.rmse(params, arrays))
  # What a list cannot be, the checks still refuse with their own words.
  for users, message in (
    ([0.5, 1, 2], "must be a 1-D integer array"),
    ([True, False, True], "must be a 1-D integer array"),
    (["a", 1, 2], "must be a 1-D integer array"),
  ):
    with pytest.raises(TypeError, match=message):
      mfjax.rmse(params, mfjax.Ratings(users, [0, 1, 2], [1.0, 2, 3], 3, 3))
  # A pytree still: jit passes it through.
  assert float(jax.jit(lambda r: r.values.sum())(ratings)) == 12.5


def test_tree_map_over_ratings_keeps_what_the_function_returns():
  # Lists given by a user become arrays; leaves jax.tree gives back do not.
  ratings = mfjax.Ratings([0, 1], [1, 2], [4.0, 3.0], 3, 4)
  assert jax.tree.map(lambda x: x.shape, ratings).users == (2,)
  pairs = jax.tree.map(lambda x: (x, x), ratings)
  assert isinstance(pairs.values, tuple) and len(pairs.values) == 2
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(ratings)[0]]
  assert paths[0] == (jax.tree_util.GetAttrKey("users"),)
  assert jax.tree.structure(ratings) == jax.tree.structure(
    jax.tree.map(lambda x: x + 0, ratings)
  )
