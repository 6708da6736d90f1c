"""Training: one ``lax.scan`` over a solver's steps that carries the best params.

:func:`train` checks its arguments on the host, builds a solver
(:mod:`mfjax.core.solvers`) for the objective (:mod:`mfjax.core.objectives`) and
the data,
and runs :func:`run`: a scan of the solver's steps whose state,
:class:`TrainState`, also holds the best params seen so far, in the manner of
optimistix's best-so-far wrappers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import eager, kernels, memory, objectives, sharding, solvers
from mfjax.core.objectives import Objective
from mfjax.core.progress import ProgressBar
from mfjax.core.solvers import Solver
from mfjax.types import Params, Ratings

__all__ = [
  "TrainState",
  "TrainResult",
  "train",
  "run",
  "failure",
  "DIVERGENCE_GROWTH",
]

DIVERGENCE_GROWTH = 1000.0
"""A pass whose loss is above this many times the initial params' loss has
diverged, as much as one whose loss is NaN or inf (``TrainResult.diverged_step``):
a far too large learning rate gives finite losses of 1e10 and more."""


class TrainState(NamedTuple):
  """The carry of :func:`run`'s scan.

  Attributes:
    params: the current params.
    solver_state: the solver's state (the optax state).
    best_params: the params with the best score so far.
    best_score: their score: the loss, or the validation RMSE.
    best_loss: their loss.
    since_best: epochs since the best score improved (for early stopping).
    best_step: the number of passes that made the best params (0: the initial).
  """

  params: Params
  solver_state: Any
  best_params: Params
  best_score: jax.Array
  best_loss: jax.Array
  since_best: jax.Array
  best_step: jax.Array


class TrainResult(NamedTuple):
  """What :func:`train` returns; a pytree, so it passes through ``jit``/``vmap``.

  Attributes:
    params: the parameters after the last step.
    best_params: the parameters with the lowest loss seen. Full-batch, as in the
      notebook, a step's loss is computed before its update, so these are the
      parameters that produced ``best_loss``. With ``batch_size`` they are the
      parameters at the end of the epoch with the lowest mean mini-batch loss,
      or the initial params if no epoch beat their loss (``best_step == 0``).
      Never non-finite unless the initial loss was.
    best_loss: the loss of ``best_params`` (``inf`` if no loss was finite). With
      validation data the best params are those of the lowest validation RMSE.
    losses: full-batch, the loss at each step before that step's update; with
      ``batch_size``, the mean of the epoch's mini-batch losses, each taken
      before its own update (no extra pass over the data). NaN after an early
      stop.
    diverged_step: the first step whose loss was NaN or inf or above
      :data:`DIVERGENCE_GROWTH` times ``initial_loss``, or -1 if none was.
    validation_rmse: the validation RMSE at each step, of the parameters its
      loss belongs to: before the update full-batch, after the epoch with
      ``batch_size``. NaN without validation data, and after an early stop.
    stopped_step: the first step skipped by early stopping, or -1.
    initial_loss: the loss of the initial params (full-batch, the first step's;
      NaN for a custom ``loss_after`` solver without ``Solver.loss``).
    best_step: how many passes made ``best_params``: 0 for the initial params
      (full-batch, the first step's loss is theirs; with ``batch_size`` or an
      alternating solver they are scored before the first pass); 0 after any
      steps means that training never improved on its starting point.
  """

  params: Params
  best_params: Params
  best_loss: jax.Array  # shape=()
  losses: jax.Array  # shape=(steps,)
  diverged_step: jax.Array  # shape=(), int32
  validation_rmse: jax.Array  # shape=(steps,)
  stopped_step: jax.Array  # shape=(), int32
  initial_loss: jax.Array  # shape=()
  best_step: jax.Array  # shape=(), int32

  @property
  def diverged(self) -> jax.Array:
    """Whether the loss became NaN or inf, or grew by orders of magnitude
    (:data:`DIVERGENCE_GROWTH`), at some step."""
    return self.diverged_step >= 0


def train(
  params: Params,
  data,
  *,
  optimizer: optax.GradientTransformation | None = None,
  steps: int = 100,
  mask: ArrayLike | None = None,
  l2: ArrayLike = 0.0,
  l2_bias: ArrayLike | None = None,
  batch_size: int | None = None,
  key: ArrayLike | None = None,
  validation_data: Ratings | None = None,
  patience: int | None = None,
  scale: tuple[float, float] | None = None,
  progress: bool = False,
  chunk_size: int | None = None,
  objective: Objective | None = None,
  solver: solvers.Alternating | solvers.MiniBatch | None = None,
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

  Sharded ratings (:func:`mfjax.core.sharding.shard_ratings`) and sharded or
  replicated params (:func:`mfjax.core.sharding.shard_params`) train under plain
  ``jax.jit``: XLA partitions the program and adds the reductions; the result
  equals one device's up to the order of float sums.

  Before tracing, ``train`` compares :func:`mfjax.core.memory.memory_estimate` with
  the room (:func:`mfjax.core.memory.bytes_limit`: the memory a GPU reports, or
  for a CPU the host's memory or ``ulimit -v``) and warns with
  :class:`mfjax.core.memory.MemoryWarning` when it would not fit; ``chunk_size``
  or ``batch_size`` then bound the memory.

  Called outside ``jit``, ``train`` runs its array work (after the host checks)
  as one compiled program per shape and settings, kept for the next call
  (:mod:`mfjax.core.eager`; with ``progress`` or settings that hold arrays, op
  by op). Inside your ``jax.jit``, with ``steps``, ``optimizer``, ``objective``,
  ``solver``, ``batch_size``, ``chunk_size``, ``patience`` and ``progress``
  static, it traces once per shape and settings. It also runs under
  ``jax.vmap`` over the params (an ensemble of seeds), over ``l2`` or over the key.

  Args:
    params: initial parameters (see :func:`mfjax.init_params`); their ``mean`` is
      replaced.
    data: dense ratings ``[n_users, n_items]`` (0 marks a missing rating), or
      :class:`mfjax.Ratings` (with ``weights``, every sum is weighted; ratings
      of weight 0, such as padding, change nothing).
    optimizer: any optax ``GradientTransformation``. Default
      (:func:`mfjax.core.solvers.default_optimizer`): for a dense matrix ``optax.sgd``
      with momentum 0.8 and a learning rate scaled to the data; for ``Ratings``,
      ``optax.adam(0.01)``.
    steps: number of epochs (passes over the data), a static int >= 1.
    mask: dense data only: which entries the loss counts (see :func:`mfjax.loss`).
    l2: L2 weight of the factors >= 0 (see :func:`mfjax.loss`); may be traced.
    l2_bias: L2 weight of the biases; None means ``l2``.
    batch_size: ``Ratings`` only: mini-batch size; None means full-batch steps.
    key: a PRNG key for the shuffles; needed with ``batch_size``.
    validation_data: optional ``Ratings`` scored each epoch inside the scan. The
      best parameters are then those with the lowest validation RMSE.
    patience: with ``validation_data``, stop once the validation RMSE has not
      improved for this many epochs (the remaining epochs do no work).
    scale: ``(lo, hi)``: predictions are clipped to it when scoring validation.
    progress: show a tqdm progress bar, updated from the device after each epoch.
    objective: what to minimise (:mod:`mfjax.core.objectives`); None means
      :data:`mfjax.core.objectives.RATING`, the loss of :func:`mfjax.loss`. The
      returned params are of the objective's ``params_type``.
    chunk_size: ``Ratings`` and full-batch only: accumulate each step's loss and
      gradient over chunks of about this many ratings (a static int) instead of
      all at once. The step and its result are those of full-batch training (up
      to float rounding), but the per-rating temporaries (the gathered factor
      rows, ``2·rank·4`` bytes a rating and more) exist for one chunk at a
      time. Chunk ``j`` holds the ratings ``j, j + n_chunks, ...``, so that
      each chunk of sharded ratings is spread over all their devices.
    solver: None for optax steps on the gradient (``optimizer``), or
      :class:`mfjax.core.solvers.Alternating` for alternating least squares: each
      step solves every user's row, then every item's, with no learning rate.
      It needs an objective whose loss is quadratic in each side's rows (the
      built-in ones are) and no ``optimizer``, ``batch_size`` or
      ``chunk_size``. Or :class:`mfjax.core.solvers.MiniBatch`: mini-batch steps
      as ``batch_size`` gives them, over a possibly traced number of leading
      ratings (``n_data``; the rest is weight-0 padding), so that one program
      trains many data sizes.

  Returns:
    A :class:`TrainResult`. If the loss becomes NaN or inf, or grows to
    :data:`DIVERGENCE_GROWTH` times the initial params' loss, ``diverged_step``
    says where it went wrong; ``best_params`` still holds the best finite point,
    the initial params if nothing beat them (``best_step == 0``).

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
  objective = objectives.check_objective(objective)
  params = objectives.adopt(objective, params)
  shape = validation.check_params(params, formula=objective.params_type.formula)[:2]
  data, mask = validation.check_data(data, mask, shape)
  validation.check_something_to_train("data", data, mask)
  penalty = objectives.check_penalty(l2, l2_bias)
  steps = validation.check_positive_int("steps", steps)
  batch_size, chunk_size = _check_solver_args(
    data, optimizer, batch_size, key, chunk_size, solver
  )
  objectives.check_takes(objective, data, chunk_size, batch_size)
  patience, scale = _check_validation_args(shape, validation_data, patience, scale)
  sharding.check_placement(params, data, validation_data)
  memory.warn_if_too_big(
    params, data, optimizer=optimizer, batch_size=batch_size, chunk_size=chunk_size
  )

  settings = _Settings(
    objective, optimizer, steps, batch_size, chunk_size, solver, patience, scale
  )
  args = (params, data, mask, penalty, key, validation_data)
  if progress:  # The bar is this call's: no program kept across calls.
    bar = ProgressBar(steps, "mfjax train")
    return _train(settings, *args, bar=bar)
  # A given optimizer is usually made anew for each call: no program kept.
  return eager.call(_train, settings, *args, keep=optimizer is None)


class _Settings(NamedTuple):
  """What one compiled ``train`` program is specialised on (checked)."""

  objective: Objective
  optimizer: optax.GradientTransformation | None
  steps: int
  batch_size: int | None
  chunk_size: int | None
  solver: Any
  patience: int | None
  scale: tuple[float, float] | None


def _train(
  settings: _Settings,
  params: Params,
  data,
  mask,
  penalty,
  key,
  validation_data: Ratings | None,
  bar: ProgressBar | None = None,
) -> TrainResult:
  """:func:`train` after its host checks: traceable, the settings static."""
  objective, optimizer, steps, batch_size, chunk_size, solver, patience, scale = (
    settings
  )
  dtype = params.user_factors.dtype
  batch = objectives.batch_of(data, mask, dtype)
  if isinstance(data, Ratings):
    mean = kernels.ratings_mean(data, dtype)
  else:
    mean = kernels.observed_mean(batch.values).astype(dtype)
  if optimizer is None and not isinstance(solver, solvers.Alternating):
    optimizer = solvers.default_optimizer(batch)
  if isinstance(solver, solvers.Alternating):
    solver = solvers.alternating(objective, batch, penalty, solver)
    keys = jnp.arange(steps)
  elif batch_size is not None:
    given = solver if isinstance(solver, solvers.MiniBatch) else solvers.MiniBatch(1)
    # One key for the fit's order of the data, one per pass for its batches.
    keys = jax.random.split(key, steps + 1)
    order_key = keys[0] if given.order_key is None else given.order_key
    solver = solvers.minibatch(
      objective, data, penalty, optimizer, batch_size, dtype, given.n_data,
      key=order_key,
    )  # fmt: skip
    keys = keys[1:]
  else:
    if chunk_size is not None:
      solver = solvers.chunked(objective, batch, penalty, optimizer, chunk_size)
    else:
      solver = solvers.full_batch(objective, batch, penalty, optimizer)
    keys = jnp.arange(steps)
  score = None
  if validation_data is not None:
    score = lambda p: kernels.rmse(
      objective.predict_pairs(p, validation_data.users, validation_data.items),
      validation_data,
      scale,
    )
  params = objective.start(params._replace(mean=mean))
  return run(solver, params, keys, score=score, patience=patience, bar=bar)


def _check_solver_args(data, optimizer, batch_size, key, chunk_size, solver):
  """Host checks of the solver's settings; returns ``(batch_size, chunk_size)``."""
  sparse = isinstance(data, Ratings)
  if isinstance(solver, solvers.MiniBatch):
    if batch_size is not None or chunk_size is not None:
      raise ValueError(
        "solver=MiniBatch(...) sets the batch size; leave out batch_size and "
        "chunk_size."
      )
    if sparse and solver.n_data is not None:
      _check_n_data(data, solver.n_data)
    if not sparse:
      raise ValueError(
        "solver=MiniBatch(...) needs Ratings; a dense matrix trains full-batch."
      )
    batch_size, solver = solver.batch_size, None
  if solver is not None:
    if not isinstance(solver, solvers.Alternating):
      raise TypeError(
        "solver must be None (optax steps), mfjax.core.solvers.Alternating() or "
        f"mfjax.core.solvers.MiniBatch(); got {validation.describe(solver)}."
      )
    given = [
      n
      for n, v in [
        ("optimizer", optimizer),
        ("batch_size", batch_size),
        ("chunk_size", chunk_size),
      ]
      if v is not None
    ]
    if given:
      raise ValueError(
        f"solver=Alternating() solves each row exactly and takes no {given[0]}; "
        "leave it out."
      )
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
  if chunk_size is not None:
    chunk_size = validation.check_positive_int("chunk_size", chunk_size)
    if not sparse:
      raise ValueError("chunk_size needs Ratings; a dense matrix trains at once.")
    if batch_size is not None:
      raise ValueError(
        "chunk_size applies to full-batch steps; with batch_size each step sees "
        "one mini-batch already. Give one or the other."
      )
  return batch_size, chunk_size


def _check_n_data(ratings: Ratings, n_data) -> None:
  """A concrete ``n_data`` lies within the entries before the padding."""
  room = len(ratings) - ratings.n_padding
  if isinstance(n_data, int) and n_data > room:
    raise ValueError(
      f"MiniBatch.n_data is {n_data} but the ratings have {room} entries before "
      "their padding."
    )


def _check_validation_args(shape, validation_data, patience, scale):
  """Host checks of the validation settings; returns ``(patience, scale)``."""
  if validation_data is not None:
    validation.check_ratings(
      "validation_data", validation_data, allow_unknown=True, shape=shape
    )
  if patience is not None:
    patience = validation.check_positive_int("patience", patience)
    if validation_data is None:
      raise ValueError("patience (early stopping) needs validation_data.")
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  return patience, scale


def run(
  solver: Solver,
  params: Params,
  keys: jax.Array,
  *,
  score: Callable[[Params], jax.Array] | None = None,
  patience: int | None = None,
  bar: ProgressBar | None = None,
) -> TrainResult:
  """Scans ``solver.step`` once per key, carrying the best params: no host checks.

  Each step's params are scored (by ``score``, e.g. a validation RMSE, or by the
  step's loss) and kept when they beat the best so far. Full-batch, a step's
  loss belongs to the params before its update; with ``solver.loss_after`` to
  those after, and the initial params, scored by ``solver.loss``, are the first
  candidate. With ``patience``, once the score has not improved for that many
  steps the remaining ones do no work (``lax.cond``).

  Args:
    solver: the :class:`mfjax.core.solvers.Solver`.
    params: the initial params, their ``mean`` set.
    keys: one PRNG key (or index) per step; their number is the step count.
    score: ``params -> scalar``, lower is better; None ranks by the loss.
    patience: early stopping after this many steps without improvement.
    bar: a progress bar to update after each step.

  Returns:
    A :class:`TrainResult`.
  """
  dtype = params.user_factors.dtype
  n_steps = keys.shape[0]

  def body(state: TrainState, inputs):
    index, key = inputs
    stopped, new_params, solver_state, value = _step(solver, state, key, patience)
    scored = new_params if solver.loss_after else state.params
    rank_by = value if score is None else score(scored)
    better = (rank_by < state.best_score) & ~stopped  # False for NaN.
    made_by = index + int(solver.loss_after)  # Passes that made ``scored``.
    if solver.loss_after:
      # A last mini-batch update can break params whose epoch loss was finite.
      finite = [jnp.isfinite(x).all() for x in jax.tree.leaves(scored)]
      better = better & jnp.stack(finite).all()
    state = TrainState(
      params=new_params,
      solver_state=solver_state,
      best_params=optax.tree.where(better, scored, state.best_params),
      best_score=jnp.where(better, rank_by, state.best_score),
      best_loss=jnp.where(better, value, state.best_loss),
      since_best=jnp.where(better, 0, state.since_best + 1),
      best_step=jnp.where(better, made_by, state.best_step).astype(jnp.int32),
    )
    if bar is not None:
      jax.debug.callback(bar.update, index, value)
    return state, (value, jnp.where(stopped, jnp.nan, rank_by), stopped)

  init, initial_loss = _initial_state(solver, params, score)
  state, (losses, scores, stopped) = jax.lax.scan(
    body, init, (jnp.arange(n_steps), keys)
  )
  if initial_loss is None:  # Full-batch, the first step's loss is the initial one.
    initial_loss = jnp.full((), jnp.nan, dtype) if solver.loss_after else losses[0]
  elif score is None and not solver.exact:
    state = _no_worse_than_the_start(solver, state, params, initial_loss)
  grew = (initial_loss > 0) & (losses > DIVERGENCE_GROWTH * initial_loss)
  bad = (~jnp.isfinite(losses) | grew) & ~stopped
  return TrainResult(
    params=state.params,
    best_params=state.best_params,
    best_loss=state.best_loss,
    losses=losses,
    diverged_step=_first(bad),
    validation_rmse=scores if score is not None else jnp.full_like(losses, jnp.nan),
    stopped_step=_first(stopped),
    initial_loss=initial_loss,
    best_step=state.best_step,
  )


def _no_worse_than_the_start(solver, state: TrainState, start, initial_loss):
  """The best params, or the initial ones if those are in fact better.

  A mini-batch pass's loss is a mean taken along the pass, credited to the
  params at its end: with few batches a pass, the params a blow-up left can
  inherit the loss of the params before it. One more pass of ``solver.loss``
  scores the best params themselves.
  """
  actual = solver.loss(state.best_params)
  worse = ~(actual <= initial_loss) & (state.best_step > 0)
  return state._replace(
    best_params=optax.tree.where(worse, start, state.best_params),
    best_loss=jnp.where(worse, initial_loss, state.best_loss),
    best_step=jnp.where(worse, 0, state.best_step).astype(jnp.int32),
  )


def failure(result: TrainResult) -> str | None:
  """What went wrong in a (possibly stacked, e.g. an ensemble's) concrete
  :class:`TrainResult`, in words, or None if nothing did.

  Training failed when a step diverged (``diverged_step``: a NaN or inf loss, or
  one :data:`DIVERGENCE_GROWTH` times the initial) or when it never improved on
  the initial params (``best_step == 0`` after more than one step: the best
  params are the untrained ones). The first failed model of a stack speaks.
  """
  diverged = np.asarray(result.diverged_step).reshape(-1)  # Any stacking.
  best = np.asarray(result.best_step).reshape(-1)
  n_steps = np.shape(result.losses)[-1]
  losses = np.asarray(result.losses).reshape(len(diverged), n_steps)
  initial = np.asarray(result.initial_loss).reshape(-1)
  for j, (step, made) in enumerate(zip(diverged, best, strict=True)):
    model = f" (model {j + 1} of {len(diverged)})" if len(diverged) > 1 else ""
    if step >= 0:
      loss = losses[j, step]
      how = "became NaN or inf" if not np.isfinite(loss) else f"grew to {loss:.3g}"
      return (
        f"training diverged{model}: the loss {how} at step {step + 1} of "
        f"{n_steps} (initial loss {initial[j]:.4g})"
      )
    if made == 0 and n_steps > 1 and np.isfinite(initial[j]):
      return (
        f"training made no progress{model}: no step's params beat the initial "
        f"ones (initial loss {initial[j]:.4g})"
      )
  return None


def _initial_state(solver: Solver, params: Params, score):
  """``(TrainState, initial loss or None)`` before the first step.

  A solver whose passes report the loss after them (``loss_after``) and that can
  score params (``solver.loss``) makes the initial params the first candidate
  for the best; full-batch, the first step scores them.
  """
  dtype = params.user_factors.dtype
  inf = jnp.array(jnp.inf, dtype)
  best_score = best_loss = inf
  initial_loss = None
  if solver.loss_after and solver.loss is not None:
    initial_loss = jnp.asarray(solver.loss(params), dtype)
    best_loss = initial_loss
    best_score = initial_loss if score is None else jnp.asarray(score(params), dtype)
    best_score = jnp.where(jnp.isnan(best_score), inf, best_score)
  zero = jnp.array(0, jnp.int32)
  state = TrainState(
    params, solver.init(params), params, best_score, best_loss, zero, zero
  )
  return state, initial_loss


def _step(solver: Solver, state: TrainState, key, patience):
  """``(stopped, params, solver_state, loss)`` of one step, or of none if stopped."""
  if patience is None:
    return jnp.array(False), *solver.step(state.params, state.solver_state, key)
  stopped = state.since_best >= patience
  nan = jnp.full((), jnp.nan, state.params.user_factors.dtype)
  params, solver_state, value = jax.lax.cond(
    stopped,
    lambda: (state.params, state.solver_state, nan),
    lambda: solver.step(state.params, state.solver_state, key),
  )
  return stopped, params, solver_state, value


def _first(flags: jax.Array) -> jax.Array:
  """The index of the first True, or -1; int32."""
  return jnp.where(flags.any(), jnp.argmax(flags), -1).astype(jnp.int32)
