"""jarl_coco_karpathy: the standard TFDS dummy-data test, then the records a `caption`
source sees."""

import numpy as np
import pytest
import tfds_testing

from jarl.data import pipeline, sources, tasks
from jarl.data.tfds import coco_karpathy


class JarlCocoKarpathyTest(tfds_testing.BuilderTestCase):
  DATASET_CLASS = coco_karpathy.JarlCocoKarpathy
  SPLITS = {"train": 2, "validation": 1, "test": 1}  # train = Karpathy train + restval


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("tfds"))
  tfds_testing.prepare(coco_karpathy.JarlCocoKarpathy, root)
  return root


def test_source_records_feed_the_caption_task(data_dir):
  src = sources.make_source(
    "tfds:jarl_coco_karpathy:train", image_size=8, where="t", tfds_data_dir=data_dir
  )
  recs = sorted((src[i] for i in range(len(src))), key=lambda r: r["captions"][0])
  assert [r["captions"] for r in recs] == [["A dog on grass.", "Two dogs play."], ["A red car."]]
  # COCO image 1 (value 10, train2014) and image 2 (value 20, restval)
  assert [round(float(pipeline.load_image(r["image"]).mean())) for r in recs] == [10, 20]
  ex = tasks.caption(recs[1], np.random.default_rng(0))
  assert (ex["text"], ex["target"]) == ("caption", "A red car.")
  test = sources.make_source(
    "tfds:jarl_coco_karpathy:test", image_size=8, where="t", tfds_data_dir=data_dir
  )
  assert test[0]["captions"] == ["A cat sleeps.", "A sleeping cat."]
