"""Training: one ``lax.scan`` of optax steps that also carries the best parameters."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from mfjax import metrics, model, validation
from mfjax import sharding as sharding_lib
from mfjax.data import Ratings, check_ratings
from mfjax.model import Params

__all__ = [
  "TrainResult",
  "train",
  "default_learning_rate",
  "default_optimizer",
  "ensemble_params",
  "observed_mean",
  "fit",
  "FitResult",
  "FIT_DEFAULTS",
]


class TrainResult(NamedTuple):
  """What :func:`train` returns; a pytree, so it passes through ``jit``/``vmap``.

  Attributes:
    params: the parameters after the last step.
    best_params: the parameters with the lowest loss seen. Full-batch, as in the
      notebook, a step's loss is computed before its update, so these are the
      parameters that produced ``best_loss``. With ``batch_size`` they are the
      parameters at the end of the epoch with the lowest mean mini-batch loss.
      Never non-finite unless the initial loss was.
    best_loss: the loss of ``best_params`` (``inf`` if no loss was finite). With
      validation data the best params are those of the lowest validation RMSE.
    losses: full-batch, the loss at each step before that step's update; with
      ``batch_size``, the mean of the epoch's mini-batch losses, each taken
      before its own update (no extra pass over the data). NaN after an early
      stop.
    diverged_step: the first step whose loss was NaN or inf, or -1 if none was.
    validation_rmse: the validation RMSE at each step, of the parameters its
      loss belongs to: before the update full-batch, after the epoch with
      ``batch_size``. NaN without validation data, and after an early stop.
    stopped_step: the first step skipped by early stopping, or -1.
  """

  params: Params
  best_params: Params
  best_loss: jax.Array  # shape=()
  losses: jax.Array  # shape=(steps,)
  diverged_step: jax.Array  # shape=(), int32
  validation_rmse: jax.Array  # shape=(steps,)
  stopped_step: jax.Array  # shape=(), int32

  @property
  def diverged(self) -> jax.Array:
    """Whether the loss became NaN or inf at some step."""
    return self.diverged_step >= 0


DEFAULT_MOMENTUM = 0.8
DEFAULT_SPARSE_LEARNING_RATE = 0.01
DEFAULT_LEARNING_RATE_SCALE = 0.5


def default_learning_rate(data: ArrayLike, mask: ArrayLike | None = None) -> jax.Array:
  """The learning rate ``train`` gives its default SGD optimizer.

  The default loss is a mean over the ``n_observed`` ratings, so the gradient of a
  user's (or item's) parameters is proportional to that row's share of the ratings,
  and the largest stable step is set by the busiest user and the busiest item
  together. The rate is ``0.5 · n_observed / (max ratings per user + max ratings per
  item)``: about the same move per row whatever the size of the matrix. The 0.5
  (with momentum 0.8) was chosen on planted low-rank matrices from 4×6 to 943×1682
  and on random rating matrices, where it recovered the planted ones and diverged on
  none (see ``tests/test_train.py``).

  Args:
    data: dense ratings ``[n_users, n_items]``; 0 marks a missing rating.
    mask: optional mask of the observed entries, as in :func:`mfjax.loss`.

  Returns:
    A scalar; traced when ``data`` is.
  """
  data, mask = validation.check_dense(data, mask)
  return _default_learning_rate(data, mask)


def _default_learning_rate(data: jax.Array, mask: jax.Array | None) -> jax.Array:
  observed = (jnp.asarray(data) != 0) if mask is None else (jnp.asarray(mask) != 0)
  busiest = observed.sum(1).max() + observed.sum(0).max()
  return DEFAULT_LEARNING_RATE_SCALE * observed.sum() / jnp.maximum(busiest, 1)


def default_optimizer(
  data: ArrayLike, mask: ArrayLike | None = None
) -> optax.GradientTransformation:
  """The optimizer ``train`` uses when given none.

  ``optax.sgd`` with heavy-ball momentum 0.8 and :func:`default_learning_rate`.
  """
  data, mask = validation.check_dense(data, mask)
  return _default_sgd(data, mask)


def _default_sgd(data: jax.Array, mask: jax.Array | None):
  return optax.sgd(_default_learning_rate(data, mask), momentum=DEFAULT_MOMENTUM)


def observed_mean(data: ArrayLike) -> jax.Array:
  """The mean of the non-zero entries of a dense matrix, as the notebook's ``mu``."""
  data, _ = validation.check_dense(data, None)
  return _observed_mean(data)


def _observed_mean(data: jax.Array) -> jax.Array:
  data = jnp.asarray(data, jnp.result_type(float))
  return data.sum() / jnp.maximum(jnp.count_nonzero(data), 1)


class _ProgressBar:
  """A tqdm bar driven from inside a scan by ``jax.debug.callback``.

  The callback runs on the host after each step; nothing is traced when progress
  is off, so it costs nothing then.
  """

  def __init__(self, total: int, desc: str):
    self.total, self.desc, self.bar = total, desc, None
    self.finished = False

  def update(self, step, value):
    tqdm = _tqdm()

    # Under vmap the callback comes once per batch member, with the same step; the
    # first member to report a step moves the bar and shows its loss.
    done = int(np.max(step)) + 1
    if self.bar is None or done < self.bar.n or (done == 1 and self.finished):
      self.bar = tqdm(total=self.total, desc=self.desc, leave=True)
      self.finished = False
    if done > self.bar.n:
      self.bar.set_postfix(loss=f"{float(np.min(value)):.4f}", refresh=False)
      self.bar.update(done - self.bar.n)
    if done == self.total and not self.finished:
      self.bar.close()
      self.finished = True


def _tqdm():
  """tqdm's notebook bar where it can render, else the text bar.

  ``tqdm.auto`` picks the widget bar in Jupyter and warns when ipywidgets is
  missing; imported only when a bar is shown.
  """
  try:
    import ipywidgets  # noqa: F401
  except ImportError:
    from tqdm.std import tqdm
  else:
    from tqdm.auto import tqdm
  return tqdm


def train(
  params: Params,
  data,
  *,
  optimizer: optax.GradientTransformation | None = None,
  steps: int = 100,
  mask: ArrayLike | None = None,
  l2: ArrayLike = 0.0,
  l2_bias: ArrayLike | None = None,
  bias: str = "additive",
  batch_size: int | None = None,
  key: ArrayLike | None = None,
  validation_data: Ratings | None = None,
  patience: int | None = None,
  scale: tuple[float, float] | None = None,
  progress: bool = False,
  chunk_size: int | None = None,
) -> TrainResult:
  """Trains ``params`` on ratings, dense or sparse, in one ``lax.scan``.

  Each of the ``steps`` epochs evaluates the loss of the current parameters (and,
  with ``validation_data``, their validation RMSE), keeps those parameters when they
  are the best so far, and then updates them with optax: by one full-batch step, or
  with ``batch_size``, by one shuffled pass of mini-batch steps. Gradients come from
  ``jax.value_and_grad`` of the pure loss (:func:`mfjax.loss`). ``mean`` is set to
  the mean of the observed (non-zero) ratings, the notebook's ``mu``, whatever
  ``mask`` says (for ``Ratings`` with ``weights``, their weighted mean), and is
  never trained.

  Sharded ratings (:func:`mfjax.sharding.shard_ratings`) and sharded or
  replicated params (:func:`mfjax.sharding.shard_params`) train under plain
  ``jax.jit``: XLA partitions the program and adds the reductions; the result
  equals one device's up to the order of float sums.

  Before tracing, ``train`` compares :func:`mfjax.sharding.memory_estimate` with
  the memory the device reports (``memory_stats()["bytes_limit"]``; CPUs report
  none) and warns with :class:`mfjax.sharding.MemoryWarning` when it would not
  fit; ``chunk_size`` or ``batch_size`` then bound the memory.

  ``train`` is not jitted; wrap it in ``jax.jit`` with ``steps``, ``optimizer``,
  ``bias``, ``batch_size``, ``patience`` and ``progress`` static. It traces once
  per shape and settings. It also runs under ``jax.vmap`` over the params (an
  ensemble of seeds), over ``l2`` or over the key.

  Args:
    params: initial parameters (see :func:`mfjax.init_params`); their ``mean`` is
      replaced.
    data: dense ratings ``[n_users, n_items]`` (0 marks a missing rating), or
      :class:`mfjax.Ratings` (with ``weights``, every sum is weighted; ratings
      of weight 0, such as padding, change nothing).
    optimizer: any optax ``GradientTransformation``. Default: for a dense matrix
      :func:`default_optimizer` (``optax.sgd`` with momentum 0.8 and a learning
      rate scaled to the data); for ``Ratings``, ``optax.adam(0.01)``.
    steps: number of epochs (passes over the data), a static int >= 1.
    mask: dense data only: which entries the loss counts (see :func:`mfjax.loss`).
    l2: L2 weight of the factors >= 0 (see :func:`mfjax.loss`); may be traced.
    l2_bias: L2 weight of the biases; None means ``l2``.
    bias: ``"additive"`` or ``"notebook"``.
    batch_size: ``Ratings`` only: mini-batch size; None means full-batch steps.
    key: a PRNG key for the shuffles; needed with ``batch_size``.
    validation_data: optional ``Ratings`` scored each epoch inside the scan. The
      best parameters are then those with the lowest validation RMSE.
    patience: with ``validation_data``, stop once the validation RMSE has not
      improved for this many epochs (the remaining epochs do no work).
    scale: ``(lo, hi)``: predictions are clipped to it when scoring validation.
    progress: show a tqdm progress bar, updated from the device after each epoch.
    chunk_size: ``Ratings`` and full-batch only: accumulate each step's loss and
      gradient over chunks of about this many ratings (a static int) instead of
      all at once. The step and its result are those of full-batch training (up
      to float rounding), but the per-rating temporaries (the gathered factor
      rows, ``2·rank·4`` bytes a rating and more) exist for one chunk at a
      time. Chunk ``j`` holds the ratings ``j, j + n_chunks, ...``, so that
      each chunk of sharded ratings is spread over all their devices.

  Returns:
    A :class:`TrainResult`. If the loss becomes NaN or inf, ``best_params`` still
    holds the best finite point and ``diverged_step`` says where it went wrong.

  Shapes, dtypes and settings are always checked on the host. Values (NaN or inf
  ratings, a negative ``l2``) are checked only when concrete. Under ``jit`` NaN or
  inf ratings make every loss non-finite (``diverged_step == 0``); a negative
  traced ``l2`` is not detected.

  Examples:
    >>> import jax, jax.numpy as jnp, mfjax
    >>> ratings = jnp.array([[5., 3., 0.], [4., 0., 1.]])
    >>> params = mfjax.init_params(jax.random.key(0), 2, 3, rank=2)
    >>> result = mfjax.train(params, ratings, steps=50)
    >>> result.losses.shape
    (50,)
    >>> bool(result.best_loss < result.losses[0])
    True
  """
  data, mask = model.check_data(params, data, mask)
  sparse = isinstance(data, Ratings)
  steps = validation.check_positive_int("steps", steps)
  validation.check_nonnegative("l2", l2)
  l2_bias = l2 if l2_bias is None else validation.check_nonnegative("l2_bias", l2_bias)
  validation.check_choice("bias", bias, model.BIASES)
  if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(
      "optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-2)); "
      f"got {type(optimizer).__name__}."
    )
  if batch_size is not None:
    batch_size = validation.check_positive_int("batch_size", batch_size)
    if not sparse:
      raise ValueError("batch_size needs Ratings; a dense matrix trains full-batch.")
    if key is None:
      raise ValueError("batch_size needs key= (a PRNG key for the shuffles).")
    validation.check_key("key", key)
  if validation_data is not None:
    shape = validation.check_params(params)[:2]
    check_ratings("validation_data", validation_data, allow_unknown=True, shape=shape)
  if patience is not None:
    patience = validation.check_positive_int("patience", patience)
    if validation_data is None:
      raise ValueError("patience (early stopping) needs validation_data.")
  if scale is not None:
    scale = validation.check_clip("scale", scale)
  if chunk_size is not None:
    chunk_size = validation.check_positive_int("chunk_size", chunk_size)
    if not sparse:
      raise ValueError("chunk_size needs Ratings; a dense matrix trains at once.")
    if batch_size is not None:
      raise ValueError(
        "chunk_size applies to full-batch steps; with batch_size each step sees "
        "one mini-batch already. Give one or the other."
      )
  sharding_lib._check_placement(params, data, validation_data)
  sharding_lib._warn_if_too_big(
    params, data, optimizer=optimizer, batch_size=batch_size, chunk_size=chunk_size
  )

  dtype = params.user_factors.dtype
  if sparse:
    values = jnp.asarray(data.values, dtype)
    if data.weights is None:
      mean = jnp.mean(values)
    else:
      weights = jnp.asarray(data.weights, dtype)
      mean = jnp.sum(weights * values) / model._positive(weights.sum())
    _, n_total = model._rating_weights(data, dtype)
    if optimizer is None:
      optimizer = optax.adam(DEFAULT_SPARSE_LEARNING_RATE)
  else:
    data = jnp.asarray(data, dtype)
    mean = _observed_mean(data).astype(dtype)
    if optimizer is None:
      optimizer = _default_sgd(data, mask)
  if chunk_size is not None:
    loss_fn, value_and_grad = _chunked_loss(data, chunk_size, dtype, l2, l2_bias, bias)
  else:
    loss_fn = lambda p: model._any_loss(p, data, mask, l2, l2_bias, bias)
    value_and_grad = jax.value_and_grad(loss_fn)
  params = params._replace(mean=mean)
  # Line-search optimizers (optax.lbfgs, ...) want the value and the function too.
  extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)

  def apply(params, opt_state, value, grads, value_fn):
    grads = grads._replace(mean=jnp.zeros_like(mean))
    if extra_args:
      updates, opt_state = optimizer.update(
        grads, opt_state, params, value=value, grad=grads, value_fn=value_fn
      )
    else:
      updates, opt_state = optimizer.update(grads, opt_state, params)
    # The mean is data, not a parameter: undo whatever the optimizer did to it.
    return optax.apply_updates(params, updates)._replace(mean=mean), opt_state

  if batch_size is None:

    def epoch(params, opt_state, _):
      value, grads = value_and_grad(params)
      params, opt_state = apply(params, opt_state, value, grads, loss_fn)
      return params, opt_state, value

  else:
    # Each epoch visits the ratings in a fresh pseudo-random order without a
    # sort: XLA's CPU sort of a permutation took 33 ms per 80k ratings, most of an
    # ML-100k epoch (benchmarks/RESULTS.md). See `_stride_order`.
    # The batches are planned over the n_data entries before any padding
    # (Ratings.n_padding), so padded ratings train exactly as unpadded ones.
    # Index n_data, which the short last batch points at, must read an entry of
    # weight 0: the first padding entry, or one appended here.
    n_data = values.shape[0] - data.n_padding
    if data.n_padding:
      users, items, padded_values = data.users, data.items, values
      padded_weights = jnp.asarray(data.weights, dtype)
    else:
      users = jnp.append(data.users, 0)
      items = jnp.append(data.items, 0)
      padded_values = jnp.append(values, 0)
      padded_weights = (
        None if data.weights is None else jnp.append(weights, jnp.zeros((), dtype))
      )

    def epoch(params, opt_state, epoch_key):
      order = _epoch_batches(epoch_key, n_data, batch_size)

      def step(carry, index):
        params, opt_state = carry
        weight = (index < n_data).astype(dtype)
        if padded_weights is not None:
          weight = weight * padded_weights[index]
        batch_fn = lambda p: model._sparse_loss(
          p,
          users[index],
          items[index],
          padded_values[index],
          weight,
          n_total,
          l2,
          l2_bias,
          bias,
        )
        batch_value, grads = jax.value_and_grad(batch_fn)(params)
        return apply(params, opt_state, batch_value, grads, batch_fn), batch_value

      (params, opt_state), batch_values = jax.lax.scan(step, (params, opt_state), order)
      # The epoch's loss is the mean of its mini-batch losses, each taken before
      # its own update: no extra pass over the data (a full-loss pass cost a
      # fifth of the ML-100k fit, benchmarks/RESULTS.md). The last batch may be
      # short; weighting by batch size is not worth the bookkeeping.
      return params, opt_state, jnp.mean(batch_values)

  bar = _ProgressBar(steps, "mfjax train") if progress else None
  keys = jax.random.split(key, steps) if batch_size is not None else jnp.arange(steps)

  def outer(carry, inputs):
    params, opt_state, best_params, best_score, best_loss, since_best = carry
    index, epoch_key = inputs
    if patience is None:
      stopped = jnp.array(False)
      new_params, new_opt_state, value = epoch(params, opt_state, epoch_key)
    else:
      # After an early stop the epochs keep their place in the scan but do no work.
      stopped = since_best >= patience
      new_params, new_opt_state, value = jax.lax.cond(
        stopped,
        lambda: (params, opt_state, jnp.full((), jnp.nan, dtype)),
        lambda: epoch(params, opt_state, epoch_key),
      )
    # Full-batch: a step's loss is that of the params before its update. Mini-
    # batch: the epoch's mean loss belongs to the params it ended with.
    scored = params if batch_size is None else new_params
    if validation_data is not None:
      score = metrics._rmse_unchecked(scored, validation_data, scale, bias)
    else:
      score = value
    better = (score < best_score) & ~stopped  # False for NaN: best stays finite.
    if batch_size is not None:
      # A last mini-batch update can break params whose epoch loss was finite.
      finite = jax.tree.leaves(jax.tree.map(lambda x: jnp.isfinite(x).all(), scored))
      better = better & jnp.stack(finite).all()
    best_params = optax.tree.where(better, scored, best_params)
    best_score = jnp.where(better, score, best_score)
    best_loss = jnp.where(better, value, best_loss)
    since_best = jnp.where(better, 0, since_best + 1)
    params, opt_state = new_params, new_opt_state
    if bar is not None:
      jax.debug.callback(bar.update, index, value)
    score = jnp.where(stopped, jnp.nan, score)
    return (params, opt_state, best_params, best_score, best_loss, since_best), (
      value,
      score,
      stopped,
    )

  inf = jnp.array(jnp.inf, dtype)
  init = (params, optimizer.init(params), params, inf, inf, jnp.array(0, jnp.int32))
  (params, _, best_params, _, best_loss, _), (losses, scores, stopped) = jax.lax.scan(
    outer, init, (jnp.arange(steps), keys)
  )
  bad = ~jnp.isfinite(losses) & ~stopped
  diverged_step = jnp.where(bad.any(), jnp.argmax(bad), -1).astype(jnp.int32)
  stopped_step = jnp.where(stopped.any(), jnp.argmax(stopped), -1).astype(jnp.int32)
  validation_rmse = (
    scores if validation_data is not None else jnp.full_like(losses, jnp.nan)
  )
  return TrainResult(
    params, best_params, best_loss, losses, diverged_step, validation_rmse, stopped_step
  )


def _chunked_loss(data: Ratings, chunk_size: int, dtype, l2, l2_bias, bias):
  """``(loss_fn, value_and_grad)`` of the sparse loss, summed chunk by chunk.

  The ratings are laid out as ``[n_chunks, chunk]`` with chunk ``j`` holding
  entries ``j, j + n_chunks, ...`` (a transpose, once per call), padded with
  weight-0 entries. Each chunk's weighted squared errors and their gradient are
  added up in a ``lax.scan``, so only one chunk's gathered rows exist at a time.
  """
  n = data.values.shape[0]
  n_chunks = max(-(-n // chunk_size), 1)
  width = -(-n // n_chunks)  # Balanced chunks, none empty.
  pad = width * n_chunks - n
  weights, n_total = model._rating_weights(data, dtype)

  def layout(x, fill):
    if pad:
      x = jnp.concatenate([x, jnp.full((pad,), fill, x.dtype)])
    return x.reshape(width, n_chunks).T

  users = layout(jnp.asarray(data.users), 0)
  items = layout(jnp.asarray(data.items), 0)
  values = layout(jnp.asarray(data.values, dtype), 0)
  chunk_weights = layout(weights, 0)
  denominator = model._positive(weights.sum())

  def chunk_sse(params, chunk):
    u, i, v, w = chunk
    return model._weighted_sse(w, model._predict_pairs(params, u, i, bias) - v)

  def total(params, sse):
    return sse / denominator + model._penalty(params, l2, l2_bias) / model._positive(
      n_total
    )

  chunks = (users, items, values, chunk_weights)

  def loss_fn(params):
    def body(sse, chunk):
      return sse + chunk_sse(params, chunk), None

    sse, _ = jax.lax.scan(body, jnp.zeros((), dtype), chunks)
    return total(params, sse)

  def value_and_grad(params):
    def body(carry, chunk):
      sse, grads = carry
      value, grad = jax.value_and_grad(chunk_sse)(params, chunk)
      return (sse + value, jax.tree.map(jnp.add, grads, grad)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (sse, grads), _ = jax.lax.scan(body, (jnp.zeros((), dtype), zeros), chunks)
    # The loss is linear in the summed errors: add the penalty's part once.
    value, outer = jax.value_and_grad(total, argnums=(0, 1))(params, sse)
    grads = jax.tree.map(lambda g, o: g * outer[1] + o, grads, outer[0])
    return value, grads

  return loss_fn, value_and_grad


def _next_prime(n: int) -> int:
  """The smallest prime ``>= max(n, 2)`` (host, trial division; n < 2**31)."""
  candidate = max(int(n), 2)
  while any(candidate % d == 0 for d in range(2, int(candidate**0.5) + 1)):
    candidate += 1
  return candidate


def _stride_order(key: jax.Array, modulus: int) -> jax.Array:
  """A pseudo-random permutation of ``range(modulus)`` (a prime) with no sort.

  Position ``x`` visits ``(start + stride·x) mod modulus``, a bijection for any
  stride in ``[1, modulus)``. ``start`` is uniform; the stride is drawn from
  ``[sqrt(m)/2, sqrt(m)]`` so that one batch strides across the whole data (and
  so that Schrage's method computes ``stride·x mod m`` in int32 without
  overflow). Consecutive positions are ``stride`` apart, so a batch of ratings
  sorted by user still holds users from everywhere.
  """
  root = max(int(modulus**0.5), 1)
  start_key, stride_key = jax.random.split(key)
  start = jax.random.randint(start_key, (), 0, modulus)
  stride = jax.random.randint(stride_key, (), max(root // 2, 1), root + 1)
  # Schrage: s·x mod m = s·(x mod q) − r·(x div q), with q = m div s, r = m mod s,
  # exact in int32 when r < q, which s <= sqrt(m) guarantees.
  x = jnp.arange(modulus, dtype=jnp.int32)
  q, r = modulus // stride, modulus % stride
  product = stride * (x % q) - r * (x // q)
  product = jnp.where(product < 0, product + modulus, product)
  shifted = product - (modulus - start)  # In (-m, m): no int32 overflow.
  return jnp.where(shifted < 0, shifted + modulus, shifted)


def _epoch_batches(key: jax.Array, n_total: int, batch_size: int) -> jax.Array:
  """One epoch's mini-batches: ``[n_batches, batch_size]`` indices into the data.

  Every index in ``range(n_total)`` appears once; the short last batch is padded
  with ``n_total``. The batches are shuffled too.
  """
  order_key, batch_key = jax.random.split(key)
  n_batches = -(-n_total // batch_size)
  visits = _stride_order(order_key, _next_prime(n_total))
  # Drop the visits past the data (the prime modulus > n_total), keeping the
  # order: a cumulative count and a scatter, no sort.
  keep = visits < n_total
  slot = jnp.where(keep, jnp.cumsum(keep) - 1, n_batches * batch_size)
  order = jnp.full(n_batches * batch_size, n_total, visits.dtype)
  order = order.at[slot].set(visits, mode="drop").reshape(n_batches, batch_size)
  return order[jax.random.permutation(batch_key, n_batches)]


# Defaults of `fit` and `mfjax fit`, tuned on MovieLens 100k validation splits
# carved from the base files (benchmarks/tune_movielens.py; RESULTS.md).
FIT_DEFAULTS = dict(
  rank=12,
  epochs=10,
  learning_rate=0.02,
  l2=8.0,
  l2_bias=1.0,
  batch_size=4096,
  seeds=8,
)


class FitResult(NamedTuple):
  """What :func:`fit` returns.

  Attributes:
    params: the ensemble: the ``seeds`` models' best params merged by
      :func:`ensemble_params` into one model of rank ``seeds·rank``.
    results: the stacked :class:`TrainResult` of the models (leading axis
      ``seeds``).
  """

  params: Params
  results: TrainResult


def fit(
  key: ArrayLike,
  ratings: Ratings,
  *,
  rank: int = FIT_DEFAULTS["rank"],
  epochs: int = FIT_DEFAULTS["epochs"],
  learning_rate: float = FIT_DEFAULTS["learning_rate"],
  l2: ArrayLike = FIT_DEFAULTS["l2"],
  l2_bias: ArrayLike = FIT_DEFAULTS["l2_bias"],
  batch_size: int = FIT_DEFAULTS["batch_size"],
  seeds: int = FIT_DEFAULTS["seeds"],
  validation_data: Ratings | None = None,
  patience: int | None = None,
  scale: tuple[float, float] | None = None,
  progress: bool = False,
) -> FitResult:
  """Fits the tuned default model to ``ratings``, jitted: what ``mfjax fit`` runs.

  ``seeds`` models of rank ``rank`` train in one ``vmap`` with Adam
  (``learning_rate``) in shuffled mini-batch epochs, and their best params are
  averaged (:func:`ensemble_params`). The defaults, ``FIT_DEFAULTS``, were tuned
  on MovieLens 100k validation splits (``benchmarks/RESULTS.md``). The compiled
  program is cached per settings and shapes, so repeated calls do not retrace.

  Args:
    key: a PRNG key for the inits and the shuffles.
    ratings: the training :class:`mfjax.Ratings`.
    rank, epochs, learning_rate, batch_size, seeds: static settings.
    l2: L2 weight of the factors, ``>= 0`` (traced: no recompile per value).
    l2_bias: L2 weight of the biases, ``>= 0``.
    validation_data: optional ``Ratings``: each model keeps its params of lowest
      validation RMSE, with early stopping after ``patience`` epochs if given.
    scale: ``(lo, hi)``: predictions clipped to it when scoring validation.
    progress: a tqdm bar per epoch.

  Returns:
    A :class:`FitResult`.

  Examples:
    >>> import jax, mfjax
    >>> ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 60, 40, 2000, 3)
    >>> fitted = mfjax.fit(jax.random.key(1), ratings, rank=4, seeds=2, epochs=3)
    >>> fitted.params.user_factors.shape, fitted.results.losses.shape
    ((60, 8), (2, 3))
  """
  validation.check_key("key", key)
  check_ratings("ratings", ratings)
  settings = {
    name: validation.check_positive_int(name, value)
    for name, value in (
      ("rank", rank),
      ("epochs", epochs),
      ("batch_size", batch_size),
      ("seeds", seeds),
    )
  }
  if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
    raise TypeError(f"learning_rate must be a number; got {learning_rate!r}.")
  if not 0 < learning_rate < float("inf"):
    raise ValueError(f"learning_rate must be finite and > 0; got {learning_rate}.")
  validation.check_nonnegative("l2", l2)
  validation.check_nonnegative("l2_bias", l2_bias)
  if patience is not None:
    patience = validation.check_positive_int("patience", patience)
  program = _cached_fit_program(
    settings["rank"],
    settings["epochs"],
    float(learning_rate),
    settings["batch_size"],
    settings["seeds"],
    patience,
    bool(progress),
  )
  # train() repeats the remaining checks (validation data, patience, scale).
  dtype = jnp.float32
  results, params = program(
    key,
    ratings,
    jnp.asarray(l2, dtype),
    jnp.asarray(l2_bias, dtype),
    validation_data,
    scale,
  )
  return FitResult(params, results)


@functools.lru_cache(maxsize=16)
def _cached_fit_program(*settings):
  return _fit_program(*settings)


def _fit_program(rank, epochs, learning_rate, batch_size, seeds, patience, progress):
  """A jitted ``(key, ratings, l2, l2_bias, validation, scale)`` ensemble fit.

  Returns ``(results, params)``: the stacked ``TrainResult`` of the ``seeds``
  models and their merge by :func:`ensemble_params`.
  """

  def one(key, ratings, l2, l2_bias, validation_data, scale):
    init_key, shuffle_key = jax.random.split(key)
    params = model.init_params(init_key, ratings.n_users, ratings.n_items, rank)
    return train(
      params,
      ratings,
      optimizer=optax.adam(learning_rate),
      steps=epochs,
      l2=l2,
      l2_bias=l2_bias,
      batch_size=batch_size,
      key=shuffle_key,
      validation_data=validation_data,
      patience=patience,
      scale=scale,
      progress=progress,
    )

  def run(key, ratings, l2, l2_bias, validation_data, scale):
    keys = jax.random.split(key, seeds)
    results = jax.vmap(one, in_axes=(0, None, None, None, None, None))(
      keys, ratings, l2, l2_bias, validation_data, scale
    )
    return results, ensemble_params(results.best_params)

  return jax.jit(run)


def ensemble_params(stacked: Params) -> Params:
  """One ``Params`` that predicts the average of a stack of models (a vmap batch).

  The mean of ``S`` biased factorisations of rank ``k`` is itself one of rank
  ``S·k``: average the biases and the means, and concatenate the factors scaled by
  ``1/sqrt(S)`` each, so that ``p_u·q_i`` becomes the mean of the ``S`` dot products.

  Args:
    stacked: ``Params`` whose leaves have a leading axis of ``S`` models.

  Returns:
    ``Params`` of rank ``S·k``.
  """
  n_models = stacked.user_factors.shape[0]
  scale = 1.0 / jnp.sqrt(jnp.asarray(n_models, stacked.user_factors.dtype))

  def concat(x):
    return jnp.concatenate(list(x * scale), axis=-1)

  return Params(
    user_factors=concat(stacked.user_factors),
    item_factors=concat(stacked.item_factors),
    user_bias=stacked.user_bias.mean(0),
    item_bias=stacked.item_bias.mean(0),
    mean=stacked.mean.mean(0),
  )
