"""Trains JARL's SentencePiece models: `train_model` for any text, `train` for `shapes`.

    python -m jarl.data.make_tokenizer            # rewrites jarl/data/assets/shapes.model
    python -m jarl.data.make_tokenizer --out=/tmp/shapes.model

`train_model` is the one place SentencePiece is trained; `python -m
jarl.tools.make_tokenizer` calls it on a user's own captions. Ids, which the pipeline and
model rely on (jarl/data/tokenizer.py): pad=0 (the decoder's start token and the batch
padding), unk=1, bos=2, eos=3. Deterministic: one training thread and no sentence
sampling, so the same text always gives the same bytes (tests/test_data_tokenizer.py checks
the shipped `shapes` file against `train()`), at the cost of speed on very large corpora.
"""

from collections.abc import Iterable
import io
import os
import string
import sys
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from jarl.data import shapes, tasks

SPECIAL_IDS = dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3)
# A 26-rule ASCII case fold instead of SentencePiece's stock nmt_nfkc_cf table, which
# alone is 240 KB; enough for the `shapes` grammar, not for real-world text.
ASCII_LOWERCASE = "ascii_lowercase"

NUM_SCENES = 3000
VOCAB_SIZE = 256
# The grammar's text supports only ~90 learned pieces, so the table is filled up to
# VOCAB_SIZE with digits/punctuation (so user prompts still tokenize) and T5-style reserved
# control ids <extra_id_k> that encode() never emits (room for new task tokens).
LEARNED_PIECES = 80
USER_SYMBOLS = list("0123456789.,?!'-:;")
NUM_RESERVED = VOCAB_SIZE - 4 - len(USER_SYMBOLS) - LEARNED_PIECES
DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "assets", "shapes.model")


def train_model(
  sentences: Iterable[str],
  vocab_size: int,
  *,
  model_type: str = "unigram",
  normalization: str = "nmt_nfkc_cf",
  user_symbols: Iterable[str] = (),
  control_symbols: Iterable[str] = (),
  character_coverage: float = 1.0,
) -> bytes:
  """A serialised SentencePiece model with JARL's SPECIAL_IDS.

  model_type: unigram or bpe (on a few dozen captions unigram cannot grow past ~100
  pieces and spells words in letters; bpe reaches whole words).
  normalization: ASCII_LOWERCASE, or a SentencePiece rule name (nmt_nfkc_cf = NFKC plus
  case folding, nmt_nfkc, identity). character_coverage 1.0 keeps every character of the
  text as a piece: with a small corpus the default 0.9995 would make rare letters unknown.
  Raises RuntimeError (SentencePiece's) when vocab_size does not fit the text.
  """
  options = dict(
    model_type=model_type,
    vocab_size=vocab_size,
    **SPECIAL_IDS,
    user_defined_symbols=list(user_symbols),
    control_symbols=list(control_symbols),
    character_coverage=character_coverage,
    num_threads=1,
    input_sentence_size=0,
    shuffle_input_sentence=False,
    minloglevel=2,
  )
  model = io.BytesIO()
  with tempfile.TemporaryDirectory() as tmp:
    if normalization == ASCII_LOWERCASE:
      rules = os.path.join(tmp, "lowercase.tsv")
      with open(rules, "w") as f:
        f.writelines(f"{ord(c):X}\t{ord(c.lower()):X}\n" for c in string.ascii_uppercase)
      options["normalization_rule_tsv"] = rules
    else:
      options["normalization_rule_name"] = normalization
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, **options)
  # The proto records the rules file's temporary path; drop it so the bytes are reproducible.
  proto = sentencepiece_model_pb2.ModelProto.FromString(model.getvalue())
  proto.normalizer_spec.ClearField("normalization_rule_tsv")
  return proto.SerializeToString()


def corpus() -> list[str]:
  """Every text the `shapes` tasks can produce for the first NUM_SCENES train scenes."""
  lines = list(tasks.PROMPTS.values())
  for i in range(NUM_SCENES):
    ex = shapes.example("train", i, image_size=8)  # tiny render: only the text is used
    lines += ex["captions"] + ex["questions"] + ex["answers"] + ex["hypotheses"]
  lines += ["yes", "no", "maybe"]
  return lines


def train() -> bytes:
  """The built-in `shapes` model, serialised (a few KB)."""
  return train_model(
    corpus(),
    VOCAB_SIZE,
    normalization=ASCII_LOWERCASE,
    user_symbols=USER_SYMBOLS,
    control_symbols=[f"<extra_id_{k}>" for k in range(NUM_RESERVED)],
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
