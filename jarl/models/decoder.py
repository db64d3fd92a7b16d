"""Autoregressive text decoder: causal self-attention + cross-attention to the fusion's tokens.

The decoder reads the M tokens that the fusion produced (`memory`; the fused text latents
for `jarl`) and predicts the target text one token at a time. Token 0 is both padding and
the start token: decoder inputs are the targets shifted right (`shift_right`).

Two ways to run it:
- teacher forcing, `decode=False`: tokens [B, L] -> logits [B, L, V] in one pass;
- incremental, `decode=True`: tokens [B, 1] per call, with keys/values of earlier
  positions in the flax 'cache' collection. The first decode call (or `init_cache`)
  creates the cache and projects the memory into cross-attention keys/values once;
  later calls read them back, so each step costs O(L + M), not O(L^2 + L*M).

Greedy and beam search over the cache are in decode.py; norms, projections, attention
and the MLP come from layers.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax.linen as nn
from jax import lax
import jax.numpy as jnp

from jarl.models import layers

if TYPE_CHECKING:
  from jarl.models.config import DecoderConfig


class SelfAttention(nn.Module):
  """Causal multi-head self-attention with an optional KV cache of max_len slots."""

  num_heads: int
  max_len: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, decode, position):
    """x [B, L, D] (L == 1 when decode); position: int32 scalar, slot of x[:, 0]."""
    batch, length, width = x.shape
    head_dim = width // self.num_heads
    q, k, v = (
      layers.head_projection(width, self.num_heads, self.dtype, name)(x)
      for name in ("query", "key", "value")
    )
    if decode:
      shape = (batch, self.max_len, self.num_heads, head_dim)
      cached_k = self.variable("cache", "cached_key", jnp.zeros, shape, k.dtype)
      cached_v = self.variable("cache", "cached_value", jnp.zeros, shape, v.dtype)
      start = (0, position, 0, 0)
      cached_k.value = lax.dynamic_update_slice(cached_k.value, k, start)
      cached_v.value = lax.dynamic_update_slice(cached_v.value, v, start)
      k, v = cached_k.value, cached_v.value
      # Slots beyond `position` hold zeros (or stale entries from priming): hide them.
      mask = (jnp.arange(self.max_len) <= position)[None, None, None, :]
    else:
      mask = jnp.tril(jnp.ones((length, length), bool))[None, None]
    y = layers.attend(q, k, v, mask, self.dtype)
    return layers.out_projection(self.num_heads, head_dim, width, self.dtype, "out")(y)


class CrossAttention(nn.Module):
  """Multi-head attention from text positions to the memory (joint) tokens; in decoding
  the memory's keys and values are projected once and kept in the cache."""

  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, memory, memory_mask, *, decode):
    """x [B, L, D]; memory [B, M, D] or None (decode: read keys/values from the cache);
    memory_mask bool [B, M]."""
    width = x.shape[-1]
    head_dim = width // self.num_heads
    q = layers.head_projection(width, self.num_heads, self.dtype, "query")(x)
    key_proj = layers.head_projection(width, self.num_heads, self.dtype, "key")
    value_proj = layers.head_projection(width, self.num_heads, self.dtype, "value")
    if memory is None:
      k = self.get_variable("cache", "cached_key")
      v = self.get_variable("cache", "cached_value")
    else:
      k, v = key_proj(memory), value_proj(memory)
      if decode:
        # The memory is fixed during decoding: project it once, reuse at every step.
        self.put_variable("cache", "cached_key", k)
        self.put_variable("cache", "cached_value", v)
    y = layers.attend(q, k, v, memory_mask[:, None, None, :], self.dtype)
    return layers.out_projection(self.num_heads, head_dim, width, self.dtype, "out")(y)


class DecoderBlock(nn.Module):
  """Pre-LayerNorm block: x += SelfAttn(LN x); x += CrossAttn(LN x, mem); x += MLP(LN x)."""

  num_heads: int
  mlp_dim: int
  max_len: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, memory, memory_mask, *, decode, position, train):
    drop = nn.Dropout(self.dropout)
    h = layers.layer_norm("ln_self", self.dtype)(x)
    h = SelfAttention(self.num_heads, self.max_len, self.dtype, name="self_attention")(
      h, decode=decode, position=position
    )
    x = x + drop(h, deterministic=not train)
    h = layers.layer_norm("ln_cross", self.dtype)(x)
    h = CrossAttention(self.num_heads, self.dtype, name="cross_attention")(
      h, memory, memory_mask, decode=decode
    )
    x = x + drop(h, deterministic=not train)
    h = layers.layer_norm("ln_mlp", self.dtype)(x)
    # T5-style: fc1/fc2 with zero-initialised biases.
    h = layers.MlpBlock(
      self.mlp_dim, self.dropout, self.dtype, names=("fc1", "fc2"), bias_stddev=0.0, name="mlp"
    )(h, train)
    x = x + drop(h, deterministic=not train)
    return nn.with_logical_constraint(x, layers.ACTIVATION)


class Decoder(nn.Module):
  """Causal transformer text decoder cross-attending to memory tokens.

  Params are float32; `dtype` is the compute dtype. Logits are always float32.
  """

  config: DecoderConfig
  vocab_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens, memory, memory_mask, *, decode=False, train=False):
    """Decoder logits.

    Args:
      tokens: int32 [B, L], decoder inputs (targets shifted right; 0 = pad/start).
        With decode=True, L must be 1: the token at the cache's current position.
      memory: [B, M, Dm] the fusion's tokens; projected to `width` by a Dense if Dm != width.
        With decode=True it is read only by the call that creates the cache.
      memory_mask: bool [B, M], False = ignore that memory token. With decode=True,
        read only by the call that creates the cache (then kept there).
      decode: incremental decoding with the 'cache' collection (apply with
        mutable=['cache']). Positions past max_len are not checked (jit): keep
        the number of decode calls <= max_len.
      train: enables dropout (rng collection 'dropout').
    Returns:
      float32 logits [B, L, vocab_size].
    """
    c = self.config
    length = tokens.shape[1]
    if decode and length != 1:
      raise ValueError(
        f"Decoder(decode=True) takes one token per call, got tokens of shape {tokens.shape}"
      )
    if length > c.max_len:
      raise ValueError(f"Decoder tokens length {length} > config.model.decoder.max_len={c.max_len}")

    if decode:
      # Cache creation = first decode call: only then are memory and its mask read.
      creating = not self.has_variable("cache", "position")
      pos_var = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
      mask_var = self.variable("cache", "memory_mask", lambda: memory_mask.astype(bool))
      position = pos_var.value
      memory_mask = mask_var.value
      pos_var.value = position + 1
      if not creating:
        memory = None
    else:
      position = jnp.zeros((), jnp.int32)
      memory_mask = memory_mask.astype(bool)

    if memory is not None:
      memory = memory.astype(self.dtype)
      if memory.shape[-1] != c.width:
        # ('mlp', 'embed'): naming the input dim 'embed' too would map one mesh axis
        # to two dims of the same kernel, which a PartitionSpec forbids.
        memory = nn.Dense(
          c.width,
          dtype=self.dtype,
          name="memory_proj",
          kernel_init=layers.dense_init(("mlp", "embed")),
          bias_init=layers.bias_init(("embed",)),
        )(memory)

    token_embed = nn.Embed(
      self.vocab_size,
      c.width,
      dtype=self.dtype,
      embedding_init=layers.normal_init(0.02, ("vocab", "embed")),
      name="token_embed",
    )
    pos_embed = self.param(
      "pos_embed", layers.normal_init(0.02, ("length", "embed")), (c.max_len, c.width), jnp.float32
    )
    pos = lax.dynamic_slice_in_dim(pos_embed, position, length, axis=0)
    x = token_embed(tokens) + pos[None].astype(self.dtype)
    x = nn.Dropout(c.dropout)(x, deterministic=not train)
    x = nn.with_logical_constraint(x, layers.ACTIVATION)

    for i in range(c.depth):
      x = DecoderBlock(c.num_heads, c.mlp_dim, c.max_len, c.dropout, self.dtype, name=f"block_{i}")(
        x, memory, memory_mask, decode=decode, position=position, train=train
      )
    x = layers.layer_norm("ln_final", self.dtype)(x)
    # Untied head (as in T5.1.1, which found untying better): the input table gets
    # sparse row updates and is looked up by id, the head is a dense matmul whose
    # gradient touches every row each step; separate tables let each take its own
    # scale and sharding ('vocab','embed') vs ('embed','vocab') without a transpose.
    logits = nn.Dense(
      self.vocab_size,
      dtype=self.dtype,
      kernel_init=layers.dense_init(("embed", "vocab")),
      bias_init=layers.bias_init(("vocab",)),
      name="head",
    )(x)
    return logits.astype(jnp.float32)

  def init_cache(self, memory, memory_mask):
    """Creates the 'cache' collection for decoding `memory` from position 0.

    Use as `decoder.apply({'params': p}, memory, mask, method=Decoder.init_cache,
    mutable=['cache'])[1]['cache']`. Runs one throw-away step on a start token to
    create every cache entry (memory keys/values included), then rewinds to 0; the
    slot it wrote is overwritten by the first real step before being read.
    """
    start = jnp.zeros((memory.shape[0], 1), jnp.int32)
    self(start, memory, memory_mask, decode=True)
    self.put_variable("cache", "position", jnp.zeros((), jnp.int32))


def shift_right(target):
  """Decoder inputs from targets: [B, L] -> [B, L], 0 (start) prepended, last dropped."""
  return jnp.pad(target, ((0, 0), (1, 0)))[:, :-1]
