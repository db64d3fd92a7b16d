"""Token reducers: learn M output tokens as weighted pools of N input tokens.

Both TokenLearners take x [B, N, D] and a validity mask [B, N] and return
(tokens [B, M, D], weights [B, M, N]); the weights are what the notebooks draw.
Chosen by `config.model.fusion.reducer` through `REDUCERS`.

`elip_scores` / `elip_prune` are the parameter-free, language-guided vision-token pruning
and merging of ELIP (Guo et al., arXiv 2309.16738), used inside the ViT when
`config.model.vision.reducer='elip'` (wired in vit.py).
"""
import math
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jarl.models import transformer

# Finite stand-in for -inf: a fully masked row then yields uniform weights, not NaNs.
_NEG = -1e9


class TokenLearnerV11(nn.Module):
  """TokenLearner v1.1 (Ryoo et al. 2021): LayerNorm -> MLP(hidden) -> one softmax map per
  output token over the input tokens -> weighted sum of the *unnormalised* inputs.

  Padding (mask False) gets exactly zero weight, so the output ignores padded tokens.
  """
  num_tokens: int
  hidden: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, grid: Optional[Tuple[int, int]] = None):
    del grid  # v1.1 treats the input as a set; no spatial structure is needed.
    h = transformer.layer_norm(dtype=self.dtype)(x)
    h = nn.Dense(self.hidden, dtype=self.dtype,
                 kernel_init=transformer.dense_init(("embed", "mlp")),
                 bias_init=transformer.bias_init(("mlp",)))(h)
    h = nn.gelu(h)
    logits = nn.Dense(self.num_tokens, dtype=self.dtype,
                      kernel_init=transformer.dense_init(("mlp", "joint")),
                      bias_init=transformer.bias_init(("joint",)))(h)  # [B, N, M]
    logits = jnp.swapaxes(logits, 1, 2).astype(jnp.float32)  # [B, M, N]
    if mask is not None:
      logits = jnp.where(mask[:, None, :], logits, _NEG)
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
  def __call__(self, x, mask=None, grid: Optional[Tuple[int, int]] = None):
    b, n, d = x.shape
    h = transformer.layer_norm(dtype=self.dtype)(x)
    num_grid = grid[0] * grid[1] if grid else 0
    for i in range(self.num_layers):
      features = self.num_tokens if i == self.num_layers - 1 else self.hidden
      conv = nn.Conv(features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype,
                     name=f"Conv_{i}",
                     kernel_init=nn.with_logical_partitioning(
                         nn.initializers.lecun_normal(), (None, None, None, "mlp")))
      parts = []
      if num_grid:
        parts.append(conv(h[:, :num_grid].reshape(b, grid[0], grid[1], -1)).reshape(b, num_grid, -1))
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


REDUCERS = {"tokenlearner_v11": TokenLearnerV11, "tokenlearner_v1": TokenLearnerV1}


def elip_num_keep(num_tokens: int, keep: float) -> int:
  """Tokens an ELIP stage keeps out of `num_tokens`: round-half-up(keep * n), at least 1.

  Static (a Python int) so every stage has a static shape under jit.
  """
  return max(1, int(math.floor(keep * num_tokens + 0.5)))


def _standardize(x, eps=1e-6):
  # LayerNorm without scale or bias: ELIP adds no trainable parameters.
  mean = x.mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)


def elip_scores(x, guide):
  """Language-guided importance of each vision token: scaled dot product after LayerNorm.

  x [B, N, D] vision tokens; guide [B, D] the pooled text representation (see
  `vit.pool_text_guide`) -> scores [B, N] float32, score_j = <LN(x_j), LN(guide)> / sqrt(D).

  Our reading of ELIP: its reference code mixes the text [CLS] into the image [CLS] and
  ranks patches by that [CLS]'s attention over them. Our ViT has no [CLS], so the text
  guide attends to the patches directly, by the attention logit of a parameter-free query
  (the normalised guide) against parameter-free keys (the normalised tokens).
  """
  x = _standardize(x.astype(jnp.float32))
  g = _standardize(guide.astype(jnp.float32))
  return jnp.einsum("bnd,bd->bn", x, g) / math.sqrt(x.shape[-1])


def elip_prune(x, scores, keep: float):
  """Keeps the top-k tokens by score and merges the dropped ones into one extra token.

  x [B, N, D], scores [B, N], keep in (0, 1] (fraction of the N tokens entering the stage)
  -> (tokens [B, k + 1, D], kept_index [B, k] int32, merge_weights [B, N] float32),
  k = `elip_num_keep(N, keep)`. The kept tokens stay in their input order (ascending
  kept_index); the last token is sum_j w_j x_j over the dropped tokens with
  w = softmax of their scores, i.e. merge_weights (zero on kept tokens, summing to 1).
  When the scores are attention logits, softmax over the dropped subset equals ELIP's
  renormalised attention over the pruned tokens. A stage that would drop nothing (k = N,
  e.g. keep = 1) is the identity: x unchanged, no merged token, zero merge weights.

  Top-k selection passes no gradient; the merge weights do, through the scores. ELIP's
  reference code scores under no_grad; we keep that gradient because, unless the
  contrastive loss is on, it is the only signal that teaches the text and vision features
  to agree on which tokens matter.
  """
  n = x.shape[1]
  k = elip_num_keep(n, keep)
  if k >= n:
    return x, jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), scores.shape), jnp.zeros(
        scores.shape, jnp.float32)
  _, top = jax.lax.top_k(scores, k)
  kept_index = jnp.sort(top, axis=-1).astype(jnp.int32)  # keep raster order for the blocks
  kept = jnp.take_along_axis(x, kept_index[..., None], axis=1)
  # A comparison, not a scatter: cheap at these sizes and sharding-agnostic.
  dropped = ~(kept_index[:, :, None] == jnp.arange(n)).any(axis=1)  # [B, N]
  merge_weights = jax.nn.softmax(jnp.where(dropped, scores.astype(jnp.float32), _NEG), axis=-1)
  merge_weights = jnp.where(dropped, merge_weights, 0.0)
  merged = jnp.einsum("bn,bnd->bd", merge_weights.astype(x.dtype), x)
  return jnp.concatenate([kept, merged[:, None]], axis=1), kept_index, merge_weights
