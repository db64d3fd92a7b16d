"""Checks of a run config, run once before anything is built or compiled: `check`.

Each group of keys has its one checker: model keys the typed model config
(`jarl.models.model.build`), `config.losses` the objective (`jarl.losses`), the batch
layout against the model here, training keys here (`check_training`), data sources and
tags by the pipeline when it opens them. Every message names the config key and its value.
"""

import os

import jax

from jarl import losses
from jarl.data import tokenizer
from jarl.models import model as model_lib
from jarl.models import model_init


def check(config, num_batch_shards: int) -> None:
  """Raises ValueError naming the first bad field of the run config `config`."""
  model_lib.build(config)
  losses.make_objective(config)
  check_layout(config)
  check_tokenizer(config)
  check_training(config, num_batch_shards)
  check_init(config)


def check_layout(config) -> None:
  """The batch layout (config.data, jarl/batch.py) must fit the model's input sizes."""
  d, m = config.data, config.model
  if d.image_size != m.vision.image_size:
    raise ValueError(
      f"config.data.image_size={d.image_size} must equal "
      f"config.model.vision.image_size={m.vision.image_size}"
    )
  for data_key, model_key, model_value in (
    ("text_len", "text.max_len", m.text.max_len),
    ("target_len", "decoder.max_len", m.decoder.max_len),
  ):
    if d[data_key] > model_value:
      raise ValueError(
        f"config.data.{data_key}={d[data_key]} must be <= "
        f"config.model.{model_key}={model_value} (the position embeddings)"
      )


def check_tokenizer(config, pieces: int | None = None) -> None:
  """The tokenizer must have exactly config.model.vocab_size pieces.

  More would feed ids past the embedding table (clipped or garbage, no error); fewer
  means the config was written for another tokenizer (the length keys likely too). With
  `pieces` None, checked here for the built-in model and local files (loading one takes
  milliseconds); a remote (gs://) or absent file is checked by the trainer when it opens
  it (`pieces` given), so that jarl.tools.plan can size a run offline, away from the files.
  """
  spec = config.data.get("tokenizer", "")
  if pieces is None:
    path = tokenizer.BUILTIN.get(spec, spec)
    if not spec or "://" in path or not os.path.isfile(path):
      return
    pieces = tokenizer.load(spec).vocab_size
  vocab = config.model.vocab_size
  if pieces != vocab:
    raise ValueError(
      f"config.data.tokenizer={spec!r} has {pieces} pieces but "
      f"config.model.vocab_size={vocab}: set config.model.vocab_size={pieces} "
      "(python -m jarl.tools.make_tokenizer prints the flags that fit a tokenizer)"
    )


def check_init(config) -> None:
  """`init_from` (our run's params) and `model_init` (public tower checkpoints) exclude
  each other; model_init's files must exist and its dont_load regexes compile."""
  init = config.get("model_init", "")
  if init and config.get("init_from", ""):
    raise ValueError(
      f"config.init_from={config.init_from!r} and config.model_init={init!r}: set one; "
      "init_from loads a whole JARL run, model_init public towers into a fresh model"
    )
  model_init.check(init, config.get("model_load", {}).get("dont_load", ()))


def _positive(config, key: str, value, minimum=1):
  if value < minimum:
    raise ValueError(f"config.{key}={value}: must be >= {minimum}")


def check_training(config, num_batch_shards: int) -> None:
  """Raises ValueError naming the first bad training field of `config`."""
  for key in (
    "total_steps",
    "global_batch_size",
    "log_every_steps",
    "ckpt_every_steps",
    "keep_checkpoints",
  ):
    _positive(config, key, config[key])
  opt = config.optimizer
  _positive(config, "optimizer.grad_accum_steps", opt.grad_accum_steps)
  _positive(config, "optimizer.warmup_steps", opt.warmup_steps, minimum=0)
  if opt.learning_rate <= 0:
    raise ValueError(f"config.optimizer.learning_rate={opt.learning_rate}: must be > 0")
  if opt.weight_decay < 0:
    raise ValueError(f"config.optimizer.weight_decay={opt.weight_decay}: must be >= 0")
  if opt.clip_norm < 0:
    raise ValueError(f"config.optimizer.clip_norm={opt.clip_norm}: must be >= 0 (0 = off)")
  for key in ("b1", "b2", "label_smoothing"):
    if not 0.0 <= opt[key] < 1.0:
      raise ValueError(f"config.optimizer.{key}={opt[key]}: must be in [0, 1)")
  # Every process feeds an equal share, split evenly over the batch shards of the mesh,
  # and each shard again into grad_accum_steps micro-batches.
  if (
    config.global_batch_size % (num_batch_shards * opt.grad_accum_steps)
    or config.global_batch_size % jax.process_count()
  ):
    raise ValueError(
      f"config.global_batch_size={config.global_batch_size}: must divide by the "
      f"{num_batch_shards} batch shards of config.mesh x "
      f"config.optimizer.grad_accum_steps={opt.grad_accum_steps}, and by the "
      f"{jax.process_count()} processes"
    )
  if config.profile_steps < 0:
    raise ValueError(f"config.profile_steps={config.profile_steps}: must be >= 0 (0 = off)")
