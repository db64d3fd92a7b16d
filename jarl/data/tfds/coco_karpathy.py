"""TFDS builder `jarl_coco_karpathy`: COCO captions on the Karpathy & Fei-Fei (2015) splits.

One example per image with all its captions (5 for most images): `captions` feeds the
`caption` and `prefix_lm` tasks through jarl/data/sources.canonical, and the caption
evaluator scores against all of them (jarl.evaluation.caption). Splits: train = Karpathy
"train" + "restval" (113,287 images), validation = "val" (5,000), test = "test" (5,000),
the split nearly every captioning paper reports.

TFDS's own `coco_captions` also has these splits but downloads all of COCO 2014 itself;
this builder reads files already on disk (shared with jarl_vqav2) and writes ArrayRecord.
"""

import numpy as np
import tensorflow_datasets as tfds

from jarl.data.tfds import builder_base

SPLITS = {"train": ("train", "restval"), "validation": ("val",), "test": ("test",)}


class JarlCocoKarpathy(builder_base.ManualBuilder):
  """COCO 2014 images with their human captions, Karpathy splits.

  MANUAL_DOWNLOAD_INSTRUCTIONS (also in the class attribute):
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "train+restval / val / test; raw captions."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download Karpathy's split file (dataset_coco.json inside caption_datasets.zip, from
  https://cs.stanford.edu/people/karpathy/deepimagesent/) and the COCO 2014 images
  (train2014.zip, val2014.zip from https://cocodataset.org/#download) into the manual dir
  (default ~/tensorflow_datasets/downloads/manual/):
    karpathy/dataset_coco.json
    coco/train2014/COCO_train2014_<12-digit id>.jpg
    coco/val2014/COCO_val2014_<12-digit id>.jpg
  (the same coco/ folders jarl_vqav2 reads). Build:
    python -m jarl.data.tfds.build --dataset=jarl_coco_karpathy --manual_dir=DIR --data_dir=OUT
  """
  __doc__ += MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description="COCO 2014 captions on the Karpathy train/val/test splits.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(encoding_format="jpeg"),
          "image/id": np.int64,
          "image/filename": tfds.features.Text(),
          "captions": tfds.features.Sequence(tfds.features.Text()),
        }
      ),
      homepage="https://cs.stanford.edu/people/karpathy/deepimagesent/",
      citation="Karpathy and Fei-Fei, Deep Visual-Semantic Alignments for Generating "
      "Image Descriptions, CVPR 2015.",
    )

  def _split_generators(self, dl_manager):
    split_file = self.manual_path(dl_manager, "karpathy", "dataset_coco.json")
    coco = self.manual_path(dl_manager, "coco")
    images = builder_base.read_json(split_file)["images"]
    return {
      split: self._generate_examples(images, names, coco, split_file)
      for split, names in SPLITS.items()
    }

  def _generate_examples(self, images, names, coco, split_file):
    for image in images:
      if image["split"] not in names:
        continue
      path = coco / image["filepath"] / image["filename"]
      if not path.exists():
        raise FileNotFoundError(
          f"jarl_coco_karpathy: image {image['cocoid']} of {split_file}: missing {path}"
        )
      captions = [" ".join(s["raw"].split()) for s in image["sentences"]]
      yield (
        int(image["cocoid"]),
        {
          "image": path,
          "image/id": int(image["cocoid"]),
          "image/filename": image["filename"],
          "captions": [c for c in captions if c],
        },
      )
