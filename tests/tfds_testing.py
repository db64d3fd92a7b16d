"""Shared set-up of the TFDS builder tests (tests/test_tfds_*.py): the fake manual dir
(written by tests/data/tfds/make_fake_data.py), the standard TFDS test case pointed at it,
and a helper that prepares a builder as ArrayRecord for the `tfds:` source tests.

Test modules use `import tfds_testing` (not `from tfds_testing import ...`) so pytest does
not collect the shared base class itself as a test.
"""

import os

import tensorflow_datasets as tfds

MANUAL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tfds", "manual")


class BuilderTestCase(tfds.testing.DatasetBuilderTestCase):
  """tfds.testing.DatasetBuilderTestCase with the fake manual dir as its dummy data.

  The standard checks read splits back with `builder.as_dataset` (tf.data), which TFDS
  implements for TFRecord only, so they run on a TFRecord build; the ArrayRecord build
  the builders write by default is read through `tfds.data_source` by `prepare` users.
  """

  EXAMPLE_DIR = MANUAL_DIR

  def _make_builder(self, config=None):
    return self.dataset_class(
      data_dir=self.tmp_dir, config=config, version=self.VERSION, file_format="tfrecord"
    )


def prepare(builder_cls, data_dir: str, config=None):
  """Builds `builder_cls` (default format: ArrayRecord) from the fake manual dir."""
  builder = builder_cls(data_dir=data_dir, config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(
      manual_dir=MANUAL_DIR, compute_stats=tfds.download.ComputeStatsMode.SKIP
    )
  )
  if builder.info.file_format.value != "array_record":
    raise AssertionError(f"{builder.name}: built as {builder.info.file_format}, not array_record")
  return builder
