"""Perceiver-style resampler fusion: the paper's Table 2 baseline that re-reads the inputs.

    Z_0 learned [N, D];  X = [P_v(V) + e_v; P_t(T) + e_t]   (top taps, padding masked)
    for i in 1..K:
      Z = Z + Attn(LN(Z), LN(X));  Z = Z + MLP(LN(Z))       cross-attend to the full inputs
      Z = Blocks_i(Z)                                          layers_per_iteration layers
    memory = LN(Z)

Each iteration attends to all Nv + Nt input tokens (with its own weights), where `jarl`
attends to them once and then works on 2N tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax.numpy as jnp

from jarl.models import layers

if TYPE_CHECKING:
  from jarl.models.config import FusionConfig


class CrossAttentionBlock(nn.Module):
  """z [B, N, D] attends to x [B, S, D] (`mask` [B, 1, S]); pre-LN, residual; then an MLP."""

  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, x, mask=None, train=False):
    q = layers.layer_norm("query_norm", self.dtype)(z)
    kv = layers.layer_norm("memory_norm", self.dtype)(x)
    y = layers.MultiHeadDotProductAttention(self.num_heads, self.dtype, name="cross_attention")(
      q, kv, mask
    )
    z = z + nn.Dropout(self.dropout)(y, deterministic=not train)
    y = layers.MlpBlock(self.mlp_dim, self.dropout, self.dtype, name="mlp")(
      layers.layer_norm("mlp_norm", self.dtype)(z), train
    )
    return z + nn.Dropout(self.dropout)(y, deterministic=not train)


class PerceiverFusion(nn.Module):
  config: FusionConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    """vision[-1] [B, Nv, Dv], text[-1] [B, Nt, Dt], text_mask [B, Nt] -> memory [B, N, D]."""
    c = self.config
    modality = layers.modality_embedding(self, c.width).astype(self.dtype)
    v = layers.project(vision[-1], c.width, self.dtype, "vision_proj") + modality[0]
    t = layers.project(text[-1], c.width, self.dtype, "text_proj") + modality[1]
    x = nn.with_logical_constraint(jnp.concatenate([v, t], axis=1), layers.ACTIVATION)
    mask = layers.key_mask(jnp.concatenate([jnp.ones(v.shape[:2], bool), text_mask], axis=1))
    z = self.param(
      "latents", layers.normal_init(0.02, ("joint", "embed")), (c.num_tokens, c.width), jnp.float32
    )
    z = jnp.broadcast_to(z.astype(self.dtype), (x.shape[0], c.num_tokens, c.width))
    for i in range(c.iterations):
      z = CrossAttentionBlock(c.num_heads, c.mlp_dim, c.dropout, self.dtype, name=f"read_{i}")(
        z, x, mask, train
      )
      z = layers.Blocks(
        c.layers_per_iteration, c.num_heads, c.mlp_dim, c.dropout, self.dtype, name=f"blocks_{i}"
      )(z, None, train)
    memory = layers.layer_norm("encoder_norm", self.dtype)(z)
    return memory, jnp.ones(memory.shape[:2], bool), {}
