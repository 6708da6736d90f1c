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
import os
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mfjax.types import UNKNOWN, Params, Ratings

__all__ = [
  "host_values",
  "concrete_reduce",
  "is_concrete",
  "describe",
  "check_nonnegative_int",
  "as_array",
  "check_ratings",
  "check_weights",
  "check_data",
  "check_positive_float",
  "check_choice",
  "check_key",
  "check_scale",
  "check_positive_int",
  "check_nonnegative",
  "check_real_scalar",
  "check_real_array",
  "check_index_array",
  "check_params",
  "check_dense",
]


def is_concrete(x: Any) -> bool:
  """Whether ``x`` holds values the host can inspect (it is not a tracer)."""
  return not isinstance(x, jax.core.Tracer)


def host_values(x: Any) -> np.ndarray | None:
  """``x`` as NumPy when that moves no data: a NumPy array, or a concrete JAX
  array on CPU (a view). None for tracers, arrays on an accelerator and arrays
  over several processes (a process holds only its own part; the others' checks
  then run on the devices, in every process alike).

  Host checks of concrete arrays read them through this, so that they compile
  nothing: on CPU each eager ``jnp.min`` of a new shape compiled a program; with
  the metrics' eager operations, about 2 s of a first ``mfjax fit``
  (benchmarks/RESULTS.md, "Compiling once").

  Args:
    x: anything.

  Returns:
    A NumPy array, or None.
  """
  if isinstance(x, np.ndarray | np.generic | numbers.Number):
    return np.asarray(x)
  if isinstance(x, jax.Array) and is_concrete(x) and x.is_fully_addressable:
    # Not an array over several processes: each holds only its own part.
    if all(device.platform == "cpu" for device in x.devices()):
      return np.asarray(x)
  return None


def concrete_reduce(x: Any, reduce: str) -> Any:
  """``min``, ``max``, ``sum`` or ``any`` of a concrete array, as a host scalar,
  in NumPy where :func:`host_values` allows, else on the device.

  Args:
    x: a concrete array (NumPy or JAX).
    reduce: ``"min"``, ``"max"``, ``"sum"`` or ``"any"``.

  Returns:
    A NumPy scalar.
  """
  host = host_values(x)
  if host is not None:
    return getattr(host, reduce)()
  with jax.ensure_compile_time_eval():
    return np.asarray(getattr(jnp, reduce)(x))[()]


def describe(x: Any) -> str:
  """A short description of ``x`` for error messages: shape and dtype, or a repr."""
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
    f"and vmap for several); got {describe(key)}."
  )


def check_scale(name: str, scale: Any) -> tuple[Any, Any]:
  """Checks a ``(lo, hi)`` pair of real scalars; ``lo <= hi`` when both concrete."""
  try:
    lo, hi = scale
  except (TypeError, ValueError):
    raise TypeError(
      f"{name} must be a pair (lo, hi) or None; got {describe(scale)}."
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
      raise TypeError(f"{name} must be a pair of real numbers; got {describe(scale)}.")
  if is_concrete(lo) and is_concrete(hi) and not float(lo) <= float(hi):
    raise ValueError(f"{name} must satisfy lo <= hi; got ({lo}, {hi}).")
  return lo, hi


def check_positive_int(name: str, value: Any) -> int:
  """Checks that ``value`` is a Python (or NumPy) integer >= 1 and returns it."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(
      f"{name} must be an int >= 1 (a static Python value); got {describe(value)}."
    )
  if value < 1:
    raise ValueError(f"{name} must be an int >= 1; got {value}.")
  return int(value)


def check_nonnegative_int(name: str, value: Any) -> int:
  """Checks that ``value`` is a Python (or NumPy) integer >= 0 and returns it."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(
      f"{name} must be an int >= 0 (a static Python value); got {describe(value)}."
    )
  if value < 0:
    raise ValueError(f"{name} must be an int >= 0; got {value}.")
  return int(value)


def check_real_scalar(name: str, value: Any, *, nonnegative: bool = False) -> Any:
  """Checks that ``value`` is a finite real scalar (``>= 0`` if ``nonnegative``).

  A Python number or a 0-d array. A traced scalar (under ``jit`` or ``vmap``) has
  its dtype and shape checked only.
  """
  bound = " >= 0" if nonnegative else ""
  if isinstance(value, bool):
    raise TypeError(f"{name} must be a real number{bound}; got {value!r}.")
  if not isinstance(value, numbers.Real):
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
      raise TypeError(f"{name} must be a real number{bound}; got {describe(value)}.")
    if np.shape(value) != () or not (
      jnp.issubdtype(value.dtype, jnp.floating)
      or jnp.issubdtype(value.dtype, jnp.integer)
    ):
      raise TypeError(
        f"{name} must be a real scalar{bound} (vmap it to try several values); "
        f"got {describe(value)}."
      )
    if not is_concrete(value):
      return value
  number = float(value)
  if not np.isfinite(number) or (nonnegative and number < 0):
    shown = value if isinstance(value, numbers.Real) else number
    raise ValueError(f"{name} must be a finite number{bound}; got {shown!r}.")
  return value


def check_nonnegative(name: str, value: Any) -> Any:
  """Checks that ``value`` is a finite real scalar >= 0 (see check_real_scalar)."""
  return check_real_scalar(name, value, nonnegative=True)


def as_array(name: str, x: Any) -> Any:
  """Returns ``x`` as an array (NumPy or JAX), without copying device arrays."""
  if isinstance(x, (jax.Array, np.ndarray)):
    return x
  try:
    out = np.asarray(x)
  except (TypeError, ValueError) as e:
    raise TypeError(
      f"{name} must be an array of numbers; got {describe(x)} ({e})."
    ) from None
  if out.dtype == object:
    raise TypeError(f"{name} must be an array of numbers; got {describe(x)}.")
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
  x = as_array(name, x)
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
    host = host_values(x)
    if host is not None:
      n_finite = int(np.isfinite(host).sum())
    else:
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
  x = as_array(name, x)
  if isinstance(x, np.ndarray) and x.size == 0:
    x = x.astype(np.int32)  # `[]` reads as float64; an empty selection is fine.
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(f"{name} must be integer indices; got dtype {x.dtype}.")
  if x.ndim != 1:
    raise ValueError(f"{name} must be a 1-D array of indices; got shape {x.shape}.")
  if is_concrete(x) and x.size:
    lo, hi = int(concrete_reduce(x, "min")), int(concrete_reduce(x, "max"))
    floor = -1 if allow_unknown else 0
    if lo < floor or hi >= size:
      bad = lo if lo < floor else hi
      extra = ", or -1 for an unknown id" if allow_unknown else ""
      raise ValueError(
        f"{name} must lie in [0, {size}) ({size} {axis_name}){extra}; got index {bad}."
      )
  return x


def check_stacked_params(name: str, stacked: Any) -> int:
  """Checks a stack of ``Params`` (a leading axis of models, as ``vmap`` makes
  them); returns the number of models."""
  if not isinstance(stacked, Params):
    raise TypeError(
      f"{name} must be mfjax.Params stacked over models; got {type(stacked).__name__}."
    )
  shapes = {f: tuple(getattr(getattr(stacked, f), "shape", ())) for f in Params._fields}
  if len(shapes["user_factors"]) != 3 or len({s[:1] for s in shapes.values()}) != 1:
    raise ValueError(
      f"{name} must be a stack of models: every leaf with one leading axis of "
      "models (user_factors [models, users, rank], mean [models]), as train() "
      f"under jax.vmap returns them; got shapes {shapes}. One model's params "
      "need no merging."
    )
  check_params(jax.tree.map(lambda x: x[0], stacked), f"{name}[0]")
  return shapes["mean"][0]


def check_params(
  params: Any, name: str = "params", *, formula: str = Params.formula
) -> tuple[int, int, int]:
  """Checks that ``params`` is a consistent ``Params`` and returns ``(U, I, k)``.

  ``formula`` is how the caller predicts from them: params of a subclass that
  predicts otherwise (``params.formula``) are refused with a ``ValueError``.
  """
  if not isinstance(params, Params):
    raise TypeError(
      f"{name} must be mfjax.Params (see mfjax.init_params); got "
      f"{type(params).__name__}."
    )
  if params.formula != formula:
    if type(params) is Params:
      hint = "wrap them in the Params class that predicts so, if they are such params"
    else:
      hint = f"use the functions of {type(params).__module__} for them"
    raise ValueError(
      f"{name} are {type(params).__name__}, which predict {params.formula}; this "
      f"function predicts {formula}: {hint}."
    )
  for field in Params._fields:
    leaf = getattr(params, field)
    if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(
        f"{name}.{field} must be a floating-point array; got {describe(leaf)}."
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
    mask = as_array("mask", mask)
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


def _constructor_hint(x: Any) -> str:
  """Which constructor makes ``Ratings`` of ``x``, as a sentence, or ""."""
  module = type(x).__module__ or ""
  if hasattr(x, "columns") or module.startswith(("pandas", "polars")):
    return " A data frame: mfjax.ratings_from_frame(frame) gives (Ratings, IdMaps)."
  if module.startswith("scipy.sparse"):
    return " A SciPy sparse matrix: mfjax.ratings_from_sparse(matrix) gives Ratings."
  if isinstance(x, (str, os.PathLike)):
    return " A file: mfjax.load_ratings(path) gives (Ratings, IdMaps)."
  if isinstance(x, (tuple, list)) and len(x) == 3:
    return (
      " Three columns: mfjax.ratings_from_arrays(users, items, ratings) gives "
      "(Ratings, IdMaps)."
    )
  if isinstance(x, (np.ndarray, jax.Array)) and x.ndim == 2:
    return (
      " A dense matrix: mfjax.ratings_from_dense(matrix) gives Ratings (0 = missing)."
    )
  return ""


def check_ratings(
  name: str,
  ratings: Any,
  *,
  allow_unknown: bool = False,
  shape: tuple[int, int] | None = None,
) -> Ratings:
  """Host-side checks of a :class:`Ratings`: dtypes, lengths, ranges, finiteness.

  ``allow_unknown`` admits index -1 (held-out data); ``shape``, the params'
  ``(n_users, n_items)``, must then be the ratings' too.
  """
  if not isinstance(ratings, Ratings):
    raise TypeError(
      f"{name} must be mfjax.Ratings; got {type(ratings).__name__}."
      f"{_constructor_hint(ratings)}"
    )
  if shape is not None and ratings.shape != tuple(shape):
    hint = " Load test files with the training file's id_maps." if allow_unknown else ""
    raise ValueError(
      f"{name} must have n_users, n_items = {tuple(shape)} to match params; got "
      f"{ratings.shape}.{hint}"
    )
  for axis, size in (("users", ratings.n_users), ("items", ratings.n_items)):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
      raise ValueError(f"{name}.n_{axis} must be an int >= 1; got {size!r}.")
    index = getattr(ratings, axis)
    if not jnp.issubdtype(index.dtype, jnp.integer) or index.ndim != 1:
      raise TypeError(
        f"{name}.{axis} must be a 1-D integer array; got shape {index.shape} "
        f"and dtype {index.dtype}."
      )
  values = check_real_array(f"{name}.values", ratings.values, ndim=1)
  if not ratings.users.shape == ratings.items.shape == values.shape:
    raise ValueError(
      f"{name}.users, .items and .values must have the same length; got "
      f"{ratings.users.shape[0]}, {ratings.items.shape[0]} and {values.shape[0]}."
    )
  check_weights(name, ratings, values.shape[0])
  for axis, size in (("users", ratings.n_users), ("items", ratings.n_items)):
    index = getattr(ratings, axis)
    if is_concrete(index) and index.shape[0]:
      lo, hi = int(concrete_reduce(index, "min")), int(concrete_reduce(index, "max"))
      floor = UNKNOWN if allow_unknown else 0
      if lo < floor or hi >= size:
        bad = lo if lo < floor else hi
        what = f"[{floor}, {size})" + (" (-1 = unknown)" if allow_unknown else "")
        raise ValueError(f"{name}.{axis} must lie in {what}; got index {bad}.")
  return ratings


def check_something_to_train(name: str, data: Any, mask: Any = None) -> None:
  """Refuses training data with no rating to learn from: an empty ``Ratings``,
  one whose weights are all 0, or a dense matrix with nothing observed (its
  ``mask``, else its non-zero entries). Values are checked only when concrete."""
  if isinstance(data, Ratings):
    if len(data) == 0:
      raise ValueError(f"{name} is empty (0 ratings): there is nothing to train on.")
    observed = data.weights
  else:
    observed = data if mask is None else mask
  if observed is None or not is_concrete(observed):
    return
  host = host_values(observed)
  if host is not None:
    some = bool(np.any(host != 0))
  else:
    with jax.ensure_compile_time_eval():
      some = bool(jnp.any(jnp.asarray(observed) != 0))
  if not some:
    what = "weights are all 0" if isinstance(data, Ratings) else "nothing is observed"
    raise ValueError(f"{name}: its {what}; there is nothing to train on.")


def single_value(ratings: Ratings) -> float | None:
  """The one value every rating of ``ratings`` holds (padding and weight-0
  entries left out), or None: they hold several, none, or they are not
  readable on the host (:func:`host_values`: tracers, arrays over several
  processes)."""
  values = host_values(ratings.values)
  weights = None if ratings.weights is None else host_values(ratings.weights)
  if values is None or (ratings.weights is not None and weights is None):
    return None
  values = values[: len(values) - ratings.n_padding]
  if weights is not None:
    values = values[weights[: len(values)] > 0]
  if values.size and values.min() == values.max():
    return float(values[0])
  return None


def check_ratings_vary(name: str, ratings: Ratings) -> None:
  """Refuses ratings whose weighted entries all hold one value
  (:func:`single_value`): a rating model can only learn to predict it (every
  "rating" 1 is implicit feedback, for the ranking objective)."""
  value = single_value(ratings)
  if value is not None:
    raise ValueError(
      f"{name}: every rating is {value:g}, so a rating model can only "
      "predict that value. For lists from implicit feedback (clicks, plays, "
      "check-ins), fit objective='ranking' (mfjax fit --objective ranking)."
    )


def check_weights(name: str, ratings: Ratings, n: int) -> None:
  """Checks ``weights`` (length, finite, >= 0) and ``n_padding`` (static, weight 0)."""
  weights = ratings.weights
  if weights is not None:
    weights = check_real_array(f"{name}.weights", weights, ndim=1)
    if weights.shape[0] != n:
      raise ValueError(
        f"{name}.weights must have one weight per rating, {n}; got {weights.shape[0]}."
      )
    if is_concrete(weights) and n:
      lowest = float(concrete_reduce(weights, "min"))
      if lowest < 0:
        raise ValueError(f"{name}.weights must be >= 0; got {lowest:g}.")
  padding = ratings.n_padding
  if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)):
    raise TypeError(f"{name}.n_padding must be an int; got {padding!r}.")
  if not 0 <= padding <= n:
    raise ValueError(
      f"{name}.n_padding must lie in [0, {n}] (the number of entries); got {padding}."
    )
  if padding and weights is None:
    raise ValueError(
      f"{name}.n_padding is {padding} but weights is None; padding entries need "
      "weight 0 (see mfjax.core.sharding.shard_ratings)."
    )
  if padding and is_concrete(weights):
    with jax.ensure_compile_time_eval():
      tail = float(jnp.max(jnp.abs(weights[n - padding :])))
    if tail != 0:
      raise ValueError(
        f"{name}.weights must be 0 on the last n_padding = {padding} entries "
        "(the padding)."
      )


def check_data(data: Any, mask: Any, shape: tuple[int, int]) -> tuple[Any, Any]:
  """Host checks of training data, dense or :class:`mfjax.Ratings`, of ``shape``."""
  n_users, n_items = shape
  if isinstance(data, Ratings):
    if mask is not None:
      raise ValueError(
        "mask applies to a dense matrix only; Ratings list what is "
        "observed. Drop the ratings you don't want instead."
      )
    check_ratings("data", data, shape=(n_users, n_items))
    return data, None
  return check_dense(data, mask, (n_users, n_items))


def check_positive_float(name: str, value: Any) -> float:
  """Checks that ``value`` is a finite real number > 0 (a static Python value)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f"{name} must be a number > 0; got {describe(value)}.")
  if not 0 < value < float("inf"):
    raise ValueError(f"{name} must be finite and > 0; got {value!r}.")
  return float(value)
