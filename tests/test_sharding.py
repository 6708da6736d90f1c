"""Sharded training, padding by weight-0 ratings, weights, memory estimates."""

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
from mfjax import data as data_lib
from mfjax import metrics, sharding

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh process with 8 simulated CPU devices: this one has already
# started JAX with one.
EIGHT_DEVICES = r"""
import jax, numpy as np, optax, mfjax
from mfjax import sharding

assert len(jax.devices()) == 8, jax.devices()
ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 48, 40, 1003, 3)
train, valid = mfjax.train_test_split(ratings, test_fraction=0.2, seed=0)
params = mfjax.init_params(jax.random.key(1), 48, 40, 3)
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
close(full(replicated, placed, sharding.shard_ratings(valid, mesh)), reference)
close(chunked(replicated, placed).params, reference.params)
close(mini(rows, placed, jax.random.key(3)), mini(params, train, jax.random.key(3)))

# Resharding: along another mesh, then back; the padding is redone.
other = jax.make_mesh((4, 2), ("a", "b"))
again = sharding.shard_ratings(sharding.shard_ratings(placed, other, axis="b"), mesh)
assert (len(again), again.n_padding) == (808, 6)
close(full(replicated, again, valid), reference)

try:  # Tables whose rows do not split evenly.
  uneven = mfjax.init_params(jax.random.key(0), 50, 40, 3)
  sharding.shard_params(uneven, mesh, rows=True)
except ValueError as e:
  assert "multiples of the 8 devices" in str(e), e
else:
  raise AssertionError("rows=True with 50 users did not raise")
try:  # Params on one device, ratings on eight.
  mfjax.train(jax.device_put(params, jax.devices()[0]), placed, steps=1)
except ValueError as e:
  assert "different sets of devices" in str(e), e
else:
  raise AssertionError("mixed placements did not raise")
print("SHARDED-EQUALS-SINGLE-OK")
"""


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
  rng = np.random.default_rng(seed)
  return mfjax.Ratings(
    users=jnp.asarray(rng.integers(0, n_users, n), jnp.int32),
    items=jnp.asarray(rng.integers(0, n_items, n), jnp.int32),
    values=jnp.asarray(rng.integers(1, 6, n), jnp.float32),
    n_users=n_users,
    n_items=n_items,
  )


def _pad(ratings, pad, weights=None):
  """``ratings`` with ``pad`` weight-0 entries appended, as shard_ratings pads."""
  n = len(ratings)
  weights = np.ones(n, np.float32) if weights is None else weights
  return mfjax.Ratings(
    users=jnp.concatenate([ratings.users, jnp.zeros(pad, jnp.int32)]),
    items=jnp.concatenate([ratings.items, jnp.zeros(pad, jnp.int32)]),
    values=jnp.concatenate([ratings.values, jnp.zeros(pad)]),
    n_users=ratings.n_users,
    n_items=ratings.n_items,
    weights=jnp.concatenate([jnp.asarray(weights), jnp.zeros(pad)]),
    n_padding=pad,
  )


def _params(ratings, rank=3, seed=1):
  params = mfjax.init_params(
    jax.random.key(seed), ratings.n_users, ratings.n_items, rank
  )
  return params._replace(mean=jnp.float32(3.0))


def _numpy_loss(params, ratings, weights, l2, l2_bias):
  p = jax.tree.map(np.asarray, params)
  u, i, v = (np.asarray(x) for x in (ratings.users, ratings.items, ratings.values))
  pred = p.mean + p.user_bias[u] + p.item_bias[i]
  pred = pred + np.sum(p.user_factors[u] * p.item_factors[i], axis=1)
  penalty = l2 * (np.sum(p.user_factors**2) + np.sum(p.item_factors**2))
  penalty += l2_bias * (np.sum(p.user_bias**2) + np.sum(p.item_bias**2))
  return (np.sum(weights * (pred - v) ** 2) + penalty) / np.sum(weights)


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
    (weighted, weights, (_pad(weighted, 3, weights),)),
    (ratings, ones, (_pad(ratings, 5), _pad(ratings, 1))),
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


def test_padded_training_equals_unpadded_full_and_mini_batch():
  ratings = _ratings(3, n=90)
  valid = _ratings(4, n=20)
  params = _params(ratings)
  padded = _pad(ratings, 7)
  opt = optax.adam(0.05)
  runs = {
    "full": dict(steps=8),
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


def test_chunked_steps_equal_full_batch_steps():
  ratings = _ratings(6, n=101)  # 101 = 6 chunks of 17, one entry of padding.
  params = _params(ratings)
  for optimizer in (optax.adam(0.05), optax.lbfgs()):
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


def test_metrics_ignore_weight_zero_ratings():
  ratings = _ratings(7, n=30)
  params = _params(ratings)
  padded = _pad(ratings, 6)
  for fn in (mfjax.rmse, mfjax.mae):
    np.testing.assert_allclose(fn(params, padded), fn(params, ratings), rtol=1e-6)
  weights = np.linspace(0.0, 2.0, 30).astype(np.float32)
  weighted = mfjax.Ratings(
    ratings.users, ratings.items, ratings.values, 12, 9, weights=jnp.asarray(weights)
  )
  errors = np.asarray(
    mfjax.predict(params, ratings.users, ratings.items) - ratings.values
  )
  np.testing.assert_allclose(
    mfjax.rmse(params, weighted),
    np.sqrt(np.sum(weights * errors**2) / weights.sum()),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    mfjax.mae(params, weighted),
    np.sum(weights * np.abs(errors)) / weights.sum(),
    rtol=1e-5,
  )
  # Ranking: a relevant (5-star) test rating of weight 0 is no rating at all.
  test = mfjax.Ratings(
    jnp.array([0, 0, 0], jnp.int32),
    jnp.array([1, 2, 3], jnp.int32),
    jnp.array([5.0, 5.0, 5.0]),
    1,
    5,
    weights=jnp.array([1.0, 0.0, 1.0]),
  )
  m = metrics.ranking_metrics(jnp.array([[1, 2]]), jnp.array([0]), test)
  np.testing.assert_allclose([m.precision, m.recall], [0.5, 0.5])
  np.testing.assert_array_equal(test.to_dense(), [[0, 5, 0, 5, 0]])
  np.testing.assert_array_equal(
    metrics.popularity_params(test).item_bias, [0, 1, 0, 1, 0]
  )


def test_subset_and_splits_carry_weights_and_drop_padding():
  ratings = _ratings(8, n=40)
  weights = np.arange(40, dtype=np.float32)
  padded = _pad(ratings, 5, weights)
  part = padded.subset([3, 1, 44])
  np.testing.assert_array_equal(part.weights, [3.0, 1.0, 0.0])
  assert part.n_padding == 0
  train, test = mfjax.train_test_split(padded, test_fraction=0.25, seed=0)
  assert len(train) + len(test) == 40 and train.n_padding == 0
  np.testing.assert_array_equal(
    np.sort(np.concatenate([train.weights, test.weights])), weights
  )
  folds = list(mfjax.kfold(padded, 4))
  assert sum(len(t) for _, t in folds) == 40


def test_ratings_with_weights_is_a_pytree():
  padded = _pad(_ratings(9, n=10), 2)
  leaves, treedef = jax.tree.flatten(padded)
  assert len(leaves) == 4
  again = jax.tree.unflatten(treedef, leaves)
  assert (again.n_padding, len(again)) == (2, 12)
  assert jax.jit(lambda r: r.weights.sum())(padded) == 10.0


@pytest.mark.parametrize(
  "weights, n_padding, message",
  [
    (np.ones(3), 0, "one weight per rating"),
    (np.array([1.0, -1.0, 1.0, 1.0]), 0, "must be >= 0"),
    (np.array([1.0, np.nan, 1.0, 1.0]), 0, "must be finite"),
    (None, 1, "weights is None"),
    (np.ones(4), 1, "must be 0 on the last"),
    (np.zeros(4), 5, r"n_padding must lie in \[0, 4\]"),
  ],
)
def test_bad_weights_and_padding_are_rejected(weights, n_padding, message):
  r = mfjax.Ratings(
    np.array([0, 1, 2, 0]),
    np.array([0, 1, 1, 2]),
    np.array([1.0, 2, 3, 4]),
    3,
    3,
    weights=weights,
    n_padding=n_padding,
  )
  params = mfjax.init_params(jax.random.key(0), 3, 3, 2)
  with pytest.raises(ValueError, match=message):
    mfjax.train(params, r, steps=1)
  with pytest.raises(ValueError, match=message):
    data_lib.check_ratings("ratings", r)


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


def test_memory_estimate_formula():
  n, users, items, rank = 1000, 50, 20, 8
  table = ((users + items) * (rank + 1) + 1) * 4
  full = n * 12 + 6 * table + n * (4 * rank + 3) * 4
  assert sharding.memory_estimate(n, users, items, rank) == full
  assert (
    sharding.memory_estimate(n, users, items, rank, optimizer="sgd") == full - 2 * table
  )
  assert sharding.memory_estimate(
    n, users, items, rank, optimizer=optax.adam(0.1)
  ) == pytest.approx(full, rel=1e-3)  # Adam's state: two tables and a count.
  chunked = n * 24 + 6 * table + 100 * (4 * rank + 3) * 4
  assert sharding.memory_estimate(n, users, items, rank, chunk_size=100) == chunked
  batched = n * 28 + 6 * table + 100 * (4 * rank + 3) * 4
  assert sharding.memory_estimate(n, users, items, rank, batch_size=100) == batched
  assert sharding.memory_estimate(n, users, items, rank, weights=True) == full + 4 * n
  # The GPU benchmark's largest case fits a 78 GB device only in chunks.
  big = (100_000_000, 2_000_000, 500_000, 128)
  assert sharding.memory_estimate(*big) > 78e9
  assert sharding.memory_estimate(*big, chunk_size=4_000_000) < 78e9
  with pytest.raises(ValueError, match="optimizer must be one of"):
    sharding.memory_estimate(n, users, items, rank, optimizer="adagrad")
  with pytest.raises(TypeError, match="n_ratings"):
    sharding.memory_estimate(1.5, users, items, rank)
  with pytest.raises(ValueError, match="rank"):
    sharding.memory_estimate(n, users, items, 0)


def test_train_warns_when_the_estimate_exceeds_device_memory(monkeypatch):
  ratings = _ratings(12, n=50)
  params = _params(ratings)
  monkeypatch.setattr(sharding, "_device_bytes_limit", lambda device=None: 1_000)
  with pytest.warns(sharding.MemoryWarning, match="chunk_size"):
    mfjax.train(params, ratings, steps=1)
  monkeypatch.setattr(sharding, "_device_bytes_limit", lambda device=None: 10**12)
  mfjax.train(params, ratings, steps=1)  # No warning (pytest makes them errors).
  monkeypatch.undo()
  assert sharding._device_bytes_limit(jax.devices("cpu")[0]) is None
