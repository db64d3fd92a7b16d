"""jarl_vqav2: the standard TFDS dummy-data test, then the records a `vqa` source sees."""

import numpy as np
import pytest
import tfds_testing

from jarl.data import pipeline, sources, tasks
from jarl.data.tfds import vqav2


class JarlVqav2Test(tfds_testing.BuilderTestCase):
  DATASET_CLASS = vqav2.JarlVqav2
  # test2015 lists a question whose image is absent (as the real one does): skipped.
  SPLITS = {"train": 3, "validation": 2, "test_dev": 1, "test": 1}
  OVERLAPPING_SPLITS = ["test_dev"]  # test-dev is a subset of test, as in VQA v2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("tfds"))
  tfds_testing.prepare(vqav2.JarlVqav2, root)
  return root


def test_source_records_feed_the_vqa_task(data_dir):
  src = sources.make_source(
    "tfds:jarl_vqav2:train", image_size=8, where="t", tfds_data_dir=data_dir
  )
  recs = sorted((src[i] for i in range(len(src))), key=lambda r: r["questions"][0])
  assert [r["questions"] for r in recs] == [
    ["How many dogs?"],
    ["Is it sunny?"],
    ["What color is the car?"],
  ]
  assert recs[0]["answers"] == [["2"] * 7 + ["3"] * 3]
  # image 1 (value 10) carries the first two questions, image 2 (value 20) the third
  assert [round(float(pipeline.load_image(r["image"]).mean())) for r in recs] == [10, 10, 20]
  ex = tasks.vqa(recs[2], np.random.default_rng(0))
  assert ex["text"] == "answer What color is the car?" and ex["target"] == "red"
  assert len(ex["answers"]) == 10


def test_test_split_has_no_answers(data_dir):
  src = sources.make_source("tfds:jarl_vqav2:test", image_size=8, where="t", tfds_data_dir=data_dir)
  (rec,) = [src[i] for i in range(len(src))]
  assert rec["questions"] == ["What time is it?"] and rec["answers"] == [[]]
