r"""Trains a SentencePiece tokenizer on your own captions, for `config.data.tokenizer`.

    python -m jarl.tools.make_tokenizer --captions=captions.txt --vocab_size=1000 --out=spm.model
    python -m jarl.tools.make_tokenizer --captions='PREFIX-*.arrayrecord' --vocab_size=8000 \
        --out=spm.model

The built-in `shapes` tokenizer knows only the demo's grammar (256 pieces) and spells
other words letter by letter, so real captions overflow the demo's text lengths.

--captions: a text file, one caption per line (a .tsv as jarl.tools.convert reads it,
"file<TAB>caption", uses the caption column), or ArrayRecord shards (a file or glob) written
by jarl.tools.convert, whose captions, questions, answers and hypotheses all count. The
task prompts and entailment answers are added as often as the pipeline adds them. The
ids are the pipeline's (pad 0, unk 1, bos 2, eos 3): training is
jarl.data.make_tokenizer.train_model, which also builds the `shapes` model. BPE by
default: on a few dozen captions SentencePiece's unigram model cannot grow past ~100
pieces and still spells words in letters.

Then it prints the vocabulary size, the share of the text the pieces cover, percentiles
of the token lengths the pipeline will see, and the config that fits them (the one-key
`source=...,tokenizer=...,text_len=...,target_len=...` argument of configs/common.py, and
the same as `--config.…=` flags): lengths that hold 99% of each kind of text, rounded up to
a multiple of 8 (the pipeline truncates the rest, logs data/truncated and warns above 5%). Errors name the flag and exit with status 2.
"""

import argparse
import math
import os
import sys

import numpy as np
import sentencepiece as spm

from jarl.data import make_tokenizer, sources, tasks, tokenizer


class UsageError(Exception):
  """A bad flag value; main prints it as one line and exits with status 2."""


FIELDS = ("captions", "questions", "answers", "hypotheses")
PERCENTILES = (50, 90, 95, 99)
NORMALIZATIONS = ("nmt_nfkc_cf", "nmt_nfkc", "nfkc_cf", "nfkc", "identity")


def read_texts(spec: str) -> dict[str, list[str]]:
  """The texts of `spec` per field of FIELDS; UsageError naming --captions."""
  shards = _is_shards(spec)
  texts = {f: [] for f in FIELDS}
  if shards:
    # The pipeline's own reader: the same records, the same canonical fields.
    # For arrayrecord: specs, parse's one error is an empty glob; opening the shards is
    # kept out of the `try`, so that a shard that fails to open says so itself.
    try:
      _, (paths,) = sources.parse(f"arrayrecord:{spec}", where="--captions")
    except ValueError:
      raise UsageError(f"--captions={spec}: no ArrayRecord files match it") from None
    src = sources.RecordSource(paths)
    for i in range(len(src)):
      rec = src[i]
      for field in FIELDS:
        for value in rec.get(field) or []:  # answers: a list of references per question
          texts[field] += [value] if isinstance(value, str) else list(value)
  else:
    if not os.path.isfile(spec):
      raise UsageError(f"--captions={spec}: no such file")
    try:
      with open(spec, encoding="utf-8") as f:
        for line in f:
          if spec.endswith(".tsv"):
            if line.startswith("#") or "\t" not in line:
              continue
            line = line.split("\t")[1]
          texts["captions"].append(line)
    except UnicodeDecodeError as e:
      raise UsageError(
        f"--captions={spec}: not UTF-8 text ({e.reason} at byte {e.start}); "
        "ArrayRecord shards must end in .arrayrecord"
      ) from None
  texts = {f: [t for t in (" ".join(str(v).split()) for v in vs) if t] for f, vs in texts.items()}
  if not any(texts.values()):
    raise UsageError(f"--captions={spec}: no captions, questions, answers or hypotheses in it")
  return texts


def task_words(texts: dict[str, list[str]]) -> list[str]:
  """The words the tasks add to the texts, as often as the pipeline adds them (each at least
  once, so that a task the data lacks still tokenizes): a prompt written once would stay
  letters, paid in every encoder text."""
  p, n = tasks.PROMPTS, {f: len(v) for f, v in texts.items()}
  counts = {
    p["caption"]: n["captions"],
    p["prefix_lm"]: n["captions"],
    p["vqa"]: n["questions"],
    p["entailment"]: n["hypotheses"],
  }
  for label in sorted(set(tasks.ENTAILMENT_LABELS.values())):  # entailment's targets
    counts[label] = n["hypotheses"]
  return [word for word, k in counts.items() for _ in range(max(k, 1))]


def token_lengths(tok: tokenizer.Tokenizer, texts: dict[str, list[str]]) -> list[tuple]:
  """(field, config key, what is encoded, lengths) per kind of text the tasks build."""
  p = tasks.PROMPTS
  rows = []
  for field, key, what, fn in (
    ("captions", "target_len", "caption + eos", lambda t: len(tok.encode(t)) + 1),
    # prefix_lm's longest encoder text: the prompt and all but the last word.
    (
      "captions",
      "text_len",
      f"'{p['prefix_lm']}' + all but the last word",
      lambda t: len(tok.encode(f"{p['prefix_lm']} {t.rsplit(' ', 1)[0]}")),
    ),
    (
      "questions",
      "text_len",
      f"'{p['vqa']}' + question",
      lambda t: len(tok.encode(f"{p['vqa']} {t}")),
    ),
    ("answers", "target_len", "answer + eos", lambda t: len(tok.encode(t)) + 1),
    (
      "hypotheses",
      "text_len",
      f"'{p['entailment']}' + hypothesis",
      lambda t: len(tok.encode(f"{p['entailment']} {t}")),
    ),
  ):
    if texts[field]:
      rows.append((field, key, what, np.array([fn(t) for t in texts[field]])))
  return rows


def coverage(sp: spm.SentencePieceProcessor, lines: list[str]) -> dict:
  """Unknown pieces among the tokens and characters of `lines`, and tokens per word."""
  tokens = unk_tokens = chars = unk_chars = words = 0
  for line in lines:
    for piece in sp.encode(line, out_type="proto").pieces:
      tokens += 1
      chars += len(piece.surface)
      if piece.id == sp.unk_id():
        unk_tokens += 1
        unk_chars += len(piece.surface)
    words += len(line.split())
  return dict(
    unk_tokens=unk_tokens / max(tokens, 1),
    unk_chars=unk_chars / max(chars, 1),
    tokens=tokens,
    chars=chars,
    tokens_per_word=tokens / max(words, 1),
  )


def _fit(lengths: np.ndarray) -> int:
  """A length holding 99% of `lengths`, rounded up to a multiple of 8."""
  return 8 * math.ceil(float(np.percentile(lengths, 99, method="higher")) / 8)


def _is_shards(spec: str) -> bool:
  return spec.endswith(".arrayrecord") or any(c in spec for c in "*?[")


def report(out: str, data: bytes, texts: dict[str, list[str]], captions: str = "") -> list[str]:
  """The lines printed after training: size, coverage, lengths, the config that fits.

  `captions`: the --captions value; shards are named as the config's source."""
  tok = tokenizer.load(out)  # as the pipeline loads it: checks pad and eos
  sp = spm.SentencePieceProcessor(model_proto=data)
  cov = coverage(sp, [t for vs in texts.values() for t in vs])
  counts = ", ".join(f"{len(v)} {f}" for f, v in texts.items() if v)
  lines = [
    f"wrote {out}: vocab_size={tok.vocab_size} (pad {tok.pad_id}, unk {sp.unk_id()}, "
    f"bos {sp.bos_id()}, eos {tok.eos_id}), trained on {counts}",
    f"coverage: {cov['unk_tokens']:.2%} of {cov['tokens']} tokens and {cov['unk_chars']:.2%} "
    f"of {cov['chars']} characters are unknown (unk); {cov['tokens_per_word']:.2f} tokens/word",
    "token lengths ("
    + " ".join(f"p{q}" for q in PERCENTILES)
    + " max), with what the pipeline adds:",
  ]
  fits = {"text_len": 8, "target_len": 8}
  for field, key, what, lengths in token_lengths(tok, texts):
    stats = [int(np.percentile(lengths, q, method="higher")) for q in PERCENTILES]
    stats.append(int(lengths.max()))
    lines.append(f"  {field:<10} {key:<10} {what:<34} " + " ".join(f"{s:>4}" for s in stats))
    fits[key] = max(fits[key], _fit(lengths))
  text_len, target_len = fits["text_len"], fits["target_len"]
  source = (
    f"arrayrecord:{os.path.abspath(captions)}" if _is_shards(captions) else "arrayrecord:<shards>"
  )
  lines += [
    "the config that fits (text_len/target_len hold 99% of each row; configs/common.py):",
    f"  --config=configs/pretrain.py:demo,source={source},tokenizer={os.path.abspath(out)},"
    f"text_len={text_len},target_len={target_len}",
    "or as flags on any config:",
    f"  --config.data.tokenizer={os.path.abspath(out)} --config.model.vocab_size={tok.vocab_size}"
    f" --config.data.text_len={text_len} --config.model.text.max_len={text_len}"
    f" --config.data.target_len={target_len} --config.model.decoder.max_len={target_len}",
  ]
  return lines


def make(captions: str, vocab_size: int, out: str, **options) -> list[str]:
  """Trains on `captions`, writes `out`, returns the report; UsageError naming the flag."""
  if vocab_size <= len(make_tokenizer.SPECIAL_IDS):
    raise UsageError(
      f"--vocab_size={vocab_size}: must exceed the 4 special ids (pad, unk, bos, eos)"
    )
  texts = read_texts(captions)
  lines = task_words(texts) + [t for vs in texts.values() for t in vs]
  try:
    data = make_tokenizer.train_model(lines, vocab_size, **options)
  except RuntimeError as e:  # SentencePiece's: mostly a vocab_size the text cannot fill
    message = str(e).rsplit("] ", 1)[-1]
    raise UsageError(f"--vocab_size={vocab_size}: SentencePiece: {message}") from None
  try:
    if os.path.dirname(out):
      os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
      f.write(data)
  except OSError as e:
    raise UsageError(f"--out={out}: {e.strerror}") from None
  return report(out, data, texts, captions)


class _Parser(argparse.ArgumentParser):
  """argparse (not absl flags: --captions and --out would clash with jarl.tools.convert's
  in one process) whose errors are one line naming the flag, status 2, no usage block."""

  def error(self, message):
    _fail(message)


def _fail(message: str):
  print(f"jarl.tools.make_tokenizer: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv=None):
  parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(
    "--captions",
    required=True,
    help="text file (one caption per line), or ArrayRecord shards / a glob of them",
  )
  parser.add_argument(
    "--vocab_size", type=int, required=True, help="pieces in the model, special ids included"
  )
  parser.add_argument("--out", required=True, help="where to write the .model file")
  parser.add_argument(
    "--model_type",
    default="bpe",
    choices=("bpe", "unigram"),
    help="bpe: whole words even from a few dozen captions; unigram stops at ~100 pieces there",
  )
  parser.add_argument(
    "--normalization",
    default="nmt_nfkc_cf",
    choices=NORMALIZATIONS,
    help="SentencePiece's rules: nmt_nfkc_cf = NFKC and lowercased, nmt_nfkc keeps case",
  )
  parser.add_argument(
    "--character_coverage",
    type=float,
    default=1.0,
    help="share of the characters kept as pieces; the rarest rest become unk",
  )
  args = parser.parse_args(argv)
  if not 0 < args.character_coverage <= 1:
    _fail(f"--character_coverage={args.character_coverage}: must be in (0, 1]")
  try:
    lines = make(
      args.captions,
      args.vocab_size,
      args.out,
      model_type=args.model_type,
      normalization=args.normalization,
      character_coverage=args.character_coverage,
    )
  except UsageError as e:
    _fail(str(e))
  print("\n".join(lines))


if __name__ == "__main__":
  main()
