"""ViCHA heads (Shukor et al., arXiv 2208.13628): what the two auxiliary losses read.

Hierarchical alignment: at each configured depth pair (vision_depth, text_depth), each
tower's features are mean-pooled over their valid tokens and linearly projected to a
shared embedding width; jarl/losses/contrastive.py L2-normalises them and applies a
symmetric InfoNCE over the batch. One learned temperature is shared by all depths (as CLIP/ALBEF
learn one), stored as log(1/T) so it stays positive.

Masked image modelling: a random fraction of patches is replaced by a learned mask token
at the ViT input (vit.py, `mask_token`), and a linear head regresses each patch's pixels,
normalised per patch (MAE's norm_pix target), from the ViT's top features (loss in
jarl/losses/mim.py).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jarl.models import layers


def masked_mean(x, mask):
  """x [B, N, D], mask [B, N] bool -> [B, D] mean over valid tokens (all-pad rows: 0)."""
  weights = mask.astype(jnp.float32)
  total = jnp.einsum("bn,bnd->bd", weights, x.astype(jnp.float32))
  return total / jnp.maximum(weights.sum(-1, keepdims=True), 1.0)


def _projection(features: int, name: str, dtype=jnp.float32):
  return nn.Dense(
    features,
    dtype=dtype,
    name=name,
    kernel_init=layers.lecun_init(("embed", None)),
    bias_init=layers.bias_init((None,)),
  )


class ContrastiveHeads(nn.Module):
  """Per-depth projections of pooled tower features into one shared embedding space.

  __call__(vision [P] of [B, Nv, Dv], text [P] of [B, Lt, Dt], text_mask [B, Lt]) ->
  (image_embed [P, B, E], text_embed [P, B, E], log_scale []) — not yet normalised.
  """

  depths: tuple[tuple[int, int], ...]
  embed_dim: int
  temperature_init: float = 0.07

  @nn.compact
  def __call__(self, vision, text, text_mask):
    image_embed, text_embed = [], []
    for (dv, dt), v, t in zip(self.depths, vision, text):
      v_pool = masked_mean(v, jnp.ones(v.shape[:2], bool))
      t_pool = masked_mean(t, text_mask)
      image_embed.append(_projection(self.embed_dim, f"image_proj_{dv}_{dt}")(v_pool))
      text_embed.append(_projection(self.embed_dim, f"text_proj_{dv}_{dt}")(t_pool))
    log_scale = self.param(
      "log_scale", nn.initializers.constant(np.log(1.0 / self.temperature_init)), (), jnp.float32
    )
    return jnp.stack(image_embed), jnp.stack(text_embed), log_scale


def random_patch_mask(rng, batch: int, num_patches: int, ratio: float):
  """[B, N] bool with exactly round(ratio * N) (at least 1) True entries per row.

  A random permutation per row (argsort of uniform noise, as MAE does) rather than an
  independent coin per patch, so every image carries the same number of MIM targets.
  """
  count = max(1, int(round(ratio * num_patches)))
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(rng, (batch, num_patches)), -1), -1)
  return ranks < count


def patch_targets(image, patch_size: int, eps: float = 1e-6):
  """image [B, H, W, C] -> per-patch normalised pixels [B, N, p*p*C] (row-major patches,
  the ViT's token order). Each patch is shifted to zero mean and scaled to unit variance
  (MAE's norm_pix_loss target: regresses local structure, not absolute brightness)."""
  b, h, w, c = image.shape
  p = patch_size
  x = image.astype(jnp.float32).reshape(b, h // p, p, w // p, p, c)
  x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // p) * (w // p), p * p * c)
  mean = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mean) / jnp.sqrt(var + eps)


class MimHead(nn.Module):
  """ViT top features [B, N, D] -> predicted normalised pixels [B, N, p*p*C] (one Dense)."""

  patch_pixels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return _projection(self.patch_pixels, "pixels", self.dtype)(x).astype(jnp.float32)
