"""jarl_img2dataset: the standard TFDS dummy-data test on all three img2dataset layouts
(cc3m: parquet train + webdataset validation, cc12m: files folders), then the records a
`caption` source sees."""

import pytest
import tfds_testing

from jarl.data import pipeline, sources
from jarl.data.tfds import img2dataset


class JarlImg2datasetCc3mTest(tfds_testing.BuilderTestCase):
  DATASET_CLASS = img2dataset.JarlImg2dataset
  BUILDER_CONFIG_NAMES_TO_TEST = ["cc3m"]
  SPLITS = {"train": 2, "validation": 2}  # the failed download in train is skipped


class JarlImg2datasetCc12mTest(tfds_testing.BuilderTestCase):
  DATASET_CLASS = img2dataset.JarlImg2dataset
  BUILDER_CONFIG_NAMES_TO_TEST = ["cc12m"]
  SPLITS = {"train": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("tfds"))
  tfds_testing.prepare(img2dataset.JarlImg2dataset, root, config="cc3m")
  tfds_testing.prepare(img2dataset.JarlImg2dataset, root, config="cc12m")
  return root


@pytest.mark.parametrize(
  "spec,expected",
  [
    ("jarl_img2dataset/cc3m:train", {"a photo of a beach": 170, "a mountain at dusk": 180}),
    ("jarl_img2dataset/cc3m:validation", {"a red bicycle": 190, "snow": 200}),
    ("jarl_img2dataset/cc12m:train", {"a city at night": 210, "a cup": 220}),
  ],
)
def test_source_records_feed_the_caption_task(data_dir, spec, expected):
  src = sources.make_source(f"tfds:{spec}", image_size=8, where="t", tfds_data_dir=data_dir)
  got = {}
  for i in range(len(src)):
    (cap,) = src[i]["captions"]
    got[cap] = round(float(pipeline.load_image(src[i]["image"]).mean()))
  assert got == expected


def test_non_jpeg_images_are_reencoded_and_broken_ones_dropped():
  import io  # pylint: disable=g-import-not-at-top

  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  buf = io.BytesIO()
  Image.fromarray(np.full([4, 4, 3], 77, np.uint8)).save(buf, format="PNG")
  out = img2dataset._jpeg(buf.getvalue())  # pylint: disable=protected-access
  assert out[:3] == img2dataset.JPEG_MAGIC
  assert abs(float(np.asarray(Image.open(io.BytesIO(out))).mean()) - 77) < 2
  assert img2dataset._jpeg(b"not an image") is None  # pylint: disable=protected-access
  assert img2dataset._jpeg(None) is None  # pylint: disable=protected-access
