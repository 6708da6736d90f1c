"""The seed notebook, reproduced: its printed values and its training choices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mfjax

NB = mfjax.NOTEBOOK_PRINTED
MATRIX = mfjax.NOTEBOOK_MATRIX


def test_matrix_and_mu_are_the_notebooks():
  assert MATRIX.shape == (4, 6) and int((MATRIX == 0).sum()) == 1
  np.testing.assert_allclose(mfjax.observed_mean(MATRIX), 74 / 23, rtol=1e-6)


def test_printed_params_reproduce_printed_matrix():
  pred = mfjax.predict(mfjax.notebook_params(), bias="notebook", clip=(1, 5))
  np.testing.assert_allclose(pred, NB["prediction"], atol=1e-3)
  # The usual additive formula does not reproduce it.
  additive = mfjax.predict(mfjax.notebook_params(), clip=(1, 5))
  assert np.abs(np.asarray(additive) - NB["prediction"]).max() > 0.5


def test_printed_params_reproduce_printed_loss():
  everything = np.ones_like(MATRIX, bool)
  value = mfjax.loss(mfjax.notebook_params(), MATRIX, mask=everything, bias="notebook")
  assert abs(float(value) - 0.7130) < 1e-3


def test_reproduce_notebook_matches_the_notebook_loop_by_hand():
  """The notebook's loop in plain Python: .grad accumulates and is never zeroed."""
  key = jax.random.key(3)
  result = mfjax.reproduce_notebook(key)

  p = mfjax.init_params(key, 4, 6, 3, init="uniform", scale=1.0)
  P, Q = np.asarray(p.user_factors, np.float64), np.asarray(p.item_factors, np.float64)
  bu = np.asarray(p.user_bias, np.float64)[:, None]
  bi = np.asarray(p.item_bias, np.float64)[:, None]
  mu, lr = 74 / 23, 0.008
  grad_acc = [np.zeros_like(x) for x in (P, Q, bu, bi)]
  losses, best_loss, best = [], np.inf, None
  for _ in range(100):
    Bu = np.concatenate([bu, np.ones_like(bu)], axis=1)
    Bi = np.concatenate([bi, np.ones_like(bi)], axis=1)
    pred = mu + Bu @ Bi.T + P @ Q.T
    err = pred - MATRIX
    loss = np.mean(err**2)
    losses.append(loss)
    if best_loss > loss:
      best_loss, best = loss, (P.copy(), Q.copy(), bu.copy(), bi.copy())
    d = 2 * err / err.size  # nn.MSELoss gradient.
    grads = (d @ Q, d.T @ P, (d @ bi), (d.T @ bu))
    for acc, g in zip(grad_acc, grads, strict=True):
      acc += g  # loss.backward() adds to .grad
    P, Q, bu, bi = (
      x - lr * acc for x, acc in zip((P, Q, bu, bi), grad_acc, strict=True)
    )

  np.testing.assert_allclose(result.losses, losses, rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(result.best_loss, best_loss, rtol=2e-4)
  np.testing.assert_allclose(result.best_params.user_factors, best[0], atol=2e-3)
  np.testing.assert_allclose(result.best_params.item_bias, best[3][:, 0], atol=2e-3)
  assert result.best_params.mean == np.float32(74 / 23)


def _best_losses(optimizer, n=20):
  keys = jax.random.split(jax.random.key(2024), n)
  everything = np.ones_like(MATRIX, bool)

  def run(key):
    params = mfjax.init_params(key, 4, 6, 3, init="uniform", scale=1.0)
    return mfjax.train(
      params, MATRIX, optimizer=optimizer, mask=everything, bias="notebook"
    ).best_loss

  return np.asarray(jax.jit(jax.vmap(run))(keys))


def test_median_best_loss_over_20_keys_is_notebook_like():
  best = _best_losses(mfjax.notebook_optimizer())
  assert np.median(best) < 1.0  # The notebook printed 0.713.
  # reproduce_notebook is exactly this run.
  key = jax.random.split(jax.random.key(2024), 20)[0]
  np.testing.assert_allclose(
    mfjax.reproduce_notebook(key).best_loss, best[0], rtol=1e-5
  )


def test_without_gradient_accumulation_the_median_is_far_worse():
  best = _best_losses(optax.sgd(mfjax.notebook.NOTEBOOK_LEARNING_RATE))
  assert np.median(best) > 3.0


def test_reproduce_notebook_under_jit_and_shapes():
  result = jax.jit(mfjax.reproduce_notebook)(jax.random.key(0))
  eager = mfjax.reproduce_notebook(jax.random.key(0))
  np.testing.assert_allclose(result.losses, eager.losses, rtol=1e-5)
  assert result.best_params.user_factors.shape == (4, 3)
  assert float(result.best_loss) == float(jnp.min(result.losses))
