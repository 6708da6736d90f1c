"""Writes the golden model files that tests/io/test_checkpoint.py loads.

Run from the repository root:

    python tests/io/golden/make_golden.py

The files are small models with fixed, exactly representable values, written by
``mfjax.io.checkpoint.save`` (format 1). They are committed so that a later mfjax that
can no longer read format-1 files fails the tests. Do not regenerate them: they
were written by mfjax 0.1.0, whose bare-params file says kind "Params" (mfjax 0.2
writes every file as kind "Model"), and they must stay as 0.1 wrote them. For a
new format, add ``*_v2.npz`` files beside them. The same mfjax version gives
byte-identical files (fixed zip dates); tests/io/test_checkpoint.py checks that the
running writer still gives these entries.

    model_v1.npz            Model, str ids, float32, settings, scale (1, 5)
    model_int_ids_v1.npz    Model, int ids, no settings, scale from the id maps
    params_bf16_v1.npz      bare Params in bfloat16 (kind "Params", mfjax 0.1)
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np

USER_FACTORS = [[0.5, -0.25], [1.0, 0.0], [0.0, 1.0], [-0.5, 0.5], [0.25, 0.75]]
ITEM_FACTORS = [[1.0, 0.5], [0.0, -1.0], [0.5, 0.5], [-1.0, 0.25]]
USER_BIAS = [0.125, -0.25, 0.0, 0.5, -0.125]
ITEM_BIAS = [0.25, 0.0, -0.5, 0.125]
MEAN = 3.5
SETTINGS = {"rank": 2, "epochs": 10, "learning_rate": 0.02, "l2": 10.0, "seeds": 6}


def golden_params(dtype):
  import mfjax

  return mfjax.Params(
    user_factors=jnp.asarray(USER_FACTORS, dtype),
    item_factors=jnp.asarray(ITEM_FACTORS, dtype),
    user_bias=jnp.asarray(USER_BIAS, dtype),
    item_bias=jnp.asarray(ITEM_BIAS, dtype),
    mean=jnp.asarray(MEAN, dtype),
  )


def golden_models():
  """The models of the golden files, by file name."""
  import mfjax

  params = golden_params(jnp.float32)
  str_maps = mfjax.IdMaps(
    users=np.array(["alice", "bob", "carol", "dave", "erin"]),
    items=np.array(["i1", "i2", "i3", "i4"]),
    scale=(1.0, 5.0),
    n_lines=12,
    n_duplicates=1,
    n_unknown=0,
  )
  int_maps = mfjax.IdMaps(
    users=np.array([3, 7, 10, 42, 100], np.int64),
    items=np.array([1, 2, 5, 9], np.int64),
    scale=(0.5, 5.0),
    n_lines=11,
  )
  return {
    "model_v1.npz": mfjax.Model(params, str_maps, SETTINGS, (1.0, 5.0)),
    "model_int_ids_v1.npz": mfjax.Model(params, int_maps),
    "params_bf16_v1.npz": golden_params(jnp.bfloat16),
  }


def main():
  from mfjax.io import checkpoint

  here = Path(__file__).resolve().parent
  for name, model in golden_models().items():
    checkpoint.save(here / name, model)
    print(f"wrote {here / name} ({(here / name).stat().st_size} bytes)")


if __name__ == "__main__":
  main()
