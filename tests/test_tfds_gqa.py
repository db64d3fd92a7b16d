"""jarl_gqa: the standard TFDS dummy-data test, then the records a `vqa` source sees."""

import numpy as np
import pytest
import tfds_testing

from jarl.data import pipeline, sources, tasks
from jarl.data.tfds import gqa


class JarlGqaTest(tfds_testing.BuilderTestCase):
  DATASET_CLASS = gqa.JarlGqa
  SPLITS = {"train": 2, "validation": 1, "testdev": 1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("tfds"))
  tfds_testing.prepare(gqa.JarlGqa, root)
  return root


def test_source_records_feed_the_vqa_task(data_dir):
  src = sources.make_source("tfds:jarl_gqa:train", image_size=8, where="t", tfds_data_dir=data_dir)
  recs = sorted((src[i] for i in range(len(src))), key=lambda r: r["questions"][0])
  assert [(r["questions"], r["answers"]) for r in recs] == [
    (["Is the sky blue?"], [["yes"]]),
    (["What is on the left?"], [["table"]]),
  ]
  # image 2354786 has value 110, image n161313 value 120
  assert [round(float(pipeline.load_image(r["image"]).mean())) for r in recs] == [110, 120]
  ex = tasks.vqa(recs[1], np.random.default_rng(0))
  assert (ex["text"], ex["target"]) == ("answer What is on the left?", "table")
