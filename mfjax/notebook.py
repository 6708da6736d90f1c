"""The seed PyTorch notebook, reproduced exactly, and the values it printed.

The notebook (``shared/seed/notebook.txt``) trains a rank-3 factorisation of a 4×6
matrix with these choices, all kept by :func:`reproduce_notebook`:

* prediction ``mu + [bu, 1] @ [bi, 1].T + P @ Q.T``, i.e. ``mu + bu·biᵀ + 1 + P Qᵀ``
  (:class:`NotebookParams`, :data:`OBJECTIVE`), with ``mu`` the mean of the
  non-zero ratings (74/23);
* ``nn.MSELoss`` over all 24 entries, the missing 0 included (``mask`` all ones);
* ``torch.rand`` init, uniform on [0, 1), for P, Q, bu and bi;
* 100 steps of ``p -= 0.008 * p.grad`` without ever zeroing ``.grad``, so each step
  applies the running sum of all gradients so far: ``optax.sgd(0.008, momentum=1.0)``;
* the parameters with the lowest (pre-update) loss are kept.

The notebook's formula is not mfjax's: its params are :class:`NotebookParams`,
which :func:`predict` here scores, and which every other function of mfjax
(``mfjax.predict``, ``recommend``, ``rmse``, ``save``, ...) refuses with a
``ValueError`` rather than scoring them with the wrong formula.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from mfjax import validation
from mfjax.core import kernels, model, training
from mfjax.core.objectives import SquaredError
from mfjax.core.training import TrainResult
from mfjax.types import Params

__all__ = [
  "MATRIX",
  "RANK",
  "LEARNING_RATE",
  "STEPS",
  "PRINTED",
  "NotebookParams",
  "NotebookSquaredError",
  "OBJECTIVE",
  "predict",
  "optimizer",
  "printed_params",
  "reproduce_notebook",
]

MATRIX = np.array(
  [
    [5, 2, 4, 3, 2, 3],
    [4, 3, 5, 4, 3, 2],
    [1, 5, 3, 4, 4, 5],
    [1, 0, 2, 3, 4, 2],
  ],
  dtype=np.float32,
)
RANK = 3
LEARNING_RATE = 0.008
STEPS = 100

# What the notebook printed (cells 4-6), for comparison and for the tests.
PRINTED = {
  "best_loss": 0.7129956483840942,
  # Cell 4 printed the first 54 of its 100 losses.
  "losses": np.array(
    [
      5.815906524658203,
      5.760279655456543,
      5.653106689453125,
      5.498923301696777,
      5.304213047027588,
      5.078001976013184,
      4.828884124755859,
      4.567636013031006,
      4.30161714553833,
      4.038580894470215,
      3.7856173515319824,
      3.547283887863159,
      3.327199935913086,
      3.1278090476989746,
      2.949627637863159,
      2.7935123443603516,
      2.6581802368164062,
      2.542518138885498,
      2.444793224334717,
      2.363454818725586,
      2.2961463928222656,
      2.240525007247925,
      2.194373607635498,
      2.1551785469055176,
      2.120570659637451,
      2.0874528884887695,
      2.0530571937561035,
      2.014777660369873,
      1.9694818258285522,
      1.9147355556488037,
      1.847806692123413,
      1.767179250717163,
      1.672750473022461,
      1.5654308795928955,
      1.447908639907837,
      1.3254187107086182,
      1.2046213150024414,
      1.0952690839767456,
      1.0078500509262085,
      0.9529324769973755,
      0.9407093524932861,
      0.9766510725021362,
      1.0614789724349976,
      1.1885228157043457,
      1.3424434661865234,
      1.5012110471725464,
      1.6367125511169434,
      1.7181706428527832,
      1.7239031791687012,
      1.6405357122421265,
      1.4742152690887451,
      1.2520241737365723,
      1.014551043510437,
      0.8154513835906982,
    ],
    dtype=np.float32,
  ),
  "user_factors": np.array(
    [
      [-1.0555, -2.4306, -1.2819],
      [-0.7446, -1.8783, -1.2457],
      [-3.2433, -1.9906, -0.1469],
      [-4.3032, -3.4648, -2.3825],
    ],
    dtype=np.float32,
  ),
  "item_factors": np.array(
    [
      [1.6477, -0.5807, -0.7546],
      [-0.3543, -0.0238, 0.4515],
      [0.4147, -0.0974, -0.0741],
      [-0.2958, 0.3857, -0.2541],
      [-0.1695, 0.9232, 0.0155],
      [-0.3522, 0.3861, 1.0840],
    ],
    dtype=np.float32,
  ),
  "user_bias": np.array([-1.9964, -1.5842, -0.8658, -3.9659], dtype=np.float32),
  "item_bias": np.array(
    [-0.1801, 0.9815, -0.1303, 0.5197, 0.0578, 0.1122], dtype=np.float32
  ),
  "prediction": np.array(
    [
      [5.0000, 2.1110, 4.3714, 2.8802, 2.0172, 2.0370],
      [5.0000, 2.4086, 4.3902, 3.2064, 2.4987, 2.2263],
      [1.0000, 4.4978, 3.1898, 3.9965, 2.8772, 4.3347],
      [1.6509, 1.0000, 3.4633, 2.6983, 1.4821, 1.3675],
    ],
    dtype=np.float32,
  ),
}


class NotebookParams(Params):
  """:class:`mfjax.Params` that predict with the notebook's formula.

  ``mu + [bu, 1] @ [bi, 1].T + P @ Q.T`` expands to ``mean + b_u·b_i + 1 +
  p_u·q_i``: a product of the biases plus one, not their sum. Only this module's
  functions take them; convert with ``mfjax.Params(*params)`` to mean otherwise.
  """

  __slots__ = ()
  formula = "mean + user_bias·item_bias + 1 + user_factors·item_factors"


def _combine(mean, user_bias, item_bias, dot):
  return mean + user_bias * item_bias + 1.0 + dot


@dataclasses.dataclass(frozen=True)
class NotebookSquaredError(SquaredError):
  """The rating objective with the notebook's formula (``NotebookParams``)."""

  params_type = NotebookParams

  def predict_pairs(self, params, users, items):
    gather = kernels.gather
    dot = jnp.sum(
      gather(params.user_factors, users) * gather(params.item_factors, items), -1
    )
    user_bias, item_bias = (
      gather(params.user_bias, users),
      gather(params.item_bias, items),
    )
    return _combine(params.mean, user_bias, item_bias, dot)

  def predict_matrix(self, params):
    dot = kernels.dense_dot(params.user_factors, params.item_factors)
    return _combine(params.mean, params.user_bias[:, None], params.item_bias[None], dot)


OBJECTIVE = NotebookSquaredError()
"""The notebook's objective: squared error of its formula, for ``mfjax.train``."""


def predict(
  params: NotebookParams, *, scale: tuple[float, float] | None = None
) -> jax.Array:
  """The full matrix the notebook's formula predicts, clipped to ``scale`` if given.

  Examples:
    >>> import jax, mfjax
    >>> from mfjax import notebook
    >>> notebook.predict(notebook.printed_params(), scale=(1, 5)).shape
    (4, 6)
  """
  validation.check_params(params, formula=NotebookParams.formula)
  if scale is not None:
    scale = validation.check_scale("scale", scale)
  out = OBJECTIVE.predict_matrix(params)
  return out if scale is None else jnp.clip(out, scale[0], scale[1])


def optimizer(learning_rate: float = LEARNING_RATE) -> optax.GradientTransformation:
  """The notebook's update, ``p -= lr * p.grad`` with ``.grad`` never zeroed.

  Gradients accumulate in ``.grad``, so step ``t`` applies ``lr * Σ_{s<=t} g_s``:
  exactly SGD with momentum 1 (``optax.trace(decay=1)``).
  """
  validation.check_nonnegative("learning_rate", learning_rate)
  return optax.sgd(learning_rate, momentum=1.0)


def printed_params() -> NotebookParams:
  """The parameters the notebook printed (cell 5), with its ``mu = 74/23``."""
  return NotebookParams(
    user_factors=PRINTED["user_factors"],
    item_factors=PRINTED["item_factors"],
    user_bias=PRINTED["user_bias"],
    item_bias=PRINTED["item_bias"],
    mean=kernels.observed_mean(MATRIX),
  )


def reproduce_notebook(
  key: ArrayLike, *, steps: int = STEPS, progress: bool = False
) -> TrainResult:
  """Runs the seed notebook: same matrix, same model, same loss, same updates.

  Args:
    key: a JAX PRNG key for the uniform [0, 1) init (the notebook's
      ``torch.rand``; its own draws cannot be replayed, so the losses differ from
      the printed ones by the luck of the init).
    steps: number of steps; the notebook ran 100.
    progress: show a progress bar.

  Returns:
    The :class:`mfjax.TrainResult`, with :class:`NotebookParams`.
    ``mfjax.notebook.predict(result.best_params, scale=(1, 5))`` is the notebook's
    final printed matrix.

  Examples:
    >>> import jax, mfjax
    >>> result = mfjax.reproduce_notebook(jax.random.key(0))
    >>> result.losses.shape
    (100,)
  """
  n_users, n_items = MATRIX.shape
  params = model.init_params(
    key, n_users, n_items, RANK, init="uniform", init_scale=1.0
  )
  return training.train(
    params,
    MATRIX,
    optimizer=optimizer(),
    steps=steps,
    mask=np.ones_like(MATRIX, dtype=bool),
    objective=OBJECTIVE,
    progress=progress,
  )
