"""ViCHA's hierarchical image-text alignment (Shukor et al., arXiv 2208.13628) from the
model's `out`: sum_p w_p * InfoNCE(image_p, text_p), a batch mean (scalar).

The contrastive [B, B] similarity is taken over the
*global* batch: under jit with a data-sharded batch, XLA gathers the embeddings
([B, E] per depth, small) and every device holds the full [B, B] logits — B*B*4 bytes per
depth (4096^2 * 4 = 64 MiB at the base batch size), the price of using every other example
in the batch as a negative. With config.optimizer.grad_accum_steps > 1 the negatives are
those of each micro-batch (jarl/losses/objective.py averages the micro-batch losses).
"""

import jax
import jax.numpy as jnp


def l2_normalize(x, eps: float = 1e-6):
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), eps * eps))


def info_nce(image, text, log_scale, mask=None):
  """Symmetric InfoNCE of paired embeddings: image, text [B, E] (normalised here).

  logits = exp(log_scale) * cos(image_i, text_j); the loss is the mean of image->text
  and text->image cross-entropy with the diagonal as the positive. `mask` [B] bool drops
  padding rows both as anchors and as negatives. Returns a float32 scalar.
  """
  image = l2_normalize(image.astype(jnp.float32))
  text = l2_normalize(text.astype(jnp.float32))
  logits = jnp.exp(log_scale) * image @ text.T  # [B, B]
  b = logits.shape[0]
  if mask is None:
    mask = jnp.ones([b], bool)
  valid = mask.astype(jnp.float32)
  # Padding columns get -inf-like logits so they are not negatives for anyone.
  logits = jnp.where(mask[None, :] & mask[:, None], logits, -1e9)
  diagonal = jnp.diagonal(logits)
  image_to_text = jax.nn.logsumexp(logits, axis=1) - diagonal
  text_to_image = jax.nn.logsumexp(logits, axis=0) - diagonal
  per_row = 0.5 * (image_to_text + text_to_image)
  return jnp.sum(per_row * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def hierarchical_contrastive(out, mask=None, weights=None):
  """sum_p weights[p] * info_nce(out["aux/contrastive_img"][p], out["aux/contrastive_txt"][p]).

  out["aux/contrastive_img"], out["aux/contrastive_txt"]: [P, B, E], one entry per
  config.model.vicha.contrastive_depths pair; out["aux/contrastive_log_scale"]: the shared
  learned log inverse temperature. `weights`: P floats (None or () = all 1; their count is
  checked when the objective is built, jarl/losses/registry.py).
  """
  image, text = out["aux/contrastive_img"], out["aux/contrastive_txt"]
  if weights is None or len(weights) == 0:
    weights = [1.0] * image.shape[0]
  return sum(
    float(w) * info_nce(image[p], text[p], out["aux/contrastive_log_scale"], mask)
    for p, w in enumerate(weights)
  )
