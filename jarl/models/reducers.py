"""The fusion's token reducers: learn M output tokens as weighted pools of N input tokens.

Both TokenLearners take x [B, N, D] and a validity mask [B, N] and return
(tokens [B, M, D], weights [B, M, N]); the weights are what the notebooks draw.
Chosen by `config.model.fusion.reducer` through `REDUCERS`.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jarl.models import layers


class TokenLearnerV11(nn.Module):
  """TokenLearner v1.1 (Ryoo et al. 2021): LayerNorm -> MLP(hidden) -> one softmax map per
  output token over the input tokens -> weighted sum of the *unnormalised* inputs.

  Padding (mask False) gets exactly zero weight, so the output ignores padded tokens.
  """

  num_tokens: int
  hidden: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, grid: tuple[int, int] | None = None):
    del grid  # v1.1 treats the input as a set; no spatial structure is needed.
    h = layers.layer_norm(dtype=self.dtype)(x)
    h = nn.Dense(
      self.hidden,
      dtype=self.dtype,
      kernel_init=layers.dense_init(("embed", "mlp")),
      bias_init=layers.bias_init(("mlp",)),
    )(h)
    h = nn.gelu(h)
    logits = nn.Dense(
      self.num_tokens,
      dtype=self.dtype,
      kernel_init=layers.dense_init(("mlp", "joint")),
      bias_init=layers.bias_init(("joint",)),
    )(h)  # [B, N, M]
    logits = jnp.swapaxes(logits, 1, 2).astype(jnp.float32)  # [B, M, N]
    if mask is not None:
      logits = jnp.where(mask[:, None, :], logits, layers.NEG_INF)
    weights = nn.softmax(logits, axis=-1)
    if mask is not None:
      weights = jnp.where(mask[:, None, :], weights, 0.0)
    tokens = jnp.einsum("bmn,bnd->bmd", weights.astype(x.dtype), x)
    return tokens, weights


class TokenLearnerV1(nn.Module):
  """TokenLearner v1: sigmoid maps from a small conv stack, spatially averaged.

  The first grid[0]*grid[1] tokens are an image grid and get 3x3 convolutions; the rest
  (text, previous joint tokens) get the same stack as 1x1 convolutions, i.e. Dense layers,
  since they have no neighbours. Weights are sigmoid(map) / #valid tokens, so each output
  token is the mean of the map-weighted valid inputs, as in the v1 paper.
  """

  num_tokens: int
  hidden: int = 64
  num_layers: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, grid: tuple[int, int] | None = None):
    b, n, d = x.shape
    h = layers.layer_norm(dtype=self.dtype)(x)
    num_grid = grid[0] * grid[1] if grid else 0
    for i in range(self.num_layers):
      features = self.num_tokens if i == self.num_layers - 1 else self.hidden
      conv = nn.Conv(
        features,
        (3, 3),
        padding="SAME",
        use_bias=False,
        dtype=self.dtype,
        name=f"Conv_{i}",
        kernel_init=layers.lecun_init((None, None, None, "mlp")),
      )
      parts = []
      if num_grid:
        image = h[:, :num_grid].reshape(b, grid[0], grid[1], -1)
        parts.append(conv(image).reshape(b, num_grid, -1))
      if num_grid < n:
        # A 1x1 "image" per token: with SAME padding only the kernel's centre tap acts.
        rest = h[:, num_grid:].reshape(b * (n - num_grid), 1, 1, -1)
        parts.append(conv(rest).reshape(b, n - num_grid, -1))
      h = jnp.concatenate(parts, axis=1)
      if i < self.num_layers - 1:
        h = nn.gelu(h)
    maps = nn.sigmoid(jnp.swapaxes(h, 1, 2).astype(jnp.float32))  # [B, M, N]
    valid = jnp.ones((b, n), bool) if mask is None else mask
    count = jnp.maximum(valid.sum(-1), 1)[:, None, None]
    weights = jnp.where(valid[:, None, :], maps, 0.0) / count
    tokens = jnp.einsum("bmn,bnd->bmd", weights.astype(x.dtype), x)
    return tokens, weights


# config.model.fusion.reducer
REDUCERS = {"tokenlearner_v11": TokenLearnerV11, "tokenlearner_v1": TokenLearnerV1}
