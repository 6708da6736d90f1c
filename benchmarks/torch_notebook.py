"""The seed notebook's PyTorch loop, ported faithfully to run on the CPU.

Run as a script it does what the notebook did (the 4×6 matrix, 100 steps, printing
each loss, then the best loss, params and clipped matrix), so that it can be timed
as a whole process against ``mfjax demo``. ``notebook_loop`` is the same loop as a
function, used by ``notebook_vs_torch.py`` for warm timings; it drops only the
per-step ``print`` and the tqdm bar.
"""

import sys

import torch
import torch.nn as nn

TEST_MAT = [
  [5, 2, 4, 3, 2, 3],
  [4, 3, 5, 4, 3, 2],
  [1, 5, 3, 4, 4, 5],
  [1, 0, 2, 3, 4, 2],
]


def init(n_users, n_movies, k=3):
  P = torch.rand(n_users, k, requires_grad=True)
  Q = torch.rand(n_movies, k, requires_grad=True)
  bu = torch.rand(n_users, 1, requires_grad=True)
  bi = torch.rand(n_movies, 1, requires_grad=True)
  return P, Q, bu, bi


def notebook_loop(test_mat, P, Q, bu, bi, steps=100, lr=0.008, verbose=False):
  """Cells 3-4 of the notebook: gradients are never zeroed, best params kept."""
  n_users, n_movies = test_mat.shape
  mu = test_mat.sum() / (test_mat != 0).sum()
  criterion = nn.MSELoss()
  expected = test_mat
  ones_user = torch.ones(n_users, 1, requires_grad=False)
  ones_item = torch.ones(n_movies, 1, requires_grad=False)
  min_loss = torch.inf
  params = []
  for _ in range(steps):
    Bu = torch.concat((bu, ones_user), dim=1)
    Bi = torch.concat((bi, ones_item), dim=1)
    pred = mu + Bu @ (Bi.T) + P @ (Q.T)
    loss = criterion(pred, expected)
    if verbose:
      print(float(loss))
    if min_loss > loss.detach():
      min_loss = float(loss.detach())
      params = [
        P.detach().cpu(),
        Q.detach().cpu(),
        bu.detach().cpu(),
        bi.detach().cpu(),
      ]
    loss.backward()
    with torch.no_grad():
      P -= lr * P.grad
      Q -= lr * Q.grad
      bu -= lr * bu.grad
      bi -= lr * bi.grad
  return min_loss, params, mu


def main():
  test_mat = torch.tensor(TEST_MAT, dtype=torch.float32)
  n_users, n_movies = test_mat.shape
  min_loss, params, mu = notebook_loop(test_mat, *init(n_users, n_movies), verbose=True)
  print(min_loss)
  print(params)
  out_P, out_Q, out_bu, out_bi = params
  out_Bu = torch.concat((out_bu, torch.ones(n_users, 1)), dim=1)
  out_Bi = torch.concat((out_bi, torch.ones(n_movies, 1)), dim=1)
  out_mat = torch.clip(mu + out_Bu @ out_Bi.T + out_P @ out_Q.T, 1, 5)
  print(out_mat)
  print()
  print(test_mat)
  return 0


if __name__ == "__main__":
  sys.exit(main())
