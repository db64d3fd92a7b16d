"""Exact-match accuracies: GQA-style answers and visual-entailment labels.

GQA has one reference answer per question; the common practice (and ours) compares the
prediction with it after the same VQA answer normalisation (vqa.normalize_answer), so
"The dog." matches "dog". Entailment predictions and labels are mapped to yes/no/maybe
(the decoder targets of jarl/data/tasks.py), so "entailment" and "yes" count as equal.
"""

from collections.abc import Sequence

from jarl.data import tasks
from jarl.evaluation import vqa


def exact_match_scores(predictions: Sequence[str], answers: Sequence) -> list[float]:
  """1.0 where the normalised prediction equals a normalised reference, else 0.0.

  answers[i] is one reference string or a list of acceptable references.
  """
  if len(predictions) != len(answers):
    raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
  scores = []
  for i, (pred, refs) in enumerate(zip(predictions, answers)):
    refs = [refs] if isinstance(refs, str) else list(refs)
    if not refs:
      raise ValueError(f"answers[{i}] is empty: every question needs a reference answer")
    scores.append(float(vqa.normalize_answer(pred) in {vqa.normalize_answer(r) for r in refs}))
  return scores


def exact_match_accuracy(predictions: Sequence[str], answers: Sequence) -> float:
  """Fraction of questions answered exactly (after normalisation), in [0, 1]."""
  scores = exact_match_scores(predictions, answers)
  if not scores:
    raise ValueError("exact_match_accuracy of zero questions")
  return sum(scores) / len(scores)


def entailment_label(text: str) -> str | None:
  """ "Entailment." / "yes" -> "yes"; None for text that names no entailment label."""
  return tasks.ENTAILMENT_LABELS.get(" ".join(str(text).lower().strip(" .!?").split()))


def entailment_accuracy(predictions: Sequence[str], labels: Sequence[str]) -> float:
  """Fraction of predictions naming the gold label (yes/no/maybe or the SNLI names).

  A prediction that names no label (e.g. "a dog") is wrong; a gold label that names no
  label is a data error and raises, naming its index.
  """
  if len(predictions) != len(labels):
    raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
  if not labels:
    raise ValueError("entailment_accuracy of zero examples")
  correct = 0
  for i, (pred, label) in enumerate(zip(predictions, labels)):
    gold = entailment_label(label)
    if gold is None:
      raise ValueError(f"labels[{i}]={label!r}: not one of {sorted(tasks.ENTAILMENT_LABELS)}")
    correct += entailment_label(pred) == gold
  return correct / len(labels)
