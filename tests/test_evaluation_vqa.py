"""Official VQA v2 rules, worked by hand through the current GT-Vision-Lab/VQA vqaEval.py."""

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


def _all(answer: str) -> list[str]:
  """Ten identical references: nothing is normalised, the comparison is exact."""
  return [answer] * 10


def _mix(answer: str, k: int = 4, other: str = "zzz") -> list[str]:
  """k of ten references equal `answer`: they disagree, so both sides are normalised."""
  return [answer] * k + [other] * (10 - k)


# (prediction, references, the current official vqaEval.py score), each worked by hand:
# prediction and references -> newlines/tabs to spaces -> strip; then, only if the
# stripped references are not all one string, both sides -> processPunctuation ->
# processDigitArticle; leave-one-out min(matches / 3, 1). Most rows come in pairs: all
# ten agree (exact comparison) and the same answer among dissenters (normalised).
OFFICIAL_CASES = [
  # casing
  ("yes", _all("yes"), 1.0),
  ("Yes", _all("yes"), 0.0),  # all agree: compared raw, case included
  ("YES", _all("yes"), 0.0),
  ("yes", _all("Yes"), 0.0),
  ("Yes", _mix("yes"), 1.0),  # dissent: both sides lowercased
  ("yes", _mix("Yes"), 1.0),
  ("YES", ["yes"] * 9 + ["Yes"], 1.0),  # a dissent in case alone switches it on
  ("no", _all("yes"), 0.0),
  ("no", _mix("yes"), 0.0),
  # number words
  ("Two", _all("2"), 0.0),  # all agree: "Two" != "2"
  ("Two", _mix("2", 9, "3"), 1.0),  # dissent: "Two" -> "2", nine matches
  ("two", _all("two"), 1.0),  # exact
  ("two", _mix("two"), 1.0),  # both sides become "2"
  ("2", _all("two"), 0.0),
  ("2", _mix("two"), 1.0),
  ("ten", _all("10"), 0.0),
  ("ten", _mix("10"), 1.0),
  ("none", _mix("0"), 1.0),
  ("zero", _mix("0"), 1.0),
  ("one", _mix("1"), 1.0),
  ("eleven", _mix("11"), 0.0),  # the map stops at ten
  ("two dogs", _all("2 dogs"), 0.0),
  ("two dogs", _mix("2 dogs"), 1.0),
  # articles
  ("a dog", _all("dog"), 0.0),
  ("a dog", _mix("dog"), 1.0),
  ("The Dog", _mix("dog"), 1.0),
  ("an apple", _mix("apple"), 1.0),
  ("a lot", _mix("lot"), 1.0),
  ("theater", _mix("theater"), 1.0),  # whole words only
  ("dog", _all("a dog"), 0.0),  # the reference keeps its article
  ("dog", _mix("a dog", 9, "cat"), 1.0),  # "a dog" -> "dog"
  ("The", _all(""), 0.0),
  ("The", _mix(""), 1.0),  # both sides normalise to ""
  ("a/b", _mix("b"), 1.0),  # "/" -> " ", then "a" is an article
  # punctuation
  ("yes.", _all("yes"), 0.0),
  ("yes.", _mix("yes"), 1.0),
  ("Yes!", _mix("yes"), 1.0),  # "!" -> " ", then split
  ("hello!!", _mix("hello"), 1.0),
  ("left?", _mix("left"), 1.0),
  ("(left)", _all("left"), 0.0),
  ("(left)", _mix("left"), 1.0),
  ('"stop"', _mix("stop"), 1.0),
  ("@home", _mix("home"), 1.0),
  ("x=y", _mix("x y"), 1.0),
  ("red;blue", _mix("red blue"), 1.0),
  ("yes", _all("yes."), 0.0),
  ("yes", _mix("yes."), 1.0),
  ("yes", _mix("yes!"), 1.0),  # "yes!" -> "yes ", which the split turns into "yes"
  ("t-shirt", _all("t-shirt"), 1.0),  # exact
  ("t-shirt", _all("t shirt"), 0.0),
  ("t-shirt", _mix("t shirt"), 1.0),  # "-" -> " "
  ("t-shirt", _mix("t-shirt"), 1.0),
  ("t-shirt - red", _mix("tshirt red"), 1.0),  # "- " somewhere: every "-" is deleted
  ("t-shirt - red", _mix("t shirt red"), 0.0),
  ("black, white", _mix("black white"), 1.0),  # ", " deletes the comma
  ("black,white", _mix("black white"), 1.0),  # no space next to it: a space instead
  ("what's that?", _all("what's that"), 0.0),
  ("what's that?", _mix("what's that"), 1.0),  # "'" is no punctuation mark
  ("10:30", _all("10:30"), 1.0),
  ("10:30", _mix("1030"), 0.0),  # nor is ":"
  # commas between digits: every mark of the text is deleted, not only commas
  ("1,000", _all("1,000"), 1.0),  # exact
  ("1,000", _all("1000"), 0.0),
  ("1,000", _mix("1000"), 1.0),
  ("1,000", _mix("1,000"), 1.0),
  ("2,3", _mix("23"), 1.0),
  ("1, 000", _mix("1000"), 0.0),  # ", " deletes it, the space stays: "1 000"
  ("1,000 red-blue", _mix("1000 redblue"), 1.0),
  ("1,000 red-blue", _mix("1000 red blue"), 0.0),
  # periods: dropped unless a digit follows, at most 32 of them
  ("3.5", _all("3.5"), 1.0),
  ("3.5", _mix("3.5"), 1.0),
  ("5.", _all("5"), 0.0),
  ("5.", _mix("5"), 1.0),
  ("3.5.", _mix("3.5"), 1.0),
  (".5", _mix(".5"), 1.0),
  ("3. 5", _mix("3 5"), 1.0),
  ("5.0", _mix("5"), 0.0),
  ("v1.2", _mix("v1.2"), 1.0),
  ("a.m.", _all("am"), 0.0),
  ("a.m.", _mix("am"), 1.0),
  ("e.g. 5", _mix("eg 5"), 1.0),
  ("Mr. Smith", _mix("mr smith"), 1.0),
  ("yes" + "." * 32, _mix("yes"), 1.0),
  ("yes" + "." * 40, _mix("yes"), 0.0),  # re.UNICODE (32) passed as `count`: 8 stay
  # contractions (looked up after lowercasing)
  ("dont", _all("dont"), 1.0),  # exact
  ("dont", _all("don't"), 0.0),
  ("dont", _mix("don't"), 1.0),
  ("Dont", _mix("don't"), 1.0),
  ("don't", _all("don't"), 1.0),
  ("isnt it", _mix("isn't it"), 1.0),
  ("cant", _mix("can't"), 1.0),
  ("wont", _mix("won't"), 1.0),
  ("oclock", _mix("o'clock"), 1.0),
  ("youre", _mix("you're"), 1.0),
  ("somebody'd", _mix("somebodyd"), 1.0),  # the table's backwards entry
  ("Im", _mix("i'm"), 0.0),  # the key "Im" is never reached: "im" stays
  ("ive", _mix("i've"), 0.0),  # likewise "Ive"
  ("can not", _mix("can't"), 0.0),
  # whitespace: stripped on both sides in both branches
  ("  red\tcar\n", _all("red car"), 1.0),  # "  red car " -> "red car"
  ("red\r\n", _all("red"), 1.0),  # str.strip takes "\r" too
  ("red", _all(" red"), 1.0),  # references are stripped too
  ("red", _mix(" red"), 1.0),
  ("red", _all("red\n"), 1.0),
  ("red car", _all("red\ncar"), 1.0),  # "\n" -> " "
  ("red car", _all("red\r\ncar"), 0.0),  # an inner "\r" stays ...
  ("red car", _mix("red\r\ncar"), 1.0),  # ... until the split of processDigitArticle
  ("red  car", _all("red car"), 0.0),  # inner spaces stay
  ("red  car", _mix("red car"), 1.0),
  ("Red", ["red"] * 9 + ["red "], 0.0),  # all agree once stripped: compared raw
  ("Red", ["red"] * 9 + ["red."], 1.0),  # a real dissent
  # leave-one-out over ten annotators
  ("2", _all("3"), 0.0),
  ("2", _mix("2", 1, "3"), 0.3),  # 9 subsets keep the match (1/3), 1 loses it: 9/30
  ("2", _mix("2", 2, "3"), 0.6),  # 8 x 2/3 + 2 x 1/3 = 18/30
  ("2", _mix("2", 3, "3"), 0.9),  # 7 x 1 + 3 x 2/3 = 27/30: *not* 1.0
  ("2", _mix("2", 4, "3"), 1.0),  # every subset of 9 keeps >= 3 matches
  ("two", _mix("2", 3, "3"), 0.9),
  ("2", ["two"] * 2 + ["2"] + ["3"] * 7, 0.9),  # 3 of 10 once normalised
  ("2", ["2"] * 3 + ["3"] * 3 + ["4"] * 4, 0.9),
  ("yes", ["yes."] * 9 + ["no"], 1.0),
  ("Two", ["two"] * 9 + ["2"], 1.0),  # all ten become "2"
  # fewer than ten references: the threshold stays 3
  ("2", ["2"], 0.0),  # the one subset is empty
  ("2", ["2", "2"], 1 / 3),
  ("2", ["2", "3"], 1 / 6),  # (0 + 1/3) / 2
  ("yes", ["yes", "Yes"], 1 / 3),  # dissent: both "yes", each subset keeps 1 match
  ("2", ["2"] * 3, 2 / 3),
  ("2", ["2"] * 4, 1.0),
  ("Two", ["2"] * 4, 0.0),  # all agree: raw
  ("Two", ["2"] * 3 + ["two"], 1.0),  # dissent: four "2"
  ("2", ["2"] * 3 + ["3"], 0.75),  # (3 x 2/3 + 1) / 4
]


@pytest.mark.parametrize("prediction,references,expected", OFFICIAL_CASES)
def test_official_score(prediction, references, expected):
  assert vqa.vqa_score(prediction, references) == pytest.approx(expected)


def test_official_is_the_default_everywhere():
  preds = [p for p, _, _ in OFFICIAL_CASES]
  answers = [r for _, r, _ in OFFICIAL_CASES]
  expected = [e for _, _, e in OFFICIAL_CASES]
  assert vqa.vqa_scores(preds, answers) == pytest.approx(expected)
  assert vqa.vqa_accuracy(preds, answers) == pytest.approx(sum(expected) / len(expected))


def test_lenient_rules_normalise_references_and_shrink_the_threshold():
  assert vqa.vqa_score("Two", _all("2"), rules="lenient") == 1.0  # normalised though all agree
  assert vqa.vqa_score("two", _all("two"), rules="lenient") == 1.0
  assert vqa.vqa_score("dog", _mix("A dog.", 3), rules="lenient") == pytest.approx(0.9)
  assert vqa.vqa_score("yes", _mix("yes!"), rules="lenient") == 1.0
  assert vqa.vqa_score("two", ["two"], rules="lenient") == 1.0  # one reference: exact match
  assert vqa.vqa_score("Two.", "2", rules="lenient") == 1.0
  assert vqa.vqa_score("3", ["2"], rules="lenient") == 0.0
  assert vqa.vqa_score("2", ["2", "3"], rules="lenient") == 0.5  # threshold min(3, 1) = 1


def test_auto_rules_pick_per_question():
  # Ten agreeing references (VQA v2): official, compared raw; one (shapes): lenient.
  preds, answers = ["Two", "Two", "2"], [_all("two"), ["two"], ["2", "3"]]
  assert vqa.vqa_scores(preds, answers, rules="auto") == pytest.approx([0.0, 1.0, 0.5])
  assert vqa.vqa_scores(preds, answers) == pytest.approx([0.0, 0.0, 1 / 6])


def test_bytes_and_non_strings():
  assert vqa.vqa_score(b"two", [b"2"] * 9 + [b"3"]) == 1.0
  assert vqa.vqa_score(b"two", [b"2"] * 10) == 0.0
  assert vqa.vqa_score(2, _all("2")) == 1.0


def test_errors_name_the_culprit():
  with pytest.raises(ValueError, match=r"answers\[1\] is empty"):
    vqa.vqa_accuracy(["a", "b"], [["a"], []])
  with pytest.raises(ValueError, match="2 predictions but 1"):
    vqa.vqa_accuracy(["a", "b"], [["a"]])
  with pytest.raises(ValueError, match="rules='nope'"):
    vqa.vqa_score("a", ["a"], rules="nope")
  with pytest.raises(ValueError, match="zero questions"):
    vqa.vqa_accuracy([], [])


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
