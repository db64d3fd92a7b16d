"""Official VQA v2 rules, worked by hand (GT-Vision-Lab/VQA vqaEval.py)."""

import pytest

from jarl.evaluation import accuracy, vqa


@pytest.mark.parametrize(
  "raw,expected",
  [
    ("two", "2"),
    ("Two", "2"),
    ("none", "0"),
    ("ten", "10"),
    ("a dog", "dog"),
    ("The Dog", "dog"),
    ("an apple", "apple"),
    ("Yes.", "yes"),
    ("yes!", "yes"),
    ("3.5", "3.5"),
    ("5.", "5"),
    ("dont", "don't"),
    ("isnt it", "isn't it"),
    ("Im", "im"),  # "Im" unreachable officially
    ("1,000", "1000"),  # comma between digits: every mark is deleted
    ("black,white", "black white"),  # no space next to ",": replaced by a space
    ("black, white", "black white"),  # a space next to ",": deleted
    ("t-shirt", "t shirt"),
    ("10:30", "10:30"),
    ("  red\tcar\n", "red car"),
    ("what's that?", "what's that"),
    ("(left)", "left"),
  ],
)
def test_normalize_answer(raw, expected):
  assert vqa.normalize_answer(raw) == expected


def _refs(matching: int, answer="2", other="3"):
  return [answer] * matching + [other] * (10 - matching)


@pytest.mark.parametrize(
  "matching,expected",
  [
    (0, 0.0),
    (1, 0.3),  # 9 subsets keep the match (1/3), 1 loses it: 9/30
    (2, 0.6),  # 8 subsets x 2/3 + 2 subsets x 1/3 = 18/30
    (3, 0.9),  # 7 subsets x 1 + 3 subsets x 2/3 = 9/10: *not* 1.0
    (4, 1.0),  # every subset of 9 keeps >= 3 matches
    (10, 1.0),
  ],
)
def test_leave_one_out_score(matching, expected):
  assert vqa.vqa_score("2", _refs(matching)) == pytest.approx(expected)


def test_number_words_and_articles_match_references():
  # "two" -> "2" and "a dog" -> "dog" on both sides.
  assert vqa.vqa_score("two", _refs(3)) == pytest.approx(0.9)
  assert vqa.vqa_score("a dog", ["dog"] * 4 + ["cat"] * 6) == 1.0
  assert vqa.vqa_score("Yes.", ["yes"] * 10) == 1.0


def test_official_reference_mode_only_strips_punctuation():
  refs = ["two"] * 10  # unnormalised reference: the official script never matches it
  assert vqa.vqa_score("two", refs, reference_normalization="official") == 0.0
  assert vqa.vqa_score("two", refs) == 1.0
  refs = ["yes."] * 5 + ["no"] * 5  # annotators disagree: punctuation is processed
  assert vqa.vqa_score("yes", refs, reference_normalization="official") == 1.0
  # ... but not stripped: "yes!" becomes "yes " and never matches (an official quirk).
  refs = ["yes!"] * 5 + ["no"] * 5
  assert vqa.vqa_score("yes", refs, reference_normalization="official") == 0.0
  assert vqa.vqa_score("yes", refs) == 1.0


def test_accuracy_is_mean_over_questions():
  preds = ["2", "dog", "blue"]
  answers = [_refs(3), ["a dog"] * 10, ["red"] * 10]
  assert vqa.vqa_scores(preds, answers) == pytest.approx([0.9, 1.0, 0.0])
  assert vqa.vqa_accuracy(preds, answers) == pytest.approx(1.9 / 3)


def test_few_references():
  assert vqa.vqa_score("two", ["2"]) == 1.0  # single reference: exact match
  assert vqa.vqa_score("two", "2") == 1.0
  assert vqa.vqa_score("3", ["2"]) == 0.0
  # two references, threshold min(3, 1) = 1: one subset matches, one does not
  assert vqa.vqa_score("2", ["2", "3"]) == 0.5


def test_errors_name_the_culprit():
  with pytest.raises(ValueError, match=r"answers\[1\] is empty"):
    vqa.vqa_accuracy(["a", "b"], [["a"], []])
  with pytest.raises(ValueError, match="2 predictions but 1"):
    vqa.vqa_accuracy(["a", "b"], [["a"]])
  with pytest.raises(ValueError, match="reference_normalization"):
    vqa.vqa_score("a", ["a"], reference_normalization="nope")


def test_exact_match_accuracy_gqa_style():
  preds = ["The dog.", "two", "left", "Yes"]
  answers = ["dog", "2", "right", ["no", "yes"]]
  assert accuracy.exact_match_scores(preds, answers) == [1.0, 1.0, 0.0, 1.0]
  assert accuracy.exact_match_accuracy(preds, answers) == 0.75


def test_entailment_accuracy_maps_snli_names():
  preds = ["yes", "Maybe.", "no", "a dog", "entailment"]
  labels = ["entailment", "neutral", "entailment", "contradiction", "yes"]
  assert accuracy.entailment_accuracy(preds, labels) == pytest.approx(3 / 5)
  with pytest.raises(ValueError, match=r"labels\[0\]='dog'"):
    accuracy.entailment_accuracy(["yes"], ["dog"])
