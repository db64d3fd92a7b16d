"""The built-in shapes world: deterministic, and its texts are true of its pixels."""

import numpy as np
import pytest
from scipy import ndimage

from jarl.data import shapes


def test_same_split_and_index_give_the_same_example():
  a, b = shapes.example("train", 123, 64), shapes.example("train", 123, 64)
  np.testing.assert_array_equal(a["image"], b["image"])
  assert a["captions"] == b["captions"] and a["questions"] == b["questions"]
  c = shapes.example("train", 124, 64)
  assert not np.array_equal(a["image"], c["image"])
  v = shapes.example("validation", 123, 64)
  assert not np.array_equal(a["image"], v["image"])


def _blobs(image, colour):
  mask = np.all(image == np.array(shapes.COLOURS[colour], np.uint8), axis=-1)
  return ndimage.label(mask)[1]


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_colour_count_answers_match_the_pixels(split):
  checked = 0
  for i in range(60):
    ex = shapes.example(split, i, 96)
    for q, a in zip(ex["questions"], ex["answers"]):
      words = q.split()
      if q.startswith("how many") and words[3] == "shapes":
        assert shapes.NUMBERS.index(a) == _blobs(ex["image"], words[2]), (split, i, q, a)
        checked += 1
  assert checked > 100


def test_existence_and_relation_answers_match_the_scene():
  for i in range(80):
    objs = shapes.sample_scene("validation", i)
    ex = shapes.example("validation", i, 64)
    for q, a in zip(ex["questions"], ex["answers"]):
      if q.startswith("is there"):
        colour, shape = q.split()[-2:]
        assert (a == "yes") == any((o.colour, o.shape) == (colour, shape) for o in objs)
      if q.startswith("how many") and q.split()[2].rstrip("s") in shapes.SHAPES:
        shape = q.split()[2][:-1]
        assert shapes.NUMBERS.index(a) == sum(o.shape == shape for o in objs)
    for h, label in zip(ex["hypotheses"], ex["labels"]):
      if h.startswith("there are exactly"):
        _, _, _, n, colour, _ = h.split()
        truth = sum(o.colour == colour for o in objs) == shapes.NUMBERS.index(n)
        assert label == ("yes" if truth else "no")


def test_relation_questions_match_object_positions_in_the_image():
  # "is the red circle left of the blue square": compare blob centroids in the pixels.
  checked = 0
  for i in range(150):
    ex = shapes.example("train", i, 96)
    objs = shapes.sample_scene("train", i)
    for q, a in zip(ex["questions"], ex["answers"]):
      if not q.startswith("is the "):  # the relation questions
        continue
      # Only pairs named by colour+shape whose colour is unique let us find them in pixels.
      parts = q[len("is the ") :]
      for rel in ("left of", "right of", "above", "below"):
        if f" {rel} the " in parts:
          first, second = parts.split(f" {rel} the ")
          break
      names = [first.split(), second.split()]
      if any(len(n) != 2 for n in names):
        continue
      colours = [n[0] for n in names]
      if any(sum(o.colour == c for o in objs) != 1 for c in colours):
        continue
      centre = []
      for c in colours:
        ys, xs = np.nonzero(np.all(ex["image"] == np.array(shapes.COLOURS[c], np.uint8), -1))
        centre.append((ys.mean(), xs.mean()))
      (y1, x1), (y2, x2) = centre
      truth = {
        "left of": x1 < x2 - 5,
        "right of": x1 > x2 + 5,
        "above": y1 < y2 - 5,
        "below": y1 > y2 + 5,
      }[rel]
      assert (a == "yes") == truth, (i, q, a, centre)
      checked += 1
  assert checked > 10


def test_heldout_combinations_never_appear_outside_the_heldout_split():
  for split in ("train", "validation", "test"):
    for i in range(1500):
      for o in shapes.sample_scene(split, i):
        assert (o.colour, o.shape) not in shapes.HELDOUT, (split, i, o)
  for i in range(200):
    assert any((o.colour, o.shape) in shapes.HELDOUT for o in shapes.sample_scene("heldout", i))


def test_objects_stay_inside_the_crop_margin():
  # Training crops keep >= 90% of each side; objects must sit within MARGIN of the border.
  size = 96
  edge = int(shapes.MARGIN * size) - 1
  for i in range(100):
    img = shapes.example("train", i, size)["image"]
    grey = img[0, 0]
    border = np.concatenate(
      [
        img[:edge].reshape(-1, 3),
        img[-edge:].reshape(-1, 3),
        img[:, :edge].reshape(-1, 3),
        img[:, -edge:].reshape(-1, 3),
      ]
    )
    assert np.all(border == grey), i


def test_caption_noise_swaps_a_fraction_of_captions():
  clean = [shapes.example("train", i, 8)["captions"] for i in range(300)]
  noisy = [shapes.example("train", i, 8, caption_noise=0.3)["captions"] for i in range(300)]
  frac = np.mean([c != n for c, n in zip(clean, noisy)])
  assert 0.2 < frac < 0.4


def test_out_of_range_index_raises():
  with pytest.raises(IndexError, match="validation"):
    shapes.sample_scene("validation", 10_000)


def test_every_question_and_hypothesis_names_its_kind():
  # kind -> how its template begins
  question_starts = {
    "count_colour": "how many",
    "count_shape": "how many",
    "colour": "what colour",
    "shape": "what shape",
    "size": "what size",
    "exists": "is there",
    "relation": "is the",
  }
  hypothesis_starts = {"count": "there are exactly", "unknowable": "the", "relation": "the"}
  seen = set()
  for i in range(200):
    ex = shapes.example("validation", i, image_size=16)
    assert len(ex["question_types"]) == len(ex["questions"])
    assert len(ex["hypothesis_types"]) == len(ex["hypotheses"])
    for q, kind in zip(ex["questions"], ex["question_types"]):
      assert q.startswith(question_starts[kind]), (q, kind)
    for h, label, kind in zip(ex["hypotheses"], ex["labels"], ex["hypothesis_types"]):
      assert h.startswith(hypothesis_starts[kind]), (h, kind)
      assert (label == "maybe") == (kind == "unknowable")
      assert (kind == "relation") == any(r in h for r in shapes.OPPOSITE)
    seen.update(ex["question_types"] + [f"h_{k}" for k in ex["hypothesis_types"]])
  assert set(question_starts) == set(shapes.QUESTION_TYPES)
  assert set(hypothesis_starts) == set(shapes.HYPOTHESIS_TYPES)
  assert seen == set(shapes.QUESTION_TYPES) | {f"h_{k}" for k in shapes.HYPOTHESIS_TYPES}
