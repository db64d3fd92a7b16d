"""The assembled model: layouts, sharding, checkpoint compatibility, `out` keys and config
errors."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest
import train_fixtures

from configs import pretrain
from jarl.models import config as config_lib
from jarl.models import decode, model_init, vit
from jarl.models import model as model_lib


def tiny_config(**fusion):
  """The demo run config with a tiny model (and the demo's 4 tags: a tag head)."""
  config = pretrain.get_config("demo")
  c = config.model
  c.vision.update(image_size=32, width=32, depth=3, mlp_dim=64, num_heads=2)
  c.text.update(width=32, depth=2, mlp_dim=64, num_heads=2, max_len=8)
  fusion = {"type": "jarl", **fusion}
  c.fusion.update(
    width=32, num_heads=2, mlp_dim=64, num_tokens=4, vision_taps=(2, 3), text_taps=(1, 2), **fusion
  )
  c.decoder.update(width=32, depth=1, num_heads=2, mlp_dim=64, max_len=6)
  c.vocab_size = 40
  return config


def batch(config, b=4, seed=0):
  c = config.model
  rng = np.random.default_rng(seed)
  size = c.vision.image_size
  text = rng.integers(1, c.vocab_size, (b, c.text.max_len)).astype(np.int32)
  text[:, 5:] = 0  # padding
  return dict(
    image=jnp.asarray(rng.uniform(-1, 1, (b, size, size, 3)), jnp.float32),
    text=jnp.asarray(text),
    target=jnp.asarray(rng.integers(1, c.vocab_size, (b, c.decoder.max_len)), jnp.int32),
  )


def init(c, b):
  m = model_lib.build(c)
  return m, jax.jit(m.init)({"params": jax.random.key(0)}, **b)["params"]


@pytest.mark.parametrize(
  "fusion_type", ["jarl", "co_tokenization", "perceiver", "concat", "cross_attention"]
)
def test_every_fusion_runs_and_memory_has_the_configured_size(fusion_type):
  c = tiny_config(type=fusion_type)
  b = batch(c)
  m, params = init(c, b)
  logits, _ = train_fixtures.forward(m)(params, b)
  assert logits.shape == (4, 6, 40) and bool(jnp.isfinite(logits).all())
  encode = dict(image=b["image"], text=b["text"])
  memory, memory_mask, _ = train_fixtures.forward(m, model_lib.Model.encode)(params, encode)
  reads_all = fusion_type in ("concat", "cross_attention")
  # jarl: the demo's memory='fused_and_image', the N fused and the N image latents.
  size = 16 + 8 if reads_all else 2 * 4 if fusion_type == "jarl" else 4
  assert memory.shape == (4, size, 32)
  # Padded text tokens are masked for the decoder in the baselines that pass them on; the
  # other fusions' tokens are all real.
  assert int(memory_mask.sum()) == (4 * (16 + 5) if reads_all else 4 * size)


def test_co_tokenization_reducer_maps_ignore_text_padding_and_padding_ids_do_not_matter():
  c = tiny_config(type="co_tokenization")
  b = batch(c)
  m, params = init(c, b)
  logits, out = train_fixtures.forward(m)(params, b)
  w = out["fusion/weights_0"]  # [B, M, Nv + Nt + M]
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
  text_w = w[:, :, 16 : 16 + 8]
  assert float(jnp.abs(text_w[:, :, 5:]).max()) == 0.0
  # Shorter padding (same real tokens) leaves the JARL logits unchanged: padding is inert.
  b2 = dict(b, text=b["text"][:, :6])
  logits2, _ = train_fixtures.forward(m)(params, b2)
  np.testing.assert_allclose(logits, logits2, rtol=1e-5, atol=1e-5)


def test_scan_and_loop_layouts_give_the_same_output():
  c = tiny_config()
  b = batch(c)
  m, params = init(c, b)
  cs = tiny_config()
  cs.model.vision.scan = cs.model.text.scan = True
  cs.model.vision.remat_policy = "full"
  ms = model_lib.build(cs)
  # Only its structure is used: an abstract init (no compute).
  scan_params = jax.eval_shape(lambda: ms.init({"params": jax.random.key(0)}, **b)["params"])
  # Convert the loop params into the scan layout through the big_vision layout converter.
  converted = dict(nn.meta.unbox(params))
  for tower in ("vision", "text"):
    flat = flax.traverse_util.flatten_dict(converted[tower], sep="/")
    converted[tower] = flax.traverse_util.unflatten_dict(
      model_init.to_layout(flat, scan=True), sep="/"
    )
  assert jax.tree.structure(converted) == jax.tree.structure(nn.meta.unbox(scan_params))
  out_loop, _ = train_fixtures.forward(m)(params, b)
  out_scan, _ = train_fixtures.forward(ms)(converted, b)
  np.testing.assert_allclose(out_loop, out_scan, rtol=1e-5, atol=1e-5)


# Redundant in the fast set: tests/test_train_step.py::test_one_device_and_eight_devices_agree
# [data2_fsdp2_model2] runs the model (forward and backward) under data x model sharding with
# the config's logical rules and checks its per-example losses against one device.
@pytest.mark.slow
def test_sharded_execution_on_8_devices_matches_one_device():
  c = tiny_config()
  b = batch(c, b=8)
  m, boxed = init(c, b)
  params = nn.meta.unbox(boxed)
  fwd = jax.jit(lambda p, x: m.apply({"params": p}, **x)[0])
  expected = fwd(params, b)
  mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
  rules = (
    ("batch", "data"),
    ("embed", None),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("vocab", "model"),
    ("length", None),
    ("joint", None),
  )
  specs = nn.get_partition_spec(boxed)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    sharded_params = jax.device_put(params, shardings)
    sharded_batch = jax.device_put(b, NamedSharding(mesh, P("data")))
    got = jax.jit(lambda p, x: m.apply({"params": p}, **x)[0])(sharded_params, sharded_batch)
  assert len(got.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_every_parameter_has_logical_axis_names():
  c = tiny_config()
  _, params = init(c, batch(c))
  leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  unnamed = [x for x in leaves if not isinstance(x, nn.LogicallyPartitioned)]
  assert not unnamed
  assert all(len(x.names) == x.value.ndim for x in leaves)


def test_generate_greedy_matches_teacher_forced_argmax():
  c = tiny_config()
  b = batch(c, b=2)
  m, params = init(c, b)
  params = nn.meta.unbox(params)
  tokens, _ = jax.jit(lambda p, i, t: decode.generate(m, p, i, t, max_len=6, eos_id=3))(
    params, b["image"], b["text"]
  )
  # Re-derive each greedy token with full teacher-forced passes.
  seq = np.zeros((2, 6), np.int32)
  teacher_forced = train_fixtures.forward(m)
  for t in range(6):
    logits, _ = teacher_forced(params, dict(b, target=jnp.asarray(seq)))
    seq[:, t] = np.asarray(logits[:, t].argmax(-1))
  for row_gen, row_ref in zip(np.asarray(tokens), seq):
    end = list(row_ref).index(3) + 1 if 3 in row_ref else 6
    np.testing.assert_array_equal(row_gen[:end], row_ref[:end])


@pytest.mark.parametrize(
  "key,value,message",
  [
    ("fusion.num_tokens", 0, "config.model.fusion.num_tokens=0"),
    ("fusion.vision_taps", (2, 9), "config.model.fusion.vision_taps=(2, 9)"),
    ("fusion.width", 33, "config.model.fusion.width=33 is not divisible"),
    ("fusion.type", "sum", "config.model.fusion.type='sum'"),
    ("vision.variant", "Q/16", "config.model.vision.variant='Q/16'"),
    ("fusion.reducer", "pool", "config.model.fusion.reducer='pool'"),
    ("fusion.resample", "pool", "config.model.fusion.resample='pool'"),
    ("dtype", "float8", "config.model.dtype='float8'"),
  ],
)
def test_invalid_config_names_the_key(key, value, message):
  c = tiny_config()
  node = c.model
  *path, leaf = key.split(".")
  for p in path:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    model_lib.build(c)


def test_conv_stem_keeps_the_grid_names_every_parameter_and_shifts_with_the_image():
  c = tiny_config()
  c.model.vision.stem = "conv"
  b = batch(c)
  m, params = init(c, b)
  leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
  params = nn.unbox(params)
  assert "embedding" not in params["vision"]
  stem = vit.ConvStem(32, 8)
  image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 48, 48, 3)), jnp.float32)
  stem_params = {"params": params["vision"]["stem"]}
  out = stem.apply(stem_params, image)
  assert out.shape == (1, 6, 6, 32)
  # Strided convolutions are equivariant to shifts by the total stride: moving the picture
  # one patch to the right moves every token whose receptive field stays inside the image.
  shifted = stem.apply(stem_params, jnp.roll(image, 8, axis=2))
  np.testing.assert_allclose(
    np.asarray(shifted[:, 1:-1, 2:-1]), np.asarray(out[:, 1:-1, 1:-2]), atol=1e-5
  )
  assert not np.allclose(np.asarray(shifted), np.asarray(out))


@pytest.mark.parametrize(
  "stem,variant,message",
  [
    ("pixels", "Ti/8", "config.model.vision.stem='pixels'"),
    ("conv", "Ti/14", r"patch size 14 \(config.model.vision.variant\) must be a power of two"),
  ],
)
def test_invalid_stem_names_the_key(stem, variant, message):
  c = tiny_config()
  c.model.vision.update(stem=stem, variant=variant, image_size=28 if "14" in variant else 32)
  with pytest.raises(ValueError, match=message):
    model_lib.build(c)


def test_out_keys_are_namespaced_and_towers_return_one_dict():
  c = tiny_config()
  c.model.vicha.update(contrastive_depths=((2, 1), (3, 2)), embed_dim=16, mim_ratio=0.25)
  b = batch(c, b=2)
  m, params = init(c, b)
  # Keys and shapes from an abstract forward (no compute: an eager one takes a minute).
  _, out = jax.eval_shape(
    lambda p: m.apply(
      {"params": p},
      **b,
      train=True,
      rngs={"dropout": jax.random.key(1), "mim": jax.random.key(2)},
    ),
    params,
  )
  assert all(k.split("/")[0] in ("img", "txt", "fusion", "aux") for k in out), sorted(out)
  assert set(out) == {
    *(f"img/depth_{d}" for d in range(4)),
    "img/grid",
    *(f"txt/depth_{d}" for d in range(3)),
    "txt/mask",
    "fusion/image_weights",
    "fusion/text_weights",
    "fusion/gates",
    "aux/contrastive_img",
    "aux/contrastive_txt",
    "aux/contrastive_log_scale",
    "aux/mim_pred",
    "aux/mim_target",
    "aux/mim_mask",
    "aux/tag_logits",
  }
  assert out["aux/tag_logits"].shape == (2, 4)
  assert out["aux/contrastive_img"].shape == (2, 2, 16) and out["aux/mim_mask"].shape == (2, 16)
  # towers: one dict, the tower entries of the forward's out.
  towers = m.apply({"params": params}, b["image"], b["text"], method=model_lib.Model.towers)
  assert set(towers) == {k for k in out if k.split("/")[0] in ("img", "txt")}
  np.testing.assert_array_equal(towers["txt/mask"], b["text"] != 0)
  assert towers["img/grid"] == (4, 4)
  # The tag head reads the top built vision depth (no separate pooling path).
  _, eval_out = m.apply({"params": params}, **b)
  tags = m.apply({"params": params}, towers["img/depth_3"], method=lambda mod, x: mod.tag_head(x))
  np.testing.assert_allclose(tags, eval_out["aux/tag_logits"], rtol=1e-5, atol=1e-6)


def test_typed_config_is_built_once_from_the_run_config():
  c = tiny_config()
  mc = config_lib.ModelConfig.from_config(c)
  assert model_lib.build(c) == model_lib.build(mc) == model_lib.Model(mc)
  assert mc.num_tags == len(c.data.tags) == 4 and mc.vision.patch_size == 8
  assert (
    mc.vision_depth == 3
    and mc.text_depth == 2
    and hash(mc) == hash(config_lib.ModelConfig.from_config(tiny_config()))
  )
  assert mc.vision.elip_layers == ()  # unused ELIP fields stay out of the model's config
  c.data.tags = ()
  assert config_lib.ModelConfig.from_config(c).num_tags == 0
  with pytest.raises(ValueError, match="takes the whole run config"):
    model_lib.build(c.model)
  c.model.num_tags = 4
  with pytest.raises(ValueError, match="config.model.num_tags=4: no longer a key"):
    model_lib.build(c)
  c = tiny_config()
  c.model.vision.reducer = "elip"
  with pytest.raises(ValueError, match="renamed config.model.vision.token_pruning"):
    model_lib.build(c)
  # Sub-configs check their own fields when constructed directly, too.
  with pytest.raises(ValueError, match="config.model.decoder.width=30 is not divisible"):
    config_lib.DecoderConfig(width=30, depth=1, num_heads=4, mlp_dim=8, max_len=4)
  with pytest.raises(ValueError, match="config.model.text.remat_policy='some'"):
    config_lib.TextConfig(width=8, depth=1, mlp_dim=8, num_heads=2, max_len=4, remat_policy="some")
