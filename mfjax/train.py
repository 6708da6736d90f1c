"""Training: one ``lax.scan`` of optax steps that also carries the best parameters."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from mfjax import model, validation
from mfjax.model import Params

__all__ = [
  "TrainResult",
  "train",
  "default_learning_rate",
  "default_optimizer",
  "observed_mean",
]


class TrainResult(NamedTuple):
  """What :func:`train` returns; a pytree, so it passes through ``jit``/``vmap``.

  Attributes:
    params: the parameters after the last step.
    best_params: the parameters with the lowest loss seen. As in the notebook, a
      step's loss is computed before its update, so these are the parameters that
      produced ``best_loss``. Never non-finite unless the initial loss was.
    best_loss: the lowest finite loss seen (``inf`` if none was finite).
    losses: the loss at each step, before that step's update.
    diverged_step: the first step whose loss was NaN or inf, or -1 if none was.
  """

  params: Params
  best_params: Params
  best_loss: jax.Array  # shape=()
  losses: jax.Array  # shape=(steps,)
  diverged_step: jax.Array  # shape=(), int32

  @property
  def diverged(self) -> jax.Array:
    """Whether the loss became NaN or inf at some step."""
    return self.diverged_step >= 0


DEFAULT_MOMENTUM = 0.8
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
    from tqdm.auto import tqdm  # Imported only when a bar is shown.

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


def train(
  params: Params,
  data: ArrayLike,
  *,
  optimizer: optax.GradientTransformation | None = None,
  steps: int = 100,
  mask: ArrayLike | None = None,
  l2: ArrayLike = 0.0,
  bias: str = "additive",
  progress: bool = False,
) -> TrainResult:
  """Trains ``params`` on a dense rating matrix by full-batch gradient steps.

  Each of the ``steps`` steps, inside one ``lax.scan``, takes the loss and gradient
  of :func:`mfjax.loss` with ``jax.value_and_grad``, keeps the pre-update parameters
  when their loss is the lowest so far, and applies an optax update. ``mean`` is set
  to the mean of the non-zero entries of ``data`` (the notebook's ``mu``) whatever
  ``mask`` says, and is never trained.

  ``train`` is not jitted; wrap it in ``jax.jit`` with ``steps``, ``optimizer``,
  ``bias`` and ``progress`` static. It traces once per shape and settings. It also
  runs under ``jax.vmap`` over the params (an ensemble of seeds) or over ``l2``.

  Args:
    params: initial parameters (see :func:`mfjax.init_params`); their ``mean`` is
      replaced.
    data: dense ratings ``[n_users, n_items]``; 0 marks a missing rating.
    optimizer: any optax ``GradientTransformation``. Default:
      :func:`default_optimizer`, ``optax.sgd`` with momentum 0.8 and a learning rate
      scaled to the data (:func:`default_learning_rate`).
    steps: number of steps, a static int >= 1.
    mask: which entries the loss counts (see :func:`mfjax.loss`).
    l2: L2 weight >= 0 (see :func:`mfjax.loss`); may be traced.
    bias: ``"additive"`` or ``"notebook"``.
    progress: show a tqdm progress bar, updated from the device after each step.

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
  n_users, n_items, _ = validation.check_params(params)
  data, mask = validation.check_dense(data, mask, (n_users, n_items))
  steps = validation.check_positive_int("steps", steps)
  validation.check_nonnegative("l2", l2)
  validation.check_choice("bias", bias, model.BIASES)
  if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(
      "optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-2)); "
      f"got {type(optimizer).__name__}."
    )

  dtype = params.user_factors.dtype
  data = jnp.asarray(data, dtype)
  if optimizer is None:
    optimizer = _default_sgd(data, mask)
  mean = _observed_mean(data).astype(dtype)
  params = params._replace(mean=mean)
  loss_fn = lambda p: model._loss(p, data, mask, l2, bias)
  objective = jax.value_and_grad(loss_fn)
  # Line-search optimizers (optax.lbfgs, ...) want the value and the function too.
  extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)
  bar = _ProgressBar(steps, "mfjax train") if progress else None

  def step(carry, index):
    params, opt_state, best_params, best_loss = carry
    value, grads = objective(params)
    grads = grads._replace(mean=jnp.zeros_like(mean))
    better = value < best_loss  # False for NaN, so best stays finite.
    best_params = optax.tree.where(better, params, best_params)
    best_loss = jnp.where(better, value, best_loss)
    if extra_args:
      updates, opt_state = optimizer.update(
        grads, opt_state, params, value=value, grad=grads, value_fn=loss_fn
      )
    else:
      updates, opt_state = optimizer.update(grads, opt_state, params)
    # The mean is data, not a parameter: undo whatever the optimizer did to it.
    params = optax.apply_updates(params, updates)._replace(mean=mean)
    if bar is not None:
      jax.debug.callback(bar.update, index, value)
    return (params, opt_state, best_params, best_loss), value

  init = (params, optimizer.init(params), params, jnp.array(jnp.inf, dtype))
  (params, _, best_params, best_loss), losses = jax.lax.scan(
    step, init, jnp.arange(steps)
  )
  bad = ~jnp.isfinite(losses)
  diverged_step = jnp.where(bad.any(), jnp.argmax(bad), -1).astype(jnp.int32)
  return TrainResult(params, best_params, best_loss, losses, diverged_step)
