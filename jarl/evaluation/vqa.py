"""VQA v2 accuracy: the official answer normalisation and the leave-one-out human score.

Follows the official evaluation (GT-Vision-Lab/VQA, vqaEval.py), rule by rule:
  * a prediction has newlines/tabs turned into spaces and is stripped, then goes through
    `process_punctuation` and `process_digit_article`;
  * per question, each of the N reference answers is left out in turn; the score for that
    subset is min(#remaining references equal to the prediction / 3, 1); the question's
    score is the mean over the N subsets (N = 10 in VQA v2), so 3 matching annotators of
    10 give 0.9, not 1.0;
  * the data set score is the mean over questions.

Two deliberate differences, both no-ops on the released VQA v2 annotations:
  * references get the same full normalisation as predictions (`reference_normalization=
    "full"`). The official script applies only `process_punctuation`, and only when the
    references disagree, because the released answers were already normalised; for our
    own data (`shapes`, GQA) an unnormalised reference such as "two" would otherwise never
    match. `reference_normalization="official"` reproduces the script exactly.
  * fewer than 10 references: the threshold becomes min(3, N - 1) so that N = 10 is the
    official metric and a single reference (N = 1, no leave-one-out subset) scores exact
    match.
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


def normalize_answer(answer: str) -> str:
  """The official normalisation of a predicted answer: "Two dogs." -> "2 dogs"."""
  text = str(answer).replace("\n", " ").replace("\t", " ").strip()
  return process_digit_article(process_punctuation(text))


def _references(refs, i: int) -> list[str]:
  if isinstance(refs, (str, bytes)):
    refs = [refs]
  refs = [r.decode("utf-8") if isinstance(r, bytes) else str(r) for r in refs]
  if not refs:
    raise ValueError(f"answers[{i}] is empty: every question needs >= 1 reference answer")
  return refs


def _normalize_references(refs: list[str], mode: str) -> list[str]:
  if mode == "full":
    return [normalize_answer(r) for r in refs]
  if mode == "official":  # punctuation only, and only when the annotators disagree
    return [process_punctuation(r) for r in refs] if len(set(refs)) > 1 else list(refs)
  raise ValueError(f"reference_normalization={mode!r}: choose 'full' or 'official'")


def vqa_score(
  prediction: str, references: Sequence[str], *, reference_normalization: str = "full"
) -> float:
  """One question's score in [0, 1]: leave-one-out mean of min(#matches / 3, 1)."""
  refs = _normalize_references(_references(references, 0), reference_normalization)
  pred = normalize_answer(prediction)
  matches = [r == pred for r in refs]
  n, total = len(refs), sum(matches)
  if n == 1:
    return float(total)
  threshold = min(3, n - 1)
  # Leaving out reference i removes one match exactly when reference i matched.
  return sum(min((total - m) / threshold, 1.0) for m in matches) / n


def vqa_scores(
  predictions: Sequence[str],
  answers: Sequence[Sequence[str]],
  *,
  reference_normalization: str = "full",
) -> list[float]:
  """Per-question scores; answers[i] lists the reference answers (10 in VQA v2)."""
  if len(predictions) != len(answers):
    raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists")
  return [
    vqa_score(p, _references(a, i), reference_normalization=reference_normalization)
    for i, (p, a) in enumerate(zip(predictions, answers))
  ]


def vqa_accuracy(
  predictions: Sequence[str],
  answers: Sequence[Sequence[str]],
  *,
  reference_normalization: str = "full",
) -> float:
  """Mean VQA score over questions, in [0, 1] (the official script prints 100x this)."""
  scores = vqa_scores(predictions, answers, reference_normalization=reference_normalization)
  if not scores:
    raise ValueError("vqa_accuracy of zero questions")
  return sum(scores) / len(scores)
