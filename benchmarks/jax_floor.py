"""The least a JAX fit of one MovieLens split can cost as a whole process: the
floor under ``mfjax fit``'s first run in ``benchmarks/cold_start.py``.

No mfjax: imports jax and optax, reads ``uN.base`` and ``uN.test`` with NumPy,
fits a biased rank-12 factorisation by 100 full-batch Adam steps in one jitted
``lax.scan`` (the smallest program a fit can be: no mini-batches, ensemble,
early stopping or checks), and prints the test RMSE and where the time went.
Its settings (learning rate 0.05, L2 0.05 per rating) are not tuned: its time
is what it measures (test RMSE about 0.99 on u1).
Run it with ``JAX_ENABLE_COMPILATION_CACHE=false`` (cold_start.py does) so
that nothing is read from a cache.

Usage: python benchmarks/jax_floor.py DATA_DIR u1
"""

import sys
import time

start = time.perf_counter()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

imported = time.perf_counter()
STEPS, LEARNING_RATE, L2 = 100, 0.05, 0.05


def main():
  folder, split = sys.argv[1], sys.argv[2]
  base = np.loadtxt(f"{folder}/{split}.base", dtype=np.int64)[:, :3]
  test = np.loadtxt(f"{folder}/{split}.test", dtype=np.int64)[:, :3]
  n_users, n_items = int(base[:, 0].max()) + 1, int(base[:, 1].max()) + 1
  users, items = jnp.asarray(base[:, 0]), jnp.asarray(base[:, 1])
  ratings = jnp.asarray(base[:, 2], jnp.float32)
  mean = ratings.mean()
  optimizer = optax.adam(LEARNING_RATE)

  def loss(p):
    pu, qi, bu, bi = p["u"][users], p["i"][items], p["bu"][users], p["bi"][items]
    pred = mean + bu + bi + jnp.sum(pu * qi, axis=1)
    # As Surprise's SVD: L2 times each rating's squared parameters.
    penalty = jnp.sum(pu**2 + qi**2, axis=1) + bu**2 + bi**2
    return jnp.mean((pred - ratings) ** 2 + L2 * penalty)

  @jax.jit
  def fit(key):
    ku, ki = jax.random.split(key)
    p = {
      "u": 0.1 * jax.random.normal(ku, (n_users, 12)),
      "i": 0.1 * jax.random.normal(ki, (n_items, 12)),
      "bu": jnp.zeros(n_users),
      "bi": jnp.zeros(n_items),
    }

    def step(carry, _):
      p, state = carry
      grads = jax.grad(loss)(p)
      updates, state = optimizer.update(grads, state, p)
      return (optax.apply_updates(p, updates), state), None

    (p, _), _ = jax.lax.scan(step, (p, optimizer.init(p)), None, length=STEPS)
    return p

  loaded = time.perf_counter()
  compiled = fit.lower(jax.random.key(0)).compile()
  built = time.perf_counter()
  p = jax.block_until_ready(compiled(jax.random.key(0)))
  fitted = time.perf_counter()
  # Scored in NumPy: JAX op by op would compile each operation (~0.7 s).
  p = {name: np.asarray(x) for name, x in p.items()}
  u, i = np.clip(test[:, 0], 0, n_users - 1), np.clip(test[:, 1], 0, n_items - 1)
  pred = float(mean) + p["bu"][u] + p["bi"][i] + np.sum(p["u"][u] * p["i"][i], axis=1)
  rmse = float(np.sqrt(np.mean((np.clip(pred, 1, 5) - test[:, 2]) ** 2)))
  print(
    f"test RMSE {rmse:.4f}; import {imported - start:.2f} s, load "
    f"{loaded - imported:.2f} s, trace and compile {built - loaded:.2f} s, "
    f"fit {fitted - built:.2f} s, score {time.perf_counter() - fitted:.2f} s"
  )


if __name__ == "__main__":
  main()
