"""ELIP: text-guided vision-token pruning and merging inside the ViT.

`config.model.vision.token_pruning='elip'` (Guo et al., arXiv 2309.16738; our reading, see
`token_scores`): after block d for each d in `elip_layers`, the tokens are scored against
the pooled text guide, the top `elip_keep` fraction is kept and the rest merged into one
token. It adds no parameters: the ViT's parameter tree is the plain one (loop layout), so
plain checkpoints load, and `token_pruning='none'` runs the unchanged code path.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jarl.models import layers


def pool_text_guide(text, mask):
  """Masked mean of text features: text [B, L, D], mask [B, L] bool -> guide [B, D].

  Padding never contributes; an all-padding row gives a zero guide (no NaN).
  """
  weights = mask.astype(jnp.float32)
  total = jnp.einsum("bl,bld->bd", weights, text.astype(jnp.float32))
  return total / jnp.maximum(weights.sum(-1, keepdims=True), 1.0)


def num_keep(num_tokens: int, keep: float) -> int:
  """Tokens a stage keeps out of `num_tokens`: round-half-up(keep * n), at least 1.

  Static (a Python int) so every stage has a static shape under jit.
  """
  return max(1, int(math.floor(keep * num_tokens + 0.5)))


def _standardize(x, eps=1e-6):
  # LayerNorm without scale or bias: ELIP adds no trainable parameters.
  mean = x.mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)


def token_scores(x, guide):
  """Language-guided importance of each vision token: scaled dot product after LayerNorm.

  x [B, N, D] vision tokens; guide [B, D] the pooled text representation (see
  `pool_text_guide`) -> scores [B, N] float32, score_j = <LN(x_j), LN(guide)> / sqrt(D).

  Our reading of ELIP: its reference code mixes the text [CLS] into the image [CLS] and
  ranks patches by that [CLS]'s attention over them. Our ViT has no [CLS], so the text
  guide attends to the patches directly, by the attention logit of a parameter-free query
  (the normalised guide) against parameter-free keys (the normalised tokens).
  """
  x = _standardize(x.astype(jnp.float32))
  g = _standardize(guide.astype(jnp.float32))
  return jnp.einsum("bnd,bd->bn", x, g) / math.sqrt(x.shape[-1])


def prune(x, scores, keep: float):
  """Keeps the top-k tokens by score and merges the dropped ones into one extra token.

  x [B, N, D], scores [B, N], keep in (0, 1] (fraction of the N tokens entering the stage)
  -> (tokens [B, k + 1, D], kept_index [B, k] int32, merge_weights [B, N] float32),
  k = `num_keep(N, keep)`. The kept tokens stay in their input order (ascending
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
  k = num_keep(n, keep)
  if k >= n:
    return (
      x,
      jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), scores.shape),
      jnp.zeros(scores.shape, jnp.float32),
    )
  _, top = jax.lax.top_k(scores, k)
  kept_index = jnp.sort(top, axis=-1).astype(jnp.int32)  # keep raster order for the blocks
  kept = jnp.take_along_axis(x, kept_index[..., None], axis=1)
  # A comparison, not a scatter: cheap at these sizes and sharding-agnostic.
  dropped = ~(kept_index[:, :, None] == jnp.arange(n)).any(axis=1)  # [B, N]
  merge_weights = jax.nn.softmax(
    jnp.where(dropped, scores.astype(jnp.float32), layers.NEG_INF), axis=-1
  )
  merge_weights = jnp.where(dropped, merge_weights, 0.0)
  merged = jnp.einsum("bn,bnd->bd", merge_weights.astype(x.dtype), x)
  return jnp.concatenate([kept, merged[:, None]], axis=1), kept_index, merge_weights


class ElipEncoder(nn.Module):
  """`layers.Encoder` in the loop layout with an ELIP stage after chosen blocks.

  x [B, N, D], guide [B, D] -> (encoded [B, N', D], out). out[f"depth_{d}"] is the
  residual stream after block d *and* its ELIP stage, if any (what the blocks above and
  the fusion taps see); out[f"elip_index_{d}"] [B, k] the kept positions among the stage's
  input tokens, out[f"elip_weights_{d}"] [B, N_in] the merge weights. Parameter names are
  the loop Encoder's (`encoderblock_{i}`, `encoder_norm`).
  """

  depth: int
  num_heads: int
  mlp_dim: int
  elip_layers: tuple[int, ...]
  elip_keep: tuple[float, ...]
  dropout: float = 0.0
  remat_policy: str = "none"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, guide, train=False):
    out = {"depth_0": x}
    block = layers.block_class(self.remat_policy)
    stages = dict(zip(self.elip_layers, self.elip_keep))
    for d in range(1, self.depth + 1):
      x = block(
        self.num_heads, self.mlp_dim, self.dropout, self.dtype, name=f"encoderblock_{d - 1}"
      )(x, None, train)
      if d in stages:
        x, out[f"elip_index_{d}"], out[f"elip_weights_{d}"] = prune(
          x, token_scores(x, guide), stages[d]
        )
      out[f"depth_{d}"] = x
    return layers.layer_norm("encoder_norm", self.dtype)(x), out
