"""Token cross-entropy of the decoder's logits against the target text: the main loss."""

import jax
import jax.numpy as jnp


def token_cross_entropy(logits, target, mask, label_smoothing: float = 0.0):
  """Per-example summed cross-entropy and token counts.

  Args:
    logits: [B, L, V] float32, aligned with `target` (the model shifts internally).
    target: [B, L] int32; 0 is padding and carries no loss.
    mask: [B] bool; False rows (eval padding) carry no loss.
    label_smoothing: mass spread uniformly over the vocabulary.

  Returns:
    (loss_sum [B], token_count [B]) float32. Sums, not means, so that a batch split into
    micro-batches (gradient accumulation) or across devices normalises exactly once.
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, target[..., None], axis=-1)[..., 0]
  if label_smoothing > 0:
    uniform = -jnp.mean(log_probs, axis=-1)
    nll = (1.0 - label_smoothing) * nll + label_smoothing * uniform
  weights = (target != 0) & mask[:, None]
  weights = weights.astype(jnp.float32)
  return jnp.sum(nll * weights, axis=-1), jnp.sum(weights, axis=-1)
