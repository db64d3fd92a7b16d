"""Token cross-entropy of decoder logits against the target text, and the image tagging
loss of jarl/models/tagging.py."""
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


def tag_cross_entropy(logits, tags, mask):
  """Mean over rows of the softmax cross-entropy between tag logits [B, T] and the tags
  present [B, T] (0/1), the target mass split evenly over the present tags.

  One softmax over the tag list with a normalised multi-hot target, as Joulin et al.
  (arXiv 1511.02251) trained image features on the words of Flickr captions: a row's
  loss is log T at the start and log #present at best, whatever the tag count. Rows
  without any tag (a caption naming none) and rows `mask` [B] bool drops carry no loss.
  Returns a float32 scalar.
  """
  tags = tags.astype(jnp.float32)
  present = jnp.sum(tags, axis=-1)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  per_row = -jnp.sum(tags * log_probs, axis=-1) / jnp.maximum(present, 1.0)
  valid = (mask & (present > 0)).astype(jnp.float32)
  return jnp.sum(per_row * valid) / jnp.maximum(jnp.sum(valid), 1.0)
