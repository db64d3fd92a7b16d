"""Text tower: a transformer encoder over SentencePiece ids with a padding mask.

Id 0 is padding everywhere in JARL; padded positions are excluded as attention keys and
reported through `out["mask"]` so fusion's reducer gives them zero weight.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jarl.models import transformer


class TextEncoder(nn.Module):
  """text [B, L] int32 -> (tokens [B, L, D] after encoder_norm, out).

  out[f"depth_{d}"] is the residual stream after d blocks; out["mask"] [B, L] bool.
  """
  vocab_size: int
  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  max_len: int
  dropout: float = 0.0
  scan: bool = False
  remat_policy: str = "none"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, text, train=False):
    if text.shape[1] > self.max_len:
      raise ValueError(f"text length {text.shape[1]} exceeds config.model.text.max_len="
                       f"{self.max_len}")
    valid = text != 0
    x = nn.Embed(self.vocab_size, self.width, name="embedding",
                 embedding_init=nn.with_logical_partitioning(
                     nn.initializers.normal(stddev=1.0), ("vocab", "embed")))(text)
    pos = self.param("pos_embedding", nn.with_logical_partitioning(
        nn.initializers.normal(stddev=1 / np.sqrt(self.width)), (None, "length", "embed")),
        (1, self.max_len, self.width), jnp.float32)
    x = (x + pos[:, :text.shape[1]]).astype(self.dtype)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x, out = transformer.Encoder(self.depth, self.num_heads, self.mlp_dim, self.dropout,
                                 self.scan, self.remat_policy, self.dtype,
                                 name="Transformer")(x, transformer.key_mask(valid), train)
    out["mask"] = valid
    return x, out
