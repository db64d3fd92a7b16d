"""The SentencePiece wrapper and the shipped `shapes` model."""

import io

import numpy as np
import pytest
import sentencepiece as spm

from configs import pretrain
from jarl import config_checks
from jarl.data import make_tokenizer, tokenizer


def test_shipped_model_is_what_the_documented_command_writes():
  with open(tokenizer.BUILTIN["shapes"], "rb") as f:
    shipped = f.read()
  assert len(shipped) < 16_000
  assert make_tokenizer.train() == shipped  # rerun `python -m jarl.data.make_tokenizer`


def test_builtin_ids_and_round_trip():
  tok = tokenizer.load("shapes")
  assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (256, 0, 3)
  text = "how many red circles are there"
  ids = tok.encode(text)
  assert 0 not in ids and tok.eos_id not in ids and 1 not in ids  # no pad/eos/unk
  assert tok.decode(ids) == text
  assert tok.decode(tok.encode("What Colour?")) == "what colour?"  # case-folded


def test_decode_stops_at_eos_and_drops_pad():
  tok = tokenizer.load("shapes")
  a, b = tok.encode("red"), tok.encode("blue square")
  assert tok.decode([0] + a + [0] + [tok.eos_id] + b) == "red"


def test_encode_fixed_pads_truncates_and_keeps_eos():
  tok = tokenizer.load("shapes")
  ids, truncated = tok.encode_fixed("a red circle", 12, add_eos=True)
  n = len(tok.encode("a red circle"))
  assert not truncated and ids.dtype == np.int32
  assert ids[n] == tok.eos_id and np.all(ids[n + 1 :] == 0)
  long = " ".join(["red circle"] * 20)
  ids, truncated = tok.encode_fixed(long, 8, add_eos=True)
  assert truncated and ids[-1] == tok.eos_id and np.all(ids[:-1] != 0)
  ids, truncated = tok.encode_fixed(long, 8, add_eos=False)
  assert truncated and list(ids) == tok.encode(long)[:8]


def test_foreign_model_without_pad_zero_is_rejected_naming_the_file(tmp_path):
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(["a red circle", "a blue square"] * 50),
    model_writer=model,
    vocab_size=20,
    model_type="char",
    minloglevel=2,
  )  # default ids: unk=0, no pad
  path = tmp_path / "foreign.model"
  path.write_bytes(model.getvalue())
  with pytest.raises(ValueError, match="foreign.model.*pad"):
    tokenizer.load(str(path))


def test_missing_file_names_the_config_key():
  with pytest.raises(FileNotFoundError, match="config.data.tokenizer"):
    tokenizer.load("/nonexistent/x.model")


def test_train_model_gives_the_pipeline_ids_for_either_model_type():
  lines = ["a red circle", "a blue square", "two green triangles"] * 20
  for model_type in ("unigram", "bpe"):
    data = make_tokenizer.train_model(lines, 24, model_type=model_type)
    sp = spm.SentencePieceProcessor(model_proto=data)
    ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
    assert sp.get_piece_size() == 24 and ids == (0, 1, 2, 3)
    assert sp.decode(sp.encode("A Red Square")) == "a red square"  # nmt_nfkc_cf


@pytest.mark.parametrize("vocab_size", [200, 300])
def test_tokenizer_vocab_mismatch_fails_at_config_check_naming_both(vocab_size):
  config = pretrain.get_config("tiny")  # shapes: 256 pieces, vocab_size 256
  config_checks.check_tokenizer(config)
  config.model.vocab_size = vocab_size  # past the embedding, or written for another model
  with pytest.raises(ValueError) as e:
    config_checks.check(config, num_batch_shards=1)
  assert "config.data.tokenizer='shapes' has 256 pieces" in str(e.value)
  assert f"config.model.vocab_size={vocab_size}: set config.model.vocab_size=256" in str(e.value)


def test_remote_or_absent_tokenizer_is_not_opened_at_config_check(monkeypatch):
  def no_load(spec):
    raise AssertionError(f"opened {spec}")

  monkeypatch.setattr(tokenizer, "load", no_load)
  config = pretrain.get_config("tiny")
  config.model.vocab_size = 2
  for spec in ("gs://bucket/spm.model", "/nonexistent/spm.model"):
    config.data.tokenizer = spec
    config_checks.check_tokenizer(config)  # left to the pipeline, which names the file
