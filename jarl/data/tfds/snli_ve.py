"""TFDS builder `jarl_snli_ve`: SNLI-VE visual entailment (Xie et al., 2019) on Flickr30k.

One example per (image, hypothesis) pair. `hypothesis` and `label` (ClassLabel
entailment/neutral/contradiction, mapped to yes/maybe/no by jarl/data/tasks.py) feed
the `entailment` task through jarl/data/sources.canonical. The SNLI premise (a Flickr30k
caption the image replaces) is kept as `premise`, deliberately not under a caption name,
so an entailment source does not also offer itself as caption data.
"""

import tensorflow_datasets as tfds

from jarl.data.tfds import builder_base

SPLITS = {"train": "train", "validation": "dev", "test": "test"}
LABELS = ["entailment", "neutral", "contradiction"]


class JarlSnliVe(builder_base.ManualBuilder):
  """SNLI-VE image-premise / text-hypothesis pairs with 3-way labels.

  MANUAL_DOWNLOAD_INSTRUCTIONS (also in the class attribute):
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "train/dev/test as train/validation/test."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the SNLI-VE annotations (https://github.com/necla-ml/SNLI-VE: the generated
  snli_ve_{train,dev,test}.jsonl) and the Flickr30k images (flickr30k-images.tar.gz, by
  request from https://shannon.cs.illinois.edu/DenotationGraph/) and place them in the
  manual dir (default ~/tensorflow_datasets/downloads/manual/):
    snli_ve/snli_ve_{train,dev,test}.jsonl
    flickr30k_images/<Flickr30K_ID>.jpg
  Build:
    python -m jarl.data.tfds.build --dataset=jarl_snli_ve --manual_dir=DIR --data_dir=OUT
  """
  __doc__ += MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description="SNLI-VE: does the image entail, contradict or not decide the sentence?",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(encoding_format="jpeg"),
          "image/id": tfds.features.Text(),
          "pair_id": tfds.features.Text(),
          "premise": tfds.features.Text(),
          "hypothesis": tfds.features.Text(),
          "label": tfds.features.ClassLabel(names=LABELS),
        }
      ),
      homepage="https://github.com/necla-ml/SNLI-VE",
      citation="Xie et al., Visual Entailment: A Novel Task for Fine-Grained Image "
      "Understanding, arXiv 1901.06706.",
    )

  def _split_generators(self, dl_manager):
    images = self.manual_path(dl_manager, "flickr30k_images")
    return {
      split: self._generate_examples(
        self.manual_path(dl_manager, "snli_ve", f"snli_ve_{stem}.jsonl"), images
      )
      for split, stem in SPLITS.items()
    }

  def _generate_examples(self, pairs, images):
    for n, pair in builder_base.read_jsonl(pairs):
      label = pair.get("gold_label")
      if label not in LABELS:  # SNLI's "-" (no annotator majority) never reaches SNLI-VE
        raise ValueError(
          f"jarl_snli_ve: {pairs}:{n}: gold_label={label!r}, expected one of {LABELS}"
        )
      image_id = str(pair["Flickr30K_ID"])
      path = images / f"{image_id}.jpg"
      if not path.exists():
        raise FileNotFoundError(f"jarl_snli_ve: {pairs}:{n}: missing {path}")
      yield (
        pair["pairID"],
        {
          "image": path,
          "image/id": image_id,
          "pair_id": pair["pairID"],
          "premise": pair.get("sentence1", ""),
          "hypothesis": pair["sentence2"],
          "label": label,
        },
      )
