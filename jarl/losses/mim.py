"""ViCHA's masked image modelling loss (Shukor et al., arXiv 2208.13628) from the model's
`out`: mean squared error on the masked patches only, a batch mean (scalar)."""

import jax.numpy as jnp


def masked_image_modelling(out, mask=None):
  """Mean squared error of out["aux/mim_pred"] vs out["aux/mim_target"] ([B, N, P]) over
  the patches out["aux/mim_mask"] [B, N] marks as masked (unmasked patches carry no loss: the
  model sees them, so regressing them teaches copying). `mask` [B] drops padding rows."""
  error = jnp.mean(jnp.square(out["aux/mim_pred"] - out["aux/mim_target"]), axis=-1)  # [B, N]
  weights = out["aux/mim_mask"].astype(jnp.float32)
  if mask is not None:
    weights = weights * mask.astype(jnp.float32)[:, None]
  return jnp.sum(error * weights) / jnp.maximum(jnp.sum(weights), 1.0)
