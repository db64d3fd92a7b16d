"""Caption metrics CIDEr-D and BLEU-1..4 through pycocoevalcap (the COCO caption server code).

Nothing here re-implements a metric: captions are tokenised, then handed to
`pycocoevalcap.cider.Cider` and `pycocoevalcap.bleu.Bleu` exactly as the COCO evaluation
(`pycocoevalcap.eval.COCOEvalCap`) does.

* `Cider` is CIDEr-D in practice (checked in cider_scorer.py): n-grams 1..4, tf-idf vectors
  with the hypothesis counts clipped to the reference counts (`min(vec_hyp, vec_ref)`), a
  Gaussian length penalty exp(-(len_hyp - len_ref)^2 / (2 sigma^2)) with sigma = 6, and the
  x10 scale, averaged over references. The idf comes from the references of the evaluated
  set itself, so CIDEr needs a corpus: with a single image every n-gram has idf 0 and the
  score is 0.
* BLEU is the corpus-level score with the "closest" reference length, as COCOEvalCap uses.
* Tokenisation: COCOEvalCap runs Stanford's PTBTokenizer (Java, lowercased, punctuation
  tokens dropped). `tokenizer="ptb"` does exactly that and needs `java` on PATH;
  `tokenizer="python"` is a pure-Python stand-in with the same effect on ordinary captions
  (lowercase; clitics "n't", "'s", ... split off as PTB does; the same punctuation tokens
  dropped; brackets kept as "-lrb-"/"-rrb-" words, as the Java path does) but not
  identical on exotic text (URLs, emoticons, unusual quotes), so numbers for a paper
  should use "ptb". `"auto"` (default) picks "ptb" when java exists.
"""

from collections.abc import Mapping, Sequence
import re
import shutil

# The punctuation tokens pycocoevalcap's PTBTokenizer wrapper removes after tokenising.
PTB_PUNCTUATION = frozenset(
  {
    "''",
    "'",
    "``",
    "`",
    "-LRB-",
    "-RRB-",
    "-LCB-",
    "-RCB-",
    ".",
    "?",
    "!",
    ",",
    ":",
    "-",
    "--",
    "...",
    ";",
  }
)
# PTB spells brackets -LRB- etc.; with -lowerCase they come out as "-lrb-", which the
# wrapper's (uppercase) list no longer removes, so COCO scores keep them as words. So do we.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CLITIC = re.compile(r"(\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
# A clitic, a time ("5:30"), a word (letters/digits, allowing inner - . ' / & as in
# "t-shirt", "3.5", "o'clock"), a run of dots/dashes/quotes, or any other single character.
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\d+(?::\d+)+|\w+(?:[-.'/&]\w+)*|\.\.\.|--|``|''|\S")


def python_tokenize(caption: str) -> str:
  """PTB-like tokens joined by spaces, lowercased, punctuation tokens removed."""
  text = _CLITIC.sub(r"\1 \2", " ".join(caption.lower().split()))
  tokens = [_BRACKETS.get(t, t) for t in _TOKEN.findall(text)]
  return " ".join(t for t in tokens if t not in PTB_PUNCTUATION)


def _ptb_tokenize(captions: dict) -> dict:
  from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # pylint: disable=g-import-not-at-top

  # The Java tokenizer reads one caption per line; a newline inside a caption would shift
  # every later caption onto the wrong image.
  return PTBTokenizer().tokenize(
    {k: [{"caption": " ".join(c.split())} for c in v] for k, v in captions.items()}
  )


def tokenize(captions: Mapping[str, Sequence[str]], tokenizer: str = "auto") -> dict:
  """{id: [caption, ...]} -> {id: [tokenised caption, ...]}."""
  if tokenizer == "auto":
    tokenizer = "ptb" if shutil.which("java") else "python"
  if tokenizer == "ptb":
    if not shutil.which("java"):
      raise RuntimeError(
        "tokenizer='ptb' needs `java` on PATH (pycocoevalcap runs Stanford's "
        "PTBTokenizer); install a JRE or use tokenizer='python'"
      )
    return _ptb_tokenize(captions)
  if tokenizer == "python":
    return {k: [python_tokenize(c) for c in v] for k, v in captions.items()}
  raise ValueError(f"tokenizer={tokenizer!r}: choose 'auto', 'ptb' or 'python'")


def _keyed(predictions, references) -> tuple[dict, dict]:
  """Both lists (aligned) or both dicts with the same keys -> ({id: [pred]}, {id: refs})."""
  if isinstance(predictions, Mapping) != isinstance(references, Mapping):
    raise ValueError(
      "predictions and references must both be lists (aligned by position) "
      "or both dicts keyed by example id"
    )
  if not isinstance(predictions, Mapping):
    if len(predictions) != len(references):
      raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    predictions, references = dict(enumerate(predictions)), dict(enumerate(references))
  if set(predictions) != set(references):
    missing = sorted(set(predictions) ^ set(references), key=str)[:5]
    raise ValueError(f"prediction and reference ids differ, e.g. {missing}")
  if not predictions:
    raise ValueError("caption_metrics of zero examples")
  # String keys: the PTB wrapper and scorers only need hashable keys, but a stable type
  # keeps ids like 1 and "1" from colliding silently.
  preds, refs = {}, {}
  for k in predictions:
    r = [references[k]] if isinstance(references[k], str) else list(references[k])
    if not r:
      raise ValueError(f"references[{k!r}] is empty: every example needs >= 1 reference")
    preds[str(k)], refs[str(k)] = [str(predictions[k])], [str(c) for c in r]
  return preds, refs


def caption_metrics(predictions, references, *, tokenizer: str = "auto") -> dict:
  """{"cider": CIDEr-D, "bleu1".."bleu4"} over the whole set (COCO scale: CIDEr ~ 1.0-1.4
  for good COCO models, BLEU in [0, 1]).

  predictions: list[str] aligned with references: list[list[str]], or dict id -> str with
  references: dict id -> list[str].
  """
  from pycocoevalcap.bleu.bleu import Bleu  # pylint: disable=g-import-not-at-top
  from pycocoevalcap.cider.cider import Cider  # pylint: disable=g-import-not-at-top

  preds, refs = _keyed(predictions, references)
  both = tokenize(
    {**{("p", k): v for k, v in preds.items()}, **{("r", k): v for k, v in refs.items()}}, tokenizer
  )
  res = {k: both[("p", k)] for k in preds}
  gts = {k: both[("r", k)] for k in refs}
  cider, _ = Cider().compute_score(gts, res)
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  return {"cider": float(cider), **{f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)}}
