"""CIDEr-D / BLEU through pycocoevalcap, with both tokenisers."""

import shutil

import pytest

from jarl.evaluation import caption

REFS = [
  ["a man riding a horse on a beach.", "A person rides a brown horse near the ocean."],
  ["two dogs playing with a red ball in the grass", "Dogs play with a ball on a lawn."],
  ["a plate of food with broccoli and rice", "A dinner plate holds rice and broccoli."],
  ["a red double decker bus on a city street", "A bus driving down a busy street."],
]
TOKENIZERS = ["python"] + (["ptb"] if shutil.which("java") else [])


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_identical_beats_unrelated(tokenizer):
  same = caption.caption_metrics([r[0] for r in REFS], REFS, tokenizer=tokenizer)
  shuffled = [REFS[(i + 1) % 4][0] for i in range(4)]
  other = caption.caption_metrics(shuffled, REFS, tokenizer=tokenizer)
  assert same["cider"] > 1.0 > other["cider"]
  assert same["bleu4"] > 0.9 > 0.3 > other["bleu4"]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_bleu4_of_exact_match_is_one(tokenizer):
  refs = [["a man riding a horse on a beach"], ["two dogs play with a red ball"]]
  got = caption.caption_metrics(
    {"a": refs[0][0], "b": refs[1][0]}, {"a": refs[0], "b": refs[1]}, tokenizer=tokenizer
  )
  assert got["bleu4"] == pytest.approx(1.0)
  assert got["bleu1"] == pytest.approx(1.0)


def test_python_tokenizer_matches_ptb_effect():
  assert (
    caption.python_tokenize("A man's hat, (red)... isn't it?")
    == "a man 's hat -lrb- red -rrb- is n't it"
  )
  assert caption.python_tokenize("A T-shirt costs 3.50 dollars.") == "a t-shirt costs 3.50 dollars"


@pytest.mark.skipif(not shutil.which("java"), reason="PTBTokenizer needs java")
def test_python_tokenizer_agrees_with_ptb_on_captions():
  caps = {
    i: [c]
    for i, c in enumerate(
      [c for r in REFS for c in r]
      + [
        "A man's hat, (red)... isn't it?",
        "Dogs don't fly.",
        "A cat [on] a mat; 3.5 feet -- high!",
        "Bus #12 at 5:30 today",
      ]
    )
  }
  assert caption.tokenize(caps, "python") == caption.tokenize(caps, "ptb")


def test_errors():
  with pytest.raises(ValueError, match="both be lists"):
    caption.caption_metrics(["a"], {"0": ["a"]})
  with pytest.raises(ValueError, match="ids differ"):
    caption.caption_metrics({"a": "x"}, {"b": ["x"]})
  with pytest.raises(ValueError, match=r"references\['1'\] is empty|references\[1\] is empty"):
    caption.caption_metrics(["a", "b"], [["a"], []])
