"""``mfjax demo``: a recommender fitted on a generated film catalogue, shown as
a user sees it (their ratings, their top 10, a film's neighbours, the test
RMSE); ``mfjax demo --notebook`` replays the seed notebook in JAX, then
mfjax's defaults on the same matrix, and how the two differ.
"""

from __future__ import annotations

from mfjax.cli import options

__all__ = ["add_parser", "run"]


# XLA options that trade run time for compile time, for tiny one-off programs.
# (Not the fusion emitters' switch: a program compiled without them fails when
# read back from disk, which compiles with the process's flags.)
FAST_COMPILE = {"xla_backend_optimization_level": 0}

# The film demo's model, chosen on validation splits of the generated training
# ratings only (benchmarks/tune_demo.py; RESULTS.md "The demo").
RANK, L2, STEPS = 3, 0.3, 150
USER = 7  # Whose ratings and top 10 the demo shows (the seed changes them).


def add_parser(sub) -> None:
  """Registers ``mfjax demo``."""
  demo = sub.add_parser(
    "demo",
    help="fit a generated film catalogue and show recommendations",
    description=(
      "Generate 300 users' ratings of 120 made-up films (six genres; no data "
      "file needed), fit a biased matrix factorisation on four fifths, and show "
      "one user's ratings, their top 10, a film's nearest films and the RMSE "
      "on the held-out fifth. With --notebook: reproduce the seed PyTorch "
      "notebook instead (notebook bias formula, loss over all 24 entries, lr "
      "0.008, gradients never zeroed, best-loss carry), then train the same "
      "matrix with mfjax's defaults and show how the two differ."
    ),
  )
  demo.add_argument(
    "--seed",
    type=options.seed,
    default=0,
    help="random seed of the data and the init (default 0)",
  )
  demo.add_argument(
    "--notebook",
    action="store_true",
    help="replay the seed notebook instead (its 4x6 matrix and printed losses)",
  )
  demo.add_argument(
    "--progress", action="store_true", help="show progress bars while training"
  )


def run(args) -> int:
  """``mfjax demo``: the film recommender, or with ``--notebook`` the replay."""
  if args.notebook:
    return _notebook(args)
  return _films(args)


def _compiled(program, inputs: tuple, recipe: tuple, progress: bool):
  """``program`` compiled for speed of compilation (at these sizes compiling is
  most of the run: 0.19 s against 0.78 s with XLA's defaults for the notebook's,
  benchmarks/RESULTS.md), kept on disk for the next run (cli.programs) unless
  it shows a progress bar."""
  import jax

  from mfjax.cli import programs

  def compile_fast(program, inputs):
    lowered = program.lower(*inputs)
    try:
      return lowered.compile(FAST_COMPILE)
    except jax.errors.JaxRuntimeError:  # An XLA that lacks one of these options.
      return lowered.compile()

  if progress:
    return compile_fast(program, inputs)
  recipe = (*recipe, sorted(FAST_COMPILE.items()))
  return programs.compile_or_load(program, inputs, recipe, compile=compile_fast)


def _films(args) -> int:
  import time

  import jax
  import jax.numpy as jnp

  import mfjax
  from mfjax.cli import films

  start = time.perf_counter()
  data = films.generate(args.seed)
  train, test = data.matrix(held_out=False), data.matrix(held_out=True)
  n_users, n_items = train.shape

  def fit(key, train, test):
    params = mfjax.init_params(key, n_users, n_items, RANK)
    result = mfjax.train(params, train, steps=STEPS, l2=L2, progress=args.progress)
    predicted = mfjax.predict(result.best_params, scale=(1, 5))
    seen = test != 0
    rmse = jnp.sqrt(jnp.sum(jnp.where(seen, (predicted - test) ** 2, 0)) / seen.sum())
    return result.best_params, predicted, rmse, result.diverged

  inputs = (jax.random.key(args.seed), train, test)
  recipe = ("demo films", n_users, n_items, RANK, L2, STEPS)
  program = _compiled(jax.jit(fit), inputs, recipe, args.progress)
  params, predicted, rmse, diverged = jax.device_get(program(*inputs))
  seconds = time.perf_counter() - start
  _print_films(args.seed, data, train, test, params, predicted, float(rmse), seconds)
  if diverged:
    print(
      "warning: the training loss became non-finite; the best finite point is shown"
    )
  return 0


def _print_films(seed, data, train, test, params, predicted, rmse, seconds) -> None:
  import numpy as np

  titles, genres = data.titles, data.genres
  n_train, n_test = int((train != 0).sum()), int((test != 0).sum())
  print(f"mfjax demo: a recommender for a made-up film catalogue (seed {seed})")
  print(
    f"  {data.n_users} users rated {len(titles)} generated films in "
    f"{len(set(genres))} genres: {n_train} ratings to train on, {n_test} held out."
  )
  print(
    f"  model: mean + user bias + film bias + user·film factors (rank {RANK}, "
    f"L2 {L2}), {STEPS} full-batch steps of mfjax.train; {seconds:.1f} s from "
    "the data to the predictions."
  )
  seen = test != 0
  n_rated = (train != 0).sum(0)  # A film nobody rated: the overall mean.
  film_mean = np.where(
    n_rated > 0, train.sum(0) / np.maximum(n_rated, 1), train[train != 0].mean()
  )
  baseline = np.sqrt(np.mean((film_mean[None, :] - test)[seen] ** 2))
  print(
    f"\ntest RMSE {rmse:.3f} on the held-out ratings (predicting each film's mean "
    f"rating instead: {baseline:.3f})"
  )

  rated = np.flatnonzero(train[USER])
  rated = rated[np.argsort(-train[USER, rated], kind="stable")]
  print(f"\nuser {USER} rated {len(rated)} films; their favourites:")
  for item in rated[:8]:
    print(f"  {'*' * int(train[USER, item]):5s}  {titles[item]:20s} {genres[item]}")
  scores = np.where(train[USER] != 0, -np.inf, predicted[USER])
  top = np.argsort(-scores, kind="stable")[:10]
  print(
    f"\ntop 10 for user {USER} among the films they have not rated (predicted stars):"
  )
  for item in top:
    print(f"  {predicted[USER, item]:4.2f}  {titles[item]:20s} {genres[item]}")

  item = rated[0]
  factors = np.asarray(params.item_factors)
  unit = factors / np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-12)
  similarity = unit @ unit[item]
  similarity[item] = -np.inf
  near = np.argsort(-similarity, kind="stable")[:5]
  print(
    f'\nfilms nearest "{titles[item]}" ({genres[item]}; cosine of the film factors):'
  )
  for other in near:
    print(f"  {similarity[other]:6.3f}  {titles[other]:20s} {genres[other]}")
  print(
    "\nOn your own ratings: mfjax fit FILE --test TEST --save model.npz, then "
    "mfjax recommend model.npz --user ID.\nmfjax demo --notebook replays the seed "
    "PyTorch notebook."
  )


def _notebook(args) -> int:
  """``mfjax demo --notebook``: the notebook's run and the defaults', in one
  compiled program."""
  import jax

  import mfjax
  from mfjax import notebook

  matrix = notebook.MATRIX
  n_users, n_items = matrix.shape
  key = jax.random.key(args.seed)

  def both_runs(key):
    reproduced = mfjax.reproduce_notebook(key, progress=args.progress)
    params = mfjax.init_params(key, n_users, n_items, notebook.RANK)
    defaults = mfjax.train(params, matrix, progress=args.progress)
    return (
      reproduced,
      notebook.predict(reproduced.best_params, scale=(1, 5)),
      defaults,
      mfjax.predict(defaults.best_params, scale=(1, 5)),
    )

  compiled = _compiled(jax.jit(both_runs), (key,), ("demo notebook",), args.progress)
  nb, nb_pred, ours, ours_pred = jax.device_get(compiled(key))
  _print_notebook_run(args.seed, nb, nb_pred, matrix)
  _print_defaults_run(nb_pred, ours, ours_pred, matrix)
  return 0


def _print_notebook_run(seed, nb, nb_pred, matrix) -> None:
  import numpy as np

  from mfjax import notebook

  nb_losses = np.asarray(nb.losses)
  printed = notebook.PRINTED

  print(f"mfjax demo: the seed notebook, reproduced in JAX (seed {seed})")
  print(
    "  prediction mu + bu·biᵀ + 1 + P Qᵀ; MSE over all 24 entries, the missing 0"
    " included;\n  uniform [0, 1) init; 100 steps of p -= 0.008·grad with the"
    " gradients never zeroed."
  )
  print("\nloss at each step (before its update):")
  print(_loss_table(nb_losses))
  best_step = int(np.argmin(nb_losses))
  print(
    f"\nbest loss {float(nb.best_loss):.4f} at step {best_step} "
    f"(the notebook printed {printed['best_loss']:.4f} from its own random init)"
  )
  if bool(nb.diverged):
    print(f"warning: the loss became non-finite at step {int(nb.diverged_step)}")
  print()
  print(
    _side_by_side(
      _format_matrix(nb_pred, "{:5.2f}"),
      _format_matrix(matrix, "{:2.0f}"),
      ("predicted from the best params, clipped to [1, 5]", "input (0 = missing)"),
    )
  )


def _print_defaults_run(nb_pred, ours, ours_pred, matrix) -> None:
  import numpy as np

  print("\nmfjax defaults: mu + bu + bi + P Qᵀ, the missing 0 left out of the loss")
  print(
    f"  best loss {float(ours.best_loss):.3g} over the 23 observed ratings "
    f"(rmse {float(ours.best_loss) ** 0.5:.3g})"
  )
  print(
    _side_by_side(
      _format_matrix(ours_pred, "{:5.2f}"),
      _format_matrix(matrix, "{:2.0f}"),
      ("predicted, clipped to [1, 5]", "input (0 = missing)"),
    )
  )
  (missing_user,), (missing_item,) = np.nonzero(matrix == 0)
  print(
    f"\nThe difference: the notebook fits the missing rating "
    f"(user {missing_user}, item {missing_item}) as a 0 and predicts "
    f"{nb_pred[missing_user, missing_item]:.2f} for it; the defaults leave it out "
    f"and predict {ours_pred[missing_user, missing_item]:.2f} from that user's and "
    "item's other ratings."
  )


def _format_matrix(matrix, fmt: str) -> list[str]:
  return [" ".join(fmt.format(v) for v in row) for row in matrix]


def _side_by_side(left: list[str], right: list[str], titles: tuple[str, str]) -> str:
  width = max(len(titles[0]), *(len(line) for line in left)) + 4
  lines = [titles[0].ljust(width) + titles[1]]
  lines += [a.ljust(width) + b for a, b in zip(left, right, strict=True)]
  return "\n".join("  " + line for line in lines)


def _loss_table(losses, per_row: int = 10) -> str:
  rows = []
  for start in range(0, len(losses), per_row):
    chunk = losses[start : start + per_row]
    label = f"{start:>3}-{start + len(chunk) - 1:<3}"
    rows.append(f"  {label} " + " ".join(f"{v:7.4f}" for v in chunk))
  return "\n".join(rows)
