"""Checks of the training fields of a config, run before anything is built or compiled.

Model fields are checked by `jarl.models.model.build`, data fields by the pipeline;
every message names the config key and its value.
"""
import jax


def _positive(config, key: str, value, minimum=1):
  if value < minimum:
    raise ValueError(f"config.{key}={value}: must be >= {minimum}")


def check_training(config, num_batch_shards: int) -> None:
  """Raises ValueError naming the first bad training field of `config`."""
  for key in ("total_steps", "global_batch_size", "log_every_steps", "ckpt_every_steps",
              "keep_checkpoints"):
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
  if config.global_batch_size % (num_batch_shards * opt.grad_accum_steps) or \
      config.global_batch_size % jax.process_count():
    raise ValueError(
        f"config.global_batch_size={config.global_batch_size}: must divide by the "
        f"{num_batch_shards} batch shards of config.mesh x "
        f"config.optimizer.grad_accum_steps={opt.grad_accum_steps}, and by the "
        f"{jax.process_count()} processes")
  if config.profile_steps < 0:
    raise ValueError(f"config.profile_steps={config.profile_steps}: must be >= 0 (0 = off)")
