"""The demo's rank, L2 and steps, chosen on validation splits of its training
ratings only (the held-out fifth that ``mfjax demo`` scores is never read).

For seeds 0-2 of the generated catalogue (mfjax.cli.films), a fifth of each
seed's training ratings is held out again as validation; every setting of the
grid trains on the rest (``mfjax.train``, dense, full batch) and the mean
validation RMSE is printed, best first.

Usage: python benchmarks/tune_demo.py
       python benchmarks/run.py tune_demo
Writes benchmarks/results/tune_demo/ (harness.Record).
"""

from __future__ import annotations

import itertools

import harness
import jax
import jax.numpy as jnp
import numpy as np

import mfjax
from mfjax.cli import films

RANKS = (2, 3, 4, 6, 8)
L2S = (0.01, 0.03, 0.1, 0.3)
STEPS = (150, 300, 600)


def validation_rmse(data: films.Films, rank: int, l2: float, steps: int, seed: int):
  train = data.matrix(held_out=False)
  rng = np.random.default_rng(100 + seed)
  observed = np.argwhere(train != 0)
  held = observed[rng.random(len(observed)) < 0.2]
  valid = np.zeros_like(train)
  valid[held[:, 0], held[:, 1]] = train[held[:, 0], held[:, 1]]
  fit = train.copy()
  fit[held[:, 0], held[:, 1]] = 0

  @jax.jit
  def run(key, fit, valid, l2):
    params = mfjax.init_params(key, *fit.shape, rank)
    best = mfjax.train(params, fit, steps=steps, l2=l2).best_params
    predicted = mfjax.predict(best, scale=(1, 5))
    seen = valid != 0
    return jnp.sqrt(jnp.sum(jnp.where(seen, (predicted - valid) ** 2, 0)) / seen.sum())

  return float(run(jax.random.key(seed), fit, valid, l2))


def main():
  record = harness.Record("tune_demo", {})
  datasets = [films.generate(seed) for seed in range(3)]
  rows = []
  for rank, l2, steps in itertools.product(RANKS, L2S, STEPS):
    scores = [validation_rmse(d, rank, l2, steps, s) for s, d in enumerate(datasets)]
    rows.append((float(np.mean(scores)), rank, l2, steps))
    record.results[f"rank {rank} l2 {l2} steps {steps}"] = scores
  for mean, rank, l2, steps in sorted(rows)[:10]:
    print(f"rank {rank:2d}  l2 {l2:5.2f}  steps {steps:4d}  validation RMSE {mean:.4f}")
  record.write()


if __name__ == "__main__":
  main()
