"""Test settings: strict JAX numerics and shared fixtures."""

import os
from pathlib import Path

# Tests check numbers, not speed: compile for speed of compilation, as the CLI's
# demo does for its tiny programs (0.19 s against 0.78 s, benchmarks/RESULTS.md).
# Most of the suite's time is XLA compiling small programs; these options cut it
# by a third or more. They change how XLA schedules and fuses, not what the
# programs compute; the benchmarks and the CLI run with XLA's defaults. Set
# MFJAX_TEST_XLA_DEFAULTS=1 to run the tests with XLA's defaults too.
if not os.environ.get("MFJAX_TEST_XLA_DEFAULTS"):
  os.environ["XLA_FLAGS"] = " ".join(
    [
      os.environ.get("XLA_FLAGS", ""),
      "--xla_backend_optimization_level=0",
      "--xla_cpu_use_fusion_emitters=false",
    ]
  ).strip()

import hypothesis.extra.numpy as hnp  # noqa: E402
import hypothesis.strategies as st  # noqa: E402
import jax  # noqa: E402  (after XLA_FLAGS: XLA reads them when it starts)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import mfjax  # noqa: E402
from mfjax.core import objectives  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


# One folder for the session's compilation cache, made by the first process
# (pytest itself, or the controller of the xdist workers, which inherit it).
_MADE_CACHE = "MFJAX_TEST_JAX_CACHE" not in os.environ
if _MADE_CACHE:
  import tempfile

  os.environ["MFJAX_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="mfjax-test-jax-")


def pytest_unconfigure(config):
  if _MADE_CACHE:  # The process that made the folder removes it.
    import shutil

    shutil.rmtree(os.environ["MFJAX_TEST_JAX_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache():
  """One persistent compilation cache for the whole session (CPU included).

  Programs that several tests, both xdist workers and the CLI's subprocesses
  (through MFJAX_COMPILATION_CACHE) compile alike are compiled once. The cache
  starts empty every session, so no result depends on an earlier run.
  """
  path = os.environ["MFJAX_TEST_JAX_CACHE"]
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  os.environ["MFJAX_COMPILATION_CACHE"] = path
  yield path


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


_HYPOTHESIS_SCALE = int(os.environ.get("MFJAX_HYPOTHESIS_SCALE", "1"))


def hypothesis_settings(max_examples):
  """Settings of the property tests: derandomised examples, or with
  MFJAX_HYPOTHESIS_SCALE=N, N times as many drawn afresh (a deeper run)."""
  return settings(
    max_examples=max_examples * _HYPOTHESIS_SCALE,
    deadline=None,
    database=None,  # Leave no .hypothesis folder in the repository.
    derandomize=_HYPOTHESIS_SCALE == 1,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
  )


def random_ratings(seed=0, n_users=12, n_items=9, n=40):
  """``n`` uniformly random ratings 1-5 (repeated pairs possible)."""
  rng = np.random.default_rng(seed)
  return mfjax.Ratings(
    users=jnp.asarray(rng.integers(0, n_users, n), jnp.int32),
    items=jnp.asarray(rng.integers(0, n_items, n), jnp.int32),
    values=jnp.asarray(rng.integers(1, 6, n), jnp.float32),
    n_users=n_users,
    n_items=n_items,
  )


def padded_ratings(ratings, pad, weights=None):
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


# Strategies of the property tests.
FACTORS = st.floats(-3, 3, width=32)
NONZERO = st.one_of(st.floats(-10, -0.25, width=32), st.floats(0.25, 10, width=32))
MAYBE_MISSING = st.one_of(st.just(0.0), st.just(0.0), NONZERO)  # 0 = missing.


def draw_params(draw, n_users, n_items, rank, objective=objectives.RATING):
  """Hypothesis-drawn params of the objective's type: factors, biases, mean."""

  def array(shape, elements=FACTORS):
    return jnp.asarray(draw(hnp.arrays(np.float32, shape, elements=elements)))

  return objective.params_type(
    user_factors=array((n_users, rank)),
    item_factors=array((n_items, rank)),
    user_bias=array((n_users,)),
    item_bias=array((n_items,)),
    mean=array((), st.floats(-5, 5, width=32)),
  )


def draw_ratings(draw, n_users, n_items, n, values=NONZERO):
  """``n`` hypothesis-drawn ratings (non-zero values by default)."""

  def index(size):
    return draw(hnp.arrays(np.int32, n, elements=st.integers(0, size - 1)))

  return mfjax.Ratings(
    users=jnp.asarray(index(n_users)),
    items=jnp.asarray(index(n_items)),
    values=jnp.asarray(draw(hnp.arrays(np.float32, n, elements=values))),
    n_users=n_users,
    n_items=n_items,
  )


def write_movielens_like(folder, *, seed=0, n_users=60, n_items=90, n_ratings=4000):
  """A folder in MovieLens 100k's formats, drawn from a planted model: not the data.

  ``u1.base`` and ``u1.test`` (tab-separated user, item, rating, timestamp, an 80/20
  split, with a few test items that the base file lacks) and ``u.item``
  (pipe-separated, Latin-1 titles), so that the code paths of the real files run
  on a fresh clone without ../shared.
  """
  rng = np.random.default_rng(seed)
  p, q = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
  pairs = rng.choice(n_users * n_items, size=n_ratings, replace=False)
  users, items = pairs // n_items + 1, pairs % n_items + 1
  stars = np.clip(np.round(3.5 + np.sum(p[users - 1] * q[items - 1], 1) / 2), 1, 5)
  stamps = 874_965_758 + rng.integers(0, 10**7, n_ratings)
  test = rng.random(n_ratings) < 0.2
  test |= items > n_items - 3  # The last items appear in u1.test only.
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  for name, rows in (("u1.base", ~test), ("u1.test", test)):
    lines = (
      f"{u}\t{i}\t{int(r)}\t{t}\n"
      for u, i, r, t in zip(users[rows], items[rows], stars[rows], stamps[rows],
                            strict=True)
    )  # fmt: skip
    (folder / name).write_text("".join(lines))
  titles = [f"{i}|Film n\u00b0{i} (199{i % 10})|01-Jan-199{i % 10}||\n" for i in
            range(1, n_items + 1)]  # fmt: skip
  (folder / "u.item").write_bytes("".join(titles).encode("latin-1"))
  return folder


# The start of a child script that stops in the middle of writing a model file:
# the sixth array written (after the header entries and a parameter) writes half
# of itself, prints "writing" on stderr and waits, for a test to kill it.
STOP_MID_SAVE = """
import sys, time
import numpy as np

calls = []
real = np.lib.format.write_array


def write_array(fp, array, *args, **kwargs):
  calls.append(array)
  if len(calls) == 6:
    fp.write(b"half an array")
    print("writing", file=sys.__stderr__, flush=True)
    time.sleep(120)
  return real(fp, array, *args, **kwargs)


np.lib.format.write_array = write_array
"""
