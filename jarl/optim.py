"""The optimizer: AdamW with linear warmup + cosine decay, global-norm clipping.

Weight decay applies only to leaves named `kernel` (dense/conv weights): norms, biases,
token and position embeddings, learned queries, latents, joint tokens and gates are not decayed, because
shrinking them towards zero changes the function rather than regularising it.
"""

from absl import logging
import jax
import optax


def learning_rate_schedule(opt_config, total_steps: int) -> optax.Schedule:
  """0 -> `learning_rate` linearly over `warmup_steps`, then cosine to 0 at `total_steps`.

  A run shorter than its warmup (a smoke test: `--config.total_steps=6` on a config with
  100 warmup steps) warms up over all but its last step instead of failing.
  """
  warmup = min(opt_config.warmup_steps, max(total_steps - 1, 0))
  if warmup != opt_config.warmup_steps:
    logging.warning(
      "config.optimizer.warmup_steps=%d >= config.total_steps=%d: warming up over %d steps.",
      opt_config.warmup_steps,
      total_steps,
      warmup,
    )
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=opt_config.learning_rate,
    warmup_steps=warmup,
    decay_steps=total_steps,
    end_value=0.0,
  )


def decay_mask(params):
  """True for the leaves AdamW decays: those named `kernel`."""

  def is_kernel(path, _):
    # Only dict keys name parameters; boxed leaves (`nn.LogicallyPartitioned`) add a
    # trailing `.value` attribute that must not hide the name.
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return bool(names) and names[-1] == "kernel"

  return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(opt_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """optax chain for `config.optimizer`; gradient accumulation lives in the train step."""
  adamw = optax.adamw(
    schedule,
    b1=opt_config.b1,
    b2=opt_config.b2,
    weight_decay=opt_config.weight_decay,
    mask=decay_mask,
  )
  if opt_config.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(opt_config.clip_norm), adamw)
  return adamw
