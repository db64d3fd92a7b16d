"""Text tower: a transformer encoder over SentencePiece ids with a padding mask.

Id 0 is padding everywhere in JARL; padded positions are excluded as attention keys and
reported through `out["mask"]` so fusion's reducer gives them zero weight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jarl.models import layers

if TYPE_CHECKING:
  from jarl.models.config import TextConfig


class TextEncoder(nn.Module):
  """text [B, L] int32 -> (tokens [B, L, D] after encoder_norm, out).

  out[f"depth_{d}"] is the residual stream after d blocks; out["mask"] [B, L] bool.
  """

  config: TextConfig
  vocab_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, text, train=False):
    c = self.config
    if text.shape[1] > c.max_len:
      raise ValueError(f"text length {text.shape[1]} exceeds config.model.text.max_len={c.max_len}")
    valid = text != 0
    x = nn.Embed(
      self.vocab_size,
      c.width,
      name="embedding",
      embedding_init=layers.normal_init(1.0, ("vocab", "embed")),
    )(text)
    pos = self.param(
      "pos_embedding",
      layers.normal_init(1 / np.sqrt(c.width), (None, "length", "embed")),
      (1, c.max_len, c.width),
      jnp.float32,
    )
    x = (x + pos[:, : text.shape[1]]).astype(self.dtype)
    x = nn.Dropout(c.dropout)(x, deterministic=not train)
    x, out = layers.Encoder.of(c, self.dtype, name="Transformer")(x, layers.key_mask(valid), train)
    out["mask"] = valid
    return x, out
