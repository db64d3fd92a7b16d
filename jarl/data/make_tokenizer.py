"""Trains the built-in SentencePiece model for the `shapes` world.

    python -m jarl.data.make_tokenizer            # rewrites jarl/data/assets/shapes.model
    python -m jarl.data.make_tokenizer --out=/tmp/shapes.model

Deterministic: a fixed corpus (every text of the first `NUM_SCENES` train scenes, plus the
task prompts), one training thread and no sentence sampling, so the same code always
writes the same bytes (tests/test_data_tokenizer.py checks the shipped file against it).
Ids: pad=0 (the decoder's start token and the batch padding), unk=1, bos=2, eos=3.
"""

import io
import os
import string
import sys
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from jarl.data import shapes, tasks

NUM_SCENES = 3000
VOCAB_SIZE = 256
# The grammar's text supports only ~90 learned pieces, so the table is filled up to
# VOCAB_SIZE with digits/punctuation (so user prompts still tokenize) and T5-style reserved
# control ids <extra_id_k> that encode() never emits (room for new task tokens).
LEARNED_PIECES = 80
USER_SYMBOLS = list("0123456789.,?!'-:;")
NUM_RESERVED = VOCAB_SIZE - 4 - len(USER_SYMBOLS) - LEARNED_PIECES
DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "assets", "shapes.model")


def corpus() -> list[str]:
  """Every text the `shapes` tasks can produce for the first NUM_SCENES train scenes."""
  lines = list(tasks.PROMPTS.values())
  for i in range(NUM_SCENES):
    ex = shapes.example("train", i, image_size=8)  # tiny render: only the text is used
    lines += ex["captions"] + ex["questions"] + ex["answers"] + ex["hypotheses"]
  lines += ["yes", "no", "maybe"]
  return lines


def train() -> bytes:
  """Returns the serialised model (a few KB)."""
  model = io.BytesIO()
  with tempfile.TemporaryDirectory() as tmp:
    rules = os.path.join(tmp, "lowercase.tsv")
    with open(rules, "w") as f:
      f.writelines(f"{ord(c):X}\t{ord(c.lower()):X}\n" for c in string.ascii_uppercase)
    _train(model, rules)
  # The proto records the rules file's temporary path; drop it so the bytes are reproducible.
  proto = sentencepiece_model_pb2.ModelProto.FromString(model.getvalue())
  proto.normalizer_spec.ClearField("normalization_rule_tsv")
  return proto.SerializeToString()


def _train(model, rules):
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(corpus()),
    model_writer=model,
    model_type="unigram",
    vocab_size=VOCAB_SIZE,
    pad_id=0,
    unk_id=1,
    bos_id=2,
    eos_id=3,
    user_defined_symbols=USER_SYMBOLS,
    control_symbols=[f"<extra_id_{k}>" for k in range(NUM_RESERVED)],
    # A 26-rule case fold instead of the stock nmt_nfkc_cf table, which alone is 240 KB.
    normalization_rule_tsv=rules,
    character_coverage=1.0,
    num_threads=1,
    input_sentence_size=0,
    shuffle_input_sentence=False,
    minloglevel=2,
  )


def main(argv):
  out = DEFAULT_OUT
  for arg in argv[1:]:
    if not arg.startswith("--out="):
      raise SystemExit(
        f"unknown argument {arg!r}; usage: python -m jarl.data.make_tokenizer [--out=PATH]"
      )
    out = arg[len("--out=") :]
  data = train()
  with open(out, "wb") as f:
    f.write(data)
  print(f"wrote {out} ({len(data)} bytes, vocab_size={VOCAB_SIZE})")


if __name__ == "__main__":
  main(sys.argv)
