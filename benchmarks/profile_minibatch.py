"""What one mini-batch step of the default fit costs, part by part (ML-100k u1).

The default rating fit is 8 models × 10 epochs × 20 mini-batches of 4,096
ratings. This times 200 steps of one model (a ``lax.scan``, compiled, median of
``--repeats``) cut at three points, so that the differences price each part:

1. ``forward``: gather the batch's user and item rows and biases, predict, the
   loss with the L2 penalty over the whole tables;
2. ``+ backward``: the gradient (the gathers' transposes: scatter-adds into
   zeroed tables);
3. ``+ adam``: the optax Adam update of every table (what a step costs in all);

and the same three for the 8 models under ``vmap``, as ``fit`` runs them.

With ``--synthetic``, the same on the 1M-rating synthetic file of
``peers_movielens.py`` (900,000 training ratings, 19,955 × 5,000), with the batch
that ``fit`` takes there (43,690, ``ensemble.batch_size_for``) and as many steps
as its 10 epochs make (210).

Usage: python benchmarks/profile_minibatch.py [--data ../shared/data/ml-100k]
                                              [--synthetic] [--repeats 7]
                                              [--models 1,8]
       python benchmarks/run.py profile_minibatch [--quick] [...]
Writes benchmarks/results/profile_minibatch/ (harness.Record).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import harness
import jax
import jax.numpy as jnp
import optax

import mfjax
from mfjax.core import objectives


def programs(ratings, batch_size, steps):
  pairs = objectives.batch_of(ratings, None, jnp.float32)
  penalty = objectives.Penalty(8.0, 1.0)
  n = len(ratings)
  optimizer = optax.adam(0.02)
  starts = (jnp.arange(steps) * 7919 * batch_size) % (n - batch_size)

  def batch_loss(params, start):
    take = lambda x: jax.lax.dynamic_slice_in_dim(x, start, batch_size)
    batch = objectives.Pairs(
      take(pairs.users), take(pairs.items), take(pairs.values),
      take(pairs.weights), pairs.total,
    )  # fmt: skip
    return objectives.RATING.loss(params, batch, penalty)

  def forward(params):
    return jax.lax.scan(lambda p, s: (p, batch_loss(p, s)), params, starts)[1].sum()

  def backward(params):
    def body(p, s):
      value, grads = jax.value_and_grad(batch_loss)(p, s)
      return p, value + jax.tree.leaves(grads)[0].sum()

    return jax.lax.scan(body, params, starts)[1].sum()

  def adam(params):
    def body(carry, s):
      p, state = carry
      value, grads = jax.value_and_grad(batch_loss)(p, s)
      updates, state = optimizer.update(grads, state, p)
      return (optax.apply_updates(p, updates), state), value

    return jax.lax.scan(body, (params, optimizer.init(params)), starts)[1].sum()

  return {"forward": forward, "+ backward": backward, "+ adam": adam}


def timed(fn, args, repeats):
  """Timing of the compiled ``fn``: one untimed (cold) run, then ``repeats``."""
  compiled = jax.jit(fn).lower(*args).compile()
  return harness.time_calls(lambda: compiled(*args), repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=Path, default=None)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--batch-size", type=int, default=None)
  parser.add_argument("--synthetic", action="store_true")
  parser.add_argument("--models", default="1,8", help="1: one model; 8: vmapped")
  args = parser.parse_args()
  record = harness.Record("profile_minibatch", args)
  if args.synthetic:
    full, _ = mfjax.synthetic_ratings(jax.random.key(0), 20000, 5000, 1000000, 8)
    ratings, _ = mfjax.train_test_split(full, test_fraction=0.1, seed=0)
    args.batch_size = args.batch_size or 43690
    steps = 10 * -(-len(ratings) // args.batch_size)
  else:
    ratings, _ = mfjax.load_ratings(harness.data_dir(args.data) / "u1.base")
    args.batch_size = args.batch_size or 4096
    steps = 200
  params = mfjax.init_params(jax.random.key(0), ratings.n_users, ratings.n_items, 12)
  stacked = jax.vmap(
    lambda k: mfjax.init_params(k, ratings.n_users, ratings.n_items, 12)
  )(jax.random.split(jax.random.key(0), 8))
  print(f"load {os.getloadavg()}; {steps} steps of {args.batch_size} ratings, rank 12")
  previous = {}
  which = args.models.split(",")
  for models, start in (("1 model", params), ("8 models (vmap)", stacked)):
    if models[0] not in which:
      continue
    for name, fn in programs(ratings, args.batch_size, steps).items():
      run = (
        fn if models == "1 model" else (lambda f: lambda p: jax.vmap(f)(p).sum())(fn)
      )
      t = timed(run, (start,), args.repeats)
      median, low = t.median, t.min
      record.results[f"{models}, {name}"] = t
      extra = median - previous.get(models, 0.0)
      previous[models] = median
      per = 1e9 * extra / (steps * args.batch_size * (8 if "8" in models else 1))
      print(
        f"{models:16s} {name:11s} median {median:.3f} s (min {low:.3f}); this part "
        f"{extra:.3f} s, {per:.1f} ns per rating and model"
      )
  print(f"load {os.getloadavg()}")
  record.write()


if __name__ == "__main__":
  main()
