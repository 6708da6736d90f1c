"""Solvers: how one pass over the data updates the params, as an ``init``/``step`` pair.

A :class:`Solver` is built for one objective, one batch of data and one optax
optimizer. ``init(params)`` gives its state; ``step(params, state, key)`` makes one
pass over the data (an epoch) and returns the new params, the new state and the
pass's loss. :func:`mfjax.train` scans ``step`` and keeps the best params; it
knows nothing else of the solver. Three are built in:

* :func:`full_batch`: one optax step on the gradient of the whole loss;
* :func:`chunked`: the same step, the gradient summed over chunks of ratings so
  that only one chunk's temporaries exist at a time;
* :func:`minibatch`: a shuffled pass of optax steps on mini-batches;
* :func:`alternating`: alternating least squares, no optimizer: each pass
  solves for every user's row with the items fixed, then for every item's row
  (:class:`Alternating` says how).

The ``mean`` of the params is data, not a parameter: every solver leaves it as
it found it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mfjax import validation
from mfjax.core import kernels, shuffle
from mfjax.core.objectives import (
  Dense,
  Objective,
  Pairs,
  Penalty,
  Ranking,
  SquaredError,
)
from mfjax.types import Params, Ratings

__all__ = [
  "Solver",
  "full_batch",
  "chunked",
  "minibatch",
  "MiniBatch",
  "Alternating",
  "alternating",
  "ROW_CHUNK",
  "RowChunks",
  "row_chunks",
  "DEFAULT_MOMENTUM",
  "DEFAULT_LEARNING_RATE_SCALE",
  "DEFAULT_SPARSE_LEARNING_RATE",
  "default_optimizer",
]

DEFAULT_MOMENTUM = 0.8
DEFAULT_LEARNING_RATE_SCALE = 0.5
DEFAULT_SPARSE_LEARNING_RATE = 0.01


class Solver(NamedTuple):
  """One epoch strategy.

  Attributes:
    init: ``params -> state``.
    step: ``(params, state, key) -> (params, state, loss)``, one pass over the
      data; ``key`` is a PRNG key (used by shuffling solvers) or an index.
    loss_after: whether a pass's loss belongs to the params after it (a mean of
      mini-batch losses taken along the way) rather than to those before it
      (full-batch: the loss that the step's gradient came from).
    loss: ``params -> loss`` over all the data, comparable with the passes'
      losses; :func:`mfjax.core.training.run` scores the initial params with it when
      ``loss_after`` (full-batch, the first pass's loss is theirs), so that they
      are a candidate for the best and the yardstick of a divergence. None:
      the initial params are not scored.
    exact: whether a pass's loss is exactly ``loss`` of the params after it
      (alternating least squares), so that the best params need no scoring
      again at the end (:func:`mfjax.core.training.run` re-scores them after
      mini-batch passes, whose losses are means taken along the pass).
  """

  init: Callable[[Params], Any]
  step: Callable[[Params, Any, jax.Array], tuple[Params, Any, jax.Array]]
  loss_after: bool
  loss: Callable[[Params], jax.Array] | None = None
  exact: bool = False


def default_optimizer(batch: Pairs | Dense) -> optax.GradientTransformation:
  """The optimizer :func:`mfjax.train` uses when given none.

  For :class:`mfjax.Ratings`, ``optax.adam(0.01)``. For a dense matrix,
  ``optax.sgd`` with heavy-ball momentum 0.8 and a learning rate of ``0.5 ·
  n_observed / (max ratings per user + max ratings per item)``: the loss is a mean
  over the observed ratings, so a row's gradient is proportional to its share of
  them and the largest stable step is set by the busiest user and item together.
  That gives about the same move per row whatever the size of the matrix; the 0.5
  was chosen on planted low-rank matrices from 4×6 to 943×1682, where it
  recovers the planted ones. On unstructured random matrices it can diverge for
  an unlucky init (1 of 64 inits of a 9×11 matrix at rank 2); ``train`` then
  keeps the best finite params and reports ``diverged_step``.
  """
  if isinstance(batch, Pairs):
    return optax.adam(DEFAULT_SPARSE_LEARNING_RATE)
  observed = batch.weights != 0
  busiest = observed.sum(1).max() + observed.sum(0).max()
  rate = DEFAULT_LEARNING_RATE_SCALE * observed.sum() / jnp.maximum(busiest, 1)
  return optax.sgd(rate, momentum=DEFAULT_MOMENTUM)


def _updater(optimizer: optax.GradientTransformation):
  """``apply(params, state, value, grads, value_fn) -> (params, state)``."""
  # Line-search optimizers (optax.lbfgs, ...) want the value and the function too.
  extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)

  def apply(params, state, value, grads, value_fn):
    grads = grads._replace(mean=jnp.zeros_like(grads.mean))
    if extra_args:
      updates, state = optimizer.update(
        grads, state, params, value=value, grad=grads, value_fn=value_fn
      )
    else:
      updates, state = optimizer.update(grads, state, params)
    # The mean is data, not a parameter: undo whatever the optimizer did to it.
    return optax.apply_updates(params, updates)._replace(mean=params.mean), state

  return apply


def full_batch(
  objective: Objective,
  batch: Pairs | Dense,
  penalty: Penalty,
  optimizer: optax.GradientTransformation,
) -> Solver:
  """One optax step per pass, on the gradient of the whole batch's loss."""
  loss_fn = lambda p: objective.loss(p, batch, penalty)
  return _stepper(loss_fn, jax.value_and_grad(loss_fn), optimizer)


def _stepper(loss_fn, value_and_grad, optimizer) -> Solver:
  apply = _updater(optimizer)

  def step(params, state, _):
    value, grads = value_and_grad(params)
    params, state = apply(params, state, value, grads, loss_fn)
    return params, state, value

  return Solver(optimizer.init, step, loss_after=False, loss=loss_fn)


def chunked(
  objective: SquaredError,
  pairs: Pairs,
  penalty: Penalty,
  optimizer: optax.GradientTransformation,
  chunk_size: int,
) -> Solver:
  """Full-batch steps whose loss and gradient are summed over chunks of ratings.

  The step and its result are those of :func:`full_batch` (up to float
  rounding), but the per-rating temporaries (the gathered factor rows) exist for
  one chunk at a time. The ratings are laid out as ``[n_chunks, chunk]`` with
  chunk ``j`` holding entries ``j, j + n_chunks, ...`` (so that each chunk of
  sharded ratings is spread over all their devices), padded with weight-0
  entries. The objective's loss must be its summed errors over the weight sum
  plus the penalty over the total, as :class:`mfjax.core.objectives.SquaredError`'s is.
  """
  n = pairs.values.shape[0]
  n_chunks = max(-(-n // chunk_size), 1)
  width = -(-n // n_chunks)  # Balanced chunks, none empty.
  pad = width * n_chunks - n

  def layout(x):
    if pad:
      x = jnp.concatenate([x, jnp.zeros((pad,), x.dtype)])
    return x.reshape(width, n_chunks).T

  chunks = Pairs(*map(layout, pairs[:4]), total=pairs.total)
  chunks = jax.tree.map(jnp.asarray, chunks)
  denominator = kernels.positive(pairs.weights.sum())

  def chunk_sse(params, chunk):
    return objective.sse(params, Pairs(*chunk, total=pairs.total))

  def total(params, sse):
    reg = kernels.penalty(params, penalty.l2, penalty.l2_bias)
    return sse / denominator + reg / kernels.positive(pairs.total)

  def loss_fn(params):
    def body(sse, chunk):
      return sse + chunk_sse(params, chunk), None

    sse, _ = jax.lax.scan(body, jnp.zeros((), pairs.values.dtype), tuple(chunks[:4]))
    return total(params, sse)

  def value_and_grad(params):
    def body(carry, chunk):
      sse, grads = carry
      value, grad = jax.value_and_grad(chunk_sse)(params, chunk)
      return (sse + value, jax.tree.map(jnp.add, grads, grad)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    init = (jnp.zeros((), pairs.values.dtype), zeros)
    (sse, grads), _ = jax.lax.scan(body, init, tuple(chunks[:4]))
    # The loss is linear in the summed errors: add the penalty's part once.
    value, outer = jax.value_and_grad(total, argnums=(0, 1))(params, sse)
    grads = jax.tree.map(lambda g, o: g * outer[1] + o, grads, outer[0])
    return value, grads

  return _stepper(loss_fn, value_and_grad, optimizer)


def minibatch(
  objective: Objective,
  ratings: Ratings,
  penalty: Penalty,
  optimizer: optax.GradientTransformation,
  batch_size: int,
  dtype,
  n_data: int | jax.Array | None = None,
  *,
  key: jax.Array,
) -> Solver:
  """A shuffled pass of optax steps on mini-batches of ``batch_size`` ratings.

  The ratings are put once in a pseudo-random order without a sort (``key``,
  :func:`mfjax.core.shuffle.fit_order`: one gathered copy); each pass then cuts that
  order into contiguous batches from a random rotation and visits them in a
  random order (:func:`mfjax.core.shuffle.epoch_windows`), so that no step gathers
  its ratings from all over the data. Its loss is the mean of its mini-batch
  losses, each taken before its own update: no extra pass over the data (a
  full-loss pass cost a fifth of the ML-100k fit). The order is over the
  entries before any padding (``Ratings.n_padding``), so padded ratings train
  exactly as unpadded ones.

  ``n_data`` (:class:`MiniBatch`), possibly traced, says how many leading
  entries are data; the rest is padding of weight 0. The pass then loops over
  the data's batches only (a ``fori_loop`` with a traced bound): one program
  trains every data size up to the padded length, each as its unpadded ratings
  would (the same batches in the same order; sums over more entries can round
  differently).
  """
  pairs = _padded_pairs(ratings, dtype)
  capacity = ratings.values.shape[0] - ratings.n_padding
  if n_data is None:
    n_data = capacity
  apply = _updater(optimizer)
  static = isinstance(n_data, int)
  n_batches = -(-jnp.asarray(n_data) // batch_size)
  bound = None if static else capacity
  # The data in the fit's order, batch_size positions past its end included.
  order = shuffle.fit_order(key, n_data, batch_size, bound)
  take = lambda x: x[order]
  ordered = (take(pairs.users), take(pairs.items), take(pairs.values))
  ordered_weights = None if ratings.weights is None else take(pairs.weights)
  window = jnp.arange(batch_size)

  def batch_at(start, count):
    cut = lambda x: jax.lax.dynamic_slice_in_dim(x, start, batch_size)
    weight = (window < count).astype(dtype)  # The short batch's tail weighs 0.
    if ordered_weights is not None:  # Else all ones: nothing to read.
      weight = weight * cut(ordered_weights)
    return Pairs(*map(cut, ordered), weight, pairs.total)

  def mean_over_batches(values):
    if static:
      return jnp.mean(values)
    return jnp.sum(values) / n_batches.astype(values.dtype)

  def step(params, state, key):
    starts, counts = shuffle.epoch_windows(key, n_data, batch_size, bound)

    def batch_step(carry, window):
      params, state = carry
      batch_fn = lambda p: objective.loss(p, batch_at(*window), penalty)
      value, grads = jax.value_and_grad(batch_fn)(params)
      return apply(params, state, value, grads, batch_fn), value

    if static:
      (params, state), values = jax.lax.scan(
        batch_step, (params, state), (starts, counts)
      )
    else:  # A loop over the batches only: the slots past the data cost nothing.

      def body(j, carry):
        params, state, values = carry
        (params, state), value = batch_step((params, state), (starts[j], counts[j]))
        return params, state, values.at[j].set(value)

      values = jnp.zeros(starts.shape[0], dtype)
      params, state, values = jax.lax.fori_loop(
        0, n_batches, body, (params, state, values)
      )
    # The last batch may be short; weighting by batch size is not worth it.
    return params, state, mean_over_batches(values)

  def loss(params):
    # A pass's mean mini-batch loss without the updates, over unrotated windows.
    starts = jnp.arange(-(-(n_data if static else capacity) // batch_size)) * batch_size
    counts = jnp.clip(n_data - starts, 0, batch_size)
    batch_loss = lambda window: objective.loss(params, batch_at(*window), penalty)
    if static:
      return jnp.mean(jax.lax.map(batch_loss, (starts, counts)))
    total = jax.lax.fori_loop(
      0,
      n_batches,
      lambda j, total: total + batch_loss((starts[j], counts[j])),
      jnp.zeros((), dtype),
    )
    return mean_over_batches(total)

  return Solver(optimizer.init, step, loss_after=True, loss=loss)


@dataclasses.dataclass(frozen=True)
class MiniBatch:
  """Mini-batch optax steps: ``train(..., solver=MiniBatch(batch_size))``.

  The same as ``train(..., batch_size=batch_size)`` (:func:`minibatch`), with
  one more setting: ``n_data``, the number of leading ratings that are data,
  the rest padding of weight 0. It may be traced, so that one compiled program
  trains ratings of any size padded to one length (what :func:`mfjax.fit` does
  to share its program between files of nearby sizes), each exactly as its
  unpadded ratings would train.

  Attributes:
    batch_size: ratings per mini-batch, >= 1.
    n_data: None (every entry before ``Ratings.n_padding`` is data), or an int
      or a traced integer scalar in ``[1, len(ratings) - n_padding]``.
    order_key: None, or the PRNG key of the fit's order of the data
      (:func:`mfjax.core.shuffle.fit_order`) apart from ``train``'s ``key``, which
      then draws the epochs' windows only. Models trained in one ``vmap`` with
      their own order keys and one shared ``key`` see different batches through
      the same windows: contiguous slices, where a key per model would make
      each window a gather (:func:`mfjax.fit` does this).
  """

  batch_size: int
  n_data: int | jax.Array | None = None
  order_key: jax.Array | None = None

  def __post_init__(self):
    validation.check_positive_int("batch_size", self.batch_size)
    if self.order_key is not None:
      validation.check_key("order_key", self.order_key)
    n_data = self.n_data
    if n_data is None:
      return
    if not hasattr(n_data, "dtype"):
      n_data = validation.check_positive_int("n_data", n_data)
    elif n_data.shape != () or not jnp.issubdtype(n_data.dtype, jnp.integer):
      raise TypeError(
        "n_data must be an int or an integer scalar; got "
        f"{validation.describe(n_data)}."
      )
    elif validation.is_concrete(n_data):  # A host int: a static batch count.
      n_data = validation.check_positive_int("n_data", int(n_data))
    object.__setattr__(self, "n_data", n_data)


def _padded_pairs(ratings: Ratings, dtype) -> Pairs:
  """All ratings, with index ``n_data`` an entry of weight 0.

  That is the first padding entry if the ratings have padding, else one
  appended here.
  """
  weights, total = kernels.rating_weights(ratings, dtype)
  users, items = ratings.users, ratings.items
  values = jnp.asarray(ratings.values, dtype)
  if not ratings.n_padding:
    users, items = jnp.append(users, 0), jnp.append(items, 0)
    values = jnp.append(values, 0)
    weights = jnp.append(weights, jnp.zeros((), dtype))
  return Pairs(users, items, values, weights, total)


@dataclasses.dataclass(frozen=True)
class Alternating:
  """Alternating least squares: what ``train(..., solver=Alternating())`` runs.

  Each pass (step) fixes the items and solves the loss for every user's row
  (factors and bias), then fixes the users and solves for every item's. A
  row's problem is a small regularised least squares, solved by ``cg_steps``
  steps of conjugate gradients started from the row's current value, all
  rows at once (as implicit's ALS does; Takács, Pilászy & Tikk 2011). The
  matrix of a row's problem is never formed: its products come from
  ``jax.linearize`` of the gradient of the objective's own loss, so any
  objective whose loss is quadratic in each side's rows, with no coupling
  between two rows of one side, can be solved this way: :data:`RATING`, the
  notebook's, :class:`mfjax.core.objectives.Ranking`. ``cg_steps`` of the rank plus
  two (factors and bias) or more solve each row exactly; a few suffice once
  the passes warm-start each other. On one device the ranking loss without
  biases, on ratings it scores pair by pair, takes the same steps from its row
  terms over row chunks instead (:func:`alternating`), about 2.5 times as fast
  at a million ratings.

  There is no learning rate and no optimizer state: no ``optimizer``,
  ``batch_size`` or ``chunk_size`` with it.

  Attributes:
    cg_steps: conjugate-gradient steps per row and half pass, >= 1.
  """

  cg_steps: int = 3

  def __post_init__(self):
    validation.check_positive_int("cg_steps", self.cg_steps)


_SIDES = {"user": ("user_factors", "user_bias"), "item": ("item_factors", "item_bias")}


def alternating(
  objective: Objective, batch: Pairs | Dense, penalty: Penalty, settings: Alternating
) -> Solver:
  """The :class:`Alternating` solver of ``objective``'s loss on ``batch``.

  A pass's loss belongs to the params after it (``loss_after``): the last
  pass's solution is a candidate for the best params. On one device, the
  ranking loss without biases on ratings it scores pair by pair is solved from
  its row terms over row chunks (:func:`row_chunks`), the same conjugate
  gradients without a gather of every pair per product; any other loss, and
  any loss over several devices (whose pairs are sharded), through
  ``jax.linearize``.
  """
  linearized = _linearized(objective, batch, penalty, settings)
  if (
    type(objective) is Ranking
    and not objective.biases
    and isinstance(batch, Pairs)
    # Sharded pairs would be gathered whole onto every device to be laid out:
    # with several devices each keeps its own part on the linearized path.
    and jax.device_count() == 1
  ):
    return _ranking_in_chunks(objective, batch, penalty, settings, linearized)
  return linearized


def _linearized(objective, batch, penalty, settings) -> Solver:
  """:func:`alternating` of any objective, its products by ``jax.linearize``."""
  loss_fn = lambda p: objective.loss(p, batch, penalty)

  def solve_side(params, side):
    names = _SIDES[side]
    rows = {name: getattr(params, name) for name in names}
    grad_fn = jax.grad(lambda r: loss_fn(params._replace(**r)))
    # The gradient is affine in the rows: its linearisation is the exact product
    # with the (block-diagonal, one block per row) matrix of the problem.
    gradient, product = jax.linearize(grad_fn, rows)
    residual = jax.tree.map(jnp.negative, gradient)
    return params._replace(**_conjugate_gradients(product, rows, residual, settings))

  def step(params, state, _):
    params = solve_side(solve_side(params, "user"), "item")
    return params, state, loss_fn(params)

  return Solver(lambda params: (), step, loss_after=True, loss=loss_fn, exact=True)


def _conjugate_gradients(product, rows: dict, residual: dict, settings) -> dict:
  """``settings.cg_steps`` steps of CG on every row at once, from ``rows``."""
  rows, *_ = jax.lax.fori_loop(
    0,
    settings.cg_steps,
    lambda _, c: _cg_step(product, *c),
    (rows, residual, residual, _row_dot(residual, residual)),
  )
  return rows


ROW_CHUNK = 8
"""Pairs per chunk of :func:`row_chunks`: at most ``ROW_CHUNK - 1`` padding
slots per row, against one gather of a factor row per chunk rather than per
pair (8 was fastest of 4, 8 and 16 at 1M pairs; benchmarks/RESULTS.md,
"Scale")."""


class RowChunks(NamedTuple):
  """One side's pairs grouped by row, :data:`ROW_CHUNK` to a chunk.

  Attributes:
    others: ``[chunks, ROW_CHUNK]`` the other side's index of each pair (0 in
      padding slots).
    weights: ``[chunks, ROW_CHUNK]`` each pair's weight (0 in padding slots).
    rows: ``[chunks]`` the row a chunk belongs to; ``n_rows`` for an unused
      chunk.
  """

  others: jax.Array
  weights: jax.Array
  rows: jax.Array


def row_chunks(
  rows, others, weights, n_rows: int, n_others: int, chunk: int = ROW_CHUNK
) -> RowChunks:
  """``(rows[p], others[p], weights[p])`` pairs laid out row by row in chunks.

  Traceable: the number of chunks is the static bound ``n // chunk +
  min(n_rows, n)`` (a row of ``m`` pairs takes ``ceil(m / chunk)``), so one
  program lays out any data of the same length. A pair whose index is out of
  range, -1 included (which ``jit`` cannot check), lands on row 0 and other 0
  with a NaN weight: the fit's loss turns NaN rather than silently training
  another row. (The linearized path reads an index past the table as NaN too,
  but -1, an unknown id, as a row of zeros.)

  Args:
    rows: ``[n]`` each pair's row, in ``[0, n_rows)``.
    others: ``[n]`` each pair's index on the other side, in ``[0, n_others)``.
    weights: ``[n]`` each pair's weight.
    n_rows: the number of rows.
    n_others: the number of the other side's rows.
    chunk: pairs per chunk.
  """
  if n_rows < 1:
    raise ValueError(f"n_rows must be >= 1; got {n_rows}.")
  # int32 positions and counts, whatever narrower type the indices come in.
  rows, others = jnp.asarray(rows, jnp.int32), jnp.asarray(others, jnp.int32)
  n = rows.shape[0]
  bad = (rows < 0) | (rows >= n_rows) | (others < 0) | (others >= n_others)
  rows, others = jnp.where(bad, 0, rows), jnp.where(bad, 0, others)
  weights = jnp.where(bad, jnp.nan, weights)
  with _x64():  # One int64 key (row, position) sorts in a sixth of the time
    # of an argsort (XLA's CPU sort of several operands; RESULTS.md).
    key = rows.astype(jnp.int64) * n + jnp.arange(n, dtype=jnp.int64)
    order = (jnp.sort(key) % n).astype(rows.dtype)
  rows, others, weights = rows[order], others[order], weights[order]
  count = jax.ops.segment_sum(jnp.ones_like(rows), rows, n_rows)
  position = jnp.arange(n, dtype=rows.dtype) - (jnp.cumsum(count) - count)[rows]
  chunks = (count + chunk - 1) // chunk
  at = ((jnp.cumsum(chunks) - chunks)[rows] + position // chunk, position % chunk)
  shape = (n // chunk + min(n_rows, n), chunk)
  return RowChunks(
    jnp.zeros(shape, others.dtype).at[at].set(others),
    jnp.zeros(shape, weights.dtype).at[at].set(weights),
    jnp.full(shape[:1], n_rows, rows.dtype).at[at[0]].set(rows),
  )


def _x64():
  """A context in which JAX makes 64-bit integers (``jax.enable_x64`` from JAX
  0.8, ``jax.experimental.enable_x64`` before)."""
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64  # JAX < 0.8 only.

  return enable_x64()


def _ranking_in_chunks(
  objective, batch: Pairs, penalty, settings, linearized
) -> Solver:
  """:func:`alternating` of :class:`~mfjax.core.objectives.Ranking` (no biases).

  Row ``x`` of one side, the other side's factors ``F`` fixed, minimises
  ``Σ_j c_j (x·f_j - 1)² + alpha0·|F x|² + l2·scale·|x|²`` over its pairs
  ``j``: the system ``(Σ_j c_j f_j f_jᵀ + alpha0·FᵀF + l2·scale·I) x = Σ_j c_j
  f_j`` (the loss's gradient, times ``total / 2``), whose products come from
  the chunks' gathered rows of ``F``: one gather of ``F`` per half pass, one
  of the row's direction per chunk per product.
  """

  def init(params):
    n_users, n_items = params.user_factors.shape[0], params.item_factors.shape[0]
    dtype = params.user_factors.dtype
    if not objective.scores_pairs(n_users, n_items, batch.values.shape[0]):
      return None  # The loss scores the whole matrix: solved by linearize.
    terms = objective.row_terms(batch, n_users, n_items, dtype)
    by_user = row_chunks(batch.users, batch.items, terms.weights, n_users, n_items)
    by_item = row_chunks(batch.items, batch.users, terms.weights, n_items, n_users)
    return terms, by_user, by_item

  def step(params, state, key):
    if state is None:
      return linearized.step(params, state, key)
    terms, by_user, by_item = state
    l2 = jnp.asarray(penalty.l2, params.user_factors.dtype)
    users, _ = _solve_rows(
      params.user_factors, params.item_factors, by_user, terms.alpha0,
      l2 * terms.user_scale, settings,
    )  # fmt: skip
    items, scores = _solve_rows(
      params.item_factors, users, by_item, terms.alpha0, l2 * terms.item_scale,
      settings,
    )  # fmt: skip
    params = params._replace(user_factors=users, item_factors=items)
    observed = jnp.sum(by_item.weights * (scores - 1) ** 2)
    return params, state, objective.loss_of_terms(params, terms, observed, penalty)

  return Solver(init, step, loss_after=True, loss=linearized.loss, exact=True)


def _solve_rows(rows, other, chunks: RowChunks, alpha0, diagonal, settings):
  """CG on every row's system of :func:`_ranking_in_chunks`, from ``rows``.

  Returns the new rows and ``[chunks, ROW_CHUNK]`` the score of each chunked
  pair under them (the loss's observed scores at no second gather).
  """
  n_rows = rows.shape[0]
  gathered = other.at[chunks.others].get(mode="promise_in_bounds")
  gram = alpha0 * (other.T @ other)
  row_of = lambda x: x.at[chunks.rows].get(mode="fill", fill_value=0)
  scores = lambda x: jnp.einsum("clk,ck->cl", gathered, row_of(x))
  back = lambda s: jax.ops.segment_sum(  # Chunks come in row order.
    jnp.einsum("cl,clk->ck", s, gathered), chunks.rows, n_rows, indices_are_sorted=True
  )

  def product(d):
    d = d["factors"]
    moved = back(chunks.weights * scores(d)) + d @ gram + diagonal[:, None] * d
    return {"factors": moved}

  x = {"factors": rows}
  # The system's right side less its product with the rows, in one pass.
  residual = back(chunks.weights * (1 - scores(rows))) - rows @ gram
  residual = residual - diagonal[:, None] * rows
  x = _conjugate_gradients(product, x, {"factors": residual}, settings)["factors"]
  return x, scores(x)


def _row_dot(a: dict, b: dict) -> jax.Array:
  """``[n_rows]``: per row, the dot product of ``a``'s and ``b``'s entries."""
  return sum(
    jnp.sum((x * y).reshape(x.shape[0], -1), axis=1)
    for x, y in zip(a.values(), b.values(), strict=True)
  )


def _cg_step(product, rows, residual, direction, norm):
  """One conjugate-gradient step of every row at once (a row per system)."""
  moved = product(direction)
  curvature = _row_dot(direction, moved)
  # A row whose problem is solved (or that the loss ignores) stays where it is.
  step = jnp.where(curvature > 0, norm / jnp.where(curvature > 0, curvature, 1), 0)
  along = lambda x, d, s: x + _per_row(s, x) * d
  rows = jax.tree.map(lambda x, d: along(x, d, step), rows, direction)
  residual = jax.tree.map(lambda r, m: along(r, m, -step), residual, moved)
  new_norm = _row_dot(residual, residual)
  ratio = jnp.where(norm > 0, new_norm / jnp.where(norm > 0, norm, 1), 0)
  direction = jax.tree.map(lambda r, d: along(r, d, ratio), residual, direction)
  return rows, residual, direction, new_norm


def _per_row(scalars: jax.Array, like: jax.Array) -> jax.Array:
  """``scalars`` shaped to broadcast over the rows of ``like``."""
  return scalars.reshape(scalars.shape + (1,) * (like.ndim - 1)).astype(like.dtype)
