"""Fusion of vision and text features into the decoder's memory: the registry.

`config.model.fusion.type` picks one (docs/design.md compares them):
  jarl             the paper's fusion (Sec. 2 Eq. 1-4): latent resampling of each modality
                   once, then K iterations of gated fusion (gated_fusion.py)
  co_tokenization  TokenLearner over [V_k; T_k; Z_{k-1}] per tower tap, iterated: the
                   paper's Table 2 baseline, this project's first `jarl` (co_tokenization.py)
  perceiver        latents re-attending to the full [V; T] every iteration (perceiver.py)
  concat           the "popular baseline" (Table 3): all Nv + Nt top-tap tokens through
                   iterations x layers_per_iteration transformer blocks
  cross_attention  no fusion encoder: the decoder attends to all projected tokens

Every fusion takes (config: FusionConfig, dtype), is called as
`fusion(vision_taps, text_taps, text_mask, grid=None, train=False)` with one feature array
per tower tap, and returns (memory [B, S, D], memory_mask [B, S] bool, out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax.numpy as jnp

from jarl.models import co_tokenization, gated_fusion, layers, perceiver

if TYPE_CHECKING:
  from jarl.models.config import FusionConfig


class ConcatFusion(nn.Module):
  """Baseline: every top-tap token of both towers through K * n transformer blocks (as many
  as the other fusions' K iterations of n layers)."""

  config: FusionConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    c = self.config
    tokens, mask = _concat_top(self, vision, text, text_mask)
    tokens = layers.Blocks(
      c.iterations * c.layers_per_iteration,
      c.num_heads,
      c.mlp_dim,
      c.dropout,
      self.dtype,
      name="blocks",
    )(tokens, layers.key_mask(mask), train)
    return layers.layer_norm("encoder_norm", self.dtype)(tokens), mask, {}


class CrossAttentionFusion(nn.Module):
  """Baseline without a fusion encoder: the decoder cross-attends to all Nv + Nt tokens."""

  config: FusionConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    tokens, mask = _concat_top(self, vision, text, text_mask)
    return layers.layer_norm("encoder_norm", self.dtype)(tokens), mask, {}


def _concat_top(module, vision, text, text_mask):
  """Projects the last tap of each tower and concatenates: [B, Nv + Nt, D], mask [B, Nv + Nt]."""
  width = module.config.width
  modality = layers.modality_embedding(module, width).astype(module.dtype)
  v = layers.project(vision[-1], width, module.dtype, "vision_proj") + modality[0]
  t = layers.project(text[-1], width, module.dtype, "text_proj") + modality[1]
  mask = jnp.concatenate([jnp.ones(v.shape[:2], bool), text_mask], axis=1)
  tokens = nn.with_logical_constraint(jnp.concatenate([v, t], axis=1), layers.ACTIVATION)
  return tokens, mask


# config.model.fusion.type
FUSIONS = {
  "jarl": gated_fusion.JarlFusion,
  "co_tokenization": co_tokenization.CoTokenization,
  "perceiver": perceiver.PerceiverFusion,
  "concat": ConcatFusion,
  "cross_attention": CrossAttentionFusion,
}
