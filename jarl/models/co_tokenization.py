"""Iterative co-tokenization (Piergiovanni et al., ECCV 2022): the paper's Table 2 baseline.

    Z_k = Blocks_k(Reduce_k([V_k; T_k; Z_{k-1}]) + Z_{k-1}),   k = 1..K

V_k, T_k are the tower features at tap k (`vision_taps[k]`, `text_taps[k]`, so K is the
number of taps and must equal `iterations`) projected to the fusion width plus a modality
embedding; Z_0 is learned; M = `num_tokens` joint tokens; the decoder sees Z_K only. The
reducer (`reducer`: TokenLearner v1.1 or v1) re-reads the full inputs at every iteration,
which is what the paper's fusion avoids. This was the project's first `jarl` fusion;
parameters and outputs are unchanged by the rename (tests/test_fusion.py checks them
against the old module's recorded outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax.numpy as jnp

from jarl.models import layers, resample

if TYPE_CHECKING:
  from jarl.models.config import FusionConfig

VISION, TEXT, JOINT = 0, 1, 2


class CoTokenization(nn.Module):
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
    modality = layers.modality_embedding(self, c.width).astype(self.dtype)
    out = {}
    for k, (v_k, t_k) in enumerate(zip(vision, text)):
      v = layers.project(v_k, c.width, self.dtype, f"vision_proj_{k}") + modality[VISION]
      t = layers.project(t_k, c.width, self.dtype, f"text_proj_{k}") + modality[TEXT]
      zm = z + modality[JOINT]
      # [B, Nv + Nt + M, D]: pinned batch-sharded like the blocks' activations, so the
      # reducer's token-axis softmax never needs the examples regathered.
      tokens = nn.with_logical_constraint(jnp.concatenate([v, t, zm], axis=1), layers.ACTIVATION)
      mask = jnp.concatenate(
        [jnp.ones(v.shape[:2], bool), text_mask, jnp.ones(z.shape[:2], bool)], axis=1
      )
      reduced, weights = resample.REDUCERS[c.reducer](
        c.num_tokens, c.reducer_hidden, dtype=self.dtype, name=f"reducer_{k}"
      )(tokens, mask, grid)
      z = layers.Blocks(
        c.layers_per_iteration, c.num_heads, c.mlp_dim, c.dropout, self.dtype, name=f"blocks_{k}"
      )(reduced + z, None, train)
      out[f"weights_{k}"] = weights  # [B, M, Nv + Nt + M]
    memory = layers.layer_norm("encoder_norm", self.dtype)(z)
    return memory, jnp.ones(memory.shape[:2], bool), out
