"""The paper's fusion (Sec. 2, Eq. 1-4, as summarised in shared PAPER.md): `jarl`.

    f_N = Resample_v(P_v(V)),  t_N = Resample_t(P_t(T), mask)          Eq. 1-2, once
    for i in 1..K:                                                      Eq. 4
      P = LN(t) + g_a * Attn(LN(t), LN(f_N))                            Eq. 3
      F = P + g_b * MLP(P)
      t = F + t            (combine = gated, residual)   |   t = F   (none)
      t = Blocks_i(t)      (layers_per_iteration transformer layers)
    memory = LN(t)   or   LN([t; f_N])   (memory = fused | fused_and_image)

V, T are the towers' top taps (`vision_taps[-1]`, `text_taps[-1]`); P_v, P_t project them
to the fusion width (Eq. 1). `resample`: `latent` = N learned queries cross-attending to
the tokens (Eq. 2), `spatial` = TokenLearner v1.1 maps; the text latents t_N start from the
text with its padding masked, so N does not depend on the text length. The expensive
attention over all Nv + Nt inputs happens once; every iteration works on 2N tokens.

`combine` (Table 4 "combining iterations"): `gated` g_a = tanh(alpha_i), g_b = tanh(beta_i)
with learned scalars per iteration; `residual` g_a = g_b = 1 (no gates); `none` as
residual but the iteration's output replaces t instead of adding to it. Our choices where
the summary is silent (docs/design.md): the gates start at `gate_init` (1.0: open, since
every part trains from scratch here; 0 makes each iteration start as the identity, as in
Flamingo); the towers feed their top tap; the decoder reads the fused tokens.

out: image_weights [B, N, Nv], text_weights [B, N, Nt] (resampling maps, head-averaged for
latent), gates [K, 2] (each iteration's attention and MLP gate; 1 unless gated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax.numpy as jnp

from jarl.models import layers, resample

if TYPE_CHECKING:
  from jarl.models.config import FusionConfig

COMBINE = ("gated", "residual", "none")  # config.model.fusion.combine
MEMORY = ("fused", "fused_and_image")  # config.model.fusion.memory


class GatedCrossAttention(nn.Module):
  """Eq. 3: t [B, N, D], f [B, M, D] -> (F [B, N, D], gates [2]: the attention and MLP gates).

  gated=False fixes both gates at 1 (`residual`/`none`). With alpha = beta = 0 the output
  is LN(t) exactly: the residual path alone.
  """

  num_heads: int
  mlp_dim: int
  gated: bool = True
  gate_init: float = 1.0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, t, f, train=False):
    if self.gated:
      init = nn.with_logical_partitioning(nn.initializers.constant(self.gate_init), ())
      g_attn = jnp.tanh(self.param("alpha", init, (), jnp.float32)).astype(self.dtype)
      g_mlp = jnp.tanh(self.param("beta", init, (), jnp.float32)).astype(self.dtype)
    else:
      g_attn = g_mlp = jnp.ones((), self.dtype)
    t_norm = layers.layer_norm("query_norm", self.dtype)(t)
    f_norm = layers.layer_norm("memory_norm", self.dtype)(f)
    attn = layers.MultiHeadDotProductAttention(self.num_heads, self.dtype, name="cross_attention")
    y = nn.Dropout(self.dropout)(attn(t_norm, f_norm), deterministic=not train)
    p = t_norm + g_attn * y
    mlp = layers.MlpBlock(self.mlp_dim, self.dropout, self.dtype, name="mlp")(p, train)
    fused = p + g_mlp * nn.Dropout(self.dropout)(mlp, deterministic=not train)
    return fused, jnp.stack([g_attn, g_mlp]).astype(jnp.float32)


class JarlFusion(nn.Module):
  """Latent resampling once, then K iterations of gated fusion and transformer layers."""

  config: FusionConfig
  dtype: Any = jnp.float32

  def _resampler(self, name):
    c = self.config
    if c.resample == "latent":
      return resample.LatentResampler(c.num_tokens, c.num_heads, self.dtype, name=name)
    return resample.TokenLearnerV11(c.num_tokens, c.reducer_hidden, self.dtype, name=name)

  @nn.compact
  def __call__(self, vision: Sequence, text: Sequence, text_mask, grid=None, train=False):
    """vision[-1] [B, Nv, Dv], text[-1] [B, Nt, Dt], text_mask [B, Nt] ->
    memory [B, N, D] (fused) or [B, 2N, D] (fused_and_image), memory_mask all True."""
    c = self.config
    v = layers.project(vision[-1], c.width, self.dtype, "vision_proj")  # Eq. 1
    t = layers.project(text[-1], c.width, self.dtype, "text_proj")
    v = nn.with_logical_constraint(v, layers.ACTIVATION)
    f, image_weights = self._resampler("image_resampler")(v, None, grid)  # Eq. 2
    t, text_weights = self._resampler("text_resampler")(t, text_mask, None)
    gates = []
    for i in range(c.iterations):
      block = GatedCrossAttention(
        c.num_heads,
        c.mlp_dim,
        gated=c.combine == "gated",
        gate_init=c.gate_init,
        dropout=c.dropout,
        dtype=self.dtype,
        name=f"gated_{i}",
      )
      fused, gate = block(t, f, train)  # Eq. 3
      t = fused if c.combine == "none" else fused + t  # Eq. 4
      t = layers.Blocks(
        c.layers_per_iteration, c.num_heads, c.mlp_dim, c.dropout, self.dtype, name=f"blocks_{i}"
      )(t, None, train)
      gates.append(gate)
    memory = jnp.concatenate([t, f], axis=1) if c.memory == "fused_and_image" else t
    memory = layers.layer_norm("encoder_norm", self.dtype)(memory)
    out = {"image_weights": image_weights, "text_weights": text_weights, "gates": jnp.stack(gates)}
    return memory, jnp.ones(memory.shape[:2], bool), out
