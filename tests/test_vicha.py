"""ViCHA options: hierarchical contrastive alignment, masked image modelling, visual concepts."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_fixtures

from jarl import losses, metrics_writer, train
from jarl.data import pipeline, shapes, sources, tasks, tokenizer
from jarl.models import model as model_lib
from jarl.models import vicha
from jarl.tools import convert


def _np_info_nce(image, text, scale):
  image = image / np.linalg.norm(image, axis=-1, keepdims=True)
  text = text / np.linalg.norm(text, axis=-1, keepdims=True)
  logits = scale * image @ text.T

  def xent(z):  # rows: -log softmax at the diagonal
    z = z - z.max(1, keepdims=True)
    return -(np.diag(z) - np.log(np.exp(z).sum(1)))

  return 0.5 * (xent(logits).mean() + xent(logits.T).mean())


# --- the losses ---------------------------------------------------------------------------


def test_hierarchical_loss_is_the_weighted_sum_of_per_depth_losses_by_hand():
  rng = np.random.default_rng(0)
  image, text = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
  log_scale = np.log(1 / 0.2)
  out = {
    "aux/contrastive_img": jnp.asarray(image, jnp.float32),
    "aux/contrastive_txt": jnp.asarray(text, jnp.float32),
    "aux/contrastive_log_scale": jnp.float32(log_scale),
  }
  weights = (0.5, 1.0, 2.0)
  by_hand = [_np_info_nce(image[p], text[p], 1 / 0.2) for p in range(3)]
  got = losses.hierarchical_contrastive(out, weights=weights)
  np.testing.assert_allclose(got, sum(w * v for w, v in zip(weights, by_hand)), rtol=1e-5)
  np.testing.assert_allclose(losses.hierarchical_contrastive(out), sum(by_hand), rtol=1e-5)
  assert min(by_hand) > 0.5  # random pairs: far from aligned


def test_info_nce_of_aligned_embeddings_at_low_temperature_is_near_zero():
  emb = jnp.eye(6, 8) * 3.0  # orthogonal rows; text = image up to scale
  assert float(losses.info_nce(emb, 2 * emb, jnp.log(1 / 0.01))) < 1e-6
  # At temperature 1 the same pairs still pay log(1 + 5 e^-1), the negatives' share.
  np.testing.assert_allclose(losses.info_nce(emb, emb, 0.0), np.log(np.e + 5) - 1, rtol=1e-5)


def test_info_nce_padding_rows_are_neither_anchors_nor_negatives():
  rng = np.random.default_rng(1)
  image, text = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
  mask = jnp.array([True, True, False, True, False])
  got = losses.info_nce(jnp.asarray(image), jnp.asarray(text), jnp.log(3.0), mask)
  keep = np.asarray(mask)
  np.testing.assert_allclose(got, _np_info_nce(image[keep], text[keep], 3.0), rtol=1e-5)


def test_mim_loss_counts_only_masked_patches():
  rng = np.random.default_rng(2)
  pred, target = rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 4, 6))
  mask = np.array([[True, False, False, True], [False, True, False, False]])
  out = {
    "aux/mim_pred": jnp.asarray(pred),
    "aux/mim_target": jnp.asarray(target),
    "aux/mim_mask": jnp.asarray(mask),
  }
  by_hand = ((pred - target) ** 2).mean(-1)[mask].mean()
  np.testing.assert_allclose(losses.masked_image_modelling(out), by_hand, rtol=1e-6)
  spoiled = {
    **out,
    "aux/mim_pred": jnp.where(jnp.asarray(mask)[..., None], out["aux/mim_pred"], 1e3),
  }
  np.testing.assert_allclose(losses.masked_image_modelling(spoiled), by_hand, rtol=1e-6)
  rows = losses.masked_image_modelling(out, jnp.array([True, False]))
  np.testing.assert_allclose(rows, ((pred - target) ** 2).mean(-1)[0][mask[0]].mean(), rtol=1e-6)


def test_patch_mask_count_and_patch_targets_follow_the_vit_token_order():
  mask = vicha.random_patch_mask(jax.random.key(0), 3, 16, 0.4)
  np.testing.assert_array_equal(np.asarray(mask).sum(1), [6, 6, 6])  # round(6.4)
  assert len({tuple(r) for r in np.asarray(mask)}) == 3  # different per image
  image = np.random.default_rng(3).uniform(-1, 1, (1, 4, 6, 3)).astype(np.float32)
  targets = np.asarray(vicha.patch_targets(jnp.asarray(image), 2))
  patch = image[0, 2:4, 4:6].reshape(-1)  # row 1, column 2 of a 2x3 grid: token 5
  np.testing.assert_allclose(
    targets[0, 5], (patch - patch.mean()) / np.sqrt(patch.var() + 1e-6), rtol=1e-5
  )


# --- the model: options off restore the plain model bit for bit -----------------------------


def _plain(config):
  """The same config with no ViCHA keys at all (the model as it was before them)."""
  config = config.copy_and_resolve_references()
  del config.model["vicha"]
  del config["losses"]
  return config


VICHA_ON = dict(
  model__vicha__contrastive_depths=((1, 1), (2, 1)),
  model__vicha__embed_dim=16,
  model__vicha__mim_ratio=0.5,
  losses__contrastive_weight=0.5,
  losses__contrastive_depth_weights=(1.0, 2.0),
  losses__mim_weight=1.0,
)


def _vicha_config(**overrides):
  """The tiny config with every ViCHA head and loss on, then `overrides`."""
  return train_fixtures.tiny_config(**{**VICHA_ON, **overrides})


def _init(config, b):
  m = model_lib.build(config)
  params = m.init({"params": jax.random.key(0)}, b["image"], b["text"], b["target"])["params"]
  return m, nn.meta.unbox(params)


def _apply(m, params, b, train):
  return m.apply(
    {"params": params},
    b["image"],
    b["text"],
    b["target"],
    train=train,
    rngs={"dropout": jax.random.key(1), "mim": jax.random.key(2)},
  )


def test_options_off_give_the_plain_model_bit_for_bit_and_heads_are_side_branches():
  config = train_fixtures.tiny_config()
  b = train_fixtures.batch(config, 4)
  plain_model, plain_params = _init(_plain(config), b)
  off_model, off_params = _init(config, b)
  jax.tree.map(np.testing.assert_array_equal, plain_params, off_params)
  plain_logits, plain_out = _apply(plain_model, plain_params, b, True)
  off_logits, off_out = _apply(off_model, off_params, b, True)
  np.testing.assert_array_equal(plain_logits, off_logits)
  assert set(off_out) == set(plain_out)
  assert not any(k.startswith(("aux/contrastive", "aux/mim")) for k in off_out)

  # With every head on, the shared parameters initialise identically and the decoder's
  # logits are unchanged (the heads and the masked ViT pass only add outputs).
  on_model, on_params = _init(_vicha_config(), b)
  assert {"contrastive", "mim_head"} <= set(on_params)
  assert "mask_token" in on_params["vision"] and "mask_token" not in plain_params["vision"]
  shared = {k: v for k, v in on_params.items() if k in plain_params}
  shared["vision"] = {k: v for k, v in on_params["vision"].items() if k != "mask_token"}
  jax.tree.map(np.testing.assert_array_equal, plain_params, shared)
  on_logits, on_out = _apply(on_model, on_params, b, True)
  np.testing.assert_array_equal(plain_logits, on_logits)
  assert on_out["aux/contrastive_img"].shape == (2, 4, 16)
  np.testing.assert_array_equal(np.asarray(on_out["aux/mim_mask"]).sum(1), [2, 2, 2, 2])
  _, eval_out = _apply(on_model, on_params, b, False)
  assert "aux/mim_pred" not in eval_out  # MIM is a training-only pass


def test_train_step_with_options_off_or_zero_weight_is_the_plain_step_bit_for_bit():
  config = train_fixtures.tiny_config()
  batches = [train_fixtures.batch(config, 8, seed) for seed in range(2)]
  mesh = [("data", -1), ("fsdp", 1), ("model", 1)]
  one = jax.devices()[:1]  # one device: the sharded step is covered below, and compiles slower
  plain, plain_params = train_fixtures.run_steps(_plain(config), mesh, one, batches)
  off, off_params = train_fixtures.run_steps(config, mesh, one, batches)
  for a, b in zip(plain, off):
    assert set(a) == set(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  jax.tree.map(np.testing.assert_array_equal, plain_params, off_params)
  # Heads built but weights 0: the loss is still exactly the plain one.
  zero = _vicha_config(losses__contrastive_weight=0.0, losses__mim_weight=0.0)
  heads, _ = train_fixtures.run_steps(zero, mesh, one, batches[:1])
  np.testing.assert_array_equal(heads[0]["loss"], plain[0]["loss"])
  assert not any(k.startswith("loss_") for k in heads[0])


def test_train_step_loss_is_decoder_plus_weighted_aux_losses():
  """On 8 devices: the [B, B] contrastive logits span the global batch under sharding."""
  config = _vicha_config()
  batches = [train_fixtures.batch(config, 8, 0)]
  metrics, _ = train_fixtures.run_steps(
    config, [("data", -1), ("fsdp", 1), ("model", 1)], jax.devices(), batches
  )
  m = metrics[0]
  assert losses.make_objective(config).terms == ("decoder", "contrastive", "mim")
  np.testing.assert_allclose(
    m["loss"], m["loss_decoder"] + 0.5 * m["loss_contrastive"] + 1.0 * m["loss_mim"], rtol=1e-6
  )
  # Two depth pairs weighted 1 and 2 over 8 unrelated pairs: above 3 * log(8) (chance).
  assert m["loss_contrastive"] > 3.0 * np.log(8) and m["loss_mim"] > 0.1
  assert np.isfinite(m["grad_norm"]) and m["grad_norm"] > 0


@pytest.mark.slow
def test_aux_losses_with_gradient_accumulation():
  """Micro-batches: each aux loss is the token-weighted mean over them, added once."""
  config = _vicha_config(optimizer__grad_accum_steps=2)
  metrics, _ = train_fixtures.run_steps(
    config,
    [("data", -1), ("fsdp", 1), ("model", 1)],
    jax.devices()[:1],
    [train_fixtures.batch(config, 8, 0)],
  )
  m = metrics[0]
  np.testing.assert_allclose(
    m["loss"], m["loss_decoder"] + 0.5 * m["loss_contrastive"] + m["loss_mim"], rtol=1e-6
  )
  # Negatives come from the micro-batch (4 examples): above chance for 2 pairs weighted 1+2.
  assert m["loss_contrastive"] > 3.0 * np.log(4) and np.isfinite(m["grad_norm"])


@pytest.mark.slow
def test_contrastive_negatives_span_the_global_batch_under_sharding():
  """8-way data parallel gives the 1-device losses: every device sees all B*B logits."""
  config = _vicha_config()
  batches = [train_fixtures.batch(config, 8, 0)]
  one, _ = train_fixtures.run_steps(
    config, [("data", -1), ("fsdp", 1), ("model", 1)], jax.devices()[:1], batches
  )
  eight, _ = train_fixtures.run_steps(
    config, [("data", 8), ("fsdp", 1), ("model", 1)], jax.devices(), batches
  )
  for key in ("loss_contrastive", "loss_mim", "loss"):
    np.testing.assert_allclose(one[0][key], eight[0][key], rtol=1e-5)


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(losses__contrastive_weight=1.0), "config.losses.contrastive_weight=1.0 needs"),
    (dict(losses__mim_weight=1.0), "config.losses.mim_weight=1.0 needs"),
    (
      dict(
        model__vicha__contrastive_depths=((1, 1),),
        losses__contrastive_weight=1.0,
        losses__contrastive_depth_weights=(1.0, 2.0),
      ),
      "contrastive_depth_weights=.*one weight",
    ),
    (dict(model__vicha__contrastive_depths=((3, 1),)), "vision depth 3 is outside"),
    (dict(model__vicha__contrastive_depths=((1, 2),)), "text depth 2 is outside"),
    (dict(model__vicha__mim_ratio=1.0), "config.model.vicha.mim_ratio=1.0"),
  ],
)
def test_bad_vicha_settings_name_the_key(overrides, message):
  config = train_fixtures.tiny_config(**overrides)
  with pytest.raises(ValueError, match=message):
    model_lib.build(config)
    losses.make_objective(config)


@pytest.mark.slow
def test_a_few_train_steps_with_every_option_on_log_each_loss(tmp_path):
  config = _vicha_config(total_steps=3, evals__val__every_steps=3)
  config.data.visual_concepts = True
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 3
  records = [r for r in metrics_writer.read_jsonl(str(tmp_path)) if "train/loss" in r]
  assert [r["step"] for r in records] == [1, 2, 3]
  for r in records:
    for key in ("train/loss_decoder", "train/loss_contrastive", "train/loss_mim"):
      assert np.isfinite(r[key]) and r[key] > 0
    np.testing.assert_allclose(
      r["train/loss"],
      r["train/loss_decoder"] + 0.5 * r["train/loss_contrastive"] + r["train/loss_mim"],
      rtol=1e-5,
    )


# --- visual concepts in the data -----------------------------------------------------------


def _prepare(visual_concepts, task="caption"):
  return pipeline.Prepare(
    task,
    "shapes",
    image_size=16,
    text_len=48,
    target_len=24,
    augment=False,
    visual_concepts=visual_concepts,
  )


def test_shapes_concepts_are_the_scene_objects_and_reach_the_encoder_text():
  tok = tokenizer.load("shapes")
  for index in range(5):
    raw = shapes.example("validation", index, 16)
    objs = shapes.sample_scene("validation", index)
    assert raw["concepts"] == list(dict.fromkeys(f"{o.colour} {o.shape}" for o in objs))
    for task, prompt in (("caption", "caption"), ("vqa", "answer")):
      rng = np.random.default_rng(index)
      with_concepts = tok.decode(_prepare(True, task)(raw, rng)["text"])
      rng = np.random.default_rng(index)
      without = tok.decode(_prepare(False, task)(raw, rng)["text"])
      assert with_concepts == f"{without} ; {' '.join(raw['concepts'])}"
      assert without.startswith(prompt) and ";" not in without


def test_record_without_concepts_is_skipped_as_missing_field():
  raw = dict(shapes.example("validation", 0, 16))
  del raw["concepts"]
  out = _prepare(True)(raw, np.random.default_rng(0))
  assert pipeline.SKIP_REASONS[int(out["skip"]) - 1] == "missing_field"
  assert int(_prepare(False)(raw, np.random.default_rng(0))["skip"]) == 0
  assert tasks.add_concepts(dict(text="caption"), dict(concepts=[]))["text"] == "caption"


def _png(k):
  import io

  from PIL import Image

  buf = io.BytesIO()
  Image.fromarray(np.full([8, 8, 3], 30 * k, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def _read(prefix):
  src = sources.make_source(f"arrayrecord:{prefix}-*.arrayrecord", image_size=8, where="test")
  return {rec["key"]: rec for rec in (src[i] for i in range(len(src)))}


def test_converter_flag_attaches_keywords_from_jsonl_and_tsv(tmp_path):
  images = tmp_path / "imgs"
  images.mkdir()
  for k in range(3):
    (images / f"im{k}.png").write_bytes(_png(k))
  lines = [
    dict(image="im0.png", caption="a dog", tags=["dog", "grass field"]),
    dict(image="im1.png", caption="a cat", tags="cat,  sofa ,"),
    dict(image="im2.png", caption="nothing tagged"),
  ]
  (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
  counts = {}
  convert.write_shards(
    convert.from_folder(str(images), str(tmp_path / "caps.jsonl"), counts, concepts_field="tags"),
    str(tmp_path / "j"),
    1,
  )
  recs = _read(tmp_path / "j")
  assert recs["im0.png"]["concepts"] == ["dog", "grass field"]
  assert recs["im1.png"]["concepts"] == ["cat", "sofa"]
  assert "concepts" not in recs["im2.png"] and counts == {"missing_concepts": 1}
  tok = tokenizer.load("shapes")
  text = _prepare(True)(recs["im0.png"], np.random.default_rng(0))["text"]
  assert tok.decode(text) == "caption ; dog grass field"

  (tmp_path / "caps.tsv").write_text("im0.png\ta dog\tdog, ball\nim1.png\ta cat\n")
  counts = {}
  convert.write_shards(
    convert.from_folder(str(images), str(tmp_path / "caps.tsv"), counts, concepts_field="concepts"),
    str(tmp_path / "t"),
    1,
  )
  recs = _read(tmp_path / "t")
  assert recs["im0.png"]["concepts"] == ["dog", "ball"]
  assert recs["im0.png"]["captions"] == ["a dog"]
  assert "concepts" not in recs["im1.png"] and counts == {"missing_concepts": 1}
