"""Fusion of vision and text features into the decoder's memory.

`jarl` (the paper's idea; the iteration below is our design, DESIGN.md "The model"):
    Z_k = Blocks_k(Reduce_k([V_k; T_k; Z_{k-1}]) + Z_{k-1}),   k = 1..K
  with V_k, T_k the tower features at tap k projected to the fusion width plus a modality
  embedding, Z_0 learned, and M = num_tokens joint tokens; the decoder sees Z_K only.
`concat` (the "popular baseline"): all Nv + Nt top-tap tokens through K * n blocks.
`cross_attention`: no fusion encoder; the decoder attends to all projected tokens.

Every fusion returns (memory [B, S, D], memory_mask [B, S] bool, out).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jarl.models import reducers, transformer

VISION, TEXT, JOINT = 0, 1, 2


def _project(x, width, dtype, name):
  """LayerNorm -> Dense(width), no bias: the modality embedding added next is the bias."""
  x = transformer.layer_norm(f"{name}_norm", dtype)(x)
  return nn.Dense(width, use_bias=False, dtype=dtype, name=name,
                  kernel_init=transformer.dense_init((None, "embed")))(x)


def _modality_table(module, width):
  # One learned vector per modality (vision, text, joint) so the reducer and the blocks can
  # tell the token kinds apart; it also serves as the projections' shared bias.
  return module.param("modality_embedding", nn.with_logical_partitioning(
      nn.initializers.normal(0.02), (None, "embed")), (3, width), jnp.float32)


class _Blocks(nn.Module):
  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, train=False):
    for i in range(self.depth):
      x = transformer.Encoder1DBlock(self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                                     name=f"encoderblock_{i}")(x, mask, train)
    return x


class JointAdaptiveFusion(nn.Module):
  """K iterations of reduce-then-refine into `num_tokens` joint tokens."""
  width: int
  num_heads: int
  mlp_dim: int
  num_tokens: int
  layers_per_iteration: int
  reducer: str = "tokenlearner_v11"
  reducer_hidden: int = 64
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    """vision[k] [B, Nv, Dv], text[k] [B, Nt, Dt], text_mask [B, Nt] -> memory [B, M, D]."""
    b = text_mask.shape[0]
    z = self.param("joint_init", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("joint", "embed")), (self.num_tokens, self.width),
        jnp.float32)
    z = jnp.broadcast_to(z.astype(self.dtype), (b, self.num_tokens, self.width))
    modality = _modality_table(self, self.width).astype(self.dtype)
    out = {}
    for k, (v_k, t_k) in enumerate(zip(vision, text)):
      v = _project(v_k, self.width, self.dtype, f"vision_proj_{k}") + modality[VISION]
      t = _project(t_k, self.width, self.dtype, f"text_proj_{k}") + modality[TEXT]
      zm = z + modality[JOINT]
      # [B, Nv + Nt + M, D]: pinned batch-sharded like the blocks' activations, so the
      # reducer's token-axis softmax never needs the examples regathered.
      tokens = nn.with_logical_constraint(jnp.concatenate([v, t, zm], axis=1),
                                          transformer.ACTIVATION)
      mask = jnp.concatenate([jnp.ones(v.shape[:2], bool), text_mask,
                              jnp.ones(z.shape[:2], bool)], axis=1)
      reduced, weights = reducers.REDUCERS[self.reducer](
          self.num_tokens, self.reducer_hidden, dtype=self.dtype, name=f"reducer_{k}")(
              tokens, mask, grid)
      z = _Blocks(self.layers_per_iteration, self.num_heads, self.mlp_dim, self.dropout,
                  self.dtype, name=f"blocks_{k}")(reduced + z, None, train)
      out[f"reducer_weights_{k}"] = weights  # [B, M, Nv + Nt + M]
    memory = transformer.layer_norm("encoder_norm", self.dtype)(z)
    return memory, jnp.ones(memory.shape[:2], bool), out


class ConcatFusion(nn.Module):
  """Baseline: every top-tap token of both towers through `depth` transformer blocks."""
  width: int
  num_heads: int
  mlp_dim: int
  depth: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    tokens, mask = _concat_top(self, vision, text, text_mask)
    tokens = _Blocks(self.depth, self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                     name="blocks")(tokens, transformer.key_mask(mask), train)
    return transformer.layer_norm("encoder_norm", self.dtype)(tokens), mask, {}


class CrossAttentionFusion(nn.Module):
  """Baseline without a fusion encoder: the decoder cross-attends to all Nv + Nt tokens."""
  width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    tokens, mask = _concat_top(self, vision, text, text_mask)
    return transformer.layer_norm("encoder_norm", self.dtype)(tokens), mask, {}


def _concat_top(module, vision, text, text_mask):
  """Projects the last tap of each tower and concatenates: [B, Nv + Nt, D], mask [B, Nv + Nt]."""
  modality = _modality_table(module, module.width).astype(module.dtype)
  v = _project(vision[-1], module.width, module.dtype, "vision_proj") + modality[VISION]
  t = _project(text[-1], module.width, module.dtype, "text_proj") + modality[TEXT]
  mask = jnp.concatenate([jnp.ones(v.shape[:2], bool), text_mask], axis=1)
  tokens = nn.with_logical_constraint(jnp.concatenate([v, t], axis=1), transformer.ACTIVATION)
  return tokens, mask
