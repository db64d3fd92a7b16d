"""Token reducers: M output tokens summarised from N input tokens.

Every reducer takes x [B, N, D] and a validity mask [B, N] (True = real token) and returns
(tokens [B, M, D], weights [B, M, N]); padding gets exactly zero weight, and the weights
are what the notebooks draw.

  LatentResampler   learned queries cross-attend to the inputs (the paper's Eq. 2,
                    "latent resampling"; DETR-style queries)
  TokenLearnerV11   spatial attention maps from an MLP (TokenLearner v1.1)
  TokenLearnerV1    sigmoid maps from a conv stack (TokenLearner v1)

`REDUCERS` (config.model.fusion.reducer) picks co-tokenization's reducer; `RESAMPLERS`
(config.model.fusion.resample) picks how the `jarl` fusion summarises each modality.
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


class LatentResampler(nn.Module):
  """Eq. 2: f_N = W2 . Attn(X_N, x), X_N [M, D] learned queries (DETR-style).

  Multi-head attention of the M queries over the inputs; W2 is the attention's output
  projection. The query side has no residual: the summary's f_N is the attention output
  alone. `weights` are the attention probabilities averaged over heads. The cost is one
  key/value projection of the N inputs plus M x N logits, whatever the text length.
  """

  num_tokens: int
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, grid: tuple[int, int] | None = None):
    del grid  # the inputs carry their own position embeddings
    b, n, width = x.shape
    queries = self.param(
      "queries", layers.normal_init(0.02, ("joint", "embed")), (self.num_tokens, width), jnp.float32
    )
    queries = jnp.broadcast_to(queries.astype(self.dtype), (b, self.num_tokens, width))
    kv = layers.layer_norm("input_norm", self.dtype)(x)
    heads = self.num_heads
    q = layers.head_projection(width, heads, self.dtype, "query")(queries)
    k = layers.head_projection(width, heads, self.dtype, "key")(kv)
    v = layers.head_projection(width, heads, self.dtype, "value")(kv)
    valid = jnp.ones((b, n), bool) if mask is None else mask
    probs = layers.attention_weights(q, k, valid[:, None, None, :])  # [B, H, M, N]
    # Exact zeros on padding also for an all-padding row (softmax alone spreads it evenly).
    probs = jnp.where(valid[:, None, None, :], probs, 0.0)
    y = jnp.einsum("bhmn,bnhk->bmhk", probs.astype(self.dtype), v)
    tokens = layers.out_projection(heads, width // heads, width, self.dtype, "out")(y)
    return tokens, probs.mean(axis=1)


# config.model.fusion.reducer (co_tokenization)
REDUCERS = {"tokenlearner_v11": TokenLearnerV11, "tokenlearner_v1": TokenLearnerV1}
# config.model.fusion.resample (jarl): latent = Eq. 2; spatial = TokenLearner v1.1 maps.
RESAMPLE = ("latent", "spatial")
