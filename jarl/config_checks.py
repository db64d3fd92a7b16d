"""Checks of a run config, run once before anything is built or compiled: `check`.

Each group of keys has its one checker: model keys the typed model config
(`jarl.models.model.build`), `config.losses` the objective (`jarl.losses`), the batch
layout against the model here, training keys here (`check_training`), data sources and
tags by the pipeline when it opens them. Every message names the config key and its value.
`check_run` adds what a run needs of the files it names (workdir, init_from, sources,
sampling's reference run); jarl.main prints any of these errors as one line and exits
with status 2.
"""

import os

import jax

from jarl import checkpoint, losses
from jarl.data import mixture, sources, tokenizer
from jarl.models import model as model_lib
from jarl.models import model_init

# `config.init_from` that starts a fine-tune from random initialisation on purpose.
NO_INIT = "none"


class ConfigError(ValueError):
  """A mistake in the run's config, flags or the files they name, found before training."""


def check(config, num_batch_shards: int) -> None:
  """Raises ValueError naming the first bad field of the run config `config`.

  Offline: reads local tokenizer and model_init files only (jarl.tools.plan sizes runs with
  it, away from their data and checkpoints).
  """
  model_lib.build(config)
  losses.make_objective(config)
  check_source_names(config)
  check_layout(config)
  check_tokenizer(config)
  check_training(config, num_batch_shards)
  check_init(config)


def check_run(config, workdir: str, num_batch_shards: int) -> None:
  """`check`, then what a run in `workdir` needs of the files the config names: the
  workdir, `init_from`, and a file for every source glob. ConfigError for any of them."""
  try:
    check(config, num_batch_shards)
    check_workdir(workdir)
    check_init_from(config)
    check_sources(config)
    check_sampling(config)
  except ValueError as e:
    raise ConfigError(str(e)) from e


def init_from(config) -> str:
  """The run to load parameters from: config.init_from, or "" for none (NO_INIT)."""
  path = config.get("init_from", "")
  return "" if path == NO_INIT else path


def check_workdir(workdir: str) -> None:
  """A local `--workdir` is made now (the run writes there next) and must be writable."""
  if "://" in workdir:  # gs:// and the like: the first write tells
    return
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir}: is a file, not a directory")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--workdir={workdir}: cannot make it ({e.strerror}: {e.filename})") from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise ValueError(f"--workdir={workdir}: not writable")


def check_init_from(config) -> None:
  """A fine-tune names the run it starts from (or NO_INIT); the run must hold a checkpoint."""
  path = config.get("init_from", "")
  if config.get("stage", "") == "finetune" and not path and not config.get("model_init", ""):
    raise ValueError(
      "config.init_from is empty: a fine-tune starts from a pretraining run; set "
      f"--config.init_from=<its workdir>, or --config.init_from={NO_INIT} to train from "
      "random initialisation on purpose"
    )
  if init_from(config):
    try:
      checkpoint.find_step_dir(path)
    except FileNotFoundError as e:
      raise ValueError(str(e)) from None


def check_sources(config) -> None:
  """Every training and evaluation source parses; every ArrayRecord glob matches a file."""
  for i, s in enumerate(config.data.sources):
    sources.parse(s["source"], where=f"config.data.sources[{i}].source")
  for name, e in config.get("evals", {}).items():
    sources.parse(e["source"], where=f"config.evals.{name}.source")


def check_source_names(config) -> None:
  """A source's loss is logged as train/loss_<name>, beside the objective's parts
  train/loss_<term>: no source may be named after a term (losses.TERM_NAMES)."""
  for i, s in enumerate(config.data.get("sources", ())):
    if s["name"] in losses.TERM_NAMES:
      raise ValueError(
        f"config.data.sources[{i}].name={s['name']!r} is also a loss term's name "
        f"({', '.join(losses.TERM_NAMES)}): both would log train/loss_{s['name']}; "
        "rename the source"
      )


def check_sampling(config) -> None:
  """config.data.sampling builds a mixer over the sources; excess_loss's reference run
  (a workdir) holds a loss for every source."""
  mixture.from_config(config.data)


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
  if init and init_from(config):
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
