"""Greedy and beam search over the decoder's KV cache (GNMT/T5 length penalty).

    tokens, scores = generate(model, params, image, text, max_len=..., eos_id=...)

`generate` encodes (image, text) with the Model and decodes its memory; `search` decodes
any memory with a Decoder. Both run under `lax.while_loop` and jit.
"""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from jarl.models import decoder as decoder_lib
from jarl.models import layers
from jarl.models import model as model_lib


def generate(
  model,
  params,
  image,
  text,
  *,
  max_len: int,
  eos_id: int,
  beam_size: int = 1,
  length_penalty: float = 0.6,
):
  """Greedy (beam_size=1) or beam-search answers of `model` (a model_lib.Model) for
  image [B, H, W, 3] and text [B, Lt]: tokens [B, max_len] int32, scores [B] (`search`)."""
  memory, memory_mask, _ = model.apply(
    {"params": params}, image, text, method=model_lib.Model.encode
  )
  return search(
    model_lib.make_decoder(model.config),
    params["decoder"],
    memory,
    memory_mask,
    max_len=max_len,
    eos_id=eos_id,
    beam_size=beam_size,
    length_penalty=length_penalty,
  )


def length_penalty_factor(length, alpha):
  """GNMT/T5 length normaliser ((5 + length) / 6) ** alpha; scores are logp / this."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def search(
  decoder: decoder_lib.Decoder,
  params,
  memory,
  memory_mask,
  *,
  max_len: int,
  eos_id: int,
  beam_size: int = 1,
  length_penalty: float = 0.6,
):
  """Decodes text from memory tokens.

  Greedy when beam_size == 1, else beam search. Token 0 (pad/start) is never
  generated, so a 0 in the output always means "after EOS". A hypothesis that has not
  emitted EOS by max_len ends there (length max_len).

  Args:
    decoder: the Decoder module (static: close over it or pass via functools.partial
      under jax.jit).
    params: its parameters (boxed or unboxed), the 'params' collection's content.
    memory: [B, M, Dm]; memory_mask: bool [B, M].
    max_len: number of output tokens (<= decoder.config.max_len).
    eos_id: end-of-sequence id; after it only 0 is emitted.
    beam_size: number of beams (1 = greedy).
    length_penalty: alpha >= 0 of the ((5 + len) / 6) ** alpha normaliser.
  Returns:
    tokens int32 [B, max_len] (no start token; EOS included; 0-padded after it) and
    scores float32 [B]: sum of token log-probs / ((5 + len) / 6) ** alpha, where len
    counts the tokens up to and including EOS (the same quantity for greedy and beam).
  """
  if not 1 <= max_len <= decoder.config.max_len:
    raise ValueError(
      f"generate max_len={max_len} must be in [1, "
      f"config.model.decoder.max_len={decoder.config.max_len}]"
    )
  if beam_size < 1:
    raise ValueError(f"generate beam_size={beam_size} must be >= 1")
  if length_penalty < 0:
    # The early-stopping bound in beam search assumes longer never scores higher.
    raise ValueError(f"generate length_penalty={length_penalty} must be >= 0")
  if not 0 < eos_id < decoder.vocab_size:
    raise ValueError(f"generate eos_id={eos_id} must be in [1, vocab_size={decoder.vocab_size})")
  params = nn.meta.unbox(params)
  if beam_size == 1:
    return greedy_search(decoder, params, memory, memory_mask, max_len, eos_id, length_penalty)
  return beam_search(
    decoder, params, memory, memory_mask, max_len, eos_id, beam_size, length_penalty
  )


def _step_fn(decoder, params):
  """(last tokens [N], cache) -> (log-probs [N, V] with token 0 forbidden, cache)."""

  def step(last, cache):
    logits, mutated = decoder.apply(
      {"params": params, "cache": cache}, last[:, None], None, None, decode=True, mutable=["cache"]
    )
    logp = jax.nn.log_softmax(logits[:, 0])
    # Normalised over the full vocabulary (so scores are the model's log-probs),
    # then pad/start is made unpickable.
    logp = logp.at[:, 0].set(layers.NEG_INF)
    return logp, mutated["cache"]

  return step


def _init_cache(decoder, params, memory, memory_mask):
  _, mutated = decoder.apply(
    {"params": params},
    memory,
    memory_mask,
    method=decoder_lib.Decoder.init_cache,
    mutable=["cache"],
  )
  return mutated["cache"]


def greedy_search(decoder, params, memory, memory_mask, max_len, eos_id, alpha):
  """`search` with beam_size 1 (params unboxed, arguments unchecked)."""
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
    cache=cache,
  )

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
      cache=cache,
    )

  s = lax.while_loop(cond, body, init)
  return s["tokens"], s["logp"] / length_penalty_factor(s["length"], alpha)


def beam_search(decoder, params, memory, memory_mask, max_len, eos_id, k, alpha):
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
  alive_logp = jnp.tile(jnp.array([0.0] + [layers.NEG_INF] * (k - 1), jnp.float32), (batch, 1))
  init = dict(
    i=jnp.zeros((), jnp.int32),
    alive_seqs=jnp.zeros((batch, k, max_len), jnp.int32),
    alive_logp=alive_logp,
    fin_seq=jnp.zeros((batch, max_len), jnp.int32),
    fin_score=jnp.full((batch,), layers.NEG_INF, jnp.float32),
    cache=cache,
  )
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
    fin_cand = jnp.where(finishing, cand_logp / length_penalty_factor(i + 1, alpha), layers.NEG_INF)
    best = jnp.argmax(fin_cand, axis=1)
    best_score = jnp.take_along_axis(fin_cand, best[:, None], axis=1)[:, 0]
    best_seq = jnp.take_along_axis(cand_seqs, best[:, None, None], axis=1)[:, 0]
    better = best_score > s["fin_score"]
    fin_score = jnp.where(better, best_score, s["fin_score"])
    fin_seq = jnp.where(better[:, None], best_seq, s["fin_seq"])

    # Alive: best k non-finishing candidates (top_k keeps them sorted).
    alive_logp, keep = lax.top_k(jnp.where(finishing, layers.NEG_INF, cand_logp), k)
    alive_seqs = jnp.take_along_axis(cand_seqs, keep[:, :, None], axis=1)
    src_beam = jnp.take_along_axis(cand_beam, keep, axis=1)
    flat = (jnp.arange(batch)[:, None] * k + src_beam).reshape(batch * k)
    # Reorder every per-hypothesis cache entry (the scalar position is shared).
    cache = jax.tree.map(lambda c: c if c.ndim == 0 else jnp.take(c, flat, axis=0), cache)
    return dict(
      i=i + 1,
      alive_seqs=alive_seqs,
      alive_logp=alive_logp,
      fin_seq=fin_seq,
      fin_score=fin_score,
      cache=cache,
    )

  s = lax.while_loop(cond, body, init)
  return s["fin_seq"], s["fin_score"]
