"""The batch layout, declared once: every real, abstract, dummy or synthetic batch derives
from `batch_spec(config)`.

    field       dtype    per-example shape  what
    image       float32  [S, S, 3]          pixels in [-1, 1], S = config.data.image_size
    text        int32    [Lt]               encoder ids, 0-padded, Lt = config.data.text_len
    target      int32    [Ld]               decoder ids ending with eos, 0-padded,
                                            Ld = config.data.target_len
    dataset_id  int32    []                 index into config.data.sources (eval: 0)
    mask        bool     []                 False on eval padding rows
    + each field an auxiliary loss that is on declares (jarl/losses/registry.py), e.g.
    tags        float32  [T]                1 where the target text names tag t of
                                            config.data.tags (tagging loss on)

Eval batches carry the data fields only (no auxiliary ones) plus host-side `answers`.
The pipeline (jarl/data/pipeline.py) allocates what it is given; the trainer, the plan
and FLOPs tools, the model's initialisation and the benchmarks' synthetic batches all
start here. Importing this module does not import JAX (the data workers import it).
"""

import numpy as np

MODEL_INPUTS = ("image", "text", "target")  # what Model.__call__ takes, in order


def data_spec(data_config) -> dict[str, tuple[tuple[int, ...], type]]:
  """{field: (per-example shape, dtype)} every batch carries, from `config.data` alone."""
  s = int(data_config.image_size)
  return dict(
    image=((s, s, 3), np.float32),
    text=((int(data_config.text_len),), np.int32),
    target=((int(data_config.target_len),), np.int32),
    dataset_id=((), np.int32),
    mask=((), np.bool_),
  )


def batch_spec(config) -> dict[str, tuple[tuple[int, ...], type]]:
  """{field: (per-example shape, dtype)} of a training batch of `config`: the data fields
  plus those of the auxiliary losses that are on."""
  from jarl import losses  # pylint: disable=import-outside-toplevel  (losses import JAX)

  return {**data_spec(config.data), **losses.make_objective(config).batch_fields()}


def synthetic_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A random host batch of the full layout: pixels in [-1, 1], ids in [1, vocab), binary
  aux fields, dataset_id 0, mask True. For benchmarks, tests and compile-and-run checks.
  Fields are drawn target, image, text, then the rest in layout order, so a batch's
  values do not depend on which auxiliary fields the config adds."""
  rng = np.random.default_rng(seed)
  vocab = int(config.model.vocab_size)
  spec = batch_spec(config)
  batch = {}
  for name in ("target", "image", "text", *spec):
    if name in batch:
      continue
    shape, dtype = spec[name]
    full = (batch_size, *shape)
    if name == "image":
      batch[name] = rng.uniform(-1, 1, full).astype(dtype)
    elif name in ("text", "target"):
      batch[name] = rng.integers(1, vocab, full).astype(dtype)
    elif name == "mask":
      batch[name] = np.ones(full, dtype)
    elif name == "dataset_id":
      batch[name] = np.zeros(full, dtype)
    else:  # auxiliary targets: 0/1
      batch[name] = (rng.uniform(size=full) < 0.5).astype(dtype)
  return {name: batch[name] for name in spec}


def dummy_batch(config, batch_size: int = 1) -> dict:
  """The model inputs (image zeros, text and target ones) as jnp arrays, for
  `model.init(rngs, **dummy_batch(config))`, eval_shape and compile-only costing."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  spec = data_spec(config.data)
  fill = dict(image=jnp.zeros, text=jnp.ones, target=jnp.ones)
  return {k: fill[k]((batch_size, *spec[k][0]), spec[k][1]) for k in MODEL_INPUTS}


def abstract_batch(config, batch_size: int, sharding=None) -> dict:
  """jax.ShapeDtypeStruct of every field of `batch_spec(config)`, with `sharding`."""
  import jax  # pylint: disable=import-outside-toplevel

  return {
    k: jax.ShapeDtypeStruct((batch_size, *shape), dtype, sharding=sharding)
    for k, (shape, dtype) in batch_spec(config).items()
  }
