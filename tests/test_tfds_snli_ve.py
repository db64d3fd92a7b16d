"""jarl_snli_ve: the standard TFDS dummy-data test, then the records an `entailment`
source sees."""

import numpy as np
import pytest
import tfds_testing

from jarl.data import pipeline, sources, tasks
from jarl.data.tfds import snli_ve


class JarlSnliVeTest(tfds_testing.BuilderTestCase):
  DATASET_CLASS = snli_ve.JarlSnliVe
  SPLITS = {"train": 3, "validation": 1, "test": 1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("tfds"))
  tfds_testing.prepare(snli_ve.JarlSnliVe, root)
  return root


def test_source_records_feed_the_entailment_task(data_dir):
  src = sources.make_source(
    "tfds:jarl_snli_ve:train", image_size=8, where="t", tfds_data_dir=data_dir
  )
  recs = sorted((src[i] for i in range(len(src))), key=lambda r: r["hypotheses"][0])
  assert [(r["hypotheses"], r["labels"]) for r in recs] == [
    (["Nobody is outside."], ["contradiction"]),
    (["Two men are friends."], ["neutral"]),
    (["Two men are outside."], ["entailment"]),
  ]
  assert "captions" not in recs[0]  # the premise is not offered as a caption
  assert [round(float(pipeline.load_image(r["image"]).mean())) for r in recs] == [150, 140, 140]
  targets = [tasks.entailment(r, np.random.default_rng(0))["target"] for r in recs]
  assert targets == ["no", "maybe", "yes"]
