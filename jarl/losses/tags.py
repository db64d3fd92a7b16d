"""Image tagging loss (Tag2Text-style; our addition, not the paper's) on the model's
`aux/tag_logits` (jarl/models/tagging.py), against the batch's `tags`: which of
config.data.tags each training example's target text names (jarl/data/pipeline.py)."""

import jax
import jax.numpy as jnp


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
