"""VQA v2 accuracy, computed as the official evaluator computes it.

The reference is the current GT-Vision-Lab/VQA
PythonEvaluationTools/vqaEvaluation/vqaEval.py. Per question, with the N reference
answers of the annotators (10 in VQA v2), under `rules="official"` (the default):
  * every reference and the prediction have newlines/tabs turned into spaces and are
    stripped, nothing more;
  * if the stripped references are not all the same string, every reference AND the
    prediction go through `process_punctuation` then `process_digit_article` (lowercase,
    number words -> digits, articles dropped, contractions restored): `normalize_answer`;
  * if they are all the same string, neither side is normalised: the stripped prediction
    must equal the stripped reference exactly, case, punctuation and articles included;
  * each reference is left out in turn; that subset scores min(#remaining references
    equal to the prediction / 3, 1), and the question the mean over the N subsets, so 3
    matching annotators of 10 give 0.9, not 1.0. The threshold stays 3 whatever N is:
    N = 1 always scores 0 (its one subset is empty) and N <= 3 can never reach 1;
  * the data set score is the mean over questions (the script prints 100x it).

The all-agree quirk: whether anything is normalised depends on the references, so one
dissenting annotator changes how the prediction is read. "Two" against ten "2" scores 0
(compared raw), against nine "2" and one "3" it scores 1 ("Two" -> "2"); "yes" against
ten "Yes" scores 0; "dog" against ten "a dog" scores 0, against nine "a dog" and one
"cat" 1. A dissent in form alone counts: nine "yes" and one "Yes" switch normalisation on.
Older versions of the script (e.g. commit c4e6a0e4) instead always normalised the
prediction and, when the references disagreed, gave them `process_punctuation` alone;
they score "Two" against ten "2" as 1 and "two" against ten "two" as 0. Numbers from the
two versions differ; we follow the current one.

`rules="lenient"` is for our own data, which the official rules score wrongly: `shapes`
and GQA have ONE reference per question, which the threshold of 3 always scores 0, and
a lone reference is compared raw, so "2" or "Two" would never match `shapes`'s "two".
Lenient always normalises both sides and uses the threshold min(3, N - 1): a single
reference scores exact match after normalisation, and with N = 10 it differs from the
official rules only where all references agree. `rules="auto"` picks per question:
"official" with VQA v2's 10 references, so VQA v2 numbers stay comparable to published
ones, "lenient" otherwise. The `vqa` evaluator (jarl.evaluation.generative) uses "auto".
"""

from collections.abc import Sequence
import re

# Number words the official script maps to digits (word by word, after lowercasing).
NUMBER_WORDS = {
  "none": "0",
  "zero": "0",
  "one": "1",
  "two": "2",
  "three": "3",
  "four": "4",
  "five": "5",
  "six": "6",
  "seven": "7",
  "eight": "8",
  "nine": "9",
  "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})

# Apostrophe-less spellings -> the official spelling. Only lowercase keys can ever match
# (the script lowercases before the lookup), so its "Im"/"Ive"/"Id've" entries are dropped.
# "somebody'd" -> "somebodyd" is backwards but official; kept so our numbers match theirs.
CONTRACTIONS = {
  "aint": "ain't",
  "arent": "aren't",
  "cant": "can't",
  "couldve": "could've",
  "couldnt": "couldn't",
  "couldn'tve": "couldn't've",
  "couldnt've": "couldn't've",
  "didnt": "didn't",
  "doesnt": "doesn't",
  "dont": "don't",
  "hadnt": "hadn't",
  "hadnt've": "hadn't've",
  "hadn'tve": "hadn't've",
  "hasnt": "hasn't",
  "havent": "haven't",
  "hed": "he'd",
  "hed've": "he'd've",
  "he'dve": "he'd've",
  "hes": "he's",
  "howd": "how'd",
  "howll": "how'll",
  "hows": "how's",
  "isnt": "isn't",
  "itd": "it'd",
  "itd've": "it'd've",
  "it'dve": "it'd've",
  "itll": "it'll",
  "let's": "let's",
  "maam": "ma'am",
  "mightnt": "mightn't",
  "mightnt've": "mightn't've",
  "mightn'tve": "mightn't've",
  "mightve": "might've",
  "mustnt": "mustn't",
  "mustve": "must've",
  "neednt": "needn't",
  "notve": "not've",
  "oclock": "o'clock",
  "oughtnt": "oughtn't",
  "ow's'at": "'ow's'at",
  "'ows'at": "'ow's'at",
  "'ow'sat": "'ow's'at",
  "shant": "shan't",
  "shed've": "she'd've",
  "she'dve": "she'd've",
  "she's": "she's",
  "shouldve": "should've",
  "shouldnt": "shouldn't",
  "shouldnt've": "shouldn't've",
  "shouldn'tve": "shouldn't've",
  "somebody'd": "somebodyd",
  "somebodyd've": "somebody'd've",
  "somebody'dve": "somebody'd've",
  "somebodyll": "somebody'll",
  "somebodys": "somebody's",
  "someoned": "someone'd",
  "someoned've": "someone'd've",
  "someone'dve": "someone'd've",
  "someonell": "someone'll",
  "someones": "someone's",
  "somethingd": "something'd",
  "somethingd've": "something'd've",
  "something'dve": "something'd've",
  "somethingll": "something'll",
  "thats": "that's",
  "thered": "there'd",
  "thered've": "there'd've",
  "there'dve": "there'd've",
  "therere": "there're",
  "theres": "there's",
  "theyd": "they'd",
  "theyd've": "they'd've",
  "they'dve": "they'd've",
  "theyll": "they'll",
  "theyre": "they're",
  "theyve": "they've",
  "twas": "'twas",
  "wasnt": "wasn't",
  "wed've": "we'd've",
  "we'dve": "we'd've",
  "weve": "we've",
  "werent": "weren't",
  "whatll": "what'll",
  "whatre": "what're",
  "whats": "what's",
  "whatve": "what've",
  "whens": "when's",
  "whered": "where'd",
  "wheres": "where's",
  "whereve": "where've",
  "whod": "who'd",
  "whod've": "who'd've",
  "who'dve": "who'd've",
  "wholl": "who'll",
  "whos": "who's",
  "whove": "who've",
  "whyll": "why'll",
  "whyre": "why're",
  "whys": "why's",
  "wont": "won't",
  "wouldve": "would've",
  "wouldnt": "wouldn't",
  "wouldnt've": "wouldn't've",
  "wouldn'tve": "wouldn't've",
  "yall": "y'all",
  "yall'll": "y'all'll",
  "y'allll": "y'all'll",
  "yall'd've": "y'all'd've",
  "y'alld've": "y'all'd've",
  "y'all'dve": "y'all'd've",
  "youd": "you'd",
  "youd've": "you'd've",
  "you'dve": "you'd've",
  "youll": "you'll",
  "youre": "you're",
  "youve": "you've",
}

# Removed (or turned into a space, see process_punctuation). Note: "." ":" "'" are absent.
PUNCTUATION = (
  ";",
  "/",
  "[",
  "]",
  '"',
  "{",
  "}",
  "(",
  ")",
  "=",
  "+",
  "\\",
  "_",
  "-",
  ">",
  "<",
  "@",
  "`",
  ",",
  "?",
  "!",
)
_COMMA_BETWEEN_DIGITS = re.compile(r"\d,\d")
# Official pattern "(?!<=\d)(\.)(?!\d)": its first group is a mistyped look-*behind* that
# never fires, so the effective rule is "drop a period unless a digit follows" ("3.5"
# stays, "yes." and "5." lose it). The script also passes re.UNICODE (= 32) as the
# positional `count`, so at most 32 periods go; we keep both quirks.
_PERIOD = re.compile(r"\.(?!\d)")
_OFFICIAL_MAX_PERIODS = 32


def process_punctuation(text: str) -> str:
  """Official processPunctuation: each mark is deleted when it touches a space somewhere in
  `text` (or `text` has a comma between digits, "1,000"), else replaced by a space."""
  out = text
  has_digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
  for p in PUNCTUATION:
    # The test looks at the *input* text, the replacement edits the running output.
    delete = has_digit_comma or (p + " ") in text or (" " + p) in text
    out = out.replace(p, "" if delete else " ")
  return _PERIOD.sub("", out, count=_OFFICIAL_MAX_PERIODS)


def process_digit_article(text: str) -> str:
  """Official processDigitArticle: lowercase, number words -> digits, drop a/an/the,
  restore apostrophes of contractions, single spaces."""
  words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
  words = [w for w in words if w not in ARTICLES]
  return " ".join(CONTRACTIONS.get(w, w) for w in words)


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _clean(answer) -> str:
  """What the official script does to every answer: newlines/tabs -> spaces, strip."""
  return _text(answer).replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
  """The official full normalisation of an answer: "Two dogs." -> "2 dogs"."""
  return process_digit_article(process_punctuation(_clean(answer)))


RULES = ("official", "lenient", "auto")
VQA_V2_NUM_ANSWERS = 10  # "auto" applies the official rules to questions with this many


def _references(refs, i: int) -> list[str]:
  refs = [refs] if isinstance(refs, (str, bytes)) else refs
  refs = [_text(r) for r in refs]
  if not refs:
    raise ValueError(f"answers[{i}] is empty: every question needs >= 1 reference answer")
  return refs


def vqa_score(prediction: str, references: Sequence[str], *, rules: str = "official") -> float:
  """One question's score in [0, 1]: leave-one-out mean of min(#matches / 3, 1)."""
  if rules not in RULES:
    raise ValueError(f"rules={rules!r}: choose one of {RULES}")
  refs = [_clean(r) for r in _references(references, 0)]
  pred, n = _clean(prediction), len(refs)
  if rules == "auto":
    rules = "official" if n == VQA_V2_NUM_ANSWERS else "lenient"
  # Officially both sides are normalised only when the (stripped) references disagree;
  # when they all agree, prediction and references are compared as they are.
  if rules == "lenient" or len(set(refs)) > 1:
    pred, refs = normalize_answer(pred), [normalize_answer(r) for r in refs]
  if rules == "official":
    threshold = 3
  elif n == 1:  # lenient, no leave-one-out subset to score: exact match
    return float(refs[0] == pred)
  else:
    threshold = min(3, n - 1)
  matches = [r == pred for r in refs]
  total = sum(matches)
  # Leaving out reference i removes one match exactly when reference i matched (the
  # script tells annotators apart by answer_id, so equal strings are still distinct).
  return sum(min((total - m) / threshold, 1.0) for m in matches) / n


def vqa_scores(
  predictions: Sequence[str], answers: Sequence[Sequence[str]], *, rules: str = "official"
) -> list[float]:
  """Per-question scores; answers[i] lists the reference answers (10 in VQA v2)."""
  if len(predictions) != len(answers):
    raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists")
  return [
    vqa_score(p, _references(a, i), rules=rules)
    for i, (p, a) in enumerate(zip(predictions, answers))
  ]


def vqa_accuracy(
  predictions: Sequence[str], answers: Sequence[Sequence[str]], *, rules: str = "official"
) -> float:
  """Mean VQA score over questions, in [0, 1] (the official script prints 100x this)."""
  scores = vqa_scores(predictions, answers, rules=rules)
  if not scores:
    raise ValueError("vqa_accuracy of zero questions")
  return sum(scores) / len(scores)
