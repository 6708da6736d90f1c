"""Device memory (mfjax.core.memory): the estimate of train's needs and its warning."""

import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

import mfjax
from mfjax.core import memory
from tests.conftest import random_params, random_ratings

# The example of the tests below: 1000 ratings, 50 users, 20 items, rank 8.
N, USERS, ITEMS, RANK = 1000, 50, 20, 8
TABLE = ((USERS + ITEMS) * (RANK + 1) + 1) * 4  # One float32 copy of the params.
# Ratings (12 bytes each), 4 copies of the params, none for an optimizer, and a
# full-batch step's per-rating temporaries.
BASE = N * 12 + 4 * TABLE + N * (4 * RANK + 3) * 4
SGD = optax.sgd(0.1)  # No state.


def test_memory_estimate_formula():
  estimate = lambda **kwargs: memory.memory_estimate(N, USERS, ITEMS, RANK, **kwargs)
  assert estimate(optimizer=SGD) == BASE
  # Adam (the default): two param-sized slots and an int32 step count.
  assert estimate() == estimate(optimizer=optax.adam(0.1)) == BASE + 2 * TABLE + 4
  assert estimate(optimizer=optax.sgd(0.1, momentum=0.9)) == BASE + TABLE
  chunked = N * 24 + 4 * TABLE + 100 * (4 * RANK + 3) * 4
  assert estimate(optimizer=SGD, chunk_size=100) == chunked
  batched = N * 28 + 4 * TABLE + 100 * (4 * RANK + 3) * 4
  assert estimate(optimizer=SGD, batch_size=100) == batched
  assert estimate(optimizer=SGD, batch_size=10**6) == BASE + 16 * N  # The shuffle.
  assert estimate(optimizer=SGD, weights=True) == BASE + 4 * N
  assert estimate(optimizer=SGD, n_validation=10) == BASE + 10 * (12 + 18 * 4)
  table16 = ((USERS + ITEMS) * (RANK + 1) + 1) * 2
  bf16 = N * 10 + 4 * table16 + N * (4 * RANK + 3) * 2
  assert estimate(optimizer=SGD, dtype=jnp.bfloat16) == bf16


def test_the_gpu_benchmarks_largest_case_fits_78_gb_only_in_chunks():
  big = (100_000_000, 2_000_000, 500_000, 128)
  assert memory.memory_estimate(*big) > 78e9
  assert memory.memory_estimate(*big, chunk_size=4_000_000) < 78e9


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(optimizer="adam"), TypeError, "optimizer must be an optax.Gradient"),
    (dict(optimizer=2), TypeError, "optimizer must be an optax.Gradient"),
    (dict(n_ratings=1.5), TypeError, "n_ratings must be an int >= 0"),
    (dict(n_ratings=-1), ValueError, "n_ratings must be an int >= 0; got -1"),
    (dict(rank=0), ValueError, "rank must be an int >= 1"),
    (dict(n_users=True), TypeError, "n_users must be an int >= 1"),
    (dict(batch_size=0), ValueError, "batch_size must be an int >= 1"),
    (dict(chunk_size=2.0), TypeError, "chunk_size must be an int >= 1"),
    (dict(n_validation=-3), ValueError, "n_validation must be an int >= 0"),
    (dict(dtype=jnp.int32), TypeError, "dtype must be a floating dtype"),
  ],
)
def test_memory_estimate_rejects_bad_arguments(kwargs, error, match):
  args = dict(n_ratings=N, n_users=USERS, n_items=ITEMS, rank=RANK) | kwargs
  with pytest.raises(error, match=match):
    memory.memory_estimate(**args)


def test_cpus_report_no_limit():
  assert memory.device_bytes_limit(jax.devices("cpu")[0]) is None
  if jax.default_backend() == "cpu":
    assert memory.device_bytes_limit() is None


def _ratings(seed=12, n_users=12, n_items=9, n=50):
  return random_ratings(seed, n_users, n_items, n)


def test_train_warns_when_the_estimate_exceeds_device_memory(monkeypatch):
  ratings = _ratings()
  params = random_params(1, 12, 9, 3)
  needed = memory.memory_estimate(50, 12, 9, 3)
  monkeypatch.setattr(memory, "device_bytes_limit", lambda device=None: needed - 1)
  with pytest.warns(memory.MemoryWarning, match="chunk_size") as caught:
    mfjax.train(params, ratings, steps=1)
  assert "mfjax.core.memory.memory_estimate" in str(caught[0].message)
  monkeypatch.setattr(memory, "device_bytes_limit", lambda device=None: needed)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    mfjax.train(params, ratings, steps=1)  # Just fits: no warning.
  assert issubclass(memory.MemoryWarning, UserWarning)


def test_train_on_a_cpu_warns_against_the_hosts_memory(monkeypatch):
  # Issue 31: train() checked only what a GPU reports, and a CPU reports none.
  import resource

  ratings = _ratings()
  params = random_params(1, 12, 9, 3)
  needed = memory.memory_estimate(50, 12, 9, 3)
  assert memory.device_bytes_limit(jax.devices("cpu")[0]) is None
  soft, hard = resource.getrlimit(resource.RLIMIT_AS)
  monkeypatch.setattr(  # The address-space limit, as ``ulimit -v`` sets it.
    resource,
    "getrlimit",
    lambda kind: (needed - 1, hard) if kind == resource.RLIMIT_AS else (soft, hard),
  )
  assert memory.bytes_limit(jax.devices("cpu")[0]) == needed - 1
  with pytest.warns(memory.MemoryWarning, match=r"but the host has .*more hosts\."):
    mfjax.train(params, jax.device_put(ratings, jax.devices("cpu")[0]), steps=1)


def test_warn_if_too_big_sizes_the_given_settings(monkeypatch):
  ratings = _ratings()
  params = random_params(1, 12, 9, 3)
  chunked = memory.memory_estimate(50, 12, 9, 3, optimizer=SGD, chunk_size=10)
  monkeypatch.setattr(memory, "device_bytes_limit", lambda device=None: chunked)
  settings = dict(optimizer=SGD, batch_size=None, chunk_size=10)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    memory.warn_if_too_big(params, ratings, **settings)
    # Dense data is not checked.
    memory.warn_if_too_big(
      params, ratings.to_dense(), **(settings | {"chunk_size": None})
    )
  with pytest.warns(memory.MemoryWarning, match=r"about \d+\.\d kB"):
    memory.warn_if_too_big(params, ratings, **(settings | {"chunk_size": None}))


def test_a_cpu_has_the_hosts_memory_or_the_address_space_limit_as_its_room():
  import os
  import resource

  host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  soft = resource.getrlimit(resource.RLIMIT_AS)[0]
  expected = host if soft == resource.RLIM_INFINITY else min(host, soft)
  for path in memory.CGROUP_LIMITS:  # The container's, where one is set.
    if os.path.exists(path):
      with open(path) as f:
        text = f.read().strip()
      expected = min(expected, int(text)) if text.isdigit() else expected
      break
  assert memory.bytes_limit(jax.devices("cpu")[0]) == expected


def test_a_cpu_in_a_container_has_the_containers_memory_as_its_room(
  tmp_path, monkeypatch
):
  # A container's limit (cgroup) is below the host's memory: a fit the host
  # could hold was killed by the container instead of refused in one line.
  cpu = jax.devices("cpu")[0]
  v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
  monkeypatch.setattr(memory, "CGROUP_LIMITS", (str(v2), str(v1)))
  unlimited = memory.bytes_limit(cpu)  # Neither file: no container limit.
  v1.write_text("1000000\n")
  assert memory.bytes_limit(cpu) == 1_000_000
  v2.write_text("max\n")  # v2 first: "max" is no limit, whatever v1 says.
  assert memory.bytes_limit(cpu) == unlimited
  v2.write_text(f"{2 * unlimited}\n")  # Above the host's: the host's.
  assert memory.bytes_limit(cpu) == unlimited
  with pytest.raises(ValueError, match=r"this needs at least .* host has 1\.0 MB"):
    v2.write_text("1000000\n")
    memory.check_room(2_000_000, "this", "advice", cpu)


def test_check_room_refuses_what_cannot_fit_and_passes_what_can():
  cpu = jax.devices("cpu")[0]
  room = memory.bytes_limit(cpu)
  memory.check_room(room, "this", "advice", cpu)  # Exactly full: allowed.
  with pytest.raises(
    ValueError, match=r"this needs at least .* GB .* host has .*; advice"
  ):
    memory.check_room(room + 1, "this", "advice", cpu)


@pytest.mark.parametrize(
  "solver, settings",
  [("adam", {"ensemble": 2}), ("als", {}), ("gibbs", {"samples": 2, "burn_in": 1})],
)
def test_a_fit_too_big_for_memory_is_refused_before_anything_is_allocated(
  solver, settings
):
  # Issue 31: 10**7 users, or a rank of 10**4, were an XLA out-of-memory error
  # after minutes; a 50M-user matrix of 3 ratings ran for 200 s.
  # 3 float32 tables of rank 63 (64 numbers a row) overflow the room; fewer
  # users than int32 indices hold, on hosts up to 6 TB.
  n_users = memory.bytes_limit() // (3 * 4 * 64) + 1
  ratings = mfjax.Ratings(
    jnp.array([0, 1, n_users - 1]), jnp.array([0, 1, 2]), jnp.array([1.0, 2.0, 3.0]),
    n_users=n_users, n_items=3,
  )  # fmt: skip
  objective = "ranking" if solver == "als" else "rating"
  with pytest.raises(ValueError, match=rf"{n_users} users, 3 items, rank 63\) needs"):
    mfjax.fit(
      jax.random.key(0), ratings, objective=objective, solver=solver, rank=63,
      **settings,
    )  # fmt: skip


_UNDER_A_LIMIT = """
import resource, sys
limit = int(sys.argv[1])
if limit:
  resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import jax, jax.numpy as jnp, mfjax
from mfjax.fitting import plan
n_users = 2_000_000  # 6 tables of 8 members, rank 12: 5.0 GB at the least.
ratings = mfjax.Ratings(
  jnp.array([0, 1, n_users - 1]), jnp.array([0, 1, 2]), jnp.array([1.0, 2.0, 3.0]),
  n_users=n_users, n_items=3,
)
try:
  plan.plan(jax.random.key(0), ratings, ensemble=8, rank=12)
  print("planned")
except ValueError as e:
  print(e)
"""


@pytest.mark.slow  # Two processes import jax: about 6 s.
@pytest.mark.skipif(
  not hasattr(__import__("os"), "sysconf"), reason="POSIX resource limits"
)
def test_an_address_space_limit_is_the_room_a_fit_is_refused_beyond():
  # Issue 31: memory bounds checked under `ulimit -v` (resource.setrlimit).
  import subprocess
  import sys

  run = lambda limit: subprocess.run(
    [sys.executable, "-c", _UNDER_A_LIMIT, str(limit)],
    capture_output=True, text=True, timeout=120,
  ).stdout.strip()  # fmt: skip
  if memory.bytes_limit(jax.devices("cpu")[0]) < 6e9:
    pytest.skip("a host with under 6 GB: the unlimited run would be refused too")
  assert run(0) == "planned"
  refused = run(4 * 10**9)
  assert "needs at least 5.0 GB of memory but the host has 4.0 GB" in refused, refused
