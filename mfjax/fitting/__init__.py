"""Fitting on real data: the ensemble fit that ``mfjax.fit``, the command line
and cross-validation share, its buckets and compile options, grids of settings,
and cross-validation.

Owns: :mod:`~mfjax.fitting.plan` (``fit``, ``FitResult`` and the one plan
that ``fit``, ``mfjax fit`` and cross-validation share),
:mod:`~mfjax.fitting.ensemble` (the jitted programs, their compile options and
placement), :mod:`~mfjax.fitting.sampler` (the jitted Gibbs fit),
:mod:`~mfjax.fitting.buckets` (padding to shared shapes, the
default mini-batch), :mod:`~mfjax.fitting.grid` and
:mod:`~mfjax.fitting.crossval`.

May import: :mod:`mfjax.core`, :mod:`mfjax.data` (splits) and
:mod:`mfjax.serving` (the top-N lists cross-validation scores), and the
top-level leaves. Not ``io``, ``distributed`` or ``cli``.
"""

from mfjax.fitting.crossval import cross_validate
from mfjax.fitting.grid import train_grid
from mfjax.fitting.plan import FitResult, fit
from mfjax.settings import FitSettings

__all__ = ["fit", "FitSettings", "FitResult", "train_grid", "cross_validate"]
