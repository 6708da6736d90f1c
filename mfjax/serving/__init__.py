"""Using a trained model: top-N lists, fold-in of new users, and the raw-id
:class:`~mfjax.Model` methods.

Owns: :mod:`~mfjax.serving.topk` (``recommend``, ``fold_in``, by index) and
:mod:`~mfjax.serving.model` (the ``Model`` class: raw ids in and out). This face
also re-exports what ``mfjax.serving`` held in 0.2, and ``Model``.

May import: :mod:`mfjax.core` and the top-level leaves. Not ``fitting``,
``io``, ``distributed`` or ``cli``.
"""

from mfjax.serving.model import Model
from mfjax.serving.topk import fold_in, recommend

__all__ = ["recommend", "fold_in", "Model"]
