"""Fusion of vision and text features into the decoder's memory.

`jarl` (the paper's idea; the iteration below is our design, DESIGN.md "The model"):
    Z_k = Blocks_k(Reduce_k([V_k; T_k; Z_{k-1}]) + Z_{k-1}),   k = 1..K
  with V_k, T_k the tower features at tap k projected to the fusion width plus a modality
  embedding, Z_0 learned, and M = num_tokens joint tokens; the decoder sees Z_K only.
`concat` (the "popular baseline"): all Nv + Nt top-tap tokens through K * n blocks.
`cross_attention`: no fusion encoder; the decoder attends to all projected tokens.

Every fusion takes (config: FusionConfig, dtype), is called as
`fusion(vision_taps, text_taps, text_mask, grid=None, train=False)` and returns
(memory [B, S, D], memory_mask [B, S] bool, out); `FUSIONS` maps config.model.fusion.type
to the class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax.numpy as jnp

from jarl.models import layers, reducers

if TYPE_CHECKING:
  from jarl.models.config import FusionConfig

VISION, TEXT, JOINT = 0, 1, 2


def _project(x, width, dtype, name):
  """LayerNorm -> Dense(width), no bias: the modality embedding added next is the bias."""
  x = layers.layer_norm(f"{name}_norm", dtype)(x)
  return nn.Dense(
    width, use_bias=False, dtype=dtype, name=name, kernel_init=layers.dense_init((None, "embed"))
  )(x)


def _modality_table(module, width):
  # One learned vector per modality (vision, text, joint) so the reducer and the blocks can
  # tell the token kinds apart; it also serves as the projections' shared bias.
  return module.param(
    "modality_embedding", layers.normal_init(0.02, (None, "embed")), (3, width), jnp.float32
  )


class JointAdaptiveFusion(nn.Module):
  """K iterations of reduce-then-refine into `num_tokens` joint tokens.

  out[f"weights_{k}"] [B, M, Nv + Nt + M]: iteration k's reducer weights over its inputs.
  """

  config: FusionConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    """vision[k] [B, Nv, Dv], text[k] [B, Nt, Dt], text_mask [B, Nt] -> memory [B, M, D]."""
    c = self.config
    b = text_mask.shape[0]
    z = self.param(
      "joint_init",
      layers.normal_init(0.02, ("joint", "embed")),
      (c.num_tokens, c.width),
      jnp.float32,
    )
    z = jnp.broadcast_to(z.astype(self.dtype), (b, c.num_tokens, c.width))
    modality = _modality_table(self, c.width).astype(self.dtype)
    out = {}
    for k, (v_k, t_k) in enumerate(zip(vision, text)):
      v = _project(v_k, c.width, self.dtype, f"vision_proj_{k}") + modality[VISION]
      t = _project(t_k, c.width, self.dtype, f"text_proj_{k}") + modality[TEXT]
      zm = z + modality[JOINT]
      # [B, Nv + Nt + M, D]: pinned batch-sharded like the blocks' activations, so the
      # reducer's token-axis softmax never needs the examples regathered.
      tokens = nn.with_logical_constraint(jnp.concatenate([v, t, zm], axis=1), layers.ACTIVATION)
      mask = jnp.concatenate(
        [jnp.ones(v.shape[:2], bool), text_mask, jnp.ones(z.shape[:2], bool)], axis=1
      )
      reduced, weights = reducers.REDUCERS[c.reducer](
        c.num_tokens, c.reducer_hidden, dtype=self.dtype, name=f"reducer_{k}"
      )(tokens, mask, grid)
      z = layers.Blocks(
        c.layers_per_iteration, c.num_heads, c.mlp_dim, c.dropout, self.dtype, name=f"blocks_{k}"
      )(reduced + z, None, train)
      out[f"weights_{k}"] = weights  # [B, M, Nv + Nt + M]
    memory = layers.layer_norm("encoder_norm", self.dtype)(z)
    return memory, jnp.ones(memory.shape[:2], bool), out


class ConcatFusion(nn.Module):
  """Baseline: every top-tap token of both towers through K * n transformer blocks (as many
  as the jarl fusion's K iterations of n layers)."""

  config: FusionConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    c = self.config
    tokens, mask = _concat_top(self, vision, text, text_mask)
    tokens = layers.Blocks(
      len(c.vision_taps) * c.layers_per_iteration,
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
  modality = _modality_table(module, width).astype(module.dtype)
  v = _project(vision[-1], width, module.dtype, "vision_proj") + modality[VISION]
  t = _project(text[-1], width, module.dtype, "text_proj") + modality[TEXT]
  mask = jnp.concatenate([jnp.ones(v.shape[:2], bool), text_mask], axis=1)
  tokens = nn.with_logical_constraint(jnp.concatenate([v, t], axis=1), layers.ACTIVATION)
  return tokens, mask


# config.model.fusion.type
FUSIONS = {
  "jarl": JointAdaptiveFusion,
  "concat": ConcatFusion,
  "cross_attention": CrossAttentionFusion,
}
