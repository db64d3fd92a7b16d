"""A user's own images and captions, start to finish, as the README's commands run them:
jarl.tools.convert -> jarl.tools.make_tokenizer -> pretraining with the one-key data
switch -> a captioning fine-tune -> jarl.predict."""

import random
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import train_fixtures

from configs import finetune_caption, pretrain
from jarl import metrics_writer
from jarl.data import tokenizer

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}
THINGS = ["boat", "kite", "house", "bicycle"]
PLACES = ["on the lake", "above the hills", "near the river", "by the old bridge"]


def _photos(folder, n: int) -> list[str]:
  """n small JPEG 'photos' (a coloured block on a grey ground) and their TSV lines."""
  rng = random.Random(0)
  folder.mkdir()
  lines = []
  for i in range(n):
    colour = rng.choice(sorted(COLOURS))
    image = np.full([40, 56, 3], 128, np.uint8)
    y, x = rng.randrange(0, 20), rng.randrange(0, 30)
    image[y : y + 18, x : x + 24] = COLOURS[colour]
    Image.fromarray(image).save(folder / f"photo{i}.jpg", quality=90)
    caption = f"A {colour} {rng.choice(THINGS)} {rng.choice(PLACES)}."
    lines.append(f"photo{i}.jpg\t{caption}")
  return lines


def _run(*args) -> subprocess.CompletedProcess:
  proc = subprocess.run(
    [sys.executable, "-m", *args],
    cwd=train_fixtures.repo_root(),  # the configs' relative paths
    env=train_fixtures.main_env(),
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_one_key_switch_sets_sources_validation_vocab_lengths_and_drops_tags(tmp_path):
  model = tmp_path / "spm.model"
  model.write_bytes(open(tokenizer.BUILTIN["shapes"], "rb").read())
  arg = f"demo,source=arrayrecord:{tmp_path}/d-*.arrayrecord,tokenizer={model},text_len=16"
  c = pretrain.get_config(arg)
  assert {s["source"] for s in c.data.sources} == {f"arrayrecord:{tmp_path}/d-*.arrayrecord"}
  assert c.evals.val.source == c.data.sources[0]["source"]
  assert c.model.vocab_size == 256 and c.data.tokenizer == str(model)
  assert c.data.text_len == c.model.text.max_len == 16
  assert c.data.target_len == c.model.decoder.max_len == 24  # the demo's, untouched
  assert c.data.tags == () and c.losses.tag_weight == 0.0
  ft = finetune_caption.get_config(arg)
  assert ft.stage == "finetune" and list(ft.evals) == ["val"]
  assert ft.data.sources[0]["source"] == ft.evals.val.source == c.evals.val.source
  assert ft.model.to_dict() == c.model.to_dict()  # init_from loads leaf for leaf
  # A shapes source keeps the demo's tags; no switch leaves the config as it was.
  assert pretrain.get_config("demo,source=shapes:train").data.tags
  assert pretrain.get_config("demo").to_dict() == pretrain.get_config("demo,source=").to_dict()
  with pytest.raises(ValueError, match=r"tokenizer=.*nope.model: no such file"):
    pretrain.get_config(f"demo,tokenizer={tmp_path}/nope.model")


@pytest.mark.slow
@pytest.mark.ci
def test_own_photos_convert_tokenize_pretrain_finetune_predict(tmp_path):
  photos = tmp_path / "photos"
  (tmp_path / "captions.tsv").write_text("\n".join(_photos(photos, 24)) + "\n")
  data = tmp_path / "data"
  _run(
    "jarl.tools.convert",
    f"--images={photos}",
    f"--captions={tmp_path / 'captions.tsv'}",
    f"--out={data}",
    "--num_shards=2",
  )
  shards = f"{data}-*.arrayrecord"
  out = _run(
    "jarl.tools.make_tokenizer",
    f"--captions={shards}",
    "--vocab_size=64",
    f"--out={tmp_path / 'spm.model'}",
  ).stdout
  # The config argument it prints, at the tests' size.
  (arg,) = re.findall(r"--config=configs/pretrain.py:demo,(\S+)", out)
  assert f"source=arrayrecord:{shards}" in arg
  pre, cap = tmp_path / "pre", tmp_path / "caption"
  log = _run(
    "jarl.main",
    f"--config=configs/pretrain.py:tiny,{arg}",
    f"--workdir={pre}",
    "--config.total_steps=4",
  ).stderr
  assert "cut to fit" not in log  # the printed lengths hold the captions
  # The summary names the fine-tune on the same data, which is what runs next.
  assert f"--config=configs/finetune_caption.py:tiny,{arg}" in log
  records = metrics_writer.read_jsonl(str(pre))
  val = [r for r in records if "val/loss" in r]
  assert val and val[-1]["val/examples"] == 16  # validation on the user's records
  assert all(r["data/truncated"] == 0 for r in records if "data/truncated" in r)
  _run(
    "jarl.main",
    f"--config=configs/finetune_caption.py:tiny,{arg}",
    f"--workdir={cap}",
    f"--config.init_from={pre}",
    "--config.total_steps=2",
    "--config.evals.val.num_examples=8",
  )
  final = metrics_writer.read_jsonl(str(cap))[-1]
  assert "val/cider" in final and final["val/examples"] == 8
  caption = _run(
    "jarl.predict", f"--checkpoint={cap}", f"--image={photos / 'photo0.jpg'}", "--task=caption"
  ).stdout
  assert caption.startswith(f"{photos / 'photo0.jpg'}\t") and caption.strip().split("\t")[1]
