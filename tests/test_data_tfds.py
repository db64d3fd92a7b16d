"""tfds:<name>:<split> sources: a tiny builder prepared as ArrayRecord, read end to end."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jarl.data import pipeline, sources, tokenizer

CAPTIONS = ["a red circle", "a blue square", "two green shapes", "a yellow diamond"]


class JarlTinyVe(tfds.core.GeneratorBasedBuilder):
  """COCO-caption and SNLI-VE-like fields in one tiny builder."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3)),
          "captions": tfds.features.Sequence({"text": tfds.features.Text()}),
          "hypothesis": tfds.features.Text(),
          "label": tfds.features.ClassLabel(names=["entailment", "neutral", "contradiction"]),
          "id": np.int64,
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"validation": self._generate_examples()}

  def _generate_examples(self):
    for i, cap in enumerate(CAPTIONS):
      yield (
        i,
        {
          "image": np.full([8, 10, 3], 60 * i, np.uint8),
          "captions": {"text": [cap]},
          "hypothesis": f"there is {cap}",
          "label": i % 3,
          "id": i,
        },
      )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  JarlTinyVe(data_dir=str(root), file_format="array_record").download_and_prepare()
  return str(root)


def _config(data_dir):
  return ml_collections.ConfigDict(
    dict(
      image_size=8,
      tokenizer="shapes",
      text_len=12,
      target_len=8,
      shuffle_seed=0,
      num_workers=0,
      read_threads=0,
      augment=False,
      tfds_data_dir=data_dir,
      sources=[dict(name="ve", source="tfds:jarl_tiny_ve:validation", task="caption", weight=1.0)],
    )
  )


def test_tfds_source_yields_canonical_records_with_encoded_images(data_dir):
  src = sources.make_source(
    "tfds:jarl_tiny_ve:validation", image_size=8, where="t", tfds_data_dir=data_dir
  )
  assert len(src) == 4
  recs = [src[i] for i in range(4)]
  assert sorted(c for r in recs for c in r["captions"]) == sorted(CAPTIONS)
  for r in recs:
    assert isinstance(r["image"], bytes)  # left encoded: the map decodes and can skip
    i = CAPTIONS.index(r["captions"][0])
    assert r["labels"] == [["entailment", "neutral", "contradiction"][i % 3]]
    assert np.all(pipeline.load_image(r["image"]) == 60 * i)


@pytest.mark.parametrize(
  "task,expected", [("caption", CAPTIONS), ("entailment", ["yes", "maybe", "no", "yes"])]
)
def test_tfds_eval_pipeline_end_to_end(data_dir, task, expected):
  tok = tokenizer.load("shapes")
  ev = pipeline.make_eval_data(
    _config(data_dir),
    dict(source="tfds:jarl_tiny_ve:validation", task=task, num_examples=4, batch_size=4),
    batch_size=4,
    process_index=0,
    process_count=1,
  )
  (b,) = list(ev)
  assert b["mask"].all()
  got = {
    int(round((img.mean() + 1) * 127.5 / 60)): tok.decode(t)
    for img, t in zip(b["image"], b["target"])
  }
  assert got == dict(enumerate(expected))
