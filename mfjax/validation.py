"""Host-side argument checks, run before any JAX tracing.

Every public function of mfjax calls these helpers first, so that a bad argument
raises a ``TypeError`` or ``ValueError`` whose message names the argument, what was
expected and what was given, instead of failing somewhere inside XLA.

Under ``jax.jit`` or ``jax.vmap`` array arguments arrive as tracers. Their shapes and
dtypes are still known and are still checked; their values are not, so value checks
(NaN, inf, ranges) are skipped for tracers. Each public docstring says what then
happens to bad values.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "is_concrete",
  "check_choice",
  "check_key",
  "check_clip",
  "check_positive_int",
  "check_nonnegative",
  "check_real_array",
  "check_index_array",
  "check_params",
  "check_dense",
]


def is_concrete(x: Any) -> bool:
  """Whether ``x`` holds values the host can inspect (it is not a tracer)."""
  return not isinstance(x, jax.core.Tracer)


def _describe(x: Any) -> str:
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return f"an array of shape {tuple(x.shape)} and dtype {x.dtype}"
  text = repr(x)
  if len(text) > 60:
    text = text[:57] + "..."
  return f"{type(x).__name__} {text}"


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
  """Checks that ``value`` is one of the string ``choices`` and returns it."""
  choices = tuple(choices)
  if not isinstance(value, str) or value not in choices:
    raise ValueError(
      f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}."
    )
  return value


def check_key(name: str, key: Any) -> Any:
  """Checks that ``key`` is one JAX PRNG key (new-style, or legacy ``uint32[2]``)."""
  if hasattr(key, "dtype") and hasattr(key, "shape"):
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
      return key
    if key.dtype == np.uint32 and tuple(key.shape) == (2,):
      return key
  raise TypeError(
    f"{name} must be a single JAX PRNG key such as jax.random.key(0) (split it "
    f"and vmap for several); got {_describe(key)}."
  )


def check_clip(name: str, clip: Any) -> tuple[Any, Any]:
  """Checks a ``(lo, hi)`` pair of real scalars; ``lo <= hi`` when both concrete."""
  try:
    lo, hi = clip
  except (TypeError, ValueError):
    raise TypeError(
      f"{name} must be a pair (lo, hi) or None; got {_describe(clip)}."
    ) from None
  for bound in (lo, hi):
    real = isinstance(bound, numbers.Real) or (
      hasattr(bound, "dtype")
      and (
        jnp.issubdtype(bound.dtype, jnp.floating)
        or jnp.issubdtype(bound.dtype, jnp.integer)
      )
    )
    if isinstance(bound, bool) or not real or np.shape(bound) != ():
      raise TypeError(f"{name} must be a pair of real numbers; got {_describe(clip)}.")
  if is_concrete(lo) and is_concrete(hi) and not float(lo) <= float(hi):
    raise ValueError(f"{name} must satisfy lo <= hi; got ({lo}, {hi}).")
  return lo, hi


def check_positive_int(name: str, value: Any) -> int:
  """Checks that ``value`` is a Python (or NumPy) integer >= 1 and returns it."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(
      f"{name} must be an int >= 1 (a static Python value); got {_describe(value)}."
    )
  if value < 1:
    raise ValueError(f"{name} must be an int >= 1; got {value}.")
  return int(value)


def check_nonnegative(name: str, value: Any) -> Any:
  """Checks that ``value`` is a finite real scalar >= 0.

  A traced scalar (under ``jit`` or ``vmap``) has its dtype and shape checked only.
  """
  if isinstance(value, bool):
    raise TypeError(f"{name} must be a real number >= 0; got {value!r}.")
  if isinstance(value, numbers.Real):
    if not np.isfinite(value) or value < 0:
      raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")
    return value
  if not (hasattr(value, "shape") and hasattr(value, "dtype")):
    raise TypeError(f"{name} must be a real number >= 0; got {_describe(value)}.")
  if np.shape(value) != () or not (
    jnp.issubdtype(value.dtype, jnp.floating)
    or jnp.issubdtype(value.dtype, jnp.integer)
  ):
    raise TypeError(
      f"{name} must be a real scalar >= 0 (vmap it to try several values); "
      f"got {_describe(value)}."
    )
  if is_concrete(value):
    v = float(value)
    if not np.isfinite(v) or v < 0:
      raise ValueError(f"{name} must be a finite number >= 0; got {v!r}.")
  return value


def _as_array(name: str, x: Any) -> Any:
  """Returns ``x`` as an array (NumPy or JAX), without copying device arrays."""
  if isinstance(x, (jax.Array, np.ndarray)):
    return x
  try:
    out = np.asarray(x)
  except (TypeError, ValueError) as e:
    raise TypeError(
      f"{name} must be an array of numbers; got {_describe(x)} ({e})."
    ) from None
  if out.dtype == object:
    raise TypeError(f"{name} must be an array of numbers; got {_describe(x)}.")
  return out


def check_real_array(
  name: str, x: Any, *, ndim: int | None = None, finite: bool = True
) -> Any:
  """Checks that ``x`` is a real numeric array, of rank ``ndim`` if given.

  Booleans, strings, objects and complex numbers raise ``TypeError``. A concrete
  array with NaN or inf raises ``ValueError`` when ``finite`` is set.

  Returns:
    ``x`` as an array (a NumPy array stays a NumPy array).
  """
  x = _as_array(name, x)
  dtype = x.dtype
  if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
    raise TypeError(
      f"{name} must hold real numbers (an integer or floating dtype); "
      f"got dtype {dtype}."
    )
  if ndim is not None and x.ndim != ndim:
    raise ValueError(
      f"{name} must be a {ndim}-D array; got shape {tuple(x.shape)} ({x.ndim}-D)."
    )
  if finite and is_concrete(x) and jnp.issubdtype(dtype, jnp.floating):
    # A concrete array inside someone's jit trace: evaluate now, not in the trace.
    with jax.ensure_compile_time_eval():
      n_finite = int(jnp.isfinite(x).sum())
    if n_finite != np.size(x):
      bad = int(np.size(x) - n_finite)
      raise ValueError(f"{name} must be finite; it holds {bad} NaN or inf value(s).")
  return x


def check_index_array(
  name: str, x: Any, size: int, *, axis_name: str, allow_unknown: bool = False
) -> Any:
  """Checks integer indices ``x`` into an axis of length ``size``.

  Concrete indices must lie in ``[0, size)``, or be -1 (an unknown id) when
  ``allow_unknown``. Traced indices have their dtype checked only.
  """
  x = _as_array(name, x)
  if isinstance(x, np.ndarray) and x.size == 0:
    x = x.astype(np.int32)  # `[]` reads as float64; an empty selection is fine.
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(f"{name} must be integer indices; got dtype {x.dtype}.")
  if x.ndim != 1:
    raise ValueError(f"{name} must be a 1-D array of indices; got shape {x.shape}.")
  if is_concrete(x) and x.size:
    with jax.ensure_compile_time_eval():
      lo, hi = int(x.min()), int(x.max())
    floor = -1 if allow_unknown else 0
    if lo < floor or hi >= size:
      bad = lo if lo < floor else hi
      extra = ", or -1 for an unknown id" if allow_unknown else ""
      raise ValueError(
        f"{name} must lie in [0, {size}) ({size} {axis_name}){extra}; got index {bad}."
      )
  return x


def check_params(params: Any, name: str = "params") -> tuple[int, int, int]:
  """Checks that ``params`` is a consistent ``Params`` and returns ``(U, I, k)``."""
  from mfjax.model import Params  # Local import: model imports this module.

  if not isinstance(params, Params):
    raise TypeError(
      f"{name} must be mfjax.Params (see mfjax.init_params); got "
      f"{type(params).__name__}."
    )
  for field in Params._fields:
    leaf = getattr(params, field)
    if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(
        f"{name}.{field} must be a floating-point array; got {_describe(leaf)}."
      )
  uf, itf = params.user_factors, params.item_factors
  if uf.ndim != 2 or itf.ndim != 2:
    raise ValueError(
      f"{name}.user_factors and {name}.item_factors must be 2-D [rows, rank]; got "
      f"shapes {tuple(uf.shape)} and {tuple(itf.shape)}."
    )
  n_users, rank = uf.shape
  n_items = itf.shape[0]
  expected = {
    "item_factors": (n_items, rank),
    "user_bias": (n_users,),
    "item_bias": (n_items,),
    "mean": (),
  }
  for field, shape in expected.items():
    got = tuple(getattr(params, field).shape)
    if got != shape:
      raise ValueError(
        f"{name}.{field} must have shape {shape} to match user_factors "
        f"{tuple(uf.shape)} and item_factors {tuple(itf.shape)}; got {got}."
      )
  return n_users, n_items, rank


def check_dense(
  data: Any, mask: Any, shape: tuple[int, int] | None = None
) -> tuple[Any, Any]:
  """Checks a dense rating matrix ``data`` (and optional ``mask``), of ``shape``.

  Returns:
    ``(data, mask)`` as arrays (``mask`` stays None when None).
  """
  data = check_real_array("data", data, ndim=2)
  if shape is not None and tuple(data.shape) != tuple(shape):
    raise ValueError(
      f"data must have shape (n_users, n_items) = {tuple(shape)} to match params; "
      f"got {tuple(data.shape)}."
    )
  if mask is not None:
    mask = _as_array("mask", mask)
    if mask.dtype != bool and not (
      jnp.issubdtype(mask.dtype, jnp.integer)
      or jnp.issubdtype(mask.dtype, jnp.floating)
    ):
      raise TypeError(
        f"mask must be boolean (True = observed); got dtype {mask.dtype}."
      )
    if tuple(mask.shape) != tuple(data.shape):
      raise ValueError(
        f"mask must have the shape of data, {tuple(data.shape)}; got "
        f"{tuple(mask.shape)}."
      )
  return data, mask
