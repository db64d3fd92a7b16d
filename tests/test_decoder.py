"""jarl.models.decoder and decode: cache == teacher forcing, masks, greedy and beam search."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jarl.models import decode
from jarl.models import decoder as dec_lib
from jarl.models.config import DecoderConfig

VOCAB, WIDTH, MEM_DIM, MAX_LEN = 50, 32, 24, 12
B, M = 3, 5
EOS = 1


def _decoder(dtype=jnp.float32, **kw):
  cfg = dict(width=WIDTH, depth=2, num_heads=4, mlp_dim=64, max_len=MAX_LEN)
  cfg.update(kw)
  return dec_lib.Decoder(DecoderConfig(**cfg), vocab_size=VOCAB, dtype=dtype)


@pytest.fixture(scope="module")
def setup():
  """A random tiny decoder (memory width 24 != 32, so memory_proj is exercised)."""
  decoder = _decoder()
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  memory = jax.random.normal(k1, (B, M, MEM_DIM))
  memory_mask = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0]], bool)
  tokens = jax.random.randint(k2, (B, MAX_LEN), 2, VOCAB)
  variables = jax.jit(decoder.init)(k3, tokens, memory, memory_mask)
  # Scale the head up so the random model has peaked, varied next-token distributions
  # (otherwise every step is near-uniform and beam vs greedy is a coin toss).
  params = nn.meta.unbox(variables["params"])
  params["head"]["kernel"] = params["head"]["kernel"] * 8.0
  return decoder, params, variables["params"], memory, memory_mask, tokens


@functools.partial(jax.jit, static_argnums=0)
def _logits(decoder, params, tokens, memory, memory_mask):
  return decoder.apply({"params": params}, tokens, memory, memory_mask)


@functools.cache
def _generate(decoder, **kw):
  """Jitted generate, compiled once per (decoder, settings)."""
  return jax.jit(functools.partial(decode.search, decoder, **kw))


def _seq_logp(decoder, params, out, memory, memory_mask, alpha):
  """Teacher-forced sum of log-probs of `out` up to and including EOS, penalised."""
  logp = jax.nn.log_softmax(_logits(decoder, params, dec_lib.shift_right(out), memory, memory_mask))
  tok_logp = np.take_along_axis(np.asarray(logp), np.asarray(out)[..., None], -1)[..., 0]
  out = np.asarray(out)
  scores, lengths = [], []
  for row, lp in zip(out, tok_logp):
    eos = np.nonzero(row == EOS)[0]
    n = eos[0] + 1 if eos.size else len(row)
    scores.append(lp[:n].sum() / ((5 + n) / 6) ** alpha)
    lengths.append(n)
  return np.array(scores), np.array(lengths)


def test_shift_right():
  x = jnp.array([[5, 6, 7], [8, 0, 0]])
  np.testing.assert_array_equal(dec_lib.shift_right(x), [[0, 5, 6], [0, 8, 0]])


def test_cached_decoding_matches_teacher_forcing(setup):
  decoder, params, _, memory, memory_mask, tokens = setup
  tokens = tokens.at[:, 0].set(0)  # start token
  full = _logits(decoder, params, tokens, memory, memory_mask)
  # The first decode call creates the cache (projecting the memory once).
  step_logits, mutated = decoder.apply(
    {"params": params}, tokens[:, :1], memory, memory_mask, decode=True, mutable=["cache"]
  )
  cache, steps = mutated["cache"], [step_logits]
  step = jax.jit(
    lambda c, t, m, mm: decoder.apply(
      {"params": params, "cache": c}, t, m, mm, decode=True, mutable=["cache"]
    )
  )
  for t in range(1, MAX_LEN):
    # Later calls get a different memory: it must be ignored (cached keys/values).
    step_logits, mutated = step(cache, tokens[:, t : t + 1], memory * 0 + 7.0, ~memory_mask)
    cache = mutated["cache"]
    steps.append(step_logits)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=1e-5, rtol=1e-5)
  assert int(cache["position"]) == MAX_LEN
  # init_cache + the same steps gives the same numbers too.
  _, mutated = decoder.apply(
    {"params": params}, memory, memory_mask, method=dec_lib.Decoder.init_cache, mutable=["cache"]
  )
  cache = mutated["cache"]
  assert int(cache["position"]) == 0
  for t in range(3):
    step_logits, mutated = step(cache, tokens[:, t : t + 1], memory, memory_mask)
    cache = mutated["cache"]
    np.testing.assert_allclose(step_logits[:, 0], full[:, t], atol=1e-5, rtol=1e-5)


def test_causality(setup):
  decoder, params, _, memory, memory_mask, tokens = setup
  base = _logits(decoder, params, tokens, memory, memory_mask)
  for t in (0, 4, MAX_LEN - 2):
    changed = tokens.at[:, t + 1].set((tokens[:, t + 1] + 13) % VOCAB)
    out = _logits(decoder, params, changed, memory, memory_mask)
    np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6)
    # ... while the changed position itself does see its new token.
    assert np.abs(out[:, t + 1] - base[:, t + 1]).max() > 1e-3


def test_memory_mask(setup):
  decoder, params, _, memory, memory_mask, tokens = setup
  base = _logits(decoder, params, tokens, memory, memory_mask)
  noise = jax.random.normal(jax.random.key(9), memory.shape) * 10
  masked_changed = jnp.where(memory_mask[..., None], memory, noise)
  out = _logits(decoder, params, tokens, masked_changed, memory_mask)
  np.testing.assert_allclose(out, base, atol=1e-6)
  # Changing a visible memory token does change the logits.
  visible_changed = memory.at[:, 0].add(noise[:, 0])
  out = _logits(decoder, params, tokens, visible_changed, memory_mask)
  assert np.abs(out - base).max(axis=(1, 2)).min() > 1e-3


def test_greedy_matches_argmax_by_hand(setup):
  decoder, params, _, memory, memory_mask, _ = setup
  gen_len, eos = 8, EOS  # this seed: example 0 emits it at step 2, others never
  tokens, scores = _generate(decoder, max_len=gen_len, eos_id=eos, length_penalty=0.6)(
    params, memory, memory_mask
  )
  # By hand: re-run the whole prefix teacher-forced, argmax over ids != 0.
  want = np.zeros((B, gen_len), np.int32)
  want_logp = np.zeros(B)
  done = np.zeros(B, bool)
  length = np.full(B, gen_len)
  for t in range(gen_len):
    inputs = dec_lib.shift_right(jnp.asarray(want))
    logp = np.asarray(jax.nn.log_softmax(_logits(decoder, params, inputs, memory, memory_mask)))[
      :, t
    ]
    tok = np.argmax(logp[:, 1:], axis=-1) + 1
    for b in range(B):
      if not done[b]:
        want[b, t] = tok[b]
        want_logp[b] += logp[b, tok[b]]
        if tok[b] == eos:
          done[b], length[b] = True, t + 1
  np.testing.assert_array_equal(tokens, want)
  np.testing.assert_allclose(scores, want_logp / ((5 + length) / 6) ** 0.6, rtol=1e-5)
  # The test is only meaningful if some sequence stopped early and was padded.
  stopped = [b for b in range(B) if length[b] < gen_len]
  assert stopped, f"no sequence emitted eos={eos}: {want}"
  for b in stopped:
    assert want[b, length[b] - 1] == eos and (np.asarray(tokens)[b, length[b] :] == 0).all()


def test_beam_size_one_is_greedy(setup):
  decoder, params, _, memory, memory_mask, _ = setup
  kw = dict(max_len=10, eos_id=EOS, length_penalty=0.0)
  g_tok, g_score = _generate(decoder, **kw)(params, memory, memory_mask)
  beam_one = jax.jit(lambda p, m, mm: decode.beam_search(decoder, p, m, mm, 10, EOS, 1, 0.0))
  b_tok, b_score = beam_one(params, memory, memory_mask)
  np.testing.assert_array_equal(b_tok, g_tok)
  np.testing.assert_allclose(b_score, g_score, rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_beats_greedy_and_reports_its_score(setup, alpha):
  decoder, params, _, memory, memory_mask, _ = setup
  # Two memories per example so beams face different distributions.
  mem = jnp.concatenate([memory, memory[::-1] * 2.0])
  mask = jnp.concatenate([memory_mask, memory_mask[::-1]])
  kw = dict(max_len=10, eos_id=EOS, length_penalty=alpha)
  g_tok, g_score = _generate(decoder, **kw)(params, mem, mask)
  b_tok, b_score = _generate(decoder, beam_size=4, **kw)(params, mem, mask)
  g_re, _ = _seq_logp(decoder, params, g_tok, mem, mask, alpha)
  b_re, b_len = _seq_logp(decoder, params, b_tok, mem, mask, alpha)
  np.testing.assert_allclose(g_score, g_re, rtol=1e-5)
  np.testing.assert_allclose(b_score, b_re, rtol=1e-5)
  assert (b_re >= g_re - 1e-5).all(), (b_re, g_re)
  assert (b_re > g_re + 1e-3).any(), "beam search never differed from greedy"
  # Padding after EOS, and no pad before it.
  for row, n in zip(np.asarray(b_tok), b_len):
    assert (row[n:] == 0).all() and (row[:n] != 0).all()


def test_generate_under_jit(setup):
  """Other tests check jitted generate against values; here jit == eager, and the
  boxed (logically partitioned) params that init returns work as they are."""
  decoder, _, boxed, memory, memory_mask, _ = setup
  kw = dict(max_len=6, eos_id=EOS, beam_size=3)
  eager = decode.search(decoder, nn.meta.unbox(boxed), memory, memory_mask, **kw)
  jitted = _generate(decoder, **kw)(boxed, memory, memory_mask)
  np.testing.assert_array_equal(jitted[0], eager[0])
  np.testing.assert_allclose(jitted[1], eager[1], rtol=1e-5)
  assert jitted[0].dtype == jnp.int32 and jitted[1].dtype == jnp.float32


def test_every_param_has_logical_axes(setup):
  decoder, _, boxed, *_ = setup
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
  for x in leaves:
    assert len(x.names) == x.value.ndim and all(isinstance(n, str) for n in x.names)
  specs = nn.get_partition_spec(boxed)
  assert tuple(specs["token_embed"]["embedding"]) == ("vocab", "embed")
  assert tuple(specs["pos_embed"]) == ("length", "embed")
  assert tuple(specs["head"]["kernel"]) == ("embed", "vocab")
  attn = specs["block_0"]["cross_attention"]
  assert tuple(attn["query"]["kernel"]) == ("embed", "heads", "kv")
  assert tuple(attn["query"]["bias"]) == ("heads", "kv")
  assert tuple(attn["out"]["kernel"]) == ("heads", "kv", "embed")
  assert tuple(specs["block_1"]["mlp"]["fc1"]["kernel"]) == ("embed", "mlp")
  assert tuple(specs["block_1"]["mlp"]["fc2"]["kernel"]) == ("mlp", "embed")
  assert tuple(specs["ln_final"]["scale"]) == ("embed",)


def test_dropout_and_bf16(setup):
  decoder, params, _, memory, memory_mask, tokens = setup
  drop = _decoder(dropout=0.5)
  train = jax.jit(
    lambda rng: drop.apply(
      {"params": params}, tokens, memory, memory_mask, train=True, rngs={"dropout": rng}
    )
  )
  a, b = train(jax.random.key(1)), train(jax.random.key(2))
  c = _logits(drop, params, tokens, memory, memory_mask)
  assert np.abs(a - b).max() > 1e-2
  np.testing.assert_allclose(c, _logits(decoder, params, tokens, memory, memory_mask))
  bf16 = _decoder(dtype=jnp.bfloat16)
  out = _logits(bf16, params, tokens, memory, memory_mask)
  ref = _logits(decoder, params, tokens, memory, memory_mask)
  assert out.dtype == jnp.float32
  # bf16 compute stays close to f32: the argmax agrees almost everywhere.
  assert (np.argmax(out, -1) == np.argmax(ref, -1)).mean() > 0.9


def test_errors_name_the_value(setup):
  decoder, params, _, memory, memory_mask, tokens = setup
  with pytest.raises(ValueError, match="max_len=40"):
    decode.search(decoder, params, memory, memory_mask, max_len=40, eos_id=EOS)
  with pytest.raises(ValueError, match="one token per call"):
    decoder.apply(
      {"params": params}, tokens[:, :2], memory, memory_mask, decode=True, mutable=["cache"]
    )


def test_runs_sharded_under_mesh_and_rules(setup):
  """With a mesh and the trainer's kind of rules, sharded params give the same numbers."""
  from jax.sharding import AxisType

  decoder, params, boxed, memory, memory_mask, tokens = setup
  rules = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("vocab", "model"),
    ("length", None),
  )
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "model"), axis_types=(AxisType.Auto,) * 3)
  want_logits = _logits(decoder, params, tokens, memory, memory_mask)
  kw = dict(max_len=5, eos_id=EOS, beam_size=2)
  want = _generate(decoder, **kw)(params, memory, memory_mask)
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
  sharded = jax.device_put(params, shardings)
  spec = sharded["block_0"]["self_attention"]["query"]["kernel"].sharding.spec
  assert tuple(spec) == ("fsdp", "model", None)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    got_logits = jax.jit(lambda p: decoder.apply({"params": p}, tokens, memory, memory_mask))(
      sharded
    )
    got = jax.jit(functools.partial(decode.search, decoder, **kw))(sharded, memory, memory_mask)
  np.testing.assert_allclose(got_logits, want_logits, atol=1e-4, rtol=1e-5)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
