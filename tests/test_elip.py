"""ELIP text-guided vision-token pruning and merging (config.model.vision.token_pruning='elip')."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import train_fixtures

from configs import pretrain
from jarl.models import decoder as decoder_lib
from jarl.models import elip, vit
from jarl.models import model as model_lib
from jarl.models.config import VisionConfig
from jarl.tools import flops


def elip_config(fusion_type="co_tokenization", layers=(1, 2), keep=(0.75, 0.6), **vision):
  """Tiny model: 32 px / patch 8 = 16 vision tokens, 3 ViT blocks, taps (2, 3); the demo
  run config around it."""
  config = pretrain.get_config("demo")
  c = config.model
  c.vision.update(
    image_size=32,
    width=32,
    depth=3,
    mlp_dim=64,
    num_heads=2,
    token_pruning="elip",
    elip_layers=layers,
    elip_keep=keep,
    **vision,
  )
  c.text.update(width=32, depth=2, mlp_dim=64, num_heads=2, max_len=8)
  c.fusion.update(
    type=fusion_type,
    width=32,
    num_heads=2,
    mlp_dim=64,
    num_tokens=4,
    vision_taps=(2, 3),
    text_taps=(1, 2),
  )
  c.decoder.update(width=32, depth=1, num_heads=2, mlp_dim=64, max_len=6)
  c.vocab_size = 40
  return config


def make_batch(config, b=3, seed=0, valid=5):
  c = config.model
  rng = np.random.default_rng(seed)
  size = c.vision.image_size
  text = rng.integers(1, c.vocab_size, (b, c.text.max_len)).astype(np.int32)
  text[:, valid:] = 0
  return dict(
    image=jnp.asarray(rng.uniform(-1, 1, (b, size, size, 3)), jnp.float32),
    text=jnp.asarray(text),
    target=jnp.asarray(rng.integers(1, c.vocab_size, (b, c.decoder.max_len)), jnp.int32),
  )


def init(c, b):
  m = model_lib.build(c)
  return m, nn.meta.unbox(jax.jit(m.init)({"params": jax.random.key(0)}, **b)["params"])


def _np_layer_norm(x):
  mean = x.mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-6)


def _np_softmax(s):
  e = np.exp(s - s.max())
  return e / e.sum()


# --- the pure function --------------------------------------------------------------------


def test_num_keep_rounds_half_up_and_keeps_at_least_one():
  assert elip.num_keep(196, 0.9) == 176  # 176.4
  assert elip.num_keep(177, 0.72) == 127  # 127.44
  assert elip.num_keep(10, 0.05) == 1  # 0.5 rounds up
  assert elip.num_keep(10, 0.01) == 1  # never zero
  assert elip.num_keep(10, 1.0) == 10


def test_prune_keeps_top_k_in_order_and_merges_the_rest_by_softmax_of_their_scores():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 10, 4)).astype(np.float32)
  scores = rng.normal(size=(2, 10)).astype(np.float32)
  tokens, kept_index, weights = elip.prune(jnp.asarray(x), jnp.asarray(scores), 0.6)
  assert tokens.shape == (2, 6 + 1, 4)  # round(0.6 * 10) kept + 1 merged
  for b in range(2):
    order = np.argsort(-scores[b])
    kept, dropped = np.sort(order[:6]), order[6:]
    np.testing.assert_array_equal(np.asarray(kept_index[b]), kept)
    np.testing.assert_array_equal(np.asarray(tokens[b, :6]), x[b, kept])
    w = _np_softmax(scores[b, dropped])
    np.testing.assert_allclose(
      np.asarray(tokens[b, 6]), (w[:, None] * x[b, dropped]).sum(0), rtol=1e-5, atol=1e-6
    )
    expected_weights = np.zeros(10, np.float32)
    expected_weights[dropped] = w
    np.testing.assert_allclose(np.asarray(weights[b]), expected_weights, rtol=1e-5, atol=1e-7)


def test_a_stage_that_drops_nothing_is_the_identity():
  x = jax.random.normal(jax.random.key(0), (2, 7, 4))
  tokens, kept_index, weights = elip.prune(x, jnp.arange(14.0).reshape(2, 7), 1.0)
  np.testing.assert_array_equal(tokens, x)
  np.testing.assert_array_equal(kept_index, np.broadcast_to(np.arange(7), (2, 7)))
  assert float(jnp.abs(weights).max()) == 0.0


# --- inside the ViT ---------------------------------------------------------------------------


class _Jitted:
  """A module whose `apply` is jitted: one compile per program instead of one per op."""

  def __init__(self, module):
    self.module = module
    self.apply = jax.jit(module.apply)
    self.init = jax.jit(module.init)


@functools.cache  # shared jitted modules: compile each program once
def _vits(layers=(1, 2, 3), keep=(0.9, 0.7, 0.5)):
  common = dict(width=16, depth=4, mlp_dim=32, num_heads=2, patch_size=8, image_size=64)
  return (
    _Jitted(
      vit.ViT(VisionConfig(**common, token_pruning="elip", elip_layers=layers, elip_keep=keep))
    ),
    _Jitted(vit.ViT(VisionConfig(**common))),
  )


def _guide(seed=0, b=2, length=6, valid=(4, 6)):
  rng = np.random.default_rng(seed)
  text = rng.normal(size=(b, length, 16)).astype(np.float32)
  mask = np.arange(length)[None] < np.asarray(valid)[:, None]
  return text, mask


def test_vit_keeps_exactly_the_configured_number_of_tokens_per_stage():
  elip, plain = _vits()
  image = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3), minval=-1, maxval=1)
  text, mask = _guide()
  params = plain.init(jax.random.key(0), image)
  # ELIP adds no parameters: the plain ViT's tree (and checkpoints) serve it as is.
  elip_tree = jax.eval_shape(
    lambda: elip.init(jax.random.key(0), image, text_guide=text, text_mask=mask)
  )
  assert jax.tree.structure(params) == jax.tree.structure(elip_tree)
  x, out = elip.apply(params, image, text_guide=text, text_mask=mask)
  # 64 patches -> round(.9*64)=58 (+1) -> round(.7*59)=41 (+1) -> round(.5*42)=21 (+1).
  counts = [out[f"depth_{d}"].shape[1] for d in range(5)]
  assert counts == [64, 59, 42, 22, 22]
  assert x.shape == (2, 22, 16)
  assert out["grid"] is None  # the pruned tokens no longer form the 8x8 grid
  for d, k in ((1, 58), (2, 41), (3, 21)):
    index = np.asarray(out[f"elip_index_{d}"])
    assert index.shape == (2, k)
    assert all(len(set(row)) == k and list(row) == sorted(row) for row in index)
    np.testing.assert_allclose(out[f"elip_weights_{d}"].sum(-1), 1.0, rtol=1e-5)
  # Eager execution (the top-k and gathers op by op) gives what the jitted tower gives.
  eager, _ = elip.module.apply(params, image, text_guide=text, text_mask=mask)
  np.testing.assert_allclose(eager, x, rtol=1e-5, atol=1e-5)
  # ELIP is language-guided: without the text the tower refuses rather than guess.
  with pytest.raises(ValueError, match="needs text_guide"):
    elip.apply(params, image)


def test_first_stage_matches_a_numpy_recomputation_from_the_plain_vit():
  elip, plain = _vits()
  image = jax.random.uniform(jax.random.key(2), (2, 64, 64, 3), minval=-1, maxval=1)
  text, mask = _guide(seed=3)
  params = plain.init(jax.random.key(0), image)
  _, plain_out = plain.apply(params, image)
  _, out = elip.apply(params, image, text_guide=text, text_mask=mask)
  before = np.asarray(plain_out["depth_1"])  # nothing is pruned before the first stage
  for b in range(2):
    guide = text[b][mask[b]].mean(0)  # masked mean: padding excluded
    scores = _np_layer_norm(before[b]) @ _np_layer_norm(guide) / np.sqrt(16)
    order = np.argsort(-scores)
    kept, dropped = np.sort(order[:58]), order[58:]
    w = _np_softmax(scores[dropped])
    expected = np.concatenate([before[b, kept], (w[:, None] * before[b, dropped]).sum(0)[None]])
    np.testing.assert_array_equal(np.asarray(out["elip_index_1"][b]), kept)
    np.testing.assert_allclose(np.asarray(out["depth_1"][b]), expected, rtol=1e-5, atol=1e-5)


def test_text_padding_never_contributes_to_the_guide():
  elip, plain = _vits()
  image = jax.random.uniform(jax.random.key(4), (2, 64, 64, 3), minval=-1, maxval=1)
  text, mask = _guide(seed=5)
  params = plain.init(jax.random.key(0), image)
  x1, out1 = elip.apply(params, image, text_guide=text, text_mask=mask)
  noisy = np.where(mask[..., None], text, 1e3 * np.random.default_rng(6).normal(size=text.shape))
  x2, out2 = elip.apply(params, image, text_guide=noisy.astype(np.float32), text_mask=mask)
  np.testing.assert_array_equal(x1, x2)
  np.testing.assert_array_equal(out1["elip_index_3"], out2["elip_index_3"])
  # A different real token does change which image tokens survive.
  other = text.copy()
  other[:, 0] = np.random.default_rng(7).normal(size=(2, 16)) * 10
  _, out3 = elip.apply(params, image, text_guide=other, text_mask=mask)
  assert not np.array_equal(out1["elip_index_1"], out3["elip_index_1"])
  # All-padding text: zero guide, finite output.
  x4, _ = elip.apply(params, image, text_guide=text, text_mask=np.zeros_like(mask))
  assert bool(jnp.isfinite(x4).all())


# --- inside the model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
  """One initialised ELIP model (jarl fusion) shared by the model tests: inits are slow."""
  c = elip_config()
  b = make_batch(c)
  m, params = init(c, b)
  return dict(c=c, b=b, m=m, params=params, forward=train_fixtures.forward(m))


def test_co_tokenization_runs_on_the_pruned_tokens(tiny):
  logits, out = tiny["forward"](tiny["params"], tiny["b"])
  assert logits.shape == (3, 6, 40) and bool(jnp.isfinite(logits).all())
  # 16 patches -> round(.75*16)=12 (+1) = 13 -> round(.6*13)=8 (+1) = 9 at taps 2 and 3.
  assert out["fusion/weights_0"].shape == (3, 4, 9 + 8 + 4)
  np.testing.assert_allclose(out["fusion/weights_1"].sum(-1), 1.0, rtol=1e-5)
  assert out["img/grid"] is None
  assert out["img/elip_index_1"].shape == (3, 12) and out["img/elip_weights_2"].shape == (3, 13)


@pytest.mark.parametrize("fusion_type", ["jarl", "concat", "cross_attention"])
def test_other_fusions_run_on_the_pruned_tokens(fusion_type):
  c = elip_config(fusion_type)
  b = make_batch(c)
  m = model_lib.build(c)
  params = jax.eval_shape(lambda: nn.meta.unbox(m.init({"params": jax.random.key(0)}, **b)))
  memory = jax.eval_shape(
    lambda p: m.apply(p, b["image"], b["text"], method=model_lib.Model.encode)[0], params
  )
  # 9 vision tokens left at the top tap and 8 text; jarl resamples each to N = 4 latents
  # and (the demo's memory='fused_and_image') passes on the fused and the image latents.
  assert memory.shape == (3, 2 * 4 if fusion_type == "jarl" else 9 + 8, 32)
  if fusion_type == "cross_attention":  # the cheaper of the two to run for values
    _, params = init(c, b)
    logits = jax.jit(lambda p, x: m.apply({"params": p}, **x)[0])(params, b)
    assert bool(jnp.isfinite(logits).all())


def test_the_model_guides_the_vit_with_its_text_and_ignores_text_padding(tiny):
  params, b, run = tiny["params"], tiny["b"], tiny["forward"]
  vision_index = lambda batch: run(params, batch)[1]["img/elip_index_1"]
  other = dict(b, text=b["text"].at[:, :5].set((b["text"][:, :5] + 7) % 39 + 1))
  assert not np.array_equal(vision_index(b), vision_index(other))
  # Shorter padding, same real tokens: same logits (padding is inert in the guide too).
  logits, _ = run(params, b)
  shorter, _ = run(params, dict(b, text=b["text"][:, :6]))
  np.testing.assert_allclose(logits, shorter, rtol=1e-5, atol=1e-5)


def _plain_forward(m, image, text, target):
  """The model's forward with the towers called the pre-ELIP way (vision first, no guide)."""
  f = m.config.fusion
  _, vision_out = m.vision(image)
  _, text_out = m.text(text)
  memory, memory_mask, _ = m.fusion(
    [vision_out[f"depth_{d}"] for d in f.vision_taps],
    [text_out[f"depth_{d}"] for d in f.text_taps],
    text_out["mask"],
    grid=vision_out["grid"],
  )
  return m.decoder(decoder_lib.shift_right(target), memory, memory_mask)


def test_switching_elip_off_restores_the_plain_model_bit_for_bit(tiny):
  params, b = tiny["params"], tiny["b"]
  c_off = elip_config()
  c_off.model.vision.token_pruning = "none"
  m_off = model_lib.build(c_off)
  # Same parameter tree (ELIP adds no parameters): one init serves both.
  off_params = jax.eval_shape(
    lambda: nn.meta.unbox(m_off.init({"params": jax.random.key(0)}, **b)["params"])
  )
  assert jax.tree.structure(off_params) == jax.tree.structure(params)
  off, _ = train_fixtures.forward(m_off)(params, b)
  np.testing.assert_array_equal(off, train_fixtures.forward(m_off, _plain_forward)(params, b))
  # Unused ELIP fields change nothing while pruning is off.
  c_off.model.vision.update(elip_layers=(3,), elip_keep=(0.1,))
  np.testing.assert_array_equal(off, train_fixtures.forward(model_lib.build(c_off))(params, b)[0])
  on, _ = tiny["forward"](params, b)
  assert not np.allclose(on, off)
  # ELIP stages that keep every token leave the plain model's output exactly unchanged.
  same, _ = train_fixtures.forward(model_lib.build(elip_config(keep=(1.0, 1.0))))(params, b)
  np.testing.assert_array_equal(same, off)


def test_gradients_flow_through_the_pruned_tokens(tiny):
  m, params, b = tiny["m"], tiny["params"], tiny["b"]

  def loss(p, batch):
    logits, _ = m.apply({"params": p}, **batch)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["target"]).mean()

  value, grads = jax.jit(jax.value_and_grad(loss))(params, b)
  assert np.isfinite(float(value))
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
  # Blocks above the stages learn from the pruned tokens.
  kernel = grads["vision"]["Transformer"]["encoderblock_2"]["MlpBlock_0"]["Dense_0"]["kernel"]
  assert float(jnp.abs(kernel).sum()) > 0


def test_vision_tower_flops_fall_with_elip_on():
  elip, plain = _vits(layers=(1, 2), keep=(0.5, 0.5))
  image = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  text, mask = _guide()
  params = jax.eval_shape(lambda: plain.init(jax.random.key(0), jnp.zeros(image.shape)))
  on, _ = flops.compiled_cost(
    lambda p, i: elip.module.apply(p, i, text_guide=text, text_mask=mask)[0], params, image
  )
  off, _ = flops.compiled_cost(lambda p, i: plain.module.apply(p, i)[0], params, image)
  # 64 -> 33 -> 18 tokens after blocks 1 and 2 of 4: about (64 + 33 + 2 * 18) / (4 * 64).
  assert 0.45 < on / off < 0.65, (on, off)


@pytest.mark.slow
def test_flops_measure_reports_fewer_vision_gflops_with_elip_on():
  c_on = elip_config(layers=(1, 2), keep=(0.5, 0.5))
  c_off = elip_config()
  c_off.model.vision.token_pruning = "none"
  on, off = flops.measure(c_on, batch_size=2), flops.measure(c_off, batch_size=2)
  v_on, v_off = on["parts_gflops_per_example"]["vision"], off["parts_gflops_per_example"]["vision"]
  assert v_on < 0.8 * v_off, (v_on, v_off)
  assert on["forward_gflops_per_example"] < off["forward_gflops_per_example"]
  assert on["params"] == off["params"]


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["demo", "base"])
def test_shipped_configs_build_with_elip(variant):
  c = pretrain.get_config(variant)
  c.model.vision.token_pruning = "elip"
  m = model_lib.build(c)
  assert m.config.vision.elip_layers == tuple(c.model.vision.elip_layers)


@pytest.mark.parametrize(
  "updates,message",
  [
    (dict(token_pruning="tome"), "config.model.vision.token_pruning='tome'"),
    (dict(elip_layers=(0, 2)), r"elip_layers=\(0, 2\): layer 0 is outside the ViT's depth 1..3"),
    (dict(elip_layers=(2, 9)), r"elip_layers=\(2, 9\): layer 9 is outside"),
    (dict(elip_layers=(2, 1)), "strictly increasing"),
    (dict(elip_keep=(0.0, 0.5)), r"elip_keep=\(0.0, 0.5\): keep 0.0 is not in \(0, 1\]"),
    (dict(elip_keep=(0.5, 1.5)), r"keep 1.5 is not in \(0, 1\]"),
    (dict(elip_keep=(0.5,)), r"elip_layers=\(1, 2\) and config.model.vision.elip_keep=\(0.5,\)"),
    (dict(scan=True), "config.model.vision.scan=True"),
  ],
)
def test_invalid_elip_config_names_the_key(updates, message):
  c = elip_config()
  c.model.vision.update(updates)
  with pytest.raises(ValueError, match=message):
    model_lib.build(c)


def test_elip_rejects_what_it_cannot_serve():
  c = elip_config(layers=(1, 3))
  c.model.fusion.update(vision_taps=(1, 2), text_taps=(1, 2))
  with pytest.raises(ValueError, match="layer 3 is above the last vision tap 2"):
    model_lib.build(c)
  c = elip_config()
  c.model.text.width = 64
  with pytest.raises(ValueError, match="config.model.text.width=64 must equal"):
    model_lib.build(c)
  c = elip_config()
  c.model.fusion.reducer = "tokenlearner_v1"
  with pytest.raises(ValueError, match="fusion.reducer='tokenlearner_v1' needs the patch grid"):
    model_lib.build(c)
