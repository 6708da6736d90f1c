"""One compiled program for a public function called outside ``jit``.

Called eagerly, a JAX function runs op by op, and on CPU each operation of a
new shape compiles a program of its own: the README's four-by-four Quickstart
compiled 65 of them (about 40 ms each) before this module. :func:`call` runs
the array work of ``init_params``, ``train`` and ``predict`` as one ``jax.jit``
program when every input is concrete, kept per settings so that a second call
compiles nothing; inside the caller's ``jit``, ``vmap`` or ``grad`` it traces
the same function in place, so what those transformations see is unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any

import jax

from mfjax import validation

__all__ = ["call"]


def call(fn: Callable, settings: Hashable, *args: Any, keep: bool = True) -> Any:
  """``fn(settings, *args)``, compiled as one program where that is possible.

  Args:
    fn: a module-level function ``(settings, *args)`` of JAX arrays, traceable
      with ``args`` as tracers (its host checks done before).
    settings: what the program is specialised on (static): hashable, and never
      an array. Unhashable settings (a setting that holds an array or a tracer)
      run ``fn`` as before, op by op.
    *args: pytrees of arrays (or None); Python numbers become traced scalars.
    keep: keep the program for later calls. False for settings that are new at
      each call (a fresh ``optax.adam(lr)`` hashes by identity): one program
      for this call, not one more kept each time.

  Returns:
    What ``fn`` returns.
  """
  leaves = jax.tree.leaves((settings, args))
  if not all(validation.is_concrete(x) for x in leaves):
    return fn(settings, *args)  # Inside a transformation: trace in place.
  if not keep:
    return jax.jit(functools.partial(fn, settings))(*args)
  try:
    program = _program(fn, settings)
  except TypeError:  # Unhashable settings.
    return fn(settings, *args)
  return program(*args)


@functools.lru_cache(maxsize=32)
def _program(fn: Callable, settings: Hashable) -> Callable:
  return jax.jit(functools.partial(fn, settings))
