"""Autoregressive text decoder: causal self-attention + cross-attention to joint tokens.

The decoder reads the M joint tokens that the fusion encoder produced (`memory`) and
predicts the target text one token at a time. Token 0 is both padding and the start
token: decoder inputs are the targets shifted right (`shift_right`).

Two ways to run it:
- teacher forcing, `decode=False`: tokens [B, L] -> logits [B, L, V] in one pass;
- incremental, `decode=True`: tokens [B, 1] per call, with keys/values of earlier
  positions in the flax 'cache' collection. The first decode call (or `init_cache`)
  creates the cache and projects the memory into cross-attention keys/values once;
  later calls read them back, so each step costs O(L + M), not O(L^2 + L*M).

`generate` runs greedy or beam search (GNMT/T5 length penalty) under `lax.while_loop`.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jarl.models.transformer import HeadProjection

# Finite "minus infinity": with -inf, a fully masked attention row (-inf - -inf) and
# dead beams (-inf + -inf comparisons, -inf * 0) would produce NaN.
NEG_INF = -1.0e9

_dense_init = nn.initializers.xavier_uniform()
_embed_init = nn.initializers.normal(stddev=0.02)


def _part(init, names):
  return nn.with_logical_partitioning(init, names)


def _layer_norm(dtype, name):
  return nn.LayerNorm(
      dtype=dtype, param_dtype=jnp.float32, name=name,
      scale_init=_part(nn.initializers.ones, ("embed",)),
      bias_init=_part(nn.initializers.zeros, ("embed",)))


# HeadProjection, not nn.DenseGeneral: DenseGeneral initialises a flattened 2-D kernel
# and the rank-3 logical constraint on it fails as soon as a mesh + rules are active.
def _qkv_proj(width, num_heads, head_dim, dtype, name):
  """[..., embed] -> [..., heads, head_dim]."""
  return HeadProjection((width,), (num_heads, head_dim), ("embed", "heads", "kv"),
                        ("heads", "kv"), dtype, name=name)


def _out_proj(num_heads, head_dim, width, dtype, name):
  """[..., heads, head_dim] -> [..., embed]."""
  return HeadProjection((num_heads, head_dim), (width,), ("heads", "kv", "embed"),
                        ("embed",), dtype, name=name)


def _attend(q, k, v, mask, dtype):
  """Scaled dot-product attention.

  q [B, L, H, K], k/v [B, S, H, K], mask bool broadcastable to [B, H, L, S]
  (True = may attend) -> [B, L, H, K]. Softmax runs in float32 for bf16 stability.
  """
  q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  logits = jnp.einsum("blhk,bshk->bhls", q, k).astype(jnp.float32)
  # where() instead of adding a bias: masked entries become exactly exp(-1e9 - max) = 0,
  # so a cached (padded to max_len) key set gives the same numbers as the exact one.
  logits = jnp.where(mask, logits, NEG_INF)
  weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
  return jnp.einsum("bhls,bshk->blhk", weights, v)


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
    q = _qkv_proj(width, self.num_heads, head_dim, self.dtype, "query")(x)
    k = _qkv_proj(width, self.num_heads, head_dim, self.dtype, "key")(x)
    v = _qkv_proj(width, self.num_heads, head_dim, self.dtype, "value")(x)
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
    y = _attend(q, k, v, mask, self.dtype)
    return _out_proj(self.num_heads, head_dim, width, self.dtype, "out")(y)


class CrossAttention(nn.Module):
  """Multi-head attention from text positions to the memory (joint) tokens."""
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, memory, memory_mask, *, decode):
    """x [B, L, D]; memory [B, M, D] or None (decode: read keys/values from the cache);
    memory_mask bool [B, M]."""
    width = x.shape[-1]
    head_dim = width // self.num_heads
    q = _qkv_proj(width, self.num_heads, head_dim, self.dtype, "query")(x)
    key_proj = _qkv_proj(width, self.num_heads, head_dim, self.dtype, "key")
    value_proj = _qkv_proj(width, self.num_heads, head_dim, self.dtype, "value")
    if memory is None:
      k = self.get_variable("cache", "cached_key")
      v = self.get_variable("cache", "cached_value")
    else:
      k, v = key_proj(memory), value_proj(memory)
      if decode:
        # The memory is fixed during decoding: project it once, reuse at every step.
        self.put_variable("cache", "cached_key", k)
        self.put_variable("cache", "cached_value", v)
    y = _attend(q, k, v, memory_mask[:, None, None, :], self.dtype)
    return _out_proj(self.num_heads, head_dim, width, self.dtype, "out")(y)


class Mlp(nn.Module):
  mlp_dim: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train):
    width = x.shape[-1]
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=_part(_dense_init, ("embed", "mlp")),
                 bias_init=_part(nn.initializers.zeros, ("mlp",)), name="fc1")(x)
    h = nn.gelu(h)
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    return nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32,
                    kernel_init=_part(_dense_init, ("mlp", "embed")),
                    bias_init=_part(nn.initializers.zeros, ("embed",)), name="fc2")(h)


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
    h = _layer_norm(self.dtype, "ln_self")(x)
    h = SelfAttention(self.num_heads, self.max_len, self.dtype, name="self_attention")(
        h, decode=decode, position=position)
    x = x + drop(h, deterministic=not train)
    h = _layer_norm(self.dtype, "ln_cross")(x)
    h = CrossAttention(self.num_heads, self.dtype, name="cross_attention")(
        h, memory, memory_mask, decode=decode)
    x = x + drop(h, deterministic=not train)
    h = _layer_norm(self.dtype, "ln_mlp")(x)
    h = Mlp(self.mlp_dim, self.dropout, self.dtype, name="mlp")(h, train=train)
    x = x + drop(h, deterministic=not train)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class Decoder(nn.Module):
  """Causal transformer text decoder cross-attending to memory tokens.

  Params are float32; `dtype` is the compute dtype. Logits are always float32.
  """
  vocab_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  max_len: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens, memory, memory_mask, *, decode=False, train=False):
    """Decoder logits.

    Args:
      tokens: int32 [B, L], decoder inputs (targets shifted right; 0 = pad/start).
        With decode=True, L must be 1: the token at the cache's current position.
      memory: [B, M, Dm] joint tokens; projected to `width` by a Dense if Dm != width.
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
    if self.width % self.num_heads:
      raise ValueError(f"Decoder width={self.width} is not divisible by "
                       f"num_heads={self.num_heads}")
    length = tokens.shape[1]
    if decode and length != 1:
      raise ValueError(f"Decoder(decode=True) takes one token per call, got tokens "
                       f"of shape {tokens.shape}")
    if length > self.max_len:
      raise ValueError(f"Decoder tokens length {length} > max_len={self.max_len}")

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
      if memory.shape[-1] != self.width:
        # ('mlp', 'embed'): naming the input dim 'embed' too would map one mesh axis
        # to two dims of the same kernel, which a PartitionSpec forbids.
        memory = nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32,
                          kernel_init=_part(_dense_init, ("mlp", "embed")),
                          bias_init=_part(nn.initializers.zeros, ("embed",)),
                          name="memory_proj")(memory)

    token_embed = nn.Embed(self.vocab_size, self.width, dtype=self.dtype,
                           param_dtype=jnp.float32,
                           embedding_init=_part(_embed_init, ("vocab", "embed")),
                           name="token_embed")
    pos_embed = self.param("pos_embed", _part(_embed_init, ("length", "embed")),
                           (self.max_len, self.width), jnp.float32)
    pos = lax.dynamic_slice_in_dim(pos_embed, position, length, axis=0)
    x = token_embed(tokens) + pos[None].astype(self.dtype)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))

    for i in range(self.depth):
      x = DecoderBlock(self.num_heads, self.mlp_dim, self.max_len, self.dropout,
                       self.dtype, name=f"block_{i}")(
          x, memory, memory_mask, decode=decode, position=position, train=train)
    x = _layer_norm(self.dtype, "ln_final")(x)
    # Untied head (as in T5.1.1, which found untying better): the input table gets
    # sparse row updates and is looked up by id, the head is a dense matmul whose
    # gradient touches every row each step; separate tables let each take its own
    # scale and sharding ('vocab','embed') vs ('embed','vocab') without a transpose.
    logits = nn.Dense(self.vocab_size, dtype=self.dtype, param_dtype=jnp.float32,
                      kernel_init=_part(_dense_init, ("embed", "vocab")),
                      bias_init=_part(nn.initializers.zeros, ("vocab",)),
                      name="head")(x)
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


def length_penalty_factor(length, alpha):
  """GNMT/T5 length normaliser ((5 + length) / 6) ** alpha; scores are logp / this."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def generate(decoder: Decoder, params, memory, memory_mask, *, max_len: int,
             eos_id: int, beam_size: int = 1, length_penalty: float = 0.6):
  """Decodes text from memory tokens.

  Greedy when beam_size == 1, else beam search. Token 0 (pad/start) is never
  generated, so a 0 in the output always means "after EOS". A hypothesis that has not
  emitted EOS by max_len ends there (length max_len).

  Args:
    decoder: the Decoder module (static: close over it or pass via functools.partial
      under jax.jit).
    params: its parameters (boxed or unboxed), the 'params' collection's content.
    memory: [B, M, Dm]; memory_mask: bool [B, M].
    max_len: number of output tokens (<= decoder.max_len).
    eos_id: end-of-sequence id; after it only 0 is emitted.
    beam_size: number of beams (1 = greedy).
    length_penalty: alpha >= 0 of the ((5 + len) / 6) ** alpha normaliser.
  Returns:
    tokens int32 [B, max_len] (no start token; EOS included; 0-padded after it) and
    scores float32 [B]: sum of token log-probs / ((5 + len) / 6) ** alpha, where len
    counts the tokens up to and including EOS (the same quantity for greedy and beam).
  """
  if not 1 <= max_len <= decoder.max_len:
    raise ValueError(f"generate max_len={max_len} must be in [1, decoder.max_len="
                     f"{decoder.max_len}]")
  if beam_size < 1:
    raise ValueError(f"generate beam_size={beam_size} must be >= 1")
  if length_penalty < 0:
    # The early-stopping bound in beam search assumes longer never scores higher.
    raise ValueError(f"generate length_penalty={length_penalty} must be >= 0")
  if not 0 < eos_id < decoder.vocab_size:
    raise ValueError(f"generate eos_id={eos_id} must be in [1, vocab_size="
                     f"{decoder.vocab_size})")
  params = nn.meta.unbox(params)
  if beam_size == 1:
    return _greedy(decoder, params, memory, memory_mask, max_len, eos_id,
                   length_penalty)
  return _beam_search(decoder, params, memory, memory_mask, max_len, eos_id,
                      beam_size, length_penalty)


def _step_fn(decoder, params):
  """(last tokens [N], cache) -> (log-probs [N, V] with token 0 forbidden, cache)."""
  def step(last, cache):
    logits, mutated = decoder.apply(
        {"params": params, "cache": cache}, last[:, None], None, None,
        decode=True, mutable=["cache"])
    logp = jax.nn.log_softmax(logits[:, 0])
    # Normalised over the full vocabulary (so scores are the model's log-probs),
    # then pad/start is made unpickable.
    logp = logp.at[:, 0].set(NEG_INF)
    return logp, mutated["cache"]
  return step


def _init_cache(decoder, params, memory, memory_mask):
  _, mutated = decoder.apply({"params": params}, memory, memory_mask,
                             method=Decoder.init_cache, mutable=["cache"])
  return mutated["cache"]


def _greedy(decoder, params, memory, memory_mask, max_len, eos_id, alpha):
  batch = memory.shape[0]
  step = _step_fn(decoder, params)
  cache = _init_cache(decoder, params, memory, memory_mask)
  init = dict(
      i=jnp.zeros((), jnp.int32),
      tokens=jnp.zeros((batch, max_len), jnp.int32),
      last=jnp.zeros((batch,), jnp.int32),  # start token
      done=jnp.zeros((batch,), bool),
      logp=jnp.zeros((batch,), jnp.float32),
      length=jnp.full((batch,), max_len, jnp.int32),
      cache=cache)

  def cond(s):
    return (s["i"] < max_len) & ~jnp.all(s["done"])

  def body(s):
    logp, cache = step(s["last"], s["cache"])
    tok = jnp.argmax(logp, axis=-1).astype(jnp.int32)
    tok_logp = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
    tok = jnp.where(s["done"], 0, tok)
    is_eos = (tok == eos_id) & ~s["done"]
    return dict(
        i=s["i"] + 1,
        tokens=s["tokens"].at[:, s["i"]].set(tok),
        last=tok,
        done=s["done"] | is_eos,
        logp=s["logp"] + jnp.where(s["done"], 0.0, tok_logp),
        length=jnp.where(is_eos, s["i"] + 1, s["length"]),
        cache=cache)

  s = lax.while_loop(cond, body, init)
  return s["tokens"], s["logp"] / length_penalty_factor(s["length"], alpha)


def _beam_search(decoder, params, memory, memory_mask, max_len, eos_id, k, alpha):
  """Beam search keeping k alive (non-EOS) hypotheses and the best finished one.

  Each step extends every alive beam by every token, keeps the top 2k extensions (at
  most k of them end in EOS, so k non-EOS survive), sends EOS-ending ones (and all of
  them at the last step) to the finished pool, and keeps the best k others alive.
  It stops early once no alive beam can beat the finished one: with alpha >= 0 an
  alive beam's final score is at most logp_now / penalty(max_len).
  """
  batch = memory.shape[0]
  vocab = decoder.vocab_size
  step = _step_fn(decoder, params)
  # Beams of an example are contiguous: flat index = b * k + beam.
  tile = lambda x: jnp.repeat(x, k, axis=0)
  cache = _init_cache(decoder, params, tile(memory), tile(memory_mask))
  # Only beam 0 starts alive, otherwise the k identical start beams would fill the
  # top-k with copies of one hypothesis.
  alive_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32),
                        (batch, 1))
  init = dict(
      i=jnp.zeros((), jnp.int32),
      alive_seqs=jnp.zeros((batch, k, max_len), jnp.int32),
      alive_logp=alive_logp,
      fin_seq=jnp.zeros((batch, max_len), jnp.int32),
      fin_score=jnp.full((batch,), NEG_INF, jnp.float32),
      cache=cache)
  best_possible_factor = length_penalty_factor(max_len, alpha)

  def cond(s):
    best_alive = s["alive_logp"][:, 0] / best_possible_factor
    return (s["i"] < max_len) & ~jnp.all(best_alive < s["fin_score"])

  def body(s):
    i = s["i"]
    last = s["alive_seqs"][:, :, jnp.maximum(i - 1, 0)] * (i > 0)
    logp, cache = step(last.reshape(batch * k), s["cache"])
    cand = s["alive_logp"][:, :, None] + logp.reshape(batch, k, vocab)
    cand_logp, cand_idx = lax.top_k(cand.reshape(batch, k * vocab), 2 * k)
    cand_beam, cand_tok = cand_idx // vocab, (cand_idx % vocab).astype(jnp.int32)
    cand_seqs = jnp.take_along_axis(s["alive_seqs"], cand_beam[:, :, None], axis=1)
    cand_seqs = cand_seqs.at[:, :, i].set(cand_tok)
    finishing = (cand_tok == eos_id) | (i == max_len - 1)

    # Finished pool: best of (current best, finishing candidates).
    fin_cand = jnp.where(finishing, cand_logp / length_penalty_factor(i + 1, alpha),
                         NEG_INF)
    best = jnp.argmax(fin_cand, axis=1)
    best_score = jnp.take_along_axis(fin_cand, best[:, None], axis=1)[:, 0]
    best_seq = jnp.take_along_axis(cand_seqs, best[:, None, None], axis=1)[:, 0]
    better = best_score > s["fin_score"]
    fin_score = jnp.where(better, best_score, s["fin_score"])
    fin_seq = jnp.where(better[:, None], best_seq, s["fin_seq"])

    # Alive: best k non-finishing candidates (top_k keeps them sorted).
    alive_logp, keep = lax.top_k(jnp.where(finishing, NEG_INF, cand_logp), k)
    alive_seqs = jnp.take_along_axis(cand_seqs, keep[:, :, None], axis=1)
    src_beam = jnp.take_along_axis(cand_beam, keep, axis=1)
    flat = (jnp.arange(batch)[:, None] * k + src_beam).reshape(batch * k)
    # Reorder every per-hypothesis cache entry (the scalar position is shared).
    cache = jax.tree.map(lambda c: c if c.ndim == 0 else jnp.take(c, flat, axis=0),
                         cache)
    return dict(i=i + 1, alive_seqs=alive_seqs, alive_logp=alive_logp,
                fin_seq=fin_seq, fin_score=fin_score, cache=cache)

  s = lax.while_loop(cond, body, init)
  return s["fin_seq"], s["fin_score"]
