"""Random-access sources (`__len__`, `__getitem__`) selected by a config string.

    shapes:<split>[,noise=<p>]         built-in procedural world (jarl/data/shapes.py)
    tfds:<name>[/<config>]:<split>     tfds.data_source over prepared ArrayRecord files
    arrayrecord:<glob>                 shards written by `python -m jarl.tools.convert`

Every source returns *raw examples* in one canonical form (tasks.py reads it):
`image` (encoded bytes or uint8 [H, W, 3]), and any of `captions` list[str], `questions`
list[str] + `answers` list[str | list[str]], `hypotheses` list[str] + `labels` list[str],
plus `index` (position in the source). A record that cannot be read becomes
`{"_skip": "bad_record", "index": i}` instead of raising, so one bad shard entry is
counted and skipped rather than killing a run.

ArrayRecord record layout (written by jarl.tools.convert, read here):
    b"JRL1" | uint32 little-endian n | n bytes of UTF-8 JSON (text fields) | image bytes
"""

import glob as globlib
import json
import struct

import numpy as np

from jarl.data import shapes

MAGIC = b"JRL1"
TEXT_FIELDS = ("captions", "questions", "answers", "hypotheses", "labels")


def encode_record(fields: dict, image: bytes) -> bytes:
  """One ArrayRecord entry: JSON text `fields` followed by encoded `image` bytes."""
  header = json.dumps(fields, ensure_ascii=False, sort_keys=True).encode("utf-8")
  return MAGIC + struct.pack("<I", len(header)) + header + bytes(image)


def decode_record(data: bytes) -> dict:
  """Inverse of encode_record: the text fields plus `image` (bytes). Raises ValueError."""
  if data[:4] != MAGIC or len(data) < 8:
    raise ValueError("not a JARL record (bad magic)")
  (n,) = struct.unpack("<I", data[4:8])
  if 8 + n > len(data):
    raise ValueError("truncated JARL record")
  fields = json.loads(data[8 : 8 + n].decode("utf-8"))
  fields["image"] = data[8 + n :]
  return fields


def _str(x) -> str:
  if isinstance(x, (bytes, np.bytes_)):
    return bytes(x).decode("utf-8", errors="replace")
  if isinstance(x, np.ndarray) and x.ndim == 0:
    return _str(x.item())
  return str(x)


def _strings(x) -> list[str]:
  """A str, bytes, array or nested {"text": ...} value as a flat list of strings."""
  if isinstance(x, dict):
    for key in ("text", "answer", "question", "caption"):
      if key in x:
        return _strings(x[key])
    return []
  if isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.ndim > 0):
    return [_str(v) for v in x]
  return [_str(x)]


def canonical(rec: dict, label_names=None) -> dict:
  """Maps common field names (COCO captions, VQA, SNLI-VE style) to the canonical form."""
  out = {"image": rec.get("image")}
  if "key" in rec:  # provenance (file name / webdataset key), for debugging and tests
    out["key"] = _str(rec["key"])
  for key in ("captions", "caption", "text", "alt_text"):
    if key in rec:
      out["captions"] = _strings(rec[key])
      break
  if "questions" in rec:
    out["questions"] = _strings(rec["questions"])
    out["answers"] = list(rec.get("answers", []))
  elif "question" in rec:
    out["questions"] = _strings(rec["question"])
    refs = rec.get("answers", rec.get("answer", rec.get("multiple_choice_answer")))
    out["answers"] = [] if refs is None else [_strings(refs)]
  if "hypotheses" in rec:
    out["hypotheses"] = _strings(rec["hypotheses"])
    out["labels"] = _strings(rec.get("labels", []))
  elif "hypothesis" in rec:
    out["hypotheses"] = _strings(rec["hypothesis"])
    label = rec.get("label")
    if label is not None and not isinstance(label, (str, bytes)) and label_names:
      label = label_names[int(label)]
    out["labels"] = [] if label is None else _strings(label)
  if "concepts" in rec:  # ViCHA visual concepts (jarl.tools.convert --concepts_field)
    out["concepts"] = _strings(rec["concepts"])
  return out


class ShapesSource:
  """The built-in world; `image_size` is the render resolution (no resize needed)."""

  def __init__(self, split: str, image_size: int, caption_noise: float = 0.0):
    self._len = shapes.num_examples(split)
    self.split, self.image_size, self.caption_noise = split, image_size, caption_noise

  def __len__(self):
    return self._len

  def __getitem__(self, index):
    return shapes.example(self.split, int(index), self.image_size, self.caption_noise)

  def __repr__(self):
    return f"ShapesSource({self.split}, noise={self.caption_noise})"


class RecordSource:
  """ArrayRecord shards of encode_record entries."""

  def __init__(self, paths: list[str]):
    import grain  # pylint: disable=g-import-not-at-top

    self.paths = paths
    self._source = grain.sources.ArrayRecordDataSource(paths)

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    try:
      rec = canonical(decode_record(self._source[index]))
    except Exception:  # pylint: disable=broad-except
      return {"_skip": "bad_record", "index": int(index)}
    rec["index"] = int(index)
    return rec

  def __repr__(self):
    return f"RecordSource({len(self.paths)} files)"


class TfdsSource:
  """tfds.data_source with images left encoded (decoded, and skipped if bad, in the map)."""

  def __init__(self, name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    decoders = {"image": tfds.decode.SkipDecoding()} if "image" in features else None
    self._source = tfds.data_source(
      name, split=split, data_dir=data_dir, download=False, decoders=decoders
    )
    label = features["label"] if "label" in features else None
    self._label_names = getattr(label, "names", None)
    self.name = f"{name}:{split}"

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    try:
      rec = canonical(self._source[index], self._label_names)
    except Exception:  # pylint: disable=broad-except
      return {"_skip": "bad_record", "index": int(index)}
    rec["index"] = int(index)
    return rec

  def __repr__(self):
    return f"TfdsSource({self.name})"


def _glob(pattern: str) -> list[str]:
  if "://" in pattern:  # gs:// etc.: wildcards in the file name only
    from etils import epath  # pylint: disable=g-import-not-at-top

    folder, name = pattern.rsplit("/", 1)
    return sorted(str(p) for p in epath.Path(folder).glob(name))
  return sorted(globlib.glob(pattern))


def parse(spec: str, *, where: str) -> tuple[str, tuple]:
  """`spec` checked without opening anything but a glob's folder: (kind, arguments).

  ("shapes", (split, noise)), ("tfds", (name, split)) or ("arrayrecord", (paths,)).
  ValueError naming `where` (the config key) for a bad spec or a glob matching nothing.
  """
  kind, _, rest = spec.partition(":")
  if kind == "shapes":
    split, *opts = rest.split(",")
    noise = 0.0
    for opt in opts:
      key, _, value = opt.partition("=")
      if key != "noise":
        raise ValueError(f"{where}={spec!r}: unknown shapes option {key!r} (known: noise)")
      noise = float(value)
    if split not in shapes.SPLITS:
      raise ValueError(
        f"{where}={spec!r}: unknown shapes split; choose from {sorted(shapes.SPLITS)}"
      )
    return kind, (split, noise)
  if kind == "tfds":
    name, sep, split = rest.rpartition(":")
    if not sep or not name or not split:
      raise ValueError(f"{where}={spec!r}: expected tfds:<name>[/<config>]:<split>")
    return kind, (name, split)
  if kind == "arrayrecord":
    paths = _glob(rest)
    if not paths:
      raise ValueError(f"{where}={spec!r}: no files match {rest!r}")
    return kind, (paths,)
  raise ValueError(
    f"{where}={spec!r}: unknown source; use shapes:<split>, "
    "tfds:<name>/<config>:<split> or arrayrecord:<glob>"
  )


def make_source(spec: str, *, image_size: int, where: str, tfds_data_dir: str | None = None):
  """The source for `spec`; `where` names the config key in error messages."""
  kind, args = parse(spec, where=where)
  if kind == "shapes":
    split, noise = args
    return ShapesSource(split, image_size, noise)
  if kind == "tfds":
    return TfdsSource(*args, tfds_data_dir)
  return RecordSource(*args)
