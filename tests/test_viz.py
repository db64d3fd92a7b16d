"""jarl.viz: the fusion maps are the model's own weights, cut up correctly; the plots draw
what they are given; train_live reports a failed run with its log."""

import json

import flax.linen as nn
import jax
import matplotlib
import numpy as np
import pytest
import train_fixtures

from jarl import batch as batch_lib
from jarl import predict, viz
from jarl.data import shapes
from jarl.data import tokenizer as tokenizer_lib
from jarl.models import model as model_lib
from jarl.predict import Predictor

matplotlib.use("Agg")


def _random_predictor(config):
  model = model_lib.build(config)
  dummy = batch_lib.dummy_batch(config, 1)
  init = jax.jit(lambda rng: model.init(rng, **dummy))
  return Predictor(config, nn.unbox(init(jax.random.key(0))["params"]))


@pytest.fixture(scope="module")
def predictor():
  """The tiny test model with the paper's `jarl` fusion (N = 4 latents per modality, K = 1,
  2x2 patch grid at 16 px), random init."""
  config = train_fixtures.tiny_config()
  assert config.model.fusion.type == "jarl"
  return _random_predictor(config)


@pytest.fixture(scope="module")
def co_predictor():
  """The tiny test model with co-tokenization: M = 4 joint tokens, K = 2 iterations, one
  tower tap each; random init."""
  return _random_predictor(
    train_fixtures.tiny_config(
      **{
        "model.fusion.type": "co_tokenization",
        "model.fusion.iterations": 2,
        "model.fusion.vision_taps": (1, 2),
        "model.fusion.text_taps": (1, 1),
      }
    )
  )


def _encode(predictor, image, question):
  """(the model's own fusion/* outputs for one example, as numpy, batch axis dropped except
  on fusion/gates, which has none; and the example's text ids [Nt])."""
  config = predictor.config
  pixels = predict.read_image(image, config.data.image_size)
  ids, _ = predictor.tokenizer.encode_fixed(
    "answer " + question, config.data.text_len, add_eos=False
  )
  _, _, out = predictor.model.apply(
    {"params": predictor.params}, pixels[None], ids[None], method=model_lib.Model.encode
  )
  out = {k: np.asarray(v) for k, v in out.items() if k.startswith("fusion/")}
  return {k: v if k == "fusion/gates" else v[0] for k, v in out.items()}, ids


def test_split_weights_follows_the_fusion_token_order():
  grid, nt, m = (2, 3), 4, 2
  weights = np.arange(m * (6 + nt + m), dtype=np.float32).reshape(m, -1)
  vision, text, joint = viz.split_weights(weights, grid, np.array([1, 1, 0, 1], bool))
  np.testing.assert_array_equal(vision[1], [[12, 13, 14], [15, 16, 17]])  # row-major patches
  np.testing.assert_array_equal(text, [[6, 7, 9], [18, 19, 21]])  # the padded piece dropped
  np.testing.assert_array_equal(joint, [[10, 11], [22, 23]])
  with pytest.raises(ValueError, match="2x3 grid"):
    viz.split_weights(weights[:, :10], grid, np.ones(nt, bool))


def test_latent_maps_are_the_resampling_maps(predictor):
  image = shapes.example("validation", 4, image_size=16)["image"]
  question = "red"  # short: "answer red" leaves padding in the 8 text positions
  maps = viz.fusion_maps(predictor, image, question)
  assert isinstance(maps, viz.LatentMaps)
  out, ids = _encode(predictor, image, question)
  valid = ids != 0
  assert 0 < valid.sum() < len(ids)
  assert maps.image_latents.shape == (4, 2, 2) and maps.text_latents.shape == (4, valid.sum())
  assert len(maps.pieces) == valid.sum()
  # The same numbers as the model's own output for that input, the padding dropped.
  np.testing.assert_allclose(
    maps.image_latents.reshape(4, 4), out["fusion/image_weights"], atol=1e-6
  )
  np.testing.assert_allclose(maps.text_latents, out["fusion/text_weights"][:, valid], atol=1e-6)
  np.testing.assert_array_equal(out["fusion/text_weights"][:, ~valid], 0.0)
  np.testing.assert_allclose(maps.gates, out["fusion/gates"])
  assert maps.gates.shape == (1, 2)
  # Every latent's map is a distribution over its own modality's valid tokens.
  np.testing.assert_allclose(maps.image_latents.sum((1, 2)), 1.0, atol=1e-5)
  np.testing.assert_allclose(maps.text_latents.sum(1), 1.0, atol=1e-5)
  assert np.all((maps.spread() >= 1 - 1e-4) & (maps.spread() <= 4 + 1e-4))


def test_joint_token_maps_are_the_reducer_softmax(co_predictor):
  scene = shapes.example("validation", 4, image_size=16)
  question = "red"
  maps = viz.fusion_maps(co_predictor, scene["image"], question)
  assert isinstance(maps, viz.JointTokenMaps)
  assert len(maps.vision) == 2 and maps.vision[0].shape == (4, 2, 2)
  # Each token's map is a softmax over all image, text and joint inputs: mass sums to 1.
  for k in range(2):
    np.testing.assert_allclose(maps.mass(k).sum(1), 1.0, atol=1e-5)
    assert maps.joint[k].shape == (4, 4)
  # The same numbers as the model's own output for that input.
  out, ids = _encode(co_predictor, scene["image"], question)
  valid = ids != 0
  w = out["fusion/weights_1"]
  np.testing.assert_allclose(maps.vision[1].reshape(4, 4), w[:, :4], atol=1e-6)
  np.testing.assert_allclose(maps.text[1], w[:, 4:12][:, valid], atol=1e-6)
  np.testing.assert_allclose(maps.joint[1], w[:, 12:], atol=1e-6)
  assert len(maps.pieces) == int(valid.sum()) == maps.text[1].shape[1] < len(ids)


def test_fusion_maps_refuses_a_fusion_without_maps(predictor):
  config = predictor.config
  config.model.fusion.type = "concat"
  try:
    with pytest.raises(ValueError, match="fusion.type='concat'.*'jarl' and 'co_tokenization'"):
      viz.fusion_maps(predictor, np.zeros((16, 16, 3), np.uint8), "red")
  finally:
    config.model.fusion.type = "jarl"


def test_text_pieces_rebuild_the_text_and_mark_word_starts():
  tok = tokenizer_lib.load("shapes")
  text = "answer how many red shapes are there"
  pieces = viz.text_pieces(tok, tok.encode(text))
  assert "".join(pieces).replace("\u2581", " ").strip() == text
  assert "\u2581red" in pieces and "\u2581there" in pieces


def test_upsample_and_to_uint8():
  grid = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
  big = viz.upsample(grid, 8)
  assert big.shape == (8, 8)
  np.testing.assert_allclose([big[0, 0], big[0, 7], big[7, 0], big[7, 7]], [0, 1, 2, 3])
  np.testing.assert_allclose(viz.upsample(np.full((3, 3), 0.25), 12), 0.25, atol=1e-6)
  np.testing.assert_array_equal(viz.to_uint8(np.array([-1.0, 0.0, 1.0])), [0, 128, 255])


def test_read_metrics_skips_a_partial_last_line(tmp_path):
  assert not viz.read_metrics(str(tmp_path))
  (tmp_path / "metrics.jsonl").write_text(
    json.dumps({"step": 1, "train/loss": 2.0})
    + "\n"
    + json.dumps({"step": 2, "train/loss": 1.5, "val/loss": 1.7})
    + "\n"
    + '{"step": 3, "tr'
  )
  records = viz.read_metrics(str(tmp_path))
  assert [r["step"] for r in records] == [1, 2]
  steps, values = viz.series(records, "val/loss")
  assert steps.tolist() == [2] and values.tolist() == [1.7]


def test_plots_draw_what_they_are_given(predictor, co_predictor):
  records = [
    {
      "step": s,
      "train/loss": 3.0 / s,
      "train/loss_caption": 3.0 / s,
      "train/loss_vqa": 4.0 / s,
      "data/weight/caption": 0.4,
      "data/weight/vqa": 0.6,
    }
    for s in range(1, 6)
  ] + [{"step": 5, "val/loss": 0.9}]
  fig = viz.plot_training(records, "run")
  left, right = fig.axes
  assert [line.get_label() for line in left.lines] == ["loss_caption", "loss_vqa", "val/loss"]
  assert [line.get_label() for line in right.lines] == ["caption", "vqa"]
  np.testing.assert_allclose(right.lines[1].get_ydata(), 0.6)
  assert fig._suptitle.get_text() == "run step 5"  # pylint: disable=protected-access

  image = shapes.example("validation", 0, image_size=16)["image"]
  fig = viz.plot_answers(
    [image, image], ["q1", "q2"], ["one", "red"], ["one", "blue"], title="answers"
  )
  assert fig._suptitle.get_text() == "answers"  # pylint: disable=protected-access
  titles = [ax.title for ax in fig.axes[:2]]
  assert [t.get_color() for t in titles] == ["darkgreen", "firebrick"]
  assert "predicted: red\ntruth: blue" in titles[1].get_text()
  with pytest.raises(ValueError, match="2 images, 1 questions"):
    viz.plot_answers([image, image], ["q"], ["a", "b"], ["a", "b"])

  maps = viz.fusion_maps(predictor, image, "red shapes")
  fig = viz.plot_fusion_maps(maps, title="q")
  image_axes = [ax for ax in fig.axes if ax.get_title().startswith("v")]
  assert [ax.get_title().split(":")[0] for ax in image_axes] == ["v0", "v1", "v2", "v3"]
  text_ax = next(ax for ax in fig.axes if ax.get_xlabel() == "text latent")
  assert [t.get_text() for t in text_ax.get_xticklabels()] == ["t0", "t1", "t2", "t3"]
  assert [t.get_text() for t in text_ax.get_yticklabels()] == maps.pieces
  np.testing.assert_allclose(text_ax.images[0].get_array(), maps.text_latents.T)
  assert fig._suptitle.get_text() == "q"  # pylint: disable=protected-access

  maps = viz.fusion_maps(co_predictor, image, "how many red shapes are there")
  fig = viz.plot_fusion_maps(maps, iteration=0)
  assert len(fig.axes) == 2 * 4  # heat map + piece weights per joint token
  assert fig.axes[4].get_yticklabels()[0].get_text() == maps.pieces[0]
  assert "iteration 1 of 2" in fig._suptitle.get_text()  # pylint: disable=protected-access
  fig = viz.plot_scene_qa(image, ["q1"], ["one"], ["two"], caption="c", true_captions=["t"])
  assert any("(truth: two)" in t.get_text() for t in fig.axes[1].texts)


def test_train_live_raises_with_the_log_of_a_failed_run(tmp_path):
  config = train_fixtures.tiny_config(**{"model.vocab_size": 300})  # tokenizer has 256
  shown = []
  with pytest.raises(RuntimeError, match="vocab_size=300"):
    viz.train_live(config, str(tmp_path), every_s=0.5, show=shown.append)
  assert not shown  # nothing was trained, nothing to draw


@pytest.mark.slow
def test_train_live_trains_and_draws(tmp_path):
  shown = []
  records = viz.train_live(
    train_fixtures.tiny_config(), str(tmp_path), every_s=0.5, show=shown.append
  )
  assert max(r["step"] for r in records) == 6 and shown
  assert "train/loss" in records[-2] or "train/loss" in records[-1]
