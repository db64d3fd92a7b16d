"""TFDS builder `jarl_img2dataset`: image-caption pairs downloaded by img2dataset (CC3M, CC12M).

img2dataset (github.com/rom1504/img2dataset) writes shards in one of three layouts; all
are read here, in sorted order:
  * parquet  (--output_format parquet): rows with `jpg` bytes, `caption`, `key`, `url`,
    `status`;
  * webdataset (--output_format webdataset): NNNNN.tar holding key.jpg, key.txt, key.json;
  * files (--output_format files): NNNNN/ folders holding the same key.jpg/.txt/.json.
Failed downloads (no image bytes, or status other than "success") and images that do not
decode are skipped and counted in the log. Non-JPEG images are re-encoded as JPEG so the
declared feature format holds. `caption` feeds the `caption` and `prefix_lm` tasks through
jarl/data/sources.canonical; `key` is kept as provenance.

(jarl.tools.convert reads the same layouts into plain ArrayRecord shards without TFDS;
this builder is for users who keep their data in TFDS.)
"""

import collections
import io
import json
import tarfile

from absl import logging
from PIL import Image
import tensorflow_datasets as tfds

from jarl.data import images
from jarl.data.tfds import builder_base

SPLITS = ("train", "validation")
JPEG_MAGIC = b"\xff\xd8\xff"


def _jpeg(data: bytes | None) -> bytes | None:
  """`data` if it is a JPEG, else re-encoded as one; None if absent or undecodable."""
  if not data:
    return None
  if data[:3] == JPEG_MAGIC:
    return data
  try:
    with Image.open(io.BytesIO(data)) as img:
      out = io.BytesIO()
      # Re-encoding drops the EXIF tag, so the orientation is applied to the pixels first.
      images.upright_rgb(img).save(out, format="JPEG", quality=95)
      return out.getvalue()
  except Exception:  # pylint: disable=broad-except
    return None


def _caption(parts: dict) -> str:
  if "txt" in parts:
    return parts["txt"].decode("utf-8", errors="replace")
  if "json" in parts:
    return str(json.loads(parts["json"]).get("caption", ""))
  return ""


def _parquet_rows(path):
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  with path.open("rb") as f:
    table = pq.read_table(f)
  if "jpg" not in table.column_names:  # the metadata-only parquet beside webdataset/files shards
    return
  for row in table.to_pylist():
    if row.get("status", "success") != "success":
      yield row.get("key"), None, ""
    else:
      yield row.get("key"), row.get("jpg"), row.get("caption") or ""


def _grouped(members):
  """(key, {ext: bytes}) from (file name, bytes) pairs, grouping key.jpg/key.txt/key.json."""
  samples = collections.OrderedDict()
  for name, data in members:
    key, _, ext = name.rpartition("/")[2].partition(".")
    samples.setdefault(key, {})[ext.lower()] = data
  for key, parts in samples.items():
    yield (
      key,
      parts.get("jpg") or parts.get("jpeg") or parts.get("png") or parts.get("webp"),
      _caption(parts),
    )


def _tar_rows(path):
  with path.open("rb") as f, tarfile.open(fileobj=f) as tar:
    members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
  yield from _grouped(members)


def _folder_rows(path):
  yield from _grouped((p.name, p.read_bytes()) for p in sorted(path.iterdir()) if p.is_file())


class Img2datasetConfig(tfds.core.BuilderConfig):
  """A data set downloaded with img2dataset into manual_dir/img2dataset/<name>/<split>/."""


class JarlImg2dataset(builder_base.ManualBuilder):
  """Image-caption pairs from img2dataset output (configs: cc3m, cc12m).

  MANUAL_DOWNLOAD_INSTRUCTIONS (also in the class attribute):
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "parquet, webdataset and files layouts."}
  BUILDER_CONFIGS = [
    Img2datasetConfig(name="cc3m", description="Conceptual Captions 3M (Sharma et al. 2018)."),
    Img2datasetConfig(name="cc12m", description="Conceptual 12M (Changpinyo et al. 2021)."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download with img2dataset (pip install img2dataset) from the URL lists
  (CC3M: Train_GCC-training.tsv / Validation_GCC-1.1.0-Validation.tsv from
  https://ai.google.com/research/ConceptualCaptions/download; CC12M: cc12m.tsv from
  https://github.com/google-research-datasets/conceptual-12m), one output folder per
  split under the manual dir (default ~/tensorflow_datasets/downloads/manual/):
    img2dataset --url_list=Train_GCC-training.tsv --input_format=tsv \\
      --url_col=url --caption_col=caption --output_format=parquet \\
      --output_folder=MANUAL/img2dataset/cc3m/train --image_size=384 --resize_mode=keep_ratio
    (validation -> MANUAL/img2dataset/cc3m/validation; CC12M -> MANUAL/img2dataset/cc12m/train)
  Any of --output_format parquet, webdataset or files works; splits whose folder is absent
  are not built (CC12M has only train). Add a header line "url<TAB>caption" to the CC3M
  TSVs first. Build:
    python -m jarl.data.tfds.build --dataset=jarl_img2dataset/cc3m --manual_dir=MANUAL --data_dir=OUT
  and train with source="tfds:jarl_img2dataset/cc3m:train".
  """
  __doc__ += MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description="Web image-caption pairs downloaded with img2dataset.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(encoding_format="jpeg"),
          "caption": tfds.features.Text(),
          "key": tfds.features.Text(),
        }
      ),
      homepage="https://github.com/rom1504/img2dataset",
    )

  def _split_generators(self, dl_manager):
    root = self.manual_path(dl_manager, "img2dataset", self.builder_config.name)
    splits = {s: self._generate_examples(root / s) for s in SPLITS if (root / s).exists()}
    if not splits:
      raise FileNotFoundError(
        f"jarl_img2dataset: none of {SPLITS} under {root}; see "
        f"MANUAL_DOWNLOAD_INSTRUCTIONS:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    return splits

  def _generate_examples(self, folder):
    skipped = collections.Counter()
    for shard in sorted(folder.iterdir()):
      if shard.suffix == ".parquet":
        rows = _parquet_rows(shard)
      elif shard.suffix == ".tar":
        rows = _tar_rows(shard)
      elif shard.is_dir():
        rows = _folder_rows(shard)
      else:  # img2dataset's *_stats.json, *.json logs
        continue
      for key, data, caption in rows:
        caption = " ".join(caption.split())
        image = _jpeg(data)
        if image is None or not caption:
          skipped["no_image" if image is None else "empty_caption"] += 1
          continue
        yield f"{shard.name}:{key}", {"image": image, "caption": caption, "key": str(key)}
    if skipped:
      logging.warning("jarl_img2dataset: %s skipped %s", folder, dict(skipped))
