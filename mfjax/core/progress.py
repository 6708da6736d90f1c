"""Progress bars for long scans: tqdm, driven from the device by a callback."""

from __future__ import annotations

import numpy as np

__all__ = ["ProgressBar", "choose_tqdm"]


class ProgressBar:
  """A tqdm bar driven from inside a scan by ``jax.debug.callback``.

  The callback runs on the host after each step; nothing is traced when progress
  is off, so it costs nothing then.
  """

  def __init__(self, total: int, desc: str):
    self.total, self.desc, self.bar = total, desc, None
    self.finished = False

  def update(self, step, value):
    tqdm = choose_tqdm()

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


def choose_tqdm():
  """tqdm's notebook bar where it can render, else the text bar.

  ``tqdm.auto`` picks the widget bar in Jupyter and warns when ipywidgets is
  missing; imported only when a bar is shown.
  """
  try:
    import ipywidgets  # noqa: F401
  except ImportError:
    from tqdm.std import tqdm
  else:
    from tqdm.auto import tqdm
  return tqdm
