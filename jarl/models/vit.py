"""Vision tower: a ViT without pooling whose every depth is tappable.

The parameter tree matches big_vision's `vit.py` (`embedding`, `pos_embedding`,
`Transformer/encoderblock_{i}/...`, `Transformer/encoder_norm`), so its `.npz` checkpoints
load through `config.model_init` (model_init.py). Only `config.depth` blocks are built:
with fusion taps that end mid-tower, the fusion replaces the upper blocks (DESIGN.md,
"The model").

`token_pruning="elip"` (config.model.vision.token_pruning) prunes and merges vision tokens
between blocks, guided by the text (elip.py); it adds no parameters.

`stem="conv"` (config.model.vision.stem) replaces the one-layer patch embedding by a small
convolutional stem (`ConvStem`; Xiao et al., arXiv 2106.14881): same token grid, so
everything above it is unchanged. Our addition, not the paper's: the demo uses it because
a linear patch embedding trained from scratch on CPU budgets does not learn object shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jarl.models import elip, layers

if TYPE_CHECKING:
  from jarl.models.config import VisionConfig

STEMS = ("patch", "conv")  # config.model.vision.stem
POSEMBS = ("learn", "sincos2d")  # config.model.vision.posemb


def sincos2d(h, w, width, temperature=10_000.0):
  """Fixed 2-D sine-cosine position embedding, [1, h*w, width] (MoCo v3 / big_vision);
  width % 4 == 0."""
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
  y = np.einsum("m,d->md", y.flatten(), omega)
  x = np.einsum("m,d->md", x.flatten(), omega)
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return jnp.asarray(pe, jnp.float32)[None]


class ConvStem(nn.Module):
  """image [B, H, W, 3] -> [B, H/p, W/p, width] through log2(p) 3x3 stride-2 convolutions.

  Channels double per layer up to `width` (width/4, width/2, width for p=8), each followed
  by LayerNorm and GELU (LayerNorm, not BatchNorm: no batch statistics to carry), then a
  1x1 projection. Nearby pixels are combined nonlinearly before attention, which a
  linear patch embedding cannot do; Xiao et al. show this makes ViTs train faster.
  """

  width: int
  patch_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image):
    num_layers = int(np.log2(self.patch_size))
    x = image
    for i in range(num_layers):
      channels = max(self.width >> (num_layers - 1 - i), 8)
      # Small and early: replicated (no logical axis), whatever the mesh.
      x = nn.Conv(
        channels,
        (3, 3),
        strides=(2, 2),
        padding="SAME",
        name=f"conv_{i}",
        dtype=self.dtype,
        kernel_init=layers.lecun_init((None,) * 4),
        bias_init=layers.bias_init((None,)),
      )(x)
      x = nn.gelu(layers.layer_norm(f"norm_{i}", self.dtype, names=(None,))(x))
    return nn.Conv(
      self.width,
      (1, 1),
      name="proj",
      dtype=self.dtype,
      kernel_init=layers.lecun_init((None, None, None, "embed")),
      bias_init=layers.bias_init(("embed",)),
    )(x)


class ViT(nn.Module):
  """image [B, H, W, 3] in [-1, 1] -> (tokens [B, N, D] after encoder_norm, out).

  out[f"depth_{d}"] holds the residual stream after d blocks, [B, N_d, D] (N_d = N unless
  an ELIP stage at or below d pruned); out["grid"] = (h, w), the patch grid, or None once
  an ELIP stage ran (the tokens no longer form the grid; out["elip_index_{d}"] maps them
  back, out["elip_weights_{d}"] holds the merge weights: elip.ElipEncoder).
  With token_pruning="elip", text_guide [B, L, D] and text_mask [B, L] bool (the text
  tower's features and padding mask) guide the pruning; padding never contributes.
  With mask_token=True (ViCHA's masked image modelling), patch_mask [B, N] bool replaces
  those patch embeddings by a learned `mask_token` before the position embedding.
  """

  config: VisionConfig
  mask_token: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image, train=False, text_guide=None, text_mask=None, patch_mask=None):
    c = self.config
    p = c.patch_size
    if c.stem == "conv":
      x = ConvStem(c.width, p, self.dtype, name="stem")(image.astype(self.dtype))
    else:
      x = nn.Conv(
        c.width,
        (p, p),
        strides=(p, p),
        padding="VALID",
        name="embedding",
        dtype=self.dtype,
        kernel_init=layers.lecun_init((None, None, None, "embed")),
        bias_init=layers.bias_init(("embed",)),
      )(image.astype(self.dtype))
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    if c.posemb == "learn":
      pos = self.param(
        "pos_embedding",
        layers.normal_init(1 / np.sqrt(d), (None, "length", "embed")),
        (1, h * w, d),
        jnp.float32,
      )
    else:
      pos = sincos2d(h, w, d)
    if self.mask_token:  # masked image modelling (ViCHA, vicha.py): only then the param exists
      # Created after pos_embedding: params draw from the scope's rng in creation order, so
      # every other parameter initialises exactly as in the plain ViT.
      token = self.param(
        "mask_token", layers.normal_init(0.02, (None, None, "embed")), (1, 1, d), jnp.float32
      )
      if patch_mask is not None:
        # Before the position embedding, so the model knows *where* a patch is missing.
        x = jnp.where(patch_mask[..., None], token.astype(x.dtype), x)
    elif patch_mask is not None:
      raise ValueError(
        "ViT got patch_mask but has no mask token: set config.model.vicha.mim_ratio > 0"
      )
    x = x + pos.astype(x.dtype)
    x = nn.Dropout(c.dropout)(x, deterministic=not train)
    if c.token_pruning == "elip":
      if text_guide is None:
        raise ValueError(
          "config.model.vision.token_pruning='elip' prunes by the text: the "
          "ViT needs text_guide (Model.towers passes it)"
        )
      if text_mask is None:
        text_mask = jnp.ones(text_guide.shape[:2], bool)
      guide = elip.pool_text_guide(text_guide, text_mask)
      x, out = elip.ElipEncoder(
        c.depth,
        c.num_heads,
        c.mlp_dim,
        c.elip_layers,
        c.elip_keep,
        c.dropout,
        c.remat_policy,
        self.dtype,
        name="Transformer",
      )(x, guide, train)
      ran = any(key.startswith("elip_index_") for key in out)
      out["grid"] = None if ran else (h, w)
      return x, out
    x, out = layers.Encoder.of(c, self.dtype, name="Transformer")(x, None, train)
    out["grid"] = (h, w)
    return x, out
