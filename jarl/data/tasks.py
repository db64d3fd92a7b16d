"""Tasks: how a raw example becomes (image, encoder text, decoder target) strings.

A raw example (see sources.py) has `image` and any of: `captions` list[str], `questions`
list[str] with `answers` (answers[i]: str or list of reference strings for questions[i]),
`hypotheses` list[str] with `labels` (yes/no/maybe or entailment/neutral/contradiction).
A record may also carry `concepts` list[str] (image-level keywords, `add_concepts`), and
`question_types` / `hypothesis_types` list[str] (the kind of each question or hypothesis;
`shapes` has them): the vqa and entailment tasks return it as `kind` ("" without), which
the evaluators group their accuracy by.
Each task picks what it needs with the per-example `rng` (Grain's random_map, so the
choice is a pure function of seed and index) and raises SkipExample when it is absent.
"""

import collections

import numpy as np

# Encoder-text prefix per task: a multi-task model needs to know what is asked.
PROMPTS = {"caption": "caption", "prefix_lm": "continue", "vqa": "answer", "entailment": "entail"}
ENTAILMENT_LABELS = {
  "yes": "yes",
  "no": "no",
  "maybe": "maybe",
  "entailment": "yes",
  "contradiction": "no",
  "neutral": "maybe",
}


class SkipExample(Exception):
  """The record cannot serve this task; `reason` names the counter it is logged under."""

  def __init__(self, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {detail}")
    self.reason = reason


def _pick(raw: dict, key: str, rng: np.random.Generator) -> int:
  items = raw.get(key)
  if not items:
    raise SkipExample("missing_field", key)
  return int(rng.integers(len(items)))


def _text(value, field: str) -> str:
  text = " ".join(str(value).split())
  if not text:
    raise SkipExample("empty_text", field)
  return text


def _kind(raw: dict, key: str, i: int) -> str:
  """The kind of item i (raw[key][i]), or "" when the record names none."""
  kinds = raw.get(key) or []
  return str(kinds[i]) if i < len(kinds) else ""


def caption(raw: dict, rng: np.random.Generator) -> dict:
  i = _pick(raw, "captions", rng)
  cap = _text(raw["captions"][i], "captions")
  return dict(text=PROMPTS["caption"], target=cap, answers=[cap])


def prefix_lm(raw: dict, rng: np.random.Generator) -> dict:
  """Caption split at a uniform word boundary: the encoder sees the prefix."""
  i = _pick(raw, "captions", rng)
  words = _text(raw["captions"][i], "captions").split()
  if len(words) < 2:
    raise SkipExample("empty_text", "captions: one word leaves no prefix to continue")
  k = int(rng.integers(1, len(words)))
  rest = " ".join(words[k:])
  return dict(text=f"{PROMPTS['prefix_lm']} {' '.join(words[:k])}", target=rest, answers=[rest])


def vqa(raw: dict, rng: np.random.Generator) -> dict:
  """Target: the most frequent reference answer (ties: the first seen)."""
  i = _pick(raw, "questions", rng)
  answers = raw.get("answers") or []
  if i >= len(answers):
    raise SkipExample("missing_field", "answers")
  refs = [answers[i]] if isinstance(answers[i], str) else list(answers[i])
  refs = [" ".join(str(a).split()) for a in refs if str(a).strip()]
  if not refs:
    raise SkipExample("empty_text", "answers")
  best = collections.Counter(refs).most_common(1)[0][0]
  question = _text(raw["questions"][i], "questions")
  return dict(
    text=f"{PROMPTS['vqa']} {question}",
    target=best,
    answers=refs,
    kind=_kind(raw, "question_types", i),
  )


def entailment(raw: dict, rng: np.random.Generator) -> dict:
  i = _pick(raw, "hypotheses", rng)
  labels = raw.get("labels") or []
  if i >= len(labels):
    raise SkipExample("missing_field", "labels")
  label = ENTAILMENT_LABELS.get(str(labels[i]).strip().lower())
  if label is None:
    raise SkipExample("missing_field", f"labels: {labels[i]!r} is not an entailment label")
  hyp = _text(raw["hypotheses"][i], "hypotheses")
  return dict(
    text=f"{PROMPTS['entailment']} {hyp}",
    target=label,
    answers=[label],
    kind=_kind(raw, "hypothesis_types", i),
  )


# Between the task's encoder text and the visual concepts: one piece of the built-in
# tokenizer that no task text contains, so the model can tell where the keywords start.
CONCEPT_SEPARATOR = ";"


def add_concepts(ex: dict, raw: dict) -> dict:
  """ViCHA visual concepts: the record's image-level keywords (`concepts` list[str])
  appended to the encoder text, "<text> ; kw1 kw2 ...". An empty list adds nothing."""
  if "concepts" not in raw or raw["concepts"] is None:
    raise SkipExample("missing_field", "concepts (config.data.visual_concepts=True)")
  words = " ".join(" ".join(str(c).split()) for c in raw["concepts"] if str(c).strip())
  if not words:
    return ex
  return dict(ex, text=f"{ex['text']} {CONCEPT_SEPARATOR} {words}")


TASKS = {"caption": caption, "prefix_lm": prefix_lm, "vqa": vqa, "entailment": entailment}


def get(name: str, where: str):
  """The task function for `name`; `where` names the config key for the error."""
  if name not in TASKS:
    raise ValueError(f"{where}={name!r}: unknown task; choose from {sorted(TASKS)}")
  return TASKS[name]
