"""``mfjax demo``: the seed notebook reproduced in JAX, then mfjax's defaults
on the same matrix, and how the two differ.
"""

from __future__ import annotations

from mfjax.cli import options

__all__ = ["add_parser", "run"]


# XLA options that trade run time for compile time, for tiny one-off programs.
_FAST_COMPILE = {
  "xla_backend_optimization_level": 0,
  "xla_cpu_use_fusion_emitters": False,
}


def add_parser(sub) -> None:
  """Registers ``mfjax demo``."""
  demo = sub.add_parser(
    "demo",
    help="run the seed notebook in JAX, then the corrected model",
    description=(
      "Reproduce the seed PyTorch notebook (notebook bias formula, loss over all "
      "24 entries, lr 0.008, gradients never zeroed, best-loss carry), then train "
      "the same matrix with mfjax's defaults and show how the two differ."
    ),
  )
  demo.add_argument(
    "--seed", type=options.seed, default=0, help="random seed for the init (default 0)"
  )
  demo.add_argument(
    "--progress", action="store_true", help="show progress bars while training"
  )


def run(args) -> int:
  """``mfjax demo``: the notebook's run and the defaults', in one compiled program."""
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

  # One program for the whole demo. At this size compilation is most of the run
  # time, so it is compiled for speed of compilation (0.19 s against 0.78 s with
  # XLA's defaults, benchmarks/RESULTS.md); the persistent cache then makes later
  # runs skip it.
  lowered = jax.jit(both_runs).lower(key)
  try:
    compiled = lowered.compile(_FAST_COMPILE)
  except jax.errors.JaxRuntimeError:  # An XLA that lacks one of these options.
    compiled = lowered.compile()
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
