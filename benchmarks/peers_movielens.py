"""mfjax against its rating-prediction peers, side by side and interleaved, in one run.

Peers: LibMF (the ``libmf`` Python binding), cornac's ``MF``, Surprise's ``SVD``,
with --spark Spark's ALS (skipped, with the reason printed, when pyspark or Java
is missing; likewise any peer whose package is not installed), and with --myfm
the Bayesian factorisation machine of myFM (Gibbs sampling, 200 samples: rank 10
and 32 on user and item ids, and rank 10 with its MovieLens example's implicit
features; no tuning, its own priors; see MyfmSystem). Each other peer runs
twice: "defaults" (its own defaults) and "tuned" (the winners of a small grid on
a 90/10 validation split of u1.base: never on a test file). mfjax runs
``mfjax.fit`` with its defaults plus whatever --mfjax passes.

Data: MovieLens 100k u1-u5 (uN.base to train, uN.test to score), and a 1M-rating
synthetic file: ``mfjax.synthetic_ratings(jax.random.key(0), 20000, 5000,
1000000, 8)``, the planted rank-8 model of benchmarks/throughput.py's 1M size
(n_users = n/50, n_items = n/200, noise 0.5, power-law popularity, ratings
clipped to [1, 5], not rounded, repeated pairs kept), split 90/10 at random with
numpy seed 0. Every file is loaded with numpy once; every system gets the same
arrays: raw ids mapped to indices 0..n-1 from the training part. A test pair whose
user or item the training part lacks is predicted, for every system alike, as the
global mean of the training ratings. All predictions are clipped to [1, 5].

Timing: fit calls only (converting the arrays into each library's own container
is done before, outside the clock). Per file and system: cold = the first fit in
the process for that data shape (for mfjax this includes the JAX compilation when
the shape or settings are new: marked "c"), warm = median and min of --repeats
fits after it. The systems are interleaved within each file (A, B, C, A, B, C) so
that machine load hits all alike. Ratio = a system's warm median / mfjax's. The
mean row averages the folds; its ratio is mean warm / mean mfjax warm. Scores
come from the last fit of each system.

Threads: mfjax (XLA) and cornac use every core; LibMF runs 2 threads (its
binding's default is 12); Surprise and myFM are single-threaded; Spark runs
local[N], N = the cores, defaults only (no grid), and its fit time includes
collecting the factors to the driver.

Usage:
  python benchmarks/peers_movielens.py --tune     # the grids; prints the winners
  python benchmarks/peers_movielens.py [--files ml100k,synthetic1m]
      [--folds 1,2,3,4,5] [--repeats 3] [--mfjax KEY=VALUE ...] [--seed 0]
      [--spark] [--myfm] [--json PATH] [--data DIR]
  python benchmarks/run.py peers_movielens [--quick] [...]
The data folder: --data, else $MFJAX_DATA, else ../shared/data/ml-100k beside
the repository (harness.data_dir). The JSON record goes to --json, else to
benchmarks/results/peers_movielens/ (harness.Record). Needs the bench extra
(libmf, cornac, scikit-surprise; pyspark for --spark, myfm for --myfm).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import itertools
import os
import sys
import time
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import NamedTuple

import harness
import numpy as np
from harness import Train, Unavailable

SCALE = (1.0, 5.0)
LIBMF_THREADS = 2
PEERS = ("libmf", "cornac", "scikit-surprise", "pyspark", "myfm")
MYFM_SAMPLES = 200  # myFM's Gibbs iterations with --myfm (its MovieLens tutorial's)

# The tuned settings: the winners of `python benchmarks/peers_movielens.py --tune`
# (lowest RMSE on a 90/10 validation split of u1.base, numpy seed 0; no test
# file used), run on 2026-12-02 (2 CPUs; LibMF and cornac run threads, so their
# validation RMSE moves by ~0.001 from run to run: LibMF k 32 won over k 64 by
# 0.0001, cornac 100 epochs over 50 by 0.0001). The same settings serve every
# fold and the synthetic file. Their other settings stay at each library's
# defaults (LibMF: those of the LibMF C library, L1 0, eta 0.1, not the
# binding's L1 of 0.04).
TUNED = {
  "libmf": {"k": 32, "l2": 0.1, "nr_iters": 20},
  "cornac": {"k": 50, "lambda_reg": 0.1, "max_iter": 100},
  "surprise": {"n_factors": 50, "n_epochs": 40, "reg_all": 0.05},
}

GRIDS = {
  "libmf": {"k": [16, 32, 64], "l2": [0.05, 0.1], "nr_iters": [20, 40]},
  "cornac": {"k": [10, 50], "lambda_reg": [0.01, 0.1], "max_iter": [50, 100]},
  "surprise": {"n_factors": [50, 100], "n_epochs": [20, 40], "reg_all": [0.02, 0.05]},
}


# --- Data ----------------------------------------------------------------------


class Split(NamedTuple):
  """One train/test file pair as indices; test index -1: not in the train part."""

  name: str
  train_users: np.ndarray  # int32 [n]
  train_items: np.ndarray  # int32 [n]
  train_values: np.ndarray  # float32 [n]
  test_users: np.ndarray  # int32 [m], -1 for unseen
  test_items: np.ndarray  # int32 [m], -1 for unseen
  test_values: np.ndarray  # float32 [m]
  n_users: int
  n_items: int

  @property
  def mean(self) -> float:
    return float(np.mean(self.train_values, dtype=np.float64))

  @property
  def known(self) -> np.ndarray:
    return (self.test_users >= 0) & (self.test_items >= 0)

  @property
  def train(self) -> Train:
    """The training part, as every system (harness.System) is fitted on."""
    return Train(
      self.train_users, self.train_items, self.train_values, self.n_users, self.n_items
    )


def _index(raw_train, raw_test):
  ids, train = np.unique(raw_train, return_inverse=True)
  where = np.clip(np.searchsorted(ids, raw_test), 0, len(ids) - 1)
  test = np.where(ids[where] == raw_test, where, -1)
  return train.astype(np.int32), test.astype(np.int32), len(ids)


def make_split(name, train, test) -> Split:
  """``train``/``test``: (raw users, raw items, ratings) arrays."""
  train_users, test_users, n_users = _index(train[0], test[0])
  train_items, test_items, n_items = _index(train[1], test[1])
  return Split(
    name,
    train_users,
    train_items,
    np.asarray(train[2], np.float32),
    test_users,
    test_items,
    np.asarray(test[2], np.float32),
    n_users,
    n_items,
  )


def read_ml100k(path: Path):
  table = np.loadtxt(path, dtype=np.int64, delimiter="\t", usecols=(0, 1, 2))
  return table[:, 0], table[:, 1], table[:, 2].astype(np.float32)


def random_split(data, fraction, seed):
  """(train, test) of raw (users, items, ratings): a ``fraction`` held out."""
  order = np.random.default_rng(seed).permutation(len(data[0]))
  cut = len(order) - int(round(fraction * len(order)))
  return tuple(x[order[:cut]] for x in data), tuple(x[order[cut:]] for x in data)


def ml100k_split(data_dir: Path, fold: int) -> Split:
  return make_split(
    f"ml100k u{fold}",
    read_ml100k(data_dir / f"u{fold}.base"),
    read_ml100k(data_dir / f"u{fold}.test"),
  )


def validation_split(data_dir: Path) -> Split:
  """The tuning split: 90/10 of u1.base, numpy seed 0. No test file is read."""
  train, valid = random_split(read_ml100k(data_dir / "u1.base"), 0.1, seed=0)
  return make_split("u1.base 90/10 validation", train, valid)


def synthetic1m_split() -> Split:
  """benchmarks/throughput.py's 1M file (the same call), split 90/10, seed 0."""
  import jax

  import mfjax

  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 20_000, 5_000, 1_000_000, 8)
  data = (
    np.asarray(ratings.users, np.int64),
    np.asarray(ratings.items, np.int64),
    np.asarray(ratings.values, np.float32),
  )
  train, test = random_split(data, 0.1, seed=0)
  return make_split("synthetic 1M", train, test)


# --- Systems -------------------------------------------------------------------
# Each system follows harness.System: prepare(train) -> its own container of the
# training arrays (outside the clock), fit(data) -> a model (timed),
# predict(model, users, items) -> raw float64 predictions of known pairs
# (clipping and unseen pairs are handled once for all, in score()).


class MfjaxSystem:
  family = "mfjax"

  def __init__(self, settings, seed):
    import jax

    import mfjax

    self.jax, self.mfjax = jax, mfjax
    self.name = "mfjax"
    self.settings = dict(settings)
    self.key = jax.random.key(seed)
    self.compiled_shapes = set()

  def describe(self):
    try:  # The solver's defaults (0.3 has several solvers).
      from mfjax.settings import SETTINGS

      defaults = SETTINGS[self.settings.get("solver", "adam")]()
    except ImportError:
      from mfjax.fitting.ensemble import FitSettings

      defaults = FitSettings()
    fields = type(defaults)._fields
    merged = defaults._replace(
      **{k: v for k, v in self.settings.items() if k in fields}
    )._asdict()
    merged.update({k: v for k, v in self.settings.items() if k not in merged})
    return merged

  def prepare(self, train):
    jnp = self.jax.numpy
    return self.mfjax.Ratings(
      jnp.asarray(train.users),
      jnp.asarray(train.items),
      jnp.asarray(train.values),
      train.n_users,
      train.n_items,
    )

  def first_fit_compiles(self, train):
    # fit pads to buckets: files of nearby sizes share one program.
    try:  # Where the 0.3 layout puts it, else where 0.3's first stage did.
      from mfjax.fitting.buckets import bucket
    except ImportError:
      from mfjax.fitting.ensemble import bucket

    shape = (
      bucket(len(train.users)),
      bucket(train.n_users, per_octave=4),
      bucket(train.n_items, per_octave=4),
    )
    new = shape not in self.compiled_shapes
    self.compiled_shapes.add(shape)
    return new

  def fit(self, ratings):
    result = self.mfjax.fit(self.key, ratings, **self.settings)
    return self.jax.block_until_ready(result).best_params

  def predict(self, params, users, items):
    return np.asarray(
      self.mfjax.predict(params, users=users, items=items), dtype=np.float64
    )


class LibmfSystem:
  family = "libmf"

  def __init__(self, variant, tuned):
    try:
      with contextlib.redirect_stdout(io.StringIO()):  # it prints the .so path
        from libmf import mf
    except Exception as error:  # noqa: BLE001 - any failure means: skip the peer
      raise Unavailable(f"libmf not importable ({error!r})") from None
    self.mf = mf
    self.name = f"libmf {variant}"
    if variant == "defaults":
      # The binding's defaults (k 8, 20 iterations, eta 0.1, L1 0.04 on P and Q,
      # no L2), with 2 threads instead of 12, and quiet.
      self.options = {"nr_threads": LIBMF_THREADS, "quiet": True}
    else:
      self.options = {
        "k": tuned["k"],
        "nr_iters": tuned["nr_iters"],
        "lambda_p1": 0.0,
        "lambda_q1": 0.0,
        "lambda_p2": tuned["l2"],
        "lambda_q2": tuned["l2"],
        "nr_threads": LIBMF_THREADS,
        "quiet": True,
      }

  def describe(self):
    merged = {name: value for name, _, value in self.mf.get_default_options()}
    merged.update(self.options)
    return merged

  def prepare(self, train):
    # fit() reads its (n, 3) array row by row (row-major): C order.
    return np.ascontiguousarray(
      np.column_stack([train.users, train.items, train.values]),
      dtype=np.float32,
    )

  def fit(self, table):
    model = self.mf.MF(**self.options)
    model.fit(table)
    return model.p_factors(), model.q_factors(), model

  def predict(self, fitted, users, items):
    # From the exported factors, not the binding's predict(): see check_libmf().
    p, q, _ = fitted
    return np.einsum("nk,nk->n", p[users], q[items], dtype=np.float64)


def check_libmf():
  """LibMF's binding: predict() against P·Qᵀ on a small case; asserts.

  The binding's ``MF.predict(X)`` passes ``X.astype(np.float32)`` to C, which
  reads pair ``j`` as ``(X[j], X[j + n])``: column-major. A C-ordered ``(n, 2)``
  array (numpy's default) therefore gets wrong pairs. Returns the largest error of
  a C-ordered call, and checks that a Fortran-ordered one, and this script's
  predictions from P and Q, agree with P·Qᵀ.
  """
  system = LibmfSystem("defaults", None)
  system.options = {**system.options, "k": 4, "nr_iters": 5}
  rng = np.random.default_rng(0)
  n_users, n_items = 30, 20
  users = np.repeat(np.arange(n_users), 10)
  items = rng.integers(0, n_items, users.size)
  items[:n_items] = np.arange(n_items)  # every item seen
  values = rng.integers(1, 6, users.size).astype(np.float32)
  split = make_split(
    "check", (users, items, values), (users[:1], items[:1], values[:1])
  )
  fitted = system.fit(system.prepare(split.train))
  p, q, model = fitted
  assert p.shape == (n_users, 4) and q.shape == (n_items, 4), (p.shape, q.shape)
  pairs = np.stack([rng.integers(0, n_users, 50), rng.integers(0, n_items, 50)], 1)
  expected = (p @ q.T)[pairs[:, 0], pairs[:, 1]]
  ours = system.predict(fitted, pairs[:, 0], pairs[:, 1])
  fortran = model.predict(np.asfortranarray(pairs))
  c_order = model.predict(np.ascontiguousarray(pairs))
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(fortran, expected, rtol=1e-4, atol=1e-4)
  c_error = float(np.max(np.abs(c_order - expected)))
  assert c_error > 1e-3, "the binding's predict() now reads C order: recheck"
  return c_error


class CornacSystem:
  family = "cornac"

  def __init__(self, variant, tuned):
    try:
      from cornac.data import Dataset
      from cornac.models import MF
    except Exception as error:  # noqa: BLE001
      raise Unavailable(f"cornac not importable ({error!r})") from None
    self.Dataset, self.MF = Dataset, MF
    self.name = f"cornac {variant}"
    # Defaults: k 10, 20 epochs of SGD, learning rate 0.01, lambda 0.02, biases.
    self.options = {} if variant == "defaults" else dict(tuned)

  def describe(self):
    model = self.MF(**self.options)
    names = ("k", "max_iter", "learning_rate", "lambda_reg", "use_bias")
    return {**{n: getattr(model, n) for n in names}, "threads": model.num_threads}

  def prepare(self, train):
    # The Dataset itself, built on our indices (Dataset.build would drop repeated
    # pairs and renumber): identity id maps.
    return self.Dataset(
      num_users=train.n_users,
      num_items=train.n_items,
      uid_map=OrderedDict((u, u) for u in range(train.n_users)),
      iid_map=OrderedDict((i, i) for i in range(train.n_items)),
      uir_tuple=(
        train.users.astype(np.int64),
        train.items.astype(np.int64),
        train.values.astype(np.float64),
      ),
    )

  def fit(self, dataset):
    # A new model each time: a fitted MF would start from its old factors.
    # seed=None: a seed would force one thread.
    return self.MF(**self.options, verbose=False).fit(dataset)

  def predict(self, model, users, items):
    dots = np.einsum(
      "nk,nk->n", model.u_factors[users], model.i_factors[items], dtype=np.float64
    )
    out = model.global_mean + model.u_biases[users] + model.i_biases[items] + dots
    assert np.isclose(out[0], model.score(int(users[0]), int(items[0])), atol=1e-4)
    return out


class SurpriseSystem:
  family = "surprise"

  def __init__(self, variant, tuned, seed):
    try:
      import surprise
    except Exception as error:  # noqa: BLE001
      raise Unavailable(f"scikit-surprise not importable ({error!r})") from None
    self.surprise = surprise
    self.name = f"surprise {variant}"
    # Defaults: 100 factors, 20 epochs, learning rate 0.005, reg 0.02, biases.
    self.options = {} if variant == "defaults" else dict(tuned)
    self.seed = seed

  def describe(self):
    algo = self.surprise.SVD(**self.options)
    names = ("n_factors", "n_epochs", "lr_bu", "reg_bu", "reg_pu", "biased")
    return {n: getattr(algo, n) for n in names}

  def prepare(self, train):
    ur, ir = defaultdict(list), defaultdict(list)
    for u, i, r in zip(
      train.users.tolist(), train.items.tolist(), train.values.tolist(), strict=True
    ):
      ur[u].append((i, r))
      ir[i].append((u, r))
    return self.surprise.Trainset(
      ur,
      ir,
      train.n_users,
      train.n_items,
      len(train.values),
      SCALE,
      {u: u for u in range(train.n_users)},
      {i: i for i in range(train.n_items)},
    )

  def fit(self, trainset):
    algo = self.surprise.SVD(random_state=self.seed, **self.options)
    return algo.fit(trainset)

  def predict(self, algo, users, items):
    dots = np.einsum("nk,nk->n", algo.pu[users], algo.qi[items], dtype=np.float64)
    out = algo.trainset.global_mean + algo.bu[users] + algo.bi[items] + dots
    assert np.isclose(out[0], algo.estimate(int(users[0]), int(items[0])), atol=1e-6)
    return out


class SparkSystem:
  family = "spark"

  def __init__(self, seed):
    try:
      from pyspark.ml.recommendation import ALS
      from pyspark.sql import SparkSession
    except Exception as error:  # noqa: BLE001
      raise Unavailable(f"pyspark not importable ({error!r})") from None
    try:
      self.spark = (
        SparkSession.builder.master(f"local[{os.cpu_count()}]")
        .appName("peers_movielens")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
      )
      self.spark.sparkContext.setLogLevel("ERROR")
    except Exception as error:  # noqa: BLE001 - e.g. no Java
      raise Unavailable(f"no Spark session ({error!r})") from None
    self.ALS = ALS
    self.name = "spark-als defaults"
    self.seed = seed

  def describe(self):
    als = self.ALS()
    names = ("rank", "maxIter", "regParam", "implicitPrefs", "nonnegative")
    return {n: als.getOrDefault(n) for n in names}

  def prepare(self, train):
    rows = zip(
      train.users.tolist(), train.items.tolist(), train.values.tolist(), strict=True
    )
    frame = self.spark.createDataFrame(list(rows), ["user", "item", "rating"])
    frame = frame.cache()
    frame.count()
    return frame, train.n_users, train.n_items

  def fit(self, data):
    frame, n_users, n_items = data
    als = self.ALS(userCol="user", itemCol="item", ratingCol="rating", seed=self.seed)
    model = als.fit(frame)  # eager: the factors are computed here
    return _spark_factors(model.userFactors, n_users), _spark_factors(
      model.itemFactors, n_items
    )

  def predict(self, factors, users, items):
    p, q = factors
    return np.einsum("nk,nk->n", p[users], q[items], dtype=np.float64)


def _spark_factors(frame, n):
  rows = frame.collect()
  out = np.zeros((n, len(rows[0]["features"])), np.float64)
  for row in rows:
    out[row["id"]] = row["features"]
  return out


class MyfmSystem:
  """myFM's Bayesian factorisation machine (``MyFMRegressor``: Gibbs sampling,
  single-threaded C++), its priors and initialisation at myFM's defaults.

  ``n_iter`` is the number of Gibbs iterations ("samples"); a prediction is the
  mean over the kept samples. Two feature sets:

  - ids (``implicit=False``): one-hot user and one-hot item columns in one sparse
    matrix, fitted as ``MyFMRegressor(rank=R).fit(X, y, n_iter=N)`` (myFM's
    "pure matrix factorization" tutorial): one prior group, and myFM's default
    of keeping the last ``N - 5`` samples;
  - implicit (``implicit=True``): myFM's examples/ml-100k-regression.py with its
    feature set "svdpp" plus the "flipped" item features, without its dates:
    each user's row is its one-hot id and the items it rated (weights
    1/sqrt(its rating count)), each item's row its one-hot id and the users who
    rated it (1/sqrt(the item's count)), passed as two RelationBlocks with the
    example's four prior groups (user ids, user implicit, item ids, item
    implicit) and every sample kept (``n_kept_samples=n_iter``). As in the
    example's default ("stricter") protocol, the implicit features come from the
    training ratings only.

  Building the sparse matrices and blocks is ``prepare`` (outside the clock).
  """

  family = "myfm"

  def __init__(self, rank, n_iter, implicit=False, seed=None):
    try:
      import myfm
      from scipy import sparse
    except Exception as error:  # noqa: BLE001
      raise Unavailable(f"myfm not importable ({error!r})") from None
    self.myfm, self.sparse = myfm, sparse
    self.rank, self.samples, self.implicit = rank, n_iter, implicit
    self.name = f"myfm r{rank} {'implicit ' if implicit else ''}{n_iter}"
    self.seed = seed  # None: myFM's default random_seed (42)
    # None: myFM's default, which keeps min(max(n_iter - 5, 5), n_iter) samples.
    self.n_kept_samples = n_iter if implicit else None
    self.kept = n_iter if implicit else min(max(n_iter - 5, 5), n_iter)

  def _regressor(self):
    seed = {} if self.seed is None else {"random_seed": self.seed}
    return self.myfm.MyFMRegressor(rank=self.rank, **seed)

  def describe(self):
    fm = self._regressor()
    names = ("rank", "init_stdev", "random_seed", "alpha_0", "beta_0", "gamma_0")
    out = {n: getattr(fm, n) for n in (*names, "mu_0", "reg_0")}
    out.update(
      features="ids + implicit (svd++ flipped)" if self.implicit else "ids",
      n_iter=self.samples,
      n_kept_samples=self.kept,
      groups=4 if self.implicit else 1,
      version=getattr(self.myfm, "__version__", None),
    )
    return out

  def _one_hot(self, users, items, n_users, n_items):
    n = len(users)
    columns = np.column_stack([users, n_users + np.asarray(items)]).ravel()
    return self.sparse.csr_matrix(
      (np.ones(2 * n), columns, np.arange(0, 2 * n + 1, 2)),
      shape=(n, n_users + n_items),
    )

  def _implicit_features(self, train):
    """(user rows, item rows, grouping) as in myFM's ml-100k-regression.py."""
    sp, n_users, n_items = self.sparse, train.n_users, train.n_items
    rated = sp.csr_matrix(  # a repeated pair counts twice, as in the example
      (np.ones(len(train.users)), (train.users, train.items)), (n_users, n_items)
    )
    by_user = 1 / np.sqrt(np.maximum(np.bincount(train.users, minlength=n_users), 1))
    by_item = 1 / np.sqrt(np.maximum(np.bincount(train.items, minlength=n_items), 1))
    user_rows = sp.hstack(
      [sp.identity(n_users, format="csr"), sp.diags(by_user) @ rated], format="csr"
    )
    item_rows = sp.hstack(
      [sp.identity(n_items, format="csr"), sp.diags(by_item) @ rated.T.tocsr()],
      format="csr",
    )
    sizes = (n_users, n_items, n_items, n_users)  # uid, user implicit, iid, ...
    grouping = [g for g, size in enumerate(sizes) for _ in range(size)]
    return user_rows, item_rows, grouping

  def prepare(self, train):
    y = np.asarray(train.values, np.float64)
    if not self.implicit:
      x = self._one_hot(train.users, train.items, train.n_users, train.n_items)
      return {"X": x, "y": y, "shape": (train.n_users, train.n_items)}
    user_rows, item_rows, grouping = self._implicit_features(train)
    blocks = [
      self.myfm.RelationBlock(train.users, user_rows),
      self.myfm.RelationBlock(train.items, item_rows),
    ]
    return {
      "y": y,
      "blocks": blocks,
      "grouping": grouping,
      "rows": (user_rows, item_rows),
    }

  def fit(self, data):
    fm = self._regressor()
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm progress bar
      if self.implicit:
        fm.fit(
          None,
          data["y"],
          X_rel=data["blocks"],
          grouping=data["grouping"],
          n_iter=self.samples,
          n_kept_samples=self.n_kept_samples,
        )
      else:
        fm.fit(data["X"], data["y"], n_iter=self.samples)
    return fm, data

  def predict(self, fitted, users, items):
    fm, data = fitted
    if not self.implicit:
      x = self._one_hot(users, items, *data["shape"])
      return np.asarray(fm.predict(x), np.float64)
    user_rows, item_rows = data["rows"]
    blocks = [
      self.myfm.RelationBlock(users, user_rows),
      self.myfm.RelationBlock(items, item_rows),
    ]
    return np.asarray(fm.predict(None, X_rel=blocks), np.float64)


# --- Scoring and timing --------------------------------------------------------


def score(system, model, split):
  """(RMSE, MAE) on the test part: unseen pairs get the train mean; clipped."""
  known = split.known
  predictions = np.full(len(split.test_values), split.mean, np.float64)
  predictions[known] = system.predict(
    model, split.test_users[known], split.test_items[known]
  )
  errors = np.clip(predictions, *SCALE) - split.test_values.astype(np.float64)
  return float(np.sqrt(np.mean(errors**2))), float(np.mean(np.abs(errors)))


def record_settings(systems, out):
  """Prints each system's settings and records them in ``out["settings"]``."""
  print("\nsettings:")
  recorded = out.setdefault("settings", {})
  for s in systems:
    recorded[s.name] = s.describe()
    print(f"  {s.name:<22} {recorded[s.name]}")


def timed_fit(system, data):
  start = time.perf_counter()
  model = system.fit(data)
  return model, time.perf_counter() - start


def run_split(systems, split, repeats):
  """Interleaved fits of every system on ``split``; one result dict per system."""
  prepared = {s.name: s.prepare(split.train) for s in systems}
  compiled = {
    s.name: s.first_fit_compiles(split.train)
    for s in systems
    if isinstance(s, MfjaxSystem)
  }
  timings = harness.time_interleaved(
    {s.name: (lambda s=s: s.fit(prepared[s.name])) for s in systems},
    repeats,
    after_round=lambda r: print(
      f"  round {r} of {repeats} done", file=sys.stderr, flush=True
    ),
  )
  results = {}
  for s in systems:
    t = timings[s.name]
    r = results[s.name] = {"warm": t.warm}
    if s.name in compiled:
      r["compiled"] = compiled[s.name]
    r["cold"] = t.cold
    r["rmse"], r["mae"] = score(s, t.result, split)
    r["warm_median"], r["warm_min"], r["warm_max"] = t.median, t.min, t.max
  base = results["mfjax"]["warm_median"] if "mfjax" in results else None
  for r in results.values():
    r["ratio_to_mfjax"] = r["warm_median"] / base if base else None
  return results


HEADER = (
  f"{'system':<22} {'RMSE':>7} {'MAE':>7} {'warm med':>9} {'warm min':>9} "
  f"{'cold':>9} {'warm/mfjax':>10}"
)


def print_row(label, r):
  mark = " c" if r.get("compiled") else ""
  ratio = "" if r["ratio_to_mfjax"] is None else f"{r['ratio_to_mfjax']:.2f}"
  print(
    f"{label:<22} {r['rmse']:>7.4f} {r['mae']:>7.4f} {r['warm_median']:>8.3f}s "
    f"{r['warm_min']:>8.3f}s {r['cold']:>8.3f}s{mark:<2} {ratio:>8}",
    flush=True,
  )


def print_split_header(split):
  unseen = int(np.sum(~split.known))
  print(
    f"\n{split.name}: {len(split.train_values):,} train, "
    f"{len(split.test_values):,} test ratings, {split.n_users:,} users x "
    f"{split.n_items:,} items; {unseen} test pairs with an unseen user or item "
    f"-> train mean {split.mean:.4f}",
    flush=True,
  )


def print_table(results):
  """The header, a row per system, and the mfjax/LibMF ratio line."""
  print(HEADER)
  for name, r in results.items():
    print_row(name, r)
  libmf_ratio_line(results)


def libmf_ratio_line(results):
  parts = [
    f"{label}: {results['mfjax']['warm_median'] / r['warm_median']:.2f}"
    for label, r in results.items()
    if label.startswith("libmf") and "mfjax" in results
  ]
  if parts:
    print("  mfjax/LibMF warm ratio: " + ", ".join(parts), flush=True)


def mean_results(per_fold):
  labels = per_fold[0].keys()
  keys = ("rmse", "mae", "warm_median", "warm_min", "cold")
  out = {
    label: {k: float(np.mean([f[label][k] for f in per_fold])) for k in keys}
    for label in labels
  }
  base = out["mfjax"]["warm_median"] if "mfjax" in out else None
  for r in out.values():
    r["ratio_to_mfjax"] = r["warm_median"] / base if base else None
  return out


# --- Tuning ----------------------------------------------------------------------


def grid_settings(family):
  grid = GRIDS[family]
  for values in itertools.product(*grid.values()):
    yield dict(zip(grid, values, strict=True))


def tune(data_dir, seed, mfjax_settings):
  split = validation_split(data_dir)
  print_split_header(split)
  winners = {}
  for family in GRIDS:
    rows = []
    for settings in grid_settings(family):
      try:
        if family == "libmf":
          system = LibmfSystem("tuned", settings)
        elif family == "cornac":
          system = CornacSystem("tuned", settings)
        else:
          system = SurpriseSystem("tuned", settings, seed)
      except Unavailable as why:
        print(f"{family}: skipped: {why}")
        break
      model, seconds = timed_fit(system, system.prepare(split.train))
      rmse, mae = score(system, model, split)
      rows.append((rmse, mae, seconds, settings))
      print(
        f"  {family:<9} {settings}  RMSE {rmse:.4f}  MAE {mae:.4f}  {seconds:.2f}s",
        flush=True,
      )
    if rows:
      best = min(rows, key=lambda row: row[0])
      winners[family] = best[3]
      print(f"{family} winner: {best[3]} (validation RMSE {best[0]:.4f})\n")
  system = MfjaxSystem(mfjax_settings, seed)
  model, seconds = timed_fit(system, system.prepare(split.train))
  rmse, mae = score(system, model, split)
  print(f"(mfjax {system.describe()}: validation RMSE {rmse:.4f}, MAE {mae:.4f})")
  print(f"\nTUNED = {winners!r}")
  return {"split": split.name, "winners": winners, "mfjax_rmse": rmse}


# --- Main ------------------------------------------------------------------------


def parse_mfjax(pairs):
  settings = {}
  for pair in pairs:
    key, sep, text = pair.partition("=")
    if not sep or not key:
      raise SystemExit(f"--mfjax wants KEY=VALUE; got {pair!r}")
    try:
      settings[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      settings[key] = text  # a bare string
  return settings


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--files", default="ml100k,synthetic1m")
  parser.add_argument("--folds", default="1,2,3,4,5")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--mfjax", action="append", default=[], metavar="KEY=VALUE")
  parser.add_argument("--tune", action="store_true", help="run the grids only")
  parser.add_argument("--spark", action="store_true", help="add Spark ALS")
  parser.add_argument("--myfm", action="store_true", help="add myFM (Gibbs)")
  parser.add_argument("--json", type=Path, default=None)
  args = parser.parse_args()
  data_dir = harness.data_dir(args.data)
  mfjax_settings = parse_mfjax(args.mfjax)
  files = [f for f in args.files.split(",") if f]
  for f in files:
    if f not in ("ml100k", "synthetic1m"):
      raise SystemExit(f"--files: unknown file {f!r}")
  folds = [int(f) for f in args.folds.split(",") if f]

  import mfjax  # noqa: F401 - its version and path go into the environment

  record = harness.Record("peers_movielens", vars(args) | {"data": data_dir}, PEERS)
  env, out = record.data["environment"], record.results
  print(
    f"{env['date']}; {env['machine']}, {env['cpu_count']} CPUs, Python "
    f"{env['python']}; load average {env['loadavg_before']}"
  )
  print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
  print(f"mfjax imported from {env['mfjax_path']}")

  if args.tune:
    out["tune"] = tune(data_dir, args.seed, mfjax_settings)
  else:
    c_error = check_libmf() if _libmf_available() else None
    if c_error is not None:
      print(
        "LibMF check: predictions from P, Q and the binding's predict() on a "
        "Fortran-ordered array agree with P·Qᵀ; its predict() on a C-ordered "
        f"array is off by up to {c_error:.3f} (it reads the pairs column-major)."
      )
    out["libmf_c_order_max_error"] = c_error
    systems = make_systems(args, mfjax_settings)
    record_settings(systems, out)
    print(
      f"\nfit seconds: warm = median / min of {args.repeats} after the cold (first)"
      " fit; c = mfjax compiled in that cold fit; warm/mfjax = warm median ratio"
    )
    out["files"] = {}
    if "ml100k" in files:
      per_fold = []
      for fold in folds:
        split = ml100k_split(data_dir, fold)
        print_split_header(split)
        results = run_split(systems, split, args.repeats)
        print_table(results)
        per_fold.append(results)
        out["files"][f"ml100k u{fold}"] = results
      means = mean_results(per_fold)
      out["files"]["ml100k mean"] = means
      print(f"\nml100k mean over folds {folds}:")
      print_table(means)
    if "synthetic1m" in files:
      split = synthetic1m_split()
      print_split_header(split)
      results = run_split(systems, split, args.repeats)
      print_table(results)
      out["files"]["synthetic 1M"] = results

  print(f"\nload average before {env['loadavg_before']}, after {os.getloadavg()}")
  record.write(args.json)


def _libmf_available():
  try:
    LibmfSystem("defaults", None)
  except Unavailable as why:
    print(f"libmf: skipped: {why}")
    return False
  return True


def make_systems(args, mfjax_settings):
  makers = [
    lambda: MfjaxSystem(mfjax_settings, args.seed),
    lambda: LibmfSystem("defaults", None),
    lambda: LibmfSystem("tuned", TUNED["libmf"]),
    lambda: CornacSystem("defaults", None),
    lambda: CornacSystem("tuned", TUNED["cornac"]),
    lambda: SurpriseSystem("defaults", None, args.seed),
    lambda: SurpriseSystem("tuned", TUNED["surprise"], args.seed),
  ]
  if args.spark:
    makers.append(lambda: SparkSystem(args.seed))
  if args.myfm:
    makers += [
      lambda: MyfmSystem(10, MYFM_SAMPLES, seed=args.seed),
      lambda: MyfmSystem(32, MYFM_SAMPLES, seed=args.seed),
      lambda: MyfmSystem(10, MYFM_SAMPLES, implicit=True, seed=args.seed),
    ]
  return harness.available(makers)


if __name__ == "__main__":
  main()
