"""What every JARL TFDS builder shares: ArrayRecord output and manual-download checks.

ArrayRecord is the only TFDS format with random access, which `tfds.data_source` (and so
Grain and `tfds:<name>:<split>` sources in jarl/data/sources.py) needs; TFDS itself
defaults to TFRecord, so the builders switch the default.
"""

import json

from etils import epath
import tensorflow_datasets as tfds

FILE_FORMAT = "array_record"


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """GeneratorBasedBuilder writing ArrayRecord unless told otherwise, from a manual dir."""

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    # A prepared data set keeps the format recorded in its dataset_info.json; only a new
    # one gets ArrayRecord by default.
    prepared = (epath.Path(self.data_dir) / "dataset_info.json").exists()
    if file_format is None and not prepared:
      self.info.set_file_format(FILE_FORMAT, override=True)

  def manual_path(self, dl_manager, *parts: str, must_exist: bool = True) -> epath.Path:
    """`manual_dir/parts...`; a missing path names itself and the instructions."""
    path = epath.Path(dl_manager.manual_dir).joinpath(*parts)
    if must_exist and not path.exists():
      raise FileNotFoundError(
        f"{self.name}: missing {path}. Download as described in "
        f"{type(self).__module__}.{type(self).__name__}.MANUAL_DOWNLOAD_INSTRUCTIONS:\n"
        f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    return path


def read_json(path: epath.Path):
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from e


def read_jsonl(path: epath.Path):
  """Yields (line number, dict) for each non-empty line."""
  with path.open("r") as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          yield n, json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}:{n}: not valid JSON ({e})") from e
