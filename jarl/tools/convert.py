r"""Writes image-text data you downloaded as ArrayRecord shards for `arrayrecord:<glob>`.

    # a folder of images + captions (TSV "file<TAB>caption" lines, or JSONL)
    python -m jarl.tools.convert --images=DIR --captions=FILE.tsv --out=PREFIX --num_shards=N
    # webdataset tars (key.jpg + key.txt / key.json), e.g. img2dataset's webdataset output
    python -m jarl.tools.convert --webdataset='DIR/*.tar' --out=PREFIX --num_shards=N
    # img2dataset parquet output (columns jpg + caption)
    python -m jarl.tools.convert --parquet='DIR/*.parquet' --out=PREFIX --num_shards=N

Writes PREFIX-00000-of-0000N.arrayrecord ...; train with
`source="arrayrecord:PREFIX-*.arrayrecord"`. Image bytes are stored unchanged (decoded,
and skipped if broken, by the training pipeline); text fields are stored in the canonical
form of jarl/data/sources.py (captions, questions/answers, hypotheses/labels) plus `key`.
A JSONL line is {"image": "file.jpg", "caption": "..."} or with "captions": [...],
"question"/"answers", "hypothesis"/"label". Lines whose image file is missing are
skipped and counted. Empty or whitespace captions are dropped; a record left with no
caption (and no question or hypothesis) is skipped and counted (`empty_caption`): it has
nothing to train on. Records go round-robin to shards, in input order.

Visual concepts (ViCHA; train with config.data.visual_concepts=True): keywords you
computed per image elsewhere (e.g. a CLIP tagger) are stored as the record's `concepts`
with --concepts_field=NAME: the JSONL field / parquet column / webdataset .json key NAME
(a list of strings or one comma-separated string); with a TSV captions file, a third
column "file<TAB>caption<TAB>kw1, kw2". Records without keywords are counted
(`missing_concepts`) and written without the field.

    python -m jarl.tools.convert --images=DIR --captions=FILE.jsonl --concepts_field=tags --out=PREFIX
"""

import glob
import json
import os
import tarfile

from absl import app, flags

from jarl.data import sources

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif")


def _fields(rec: dict) -> dict:
  """Canonical text fields of a caption/VQA/entailment dict (image not included)."""
  out = {k: v for k, v in sources.canonical({**rec, "image": None}).items() if k != "image" and v}
  if "key" in rec:
    out["key"] = str(rec["key"])
  return out


def _drop_empty_captions(fields: dict, counts: dict) -> dict | None:
  """`fields` without blank captions; None (counted) when nothing else is left to learn from."""
  if "captions" not in fields:
    return fields
  captions = [c for c in fields["captions"] if str(c).strip()]
  out = {k: v for k, v in fields.items() if k != "captions"}
  if captions:
    return {**out, "captions": captions}
  if "questions" in out or "hypotheses" in out:
    return out
  counts["empty_caption"] = counts.get("empty_caption", 0) + 1
  return None


def split_concepts(value) -> list[str]:
  """Keywords from a list of strings or one comma-separated string; blanks dropped."""
  items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
  return [" ".join(item.split()) for item in items if item.strip()]


def _attach_concepts(fields: dict, value, counts: dict) -> dict:
  concepts = split_concepts(value) if value is not None else []
  if concepts:
    fields["concepts"] = concepts
  else:
    counts["missing_concepts"] = counts.get("missing_concepts", 0) + 1
  return fields


def from_folder(images: str, captions: str, counts: dict, concepts_field: str | None = None):
  """(fields, image bytes) per image of a TSV or JSONL caption file; paths relative to `images`.

  With concepts_field: each image's keywords from that JSONL field, or the TSV's third column.
  """
  records: dict[str, dict] = {}
  concepts: dict[str, object] = {}
  with open(captions, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      line = line.rstrip("\n")
      if not line.strip() or line.startswith("#"):
        continue
      if captions.endswith(".jsonl"):
        rec = json.loads(line)
        if "image" not in rec:
          raise ValueError(f"{captions}:{n}: JSONL line has no 'image' field")
        name = rec.pop("image")
        records.setdefault(name, {"key": name, "captions": []})
        if concepts_field and rec.get(concepts_field) is not None:
          concepts[name] = rec.pop(concepts_field)
        fields = _fields(rec)
        records[name]["captions"] += fields.pop("captions", [])
        records[name].update(fields)
      else:
        if "\t" not in line:
          raise ValueError(f"{captions}:{n}: expected 'file<TAB>caption', got {line[:80]!r}")
        name, text = line.split("\t", 1)
        if concepts_field and "\t" in text:
          text, concepts[name] = text.split("\t", 1)
        records.setdefault(name, {"key": name, "captions": []})["captions"].append(text)
  for name, rec in records.items():
    path = os.path.join(images, name)
    if not os.path.exists(path):
      counts["missing_image"] = counts.get("missing_image", 0) + 1
      continue
    fields = _drop_empty_captions({k: v for k, v in rec.items() if v}, counts)
    if fields is None:
      continue
    if concepts_field:
      fields = _attach_concepts(fields, concepts.get(name), counts)
    with open(path, "rb") as f:
      yield fields, f.read()


def from_webdataset(pattern: str, counts: dict, concepts_field: str | None = None):
  """(fields, image bytes) per sample of webdataset tars: members grouped by key."""
  for path in sorted(glob.glob(pattern)):
    samples: dict[str, dict] = {}
    with tarfile.open(path) as tar:
      for member in tar:
        if not member.isfile():
          continue
        base = os.path.basename(member.name)
        key, _, ext = base.partition(".")
        key = os.path.join(os.path.dirname(member.name), key)
        samples.setdefault(key, {})[ext.lower()] = tar.extractfile(member).read()
    for key, parts in samples.items():
      image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
      if image is None:
        counts["missing_image"] = counts.get("missing_image", 0) + 1
        continue
      rec = {"key": key}
      if "json" in parts:
        rec.update(json.loads(parts["json"]))
      if "txt" in parts:
        rec["caption"] = parts["txt"].decode("utf-8")
      fields = _drop_empty_captions(_fields(rec), counts)
      if fields is None:
        continue
      if concepts_field:
        fields = _attach_concepts(fields, rec.get(concepts_field), counts)
      yield fields, image


def from_parquet(pattern: str, counts: dict, concepts_field: str | None = None):
  """(fields, image bytes) per row of parquet files with an image-bytes column."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  for path in sorted(glob.glob(pattern)):
    table = pq.read_table(path)
    column = next((c for c in ("jpg", "image", "png", "webp") if c in table.column_names), None)
    if column is None:
      raise ValueError(
        f"{path}: no image bytes column (jpg/image/png/webp) among "
        f"{table.column_names}; for img2dataset, download with "
        "--output_format=parquet first"
      )
    for row in table.to_pylist():
      image = row.pop(column)
      if not image:
        counts["missing_image"] = counts.get("missing_image", 0) + 1
        continue
      if isinstance(image, dict):  # HF-style {"bytes": ..., "path": ...}
        image = image.get("bytes")
      value = row.pop(concepts_field, None) if concepts_field else None
      fields = _drop_empty_captions(
        _fields({k: v for k, v in row.items() if v is not None}), counts
      )
      if fields is None:
        continue
      if concepts_field:
        fields = _attach_concepts(fields, value, counts)
      yield fields, image


def write_shards(examples, out: str, num_shards: int) -> tuple[list[str], int]:
  """Writes (fields, image bytes) round-robin into num_shards ArrayRecord files."""
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=g-import-not-at-top

  if num_shards < 1:
    raise ValueError(f"--num_shards={num_shards}: must be >= 1")
  folder = os.path.dirname(out)
  if folder:
    os.makedirs(folder, exist_ok=True)
  paths = [f"{out}-{i:05d}-of-{num_shards:05d}.arrayrecord" for i in range(num_shards)]
  writers = [ArrayRecordWriter(p, "group_size:1") for p in paths]
  n = 0
  try:
    for fields, image in examples:
      writers[n % num_shards].write(sources.encode_record(fields, image))
      n += 1
  finally:
    for w in writers:
      w.close()
  return paths, n


_IMAGES = flags.DEFINE_string("images", None, "Folder of image files (with --captions).")
_CAPTIONS = flags.DEFINE_string("captions", None, "TSV (file<TAB>caption) or JSONL file.")
_WEBDATASET = flags.DEFINE_string("webdataset", None, "Glob of webdataset .tar files.")
_PARQUET = flags.DEFINE_string("parquet", None, "Glob of parquet files with image bytes.")
_OUT = flags.DEFINE_string("out", None, "Output prefix (PREFIX-00000-of-0000N.arrayrecord).")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "Number of output files.")
_CONCEPTS_FIELD = flags.DEFINE_string(
  "concepts_field",
  None,
  "Attach per-image keywords (ViCHA visual concepts) from this "
  "JSONL field / parquet column / webdataset .json key, or the TSV's third column.",
)


def main(argv):
  del argv
  counts: dict[str, int] = {}
  modes = [m for m in (_CAPTIONS.value, _WEBDATASET.value, _PARQUET.value) if m]
  if len(modes) != 1 or not _OUT.value:
    raise app.UsageError(
      "give --out and exactly one of --images+--captions, --webdataset, --parquet"
    )
  if _CAPTIONS.value:
    if not _IMAGES.value:
      raise app.UsageError("--captions needs --images=DIR")
    examples = from_folder(_IMAGES.value, _CAPTIONS.value, counts, _CONCEPTS_FIELD.value)
  elif _WEBDATASET.value:
    examples = from_webdataset(_WEBDATASET.value, counts, _CONCEPTS_FIELD.value)
  else:
    examples = from_parquet(_PARQUET.value, counts, _CONCEPTS_FIELD.value)
  paths, n = write_shards(examples, _OUT.value, _NUM_SHARDS.value)
  if n == 0:
    raise SystemExit(f"no records written (skipped: {counts}); check the input paths")
  empty = counts.pop("empty_caption", 0)
  print(
    f"wrote {n} records to {len(paths)} shards: {_OUT.value}-*-of-{len(paths):05d}.arrayrecord"
    f"; dropped {empty} with empty captions" + (f"; skipped {counts}" if counts else "")
  )


if __name__ == "__main__":
  app.run(main)
