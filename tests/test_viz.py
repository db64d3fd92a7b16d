"""jarl.viz: the joint-token maps are the model's reducer weights, cut up correctly; the
plots draw what they are given; train_live reports a failed run with its log."""

import json

import flax.linen as nn
import jax
import matplotlib
import numpy as np
import pytest
import train_fixtures

from jarl import batch as batch_lib
from jarl import viz
from jarl.data import shapes
from jarl.data import tokenizer as tokenizer_lib
from jarl.models import model as model_lib
from jarl.predict import Predictor

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def predictor():
  """The tiny test model (4 joint tokens, K = 1, 2x2 patch grid at 16 px), random init."""
  config = train_fixtures.tiny_config(
    **{"model.fusion.vision_taps": (1, 2), "model.fusion.text_taps": (1, 1)}
  )
  model = model_lib.build(config)
  dummy = batch_lib.dummy_batch(config, 1)
  init = jax.jit(lambda rng: model.init(rng, **dummy))
  params = nn.unbox(init(jax.random.key(0))["params"])
  return Predictor(config, params)


def test_split_weights_follows_the_fusion_token_order():
  grid, nt, m = (2, 3), 4, 2
  weights = np.arange(m * (6 + nt + m), dtype=np.float32).reshape(m, -1)
  vision, text, joint = viz.split_weights(weights, grid, np.array([1, 1, 0, 1], bool))
  np.testing.assert_array_equal(vision[1], [[12, 13, 14], [15, 16, 17]])  # row-major patches
  np.testing.assert_array_equal(text, [[6, 7, 9], [18, 19, 21]])  # the padded piece dropped
  np.testing.assert_array_equal(joint, [[10, 11], [22, 23]])
  with pytest.raises(ValueError, match="2x3 grid"):
    viz.split_weights(weights[:, :10], grid, np.ones(nt, bool))


def test_joint_token_maps_are_the_reducer_softmax(predictor):
  scene = shapes.example("validation", 4, image_size=16)
  question = scene["questions"][0]
  maps = viz.joint_token_maps(predictor, scene["image"], question)
  config = predictor.config
  assert len(maps.vision) == 2 and maps.vision[0].shape == (4, 2, 2)
  # Each token's map is a softmax over all image, text and joint inputs: mass sums to 1.
  for k in range(2):
    np.testing.assert_allclose(maps.mass(k).sum(1), 1.0, atol=1e-5)
    assert maps.joint[k].shape == (4, 4)
  # The same numbers as the model's own output for that input.
  pixels = viz.predict.read_image(scene["image"], 16)
  ids, _ = predictor.tokenizer.encode_fixed("answer " + question, 8, add_eos=False)
  _, _, out = predictor.model.apply(
    {"params": predictor.params}, pixels[None], ids[None], method=model_lib.Model.encode
  )
  w = np.asarray(out["fusion/weights_1"][0])
  np.testing.assert_allclose(maps.vision[1].reshape(4, 4), w[:, :4], atol=1e-6)
  np.testing.assert_allclose(maps.text[1], w[:, 4 : 4 + int((ids != 0).sum())], atol=1e-6)
  assert len(maps.pieces) == int((ids != 0).sum()) == maps.text[1].shape[1]
  config.model.fusion.type = "concat"
  try:
    with pytest.raises(ValueError, match="fusion.type='concat'"):
      viz.joint_token_maps(predictor, scene["image"], question)
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


def test_plots_draw_what_they_are_given(predictor):
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

  maps = viz.joint_token_maps(predictor, image, "how many red shapes are there")
  fig = viz.plot_joint_tokens(maps, 0)
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
