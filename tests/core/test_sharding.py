"""Sharding (mfjax.core.sharding): ratings and params placed on a mesh, training on
them, and the weight-0 padding that shard_ratings adds.

Memory estimates are in test_memory; weights in general in test_objectives and
test_metrics.
"""

import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import mfjax
from mfjax.core import sharding
from tests.conftest import padded_ratings, random_params, random_ratings

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh process with 8 simulated CPU devices: this one has already
# started JAX with one.
EIGHT_DEVICES = r"""
import jax, numpy as np, optax, mfjax
from mfjax.core import sharding

assert len(jax.devices()) == 8, jax.devices()
# Drawn with NumPy: jax.random would add compilations, not coverage.
rng = np.random.default_rng(0)
ratings = mfjax.Ratings(
  rng.integers(0, 48, 1003).astype(np.int32),
  rng.integers(0, 40, 1003).astype(np.int32),
  rng.integers(1, 6, 1003).astype(np.float32),
  48,
  40,
)
train, valid = mfjax.train_test_split(ratings, test_fraction=0.2, seed=0)
params = mfjax.Params(
  *(0.1 * rng.normal(size=s).astype(np.float32) for s in ((48, 3), (40, 3), 48, 40)),
  np.float32(0),
)
mesh = jax.make_mesh((8,), ("data",))  # Explicit axes: shard_* use them as Auto.
placed = sharding.shard_ratings(train, mesh)
assert (len(train), len(placed), placed.n_padding) == (802, 808, 6)
assert placed.users.sharding.spec == jax.sharding.PartitionSpec("data")
assert len(placed.users.sharding.device_set) == 8

full = jax.jit(lambda p, r, v: mfjax.train(p, r, steps=6, l2=0.5, validation_data=v))
mini = jax.jit(
  lambda p, r, k: mfjax.train(p, r, steps=3, l2=0.5, batch_size=100, key=k)
)
chunked = jax.jit(lambda p, r: mfjax.train(p, r, steps=6, l2=0.5, chunk_size=128))


def close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6)


reference = full(params, train, valid)
replicated = sharding.shard_params(params, mesh)
rows = sharding.shard_params(params, mesh, rows=True)
assert rows.user_factors.sharding.spec == jax.sharding.PartitionSpec("data", None)
valid_placed = sharding.shard_ratings(valid, mesh)
close(full(replicated, placed, valid_placed), reference)
close(chunked(replicated, placed).params, reference.params)
close(mini(rows, placed, jax.random.key(3)), mini(params, train, jax.random.key(3)))

# Resharding: along another mesh, then back; the padding is redone.
other = jax.make_mesh((4, 2), ("a", "b"))
again = sharding.shard_ratings(sharding.shard_ratings(placed, other, axis="b"), mesh)
assert (len(again), again.n_padding) == (808, 6)
close(full(replicated, again, valid_placed), reference)  # The same program.

try:  # Tables whose rows do not split evenly.
  uneven = params._replace(
    user_factors=np.zeros((50, 3), np.float32), user_bias=np.zeros(50, np.float32)
  )
  sharding.shard_params(uneven, mesh, rows=True)
except ValueError as e:
  assert "multiples of the 8 devices" in str(e), e
else:
  raise AssertionError("rows=True with 50 users did not raise")
try:  # Params on one device, ratings on eight.
  mfjax.train(jax.device_put(params, jax.devices()[0]), placed, steps=1)
except ValueError as e:
  assert "data, params are placed on different sets of devices" in str(e), e
else:
  raise AssertionError("mixed placements did not raise")
sharding.check_placement(replicated, placed, valid_placed)
sharding.check_placement(rows, placed, None)
# fit trains sharded ratings where they are (no host padding to a bucket), and
# as it trains the same ratings on one device.
settings = dict(rank=2, steps=2, ensemble=2, batch_size=128)
spread = mfjax.fit(jax.random.key(5), placed, **settings)
assert len(spread.best_params.user_factors.sharding.device_set) == 8
alone = mfjax.fit(jax.random.key(5), train, one_device=True, **settings)
assert len(alone.members.losses.sharding.device_set) == 1
close(spread, alone)
# Host ratings: fit pads them and spreads them over the 8 devices by default.
default = mfjax.fit(jax.random.key(5), train, **settings)
assert len(default.members.losses.sharding.device_set) == 8
close(default, alone)
try:  # The validation data on another device set than the rest.
  one = jax.device_put(valid, jax.devices()[3])
  sharding.check_placement(replicated, placed, one)
except ValueError as e:
  assert "are placed on different sets of devices" in str(e), e
else:
  raise AssertionError("check_placement let mixed placements through")
# The sparse ranking fit keeps each device's pairs where they are: no row
# chunks (laying them out would gather every pair onto every device).
from mfjax.core import objectives, solvers
sparse = objectives.pairs_of(mfjax.Ratings(
  rng.integers(0, 400, 50).astype(np.int32), rng.integers(0, 300, 50).astype(np.int32),
  np.ones(50, np.float32), 400, 300), np.float32)
als = solvers.alternating(
  objectives.Ranking(), sparse, objectives.Penalty(0.01, 0.0), solvers.Alternating()
)
shapes = ((400, 2), (300, 2), 400, 300)
assert als.init(mfjax.Params(*(np.zeros(s, np.float32) for s in shapes), 0.0)) == ()
print("SHARDED-EQUALS-SINGLE-OK")
"""


@pytest.mark.slow
def test_sharded_training_equals_single_device_on_8_cpu_devices():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (
    env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  out = subprocess.run(
    [sys.executable, "-c", EIGHT_DEVICES],
    capture_output=True,
    text=True,
    env=env,
    cwd=ROOT,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "SHARDED-EQUALS-SINGLE-OK" in out.stdout


def _ratings(seed=0, n_users=12, n_items=9, n=70):
  return random_ratings(seed, n_users, n_items, n)


def _params(ratings, rank=3, seed=1):
  """Small random params (init_params' scale, drawn with NumPy), mean 3."""
  params = random_params(seed, ratings.n_users, ratings.n_items, rank)
  return jax.tree.map(lambda x: 0.1 * x, params)._replace(mean=jnp.float32(3.0))


# --- placing ratings and params ---------------------------------------------------


def test_shard_ratings_and_params_on_one_device():
  mesh = jax.make_mesh((1,), ("data",))
  ratings = _ratings(10, n=25)
  placed = sharding.shard_ratings(ratings, mesh)
  assert placed.n_padding == 0 and placed.weights is None
  assert placed.values.sharding.spec == P("data")
  np.testing.assert_array_equal(placed.values, ratings.values)
  params = _params(ratings)
  for rows in (False, True):
    put = sharding.shard_params(params, mesh, rows=rows)
    chex.assert_trees_all_equal(put, params)
    spec = P("data", None) if rows else P()
    assert put.user_factors.sharding.spec == spec


@pytest.mark.slow  # Two compilations of train.
def test_training_on_placed_inputs_equals_training_on_unplaced_ones():
  mesh = jax.make_mesh((1,), ("data",))
  ratings = _ratings(10, n=25)
  params = _params(ratings)
  placed = sharding.shard_ratings(ratings, mesh)
  result = mfjax.train(sharding.shard_params(params, mesh), placed, steps=3)
  expected = mfjax.train(params, ratings, steps=3)
  chex.assert_trees_all_close(result.params, expected.params, rtol=1e-6)


def test_sharding_rejects_bad_meshes_and_explicit_placement():
  mesh = jax.make_mesh((1,), ("data",))
  ratings = _ratings(11, n=10)
  with pytest.raises(ValueError, match=r"one of the mesh's axis names \('data',\)"):
    sharding.shard_ratings(ratings, mesh, axis="model")
  with pytest.raises(ValueError, match="axis names"):
    sharding.shard_params(_params(ratings), mesh, axis="rows")
  with pytest.raises(TypeError, match="jax.sharding.Mesh"):
    sharding.shard_ratings(ratings, jax.devices())
  with pytest.raises(TypeError, match="jax.sharding.Mesh"):
    sharding.shard_params(_params(ratings), "data")
  with pytest.raises(TypeError, match="mfjax.Ratings"):
    sharding.shard_ratings(ratings.to_dense(), mesh)
  # A mesh with Explicit axes (jax.make_mesh's default) cannot train directly.
  explicit = NamedSharding(mesh, P("data"))
  assert mesh.axis_types[0] == jax.sharding.AxisType.Explicit
  placed = mfjax.Ratings(
    *(
      jax.device_put(x, explicit)
      for x in (ratings.users, ratings.items, ratings.values)
    ),
    12,
    9,
  )
  with pytest.raises(ValueError, match="Explicit axes"):
    mfjax.train(_params(ratings), placed, steps=1)


def test_check_placement_rejects_explicit_axes_and_accepts_auto():
  mesh = jax.make_mesh((1,), ("data",))
  ratings = _ratings(12, n=10)
  params = _params(ratings)
  placed, put = (
    sharding.shard_ratings(ratings, mesh),
    sharding.shard_params(params, mesh),
  )
  sharding.check_placement(put, placed, placed)  # Auto axes, one device set.
  sharding.check_placement(params, ratings.to_dense(), None)  # Dense data: unchecked.
  explicit = jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, P())), params)
  with pytest.raises(ValueError, match="params is placed on a mesh with Explicit"):
    sharding.check_placement(explicit, placed, None)


# --- padding: the weight-0 entries shard_ratings appends change nothing -----------


def _numpy_loss(params, ratings, weights, l2, l2_bias):
  p = jax.tree.map(np.asarray, params)
  u, i, v = (np.asarray(x) for x in (ratings.users, ratings.items, ratings.values))
  pred = p.mean + p.user_bias[u] + p.item_bias[i]
  pred = pred + np.sum(p.user_factors[u] * p.item_factors[i], axis=1)
  penalty = l2 * (np.sum(p.user_factors**2) + np.sum(p.item_factors**2))
  penalty += l2_bias * (np.sum(p.user_bias**2) + np.sum(p.item_bias**2))
  return (np.sum(weights * (pred - v) ** 2) + penalty) / np.sum(weights)


@pytest.mark.slow
def test_weighted_loss_matches_numpy_and_padding_changes_nothing():
  ratings = _ratings()
  params = _params(ratings)
  weights = np.random.default_rng(1).uniform(0, 2, len(ratings)).astype(np.float32)
  weighted = mfjax.Ratings(
    ratings.users, ratings.items, ratings.values, 12, 9, weights=jnp.asarray(weights)
  )
  ones = np.ones(len(ratings), np.float32)
  value_and_grad = jax.jit(
    jax.value_and_grad(lambda p, r: mfjax.loss(p, r, l2=0.3, l2_bias=0.05))
  )
  cases = [
    (weighted, weights, (padded_ratings(weighted, 3, weights),)),
    (ratings, ones, (padded_ratings(ratings, 5),)),
  ]
  for plain, w, padded_versions in cases:
    value, grads = value_and_grad(params, plain)
    np.testing.assert_allclose(
      value, _numpy_loss(params, ratings, w, 0.3, 0.05), rtol=1e-5
    )
    for padded in padded_versions:
      padded_value, padded_grads = value_and_grad(params, padded)
      np.testing.assert_allclose(padded_value, value, rtol=1e-6)
      chex.assert_trees_all_close(padded_grads, grads, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # Two compilations of train.
def test_weight_two_equals_a_repeated_rating():
  ratings = _ratings(2, n=40)
  params = _params(ratings)
  weights = np.ones(40, np.float32)
  weights[:10] = 2.0
  weighted = mfjax.Ratings(
    ratings.users, ratings.items, ratings.values, 12, 9, weights=jnp.asarray(weights)
  )
  repeated = mfjax.Ratings(
    *(
      jnp.concatenate([x, x[:10]])
      for x in (ratings.users, ratings.items, ratings.values)
    ),
    12,
    9,
  )
  opt = optax.adam(0.05)
  a = mfjax.train(params, weighted, optimizer=opt, steps=15, l2=0.2)
  b = mfjax.train(params, repeated, optimizer=opt, steps=15, l2=0.2)
  np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)
  chex.assert_trees_all_close(a.params, b.params, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(
    a.params.mean, np.mean(np.asarray(repeated.values)), rtol=1e-6
  )


@pytest.mark.slow
def test_padded_training_equals_unpadded_full_and_mini_batch():
  ratings = _ratings(3, n=90)
  valid = _ratings(4, n=20)
  params = _params(ratings)
  padded = padded_ratings(ratings, 7)
  opt = optax.adam(0.05)
  # Full-batch steps take the loss and gradient, which padding does not change
  # (test_weighted_loss_matches_numpy_and_padding_changes_nothing); mini-batches
  # are planned over the real entries only, and chunks cut across the padding.
  runs = {
    "mini": dict(steps=3, batch_size=16, key=jax.random.key(5)),
    "chunked": dict(steps=8, chunk_size=20),
  }
  for name, kwargs in runs.items():
    a = mfjax.train(
      params, padded, optimizer=opt, l2=0.1, validation_data=valid, **kwargs
    )
    b = mfjax.train(
      params, ratings, optimizer=opt, l2=0.1, validation_data=valid, **kwargs
    )
    np.testing.assert_allclose(
      a.params.mean, np.mean(np.asarray(ratings.values)), rtol=1e-6
    )
    np.testing.assert_allclose(a.losses, b.losses, rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(a.validation_rmse, b.validation_rmse, rtol=2e-5)
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_chunked_steps_equal_full_batch_steps():
  ratings = _ratings(6, n=101)  # 101 = 6 chunks of 17, one entry of padding.
  params = _params(ratings)
  # L-BFGS evaluates the loss in its line search, through the chunks too. (That a
  # chunked step's value and gradient are the full batch's, whatever optimizer
  # takes them, is in test_solvers.)
  optimizer = optax.lbfgs()
  full = mfjax.train(params, ratings, optimizer=optimizer, steps=6, l2=0.3)
  chunked = mfjax.train(
    params, ratings, optimizer=optimizer, steps=6, l2=0.3, chunk_size=17
  )
  np.testing.assert_allclose(chunked.losses, full.losses, rtol=1e-5)
  chex.assert_trees_all_close(chunked.params, full.params, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="chunk_size applies to full-batch"):
    mfjax.train(params, ratings, chunk_size=10, batch_size=10, key=jax.random.key(0))
  with pytest.raises(ValueError, match="chunk_size needs Ratings"):
    mfjax.train(params, ratings.to_dense(), chunk_size=10)
