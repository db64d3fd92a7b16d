"""jarl.tools.convert: image folders / webdataset / parquet -> ArrayRecord -> the pipeline."""

import io
import json
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image
import pyarrow as pa
import pyarrow.parquet as pq

from jarl.data import sources
from jarl.tools import convert


def _image_bytes(k: int, fmt: str = "PNG") -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full([6 + k, 9, 3], 20 * k, np.uint8)).save(buf, format=fmt)
  return buf.getvalue()


def _read_back(prefix) -> dict:
  src = sources.make_source(f"arrayrecord:{prefix}-*.arrayrecord", image_size=8, where="test")
  return {rec["key"]: rec for rec in (src[i] for i in range(len(src)))}


def test_folder_with_tsv_round_trips_bytes_and_text_via_the_cli(tmp_path):
  images = tmp_path / "imgs"
  images.mkdir()
  expected = {}
  lines = []
  for k in range(5):
    data = _image_bytes(k, "JPEG" if k % 2 else "PNG")
    (images / f"im{k}.img").write_bytes(data)
    expected[f"im{k}.img"] = (
      data,
      [f"caption {k}", f"another {k}"] if k == 3 else [f"caption {k}"],
    )
  for name, (_, caps) in expected.items():
    lines += [f"{name}\t{c}" for c in caps]
  lines.append("missing.png\tnot there")
  (images / "blank.png").write_bytes(_image_bytes(9))
  lines += ["blank.png\t", "blank.png\t   "]  # only empty captions: dropped, counted
  (tmp_path / "caps.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
  out = tmp_path / "out" / "data"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "jarl.tools.convert",
      f"--images={images}",
      f"--captions={tmp_path / 'caps.tsv'}",
      f"--out={out}",
      "--num_shards=2",
    ],
    capture_output=True,
    text=True,
    check=True,
  )
  assert "wrote 5 records to 2 shards" in proc.stdout and "missing_image': 1" in proc.stdout
  assert "dropped 1 with empty captions" in proc.stdout
  assert sorted(p.name for p in out.parent.iterdir()) == [
    "data-00000-of-00002.arrayrecord",
    "data-00001-of-00002.arrayrecord",
  ]
  back = _read_back(out)
  assert set(back) == set(expected)
  for name, (data, caps) in expected.items():
    assert back[name]["image"] == data and back[name]["captions"] == caps


def test_jsonl_keeps_vqa_and_entailment_fields(tmp_path):
  (tmp_path / "a.png").write_bytes(_image_bytes(1))
  rows = [
    {"image": "a.png", "caption": "a cat"},
    {"image": "a.png", "question": "what animal", "answers": ["cat", "cat", "kitten"]},
    {"image": "a.png", "hypothesis": "an animal sleeps", "label": "neutral"},
  ]
  (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
  counts = {}
  paths, n = convert.write_shards(
    convert.from_folder(str(tmp_path), str(tmp_path / "c.jsonl"), counts), str(tmp_path / "j"), 1
  )
  assert n == 1 and counts == {}
  rec = _read_back(tmp_path / "j")["a.png"]
  assert rec["captions"] == ["a cat"] and rec["questions"] == ["what animal"]
  assert rec["answers"] == [["cat", "cat", "kitten"]]
  assert rec["hypotheses"] == ["an animal sleeps"] and rec["labels"] == ["neutral"]


def test_webdataset_and_parquet_inputs(tmp_path):
  tar_path = tmp_path / "shard-0.tar"
  with tarfile.open(tar_path, "w") as tar:
    for k in range(3):
      for name, data in (
        (f"{k:04d}.jpg", _image_bytes(k, "JPEG")),
        (f"{k:04d}.txt", f"web caption {k}".encode()),
        (f"{k:04d}.json", json.dumps({"url": "http://x"}).encode()),
      ):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
  counts = {}
  _, n = convert.write_shards(
    convert.from_webdataset(str(tmp_path / "*.tar"), counts), str(tmp_path / "w"), 2
  )
  back = _read_back(tmp_path / "w")
  assert n == 3 and back["0002"]["captions"] == ["web caption 2"]
  assert back["0002"]["image"] == _image_bytes(2, "JPEG")

  table = pa.table(
    {
      "key": ["p0", "p1", "p2"],
      "caption": ["one", "two", "three"],
      "jpg": [_image_bytes(0), None, _image_bytes(2)],
    }
  )
  pq.write_table(table, tmp_path / "x.parquet")
  _, n = convert.write_shards(
    convert.from_parquet(str(tmp_path / "*.parquet"), counts), str(tmp_path / "p"), 1
  )
  back = _read_back(tmp_path / "p")
  assert n == 2 and counts == {"missing_image": 1}
  assert back["p2"]["image"] == _image_bytes(2) and back["p2"]["captions"] == ["three"]


def test_empty_captions_are_dropped_and_records_left_without_text_counted(tmp_path):
  for name in ("a", "b", "c"):
    (tmp_path / f"{name}.png").write_bytes(_image_bytes(1))
  rows = [
    {"image": "a.png", "caption": "  "},  # nothing left: dropped
    {"image": "b.png", "caption": "", "question": "what", "answers": ["cat"]},  # VQA kept
    {"image": "c.png", "captions": ["", "a cat", "\t"]},  # the blank ones go
  ]
  (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
  counts = {}
  _, n = convert.write_shards(
    convert.from_folder(str(tmp_path), str(tmp_path / "c.jsonl"), counts), str(tmp_path / "j"), 1
  )
  back = _read_back(tmp_path / "j")
  assert n == 2 and counts == {"empty_caption": 1} and set(back) == {"b.png", "c.png"}
  assert "captions" not in back["b.png"] and back["b.png"]["questions"] == ["what"]
  assert back["c.png"]["captions"] == ["a cat"]

  tar_path = tmp_path / "shard-0.tar"
  with tarfile.open(tar_path, "w") as tar:
    for k, text in enumerate([b"a dog", b" \n"]):
      for name, data in ((f"{k:04d}.jpg", _image_bytes(k, "JPEG")), (f"{k:04d}.txt", text)):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
  pq.write_table(
    pa.table({"key": ["p0", "p1"], "caption": ["", "one"], "jpg": [_image_bytes(0)] * 2}),
    tmp_path / "x.parquet",
  )
  counts = {}
  web = list(convert.from_webdataset(str(tmp_path / "*.tar"), counts))
  par = list(convert.from_parquet(str(tmp_path / "*.parquet"), counts))
  assert [f["key"] for f, _ in web + par] == ["0000", "p1"] and counts == {"empty_caption": 2}
