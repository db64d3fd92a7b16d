"""`config.model_init`: each public checkpoint format, written from our own parameters, loads
into the towers and gives the source model's tower outputs (nothing is downloaded)."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_fixtures

from jarl import config_checks, sharding, train
from jarl.models import model as model_lib
from jarl.models import model_init


@pytest.fixture(scope="module")
def setup():
  """The tiny model (patch stem), a source and a differently seeded target, and a jitted
  `towers` apply shared by every test (one compile)."""
  config = train_fixtures.tiny_config()
  b = train_fixtures.batch(config, 2)
  inputs = dict(image=jnp.asarray(b["image"]), text=jnp.asarray(b["text"]))
  model = model_lib.build(config)
  init = jax.jit(lambda rng: nn.meta.unbox(model.init({"params": rng}, **b_model(b))["params"]))
  source, target = init(jax.random.key(0)), init(jax.random.key(7))
  towers = jax.jit(lambda p: model.apply({"params": p}, **inputs, method=model_lib.Model.towers))
  return config, source, target, towers


def b_model(b):
  return dict(image=b["image"], text=b["text"], target=b["target"])


def flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep="/")


def tower_keys(params, tower):
  return {
    k[len(tower) + 1 :]: np.asarray(v) for k, v in flat(params).items() if k.startswith(tower)
  }


def assert_towers_equal(setup, loaded, towers_loaded=("img", "txt")):
  _, source, target, towers = setup
  got, want, fresh = towers(loaded), towers(source), towers(target)
  for k in got:
    if k.endswith(("grid", "mask")):
      continue
    expected = want[k] if k.split("/")[0] in towers_loaded else fresh[k]
    np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(expected), err_msg=k)


def scan_layout(keys):
  """Loop blocks -> big_vision's scan layout (`encoderblock`, stacked), as SigLIP ships."""
  return model_init.to_layout(keys, scan=True)


def test_big_vision_vit_under_each_prefix_with_a_head(setup, tmp_path):
  _, source, target, _ = setup
  vision = tower_keys(source, "vision")
  vision["head/kernel"] = np.zeros((32, 10), np.float32)  # a classifier: reported, unused
  for prefix in ("", "params/", "opt/target/"):
    path = tmp_path / f"vit{len(prefix)}.npz"
    np.savez(path, **{prefix + k: v for k, v in vision.items()})
    loaded, (report,) = model_init.load(str(path), (), target)
    assert report.tower == "vision" and report.unused == ["head/kernel"]
    assert report.loaded == len(vision) - 1
    assert_towers_equal(setup, loaded, ("img",))


def test_bfloat16_stored_as_void_loads_as_float32(setup, tmp_path):
  _, source, target, _ = setup
  vision = {k: v.astype(jnp.bfloat16) for k, v in tower_keys(source, "vision").items()}
  path = tmp_path / "bf16.npz"
  np.savez(path, **vision)
  assert np.load(path)["pos_embedding"].dtype.kind == "V"  # what numpy writes for bfloat16
  loaded, _ = model_init.load(str(path), (), target)
  got = flat(loaded)["vision/pos_embedding"]
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, vision["pos_embedding"].astype(np.float32))


def test_original_vision_transformer_names_with_cls_token(setup, tmp_path):
  """vision_transformer's pre-linen names, `posembed_input` with a [cls] row, a `cls` token
  (pool_type='tok'): the patch tokens come out as the source's."""
  _, source, target, _ = setup
  old = {"MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1"}
  old |= {"LayerNorm_1": "LayerNorm_2", "MlpBlock_0": "MlpBlock_3"}
  ckpt = {}
  for k, v in tower_keys(source, "vision").items():
    parts = k.split("/")
    if len(parts) > 2 and parts[1].startswith("encoderblock_"):
      parts[2] = old.get(parts[2], parts[2])
    ckpt["/".join(parts)] = v
  pe = ckpt.pop("pos_embedding")
  ckpt["Transformer/posembed_input/pos_embedding"] = np.concatenate([pe[:, :1] * 0 + 5, pe], 1)
  ckpt["cls"] = np.ones((1, 1, pe.shape[-1]), np.float32)
  path = tmp_path / "vit_orig.npz"
  np.savez(path, **ckpt)
  assert "LayerNorm_2" in str(sorted(ckpt))
  loaded, (report,) = model_init.load(str(path), (), target)
  assert report.unused == ["cls"]
  assert_towers_equal(setup, loaded, ("img",))


def test_siglip_two_tower_file_loads_both_towers_and_subtrees_one(setup, tmp_path):
  config, source, target, _ = setup
  ckpt = {f"img/{k}": v for k, v in scan_layout(tower_keys(source, "vision")).items()}
  ckpt["img/MAPHead_0/probe"] = np.zeros((1, 1, 32), np.float32)
  text = {}
  for k, v in tower_keys(source, "text").items():
    k = k.replace("embedding/embedding", "Embed_0/embedding").replace("Transformer/", "Encoder_0/")
    text[k] = v
  # SigLIP's text is 64 long; ours keeps the first text.max_len positions.
  pe = text["pos_embedding"]
  text["pos_embedding"] = np.concatenate([pe, np.full((1, 64 - pe.shape[1], pe.shape[2]), 9.0)], 1)
  text["head/kernel"] = np.zeros((32, 16), np.float32)
  ckpt |= {f"txt/{k}": v for k, v in scan_layout(text).items()}
  ckpt |= {"t": np.zeros(()), "b": np.zeros(())}
  path = str(tmp_path / "siglip.npz")
  np.savez(path, **ckpt)
  assert model_init.sources(path) == {"vision": path, "text": path}
  loaded, reports = model_init.load(path, (), target)
  assert [r.tower for r in reports] == ["vision", "text"]
  assert reports[0].unused == ["MAPHead_0/probe"] and reports[1].unused == ["head/kernel"]
  assert "first" in reports[1].resized[0]
  assert_towers_equal(setup, loaded)
  # One sub-tree: the vision tower only; the text keeps its initialisation.
  loaded, (report,) = model_init.load(f"{path}:img", (), target)
  assert report.tower == "vision"
  assert_towers_equal(setup, loaded, ("img",))
  # A file per tower, big_vision's dict form.
  loaded, reports = model_init.load({"img": f"{path}:img", "text": f"{path}:txt"}, (), target)
  assert len(reports) == 2
  assert_towers_equal(setup, loaded)


def test_position_embedding_resized_to_the_configured_grid(setup, tmp_path):
  _, source, target, _ = setup
  vision = tower_keys(source, "vision")
  n, width = vision["pos_embedding"].shape[1:]
  side = int(np.sqrt(n))
  # A checkpoint at twice the resolution whose embedding is a linear ramp along x:
  # bilinear resizing keeps a ramp a ramp and the corner values where they were.
  big = np.broadcast_to(np.linspace(-1, 1, 2 * side)[None, :, None], (2 * side, 2 * side, width))
  vision["pos_embedding"] = big.reshape(1, 4 * n, width).astype(np.float32)
  path = tmp_path / "hires.npz"
  np.savez(path, **vision)
  loaded, (report,) = model_init.load(str(path), (), target)
  got = flat(loaded)["vision/pos_embedding"].reshape(side, side, width)
  assert report.resized and got.shape == (side, side, width)
  np.testing.assert_allclose(got[:, 0], -1.0, atol=1e-6)
  np.testing.assert_allclose(got[:, -1], 1.0, atol=1e-6)
  np.testing.assert_allclose(got[0, :, 0], np.linspace(-1, 1, side), atol=1e-6)


def test_missing_key_is_an_error_unless_in_dont_load(setup, tmp_path):
  _, source, target, _ = setup
  vision = tower_keys(source, "vision")
  del vision["Transformer/encoder_norm/scale"]
  path = tmp_path / "partial.npz"
  np.savez(path, **vision)
  with pytest.raises(ValueError, match=r"partial\.npz.*vision/Transformer/encoder_norm/scale"):
    model_init.load(str(path), (), target)
  loaded, (report,) = model_init.load(str(path), ("vision/Transformer/encoder_norm/.*",), target)
  assert report.kept_random == [
    "vision/Transformer/encoder_norm/bias",
    "vision/Transformer/encoder_norm/scale",
  ]
  np.testing.assert_array_equal(
    flat(loaded)["vision/Transformer/encoder_norm/scale"],
    flat(target)["vision/Transformer/encoder_norm/scale"],
  )


def test_shape_mismatch_names_key_file_and_both_shapes(setup, tmp_path):
  _, source, target, _ = setup
  vision = tower_keys(source, "vision")
  vision["embedding/kernel"] = np.zeros((*vision["embedding/kernel"].shape[:3], 48), np.float32)
  path = tmp_path / "wide.npz"
  np.savez(path, **vision)
  shape = flat(target)["vision/embedding/kernel"].shape
  with pytest.raises(ValueError) as e:
    model_init.load(str(path), (), target)
  msg = str(e.value)
  assert "wide.npz" in msg and "embedding/kernel" in msg
  assert str((*shape[:3], 48)) in msg and str(tuple(shape)) in msg


def test_config_check_names_the_key(tmp_path):
  config = train_fixtures.tiny_config(model_init=str(tmp_path / "nope.npz"))
  with pytest.raises(ValueError, match=r"config.model_init: file .*nope\.npz.* does not exist"):
    config_checks.check_init(config)
  np.savez(tmp_path / "vit.npz", x=np.zeros(1))
  config.model_init = {"vison": str(tmp_path / "vit.npz")}
  with pytest.raises(ValueError, match=r"config.model_init\['vison'\]: unknown tower"):
    config_checks.check_init(config)
  config.model_init = str(tmp_path / "not.npz")
  (tmp_path / "not.npz").write_text("text")
  with pytest.raises(ValueError, match=r"not\.npz.*not a readable \.npz"):
    config_checks.check_init(config)
  config.model_init = str(tmp_path / "vit.npz")
  config.init_from = str(tmp_path)
  with pytest.raises(ValueError, match="set one"):
    config_checks.check_init(config)
  config.init_from = ""
  config.model_load.dont_load = ("vision/(",)
  with pytest.raises(ValueError, match=r"dont_load: bad regex"):
    config_checks.check_init(config)


def test_fresh_run_state_takes_the_towers_through_the_config_key(setup, tmp_path):
  """train.initial_state with config.model_init set: the towers equal the file's, the
  fusion and decoder keep the run's own initialisation."""
  config, source, _, _ = setup
  path = tmp_path / "vit.npz"
  model_init.save_npz(path, source["vision"])
  config = train_fixtures.tiny_config(model_init=str(path))
  config_checks.check_init(config)
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    state = train.initial_state(config, trainer)
    fresh = train.initial_state(train_fixtures.tiny_config(), trainer)
  got, want, own = flat(state.params), flat(source), flat(fresh.params)
  for k in got:
    expected = want[k] if k.startswith("vision/") else own[k]
    np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(expected), err_msg=k)


def test_loop_checkpoint_into_a_scanned_tower(setup, tmp_path):
  """A loop-layout file into a model built with scan=True: the blocks are stacked."""
  _, source, _, _ = setup
  config = train_fixtures.tiny_config(model__vision__scan=True)
  b = train_fixtures.batch(config, 2)
  model = model_lib.build(config)
  abstract = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, **b_model(b)))
  path = tmp_path / "vit.npz"
  model_init.save_npz(path, source["vision"])
  loaded, (report,) = model_init.load(str(path), (), nn.meta.unbox(abstract["params"]))
  stacked = flat(loaded)["vision/Transformer/encoderblock/LayerNorm_0/scale"]
  np.testing.assert_array_equal(
    stacked[1], source["vision"]["Transformer"]["encoderblock_1"]["LayerNorm_0"]["scale"]
  )


@pytest.mark.parametrize("old,new", [(7, 14), (7, 4), (4, 7)])
def test_resample_posemb_is_big_visions_zoom(old, new):
  """big_vision resizes with scipy.ndimage.zoom(order=1); ours gives the same grid."""
  ndimage = pytest.importorskip("scipy.ndimage")
  pe = np.random.default_rng(0).normal(size=(1, old * old, 5)).astype(np.float32)
  want = ndimage.zoom(pe[0].reshape(old, old, 5), (new / old, new / old, 1), order=1)
  got = model_init.resample_posemb(pe, new * new).reshape(new, new, 5)
  np.testing.assert_allclose(got, want, atol=1e-6)
