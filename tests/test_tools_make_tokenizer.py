"""jarl.tools.make_tokenizer: a SentencePiece model from a user's captions, with its lengths."""

import random
import re
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm

from jarl.data import tokenizer
from jarl.tools import convert
from jarl.tools import make_tokenizer as tool

SUBJECTS = ["my dog Rex", "a golden retriever", "the old lighthouse", "two kids", "a red bicycle"]
VERBS = ["sleeping on", "running across", "standing next to", "covered with", "waiting beside"]
OBJECTS = ["the sofa", "a sandy beach", "fresh snow", "the wooden fence", "autumn leaves"]


def _captions(n: int, seed: int = 0) -> list[str]:
  rng = random.Random(seed)
  return [
    f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
    for _ in range(n)
  ]


def _row(out: str, field: str, key: str) -> list[int]:
  """p50 p90 p95 p99 max of the printed length row for (field, key)."""
  line = next(x for x in out.splitlines() if x.split()[:2] == [field, key])
  return [int(v) for v in line.split()[-5:]]


def _flags(out: str) -> dict[str, str]:
  return dict(re.findall(r"--config\.([\w.]+)=(\S+)", out))


def test_caption_file_gives_pipeline_ids_whole_words_and_fitting_lengths(tmp_path, capsys):
  caps = _captions(40)
  (tmp_path / "caps.txt").write_text("\n".join(caps) + "\n\n", encoding="utf-8")
  model = tmp_path / "out" / "spm.model"
  tool.main([f"--captions={tmp_path / 'caps.txt'}", "--vocab_size=300", f"--out={model}"])
  out = capsys.readouterr().out

  tok = tokenizer.load(str(model))  # as the pipeline loads it
  assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (300, 0, 3)
  sp = spm.SentencePieceProcessor(model_file=str(model))
  assert (sp.unk_id(), sp.bos_id()) == (1, 2)
  assert tok.decode(tok.encode("My dog Rex sleeping on the sofa.")) == (
    "my dog rex sleeping on the sofa."
  )  # lowercased (nmt_nfkc_cf); the text's words are pieces, not letters
  assert len(tok.encode("my dog rex sleeping on the sofa.")) <= 10
  # The prompts the pipeline puts before every text are one piece each; the entailment
  # words, absent from these data, still tokenize.
  assert len(tok.encode("caption")) == len(tok.encode("continue")) == 1
  assert 1 not in tok.encode("entail yes no maybe")

  assert "vocab_size=300 (pad 0, unk 1, bos 2, eos 3), trained on 40 captions" in out
  assert "0.00% of" in out and "p50 p90 p95 p99 max" in out
  targets = np.array([len(tok.encode(c)) + 1 for c in caps])  # caption + eos
  expected = [int(np.percentile(targets, q, method="higher")) for q in (50, 90, 95, 99)]
  assert _row(out, "captions", "target_len") == expected + [targets.max()]
  flags = _flags(out)
  assert flags["data.tokenizer"] == str(model) and flags["model.vocab_size"] == "300"
  for data_key, model_key in (("text_len", "text.max_len"), ("target_len", "decoder.max_len")):
    assert flags[f"data.{data_key}"] == flags[f"model.{model_key}"]
    assert int(flags[f"data.{data_key}"]) % 8 == 0
  target_len = int(flags["data.target_len"])
  assert target_len >= targets.max()  # 40 captions: p99 is the max, so nothing truncated
  assert not any(tok.encode_fixed(c, target_len, add_eos=True)[1] for c in caps)


def test_arrayrecord_shards_use_captions_questions_and_answers(tmp_path, capsys):
  records = [
    (
      {
        "key": f"im{k}",
        "captions": _captions(2, seed=k),
        "questions": ["what is the dog lying on", "how many kids are there"],
        "answers": [["sofa", "couch"], ["two"]],
      },
      b"not decoded by the tool",
    )
    for k in range(6)
  ]
  convert.write_shards(iter(records), str(tmp_path / "data"), num_shards=2)
  model = tmp_path / "spm.model"
  tool.main([f"--captions={tmp_path}/data-*.arrayrecord", "--vocab_size=120", f"--out={model}"])
  out = capsys.readouterr().out

  assert "trained on 12 captions, 12 questions, 18 answers" in out
  tok = tokenizer.load(str(model))
  assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (120, 0, 3)
  # Words only the questions, answers and the VQA prompt hold are whole pieces.
  assert len(tok.encode("answer lying couch")) == 3
  questions = np.array([len(tok.encode(f"answer {q}")) for q in records[0][0]["questions"]])
  assert _row(out, "questions", "text_len")[-1] == questions.max()
  answers = np.array([len(tok.encode(a)) + 1 for a in ("sofa", "couch", "two")])
  assert _row(out, "answers", "target_len")[-1] == answers.max()
  assert _flags(out)["model.vocab_size"] == "120"


def test_tsv_file_uses_the_caption_column(tmp_path, capsys):
  rows = [f"img{k}.jpg\t{c}" for k, c in enumerate(_captions(30))]
  (tmp_path / "caps.tsv").write_text("# file\tcaption\n" + "\n".join(rows), encoding="utf-8")
  tool.main([f"--captions={tmp_path / 'caps.tsv'}", "--vocab_size=100", f"--out={tmp_path}/m"])
  assert "trained on 30 captions" in capsys.readouterr().out
  sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "m"))
  assert not any("jpg" in sp.id_to_piece(i) for i in range(sp.get_piece_size()))


@pytest.mark.parametrize(
  "args, message",
  [
    (["--captions={d}/none.txt", "--vocab_size=50"], "--captions={d}/none.txt: no such file"),
    (["--captions={d}/x-*.arrayrecord", "--vocab_size=50"], "--captions={d}/x-*.arrayrecord: no"),
    (["--captions={d}/caps.txt", "--vocab_size=5000"], "--vocab_size=5000: SentencePiece: Voc"),
    (["--captions={d}/caps.txt", "--vocab_size=4"], "--vocab_size=4: must exceed"),
    (["--captions={d}/caps.txt"], "--vocab_size"),
    (["--captions={d}/caps.txt", "--vocab_size=50", "--model_type=word"], "--model_type"),
    (["--captions={d}/bin", "--vocab_size=50"], "--captions={d}/bin: not UTF-8 text"),
  ],
)
def test_bad_arguments_exit_2_with_one_line_naming_the_flag(tmp_path, capsys, args, message):
  (tmp_path / "caps.txt").write_text("\n".join(_captions(20)), encoding="utf-8")
  (tmp_path / "bin").write_bytes(b"JRL1\xff\xfe")
  args = [a.format(d=tmp_path) for a in args] + [f"--out={tmp_path}/m.model"]
  with pytest.raises(SystemExit) as e:
    tool.main(args)
  err = capsys.readouterr().err
  assert e.value.code == 2 and len(err.strip().splitlines()) == 1
  assert message.format(d=tmp_path) in err
  assert not (tmp_path / "m.model").exists()


def test_command_line_error_has_no_traceback(tmp_path):
  proc = subprocess.run(
    [sys.executable, "-m", "jarl.tools.make_tokenizer", f"--captions={tmp_path}/none.txt"]
    + ["--vocab_size=50", f"--out={tmp_path}/m.model"],
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 2 and proc.stdout == ""
  assert proc.stderr.strip().splitlines() == [
    f"jarl.tools.make_tokenizer: --captions={tmp_path}/none.txt: no such file"
  ]
