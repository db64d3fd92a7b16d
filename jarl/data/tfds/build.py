r"""Builds JARL's TFDS data sets from manually downloaded files, as ArrayRecord.

    python -m jarl.data.tfds.build --dataset=jarl_vqav2 --manual_dir=DIR --data_dir=OUT
    python -m jarl.data.tfds.build --dataset=jarl_img2dataset/cc3m --manual_dir=DIR --data_dir=OUT

(`tfds build --imports=jarl.data.tfds` does the same but needs apache_beam installed.)
Then train with source="tfds:<dataset>:<split>" and config.data.tfds_data_dir=OUT.
What to download, and where in DIR to put it, is in each builder's docstring
(jarl/data/tfds/*.py) and printed by this command when a file is missing.
"""

from absl import app, flags
import tensorflow_datasets as tfds

_DATASET = flags.DEFINE_string(
  "dataset", None, "Builder name[/config], e.g. jarl_gqa.", required=True
)
_MANUAL_DIR = flags.DEFINE_string(
  "manual_dir", None, "Folder holding the downloaded files.", required=True
)
_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "Where the prepared data set is written.", required=True
)
_FILE_FORMAT = flags.DEFINE_enum(
  "file_format",
  "array_record",
  ["array_record", "tfrecord"],
  "array_record: random access for tfds.data_source / Grain.",
)


def main(argv):
  del argv
  builder = tfds.builder(_DATASET.value, data_dir=_DATA_DIR.value, file_format=_FILE_FORMAT.value)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=_MANUAL_DIR.value)
  )
  for split, info in sorted(builder.info.splits.items()):
    print(f"{_DATASET.value} {split}: {info.num_examples} examples -> {builder.data_dir}")


if __name__ == "__main__":
  app.run(main)
