"""TFDS builder `jarl_gqa`: GQA balanced (Hudson & Manning, CVPR 2019) on Visual Genome images.

One example per question. `question` and `answer` (one short answer, scored by exact
match: jarl.evaluation.accuracy.exact_match_accuracy) feed the `vqa` task through
jarl/data/sources.canonical; `full_answer` (a sentence) is kept for inspection.
"""

from absl import logging
import tensorflow_datasets as tfds

from jarl.data.tfds import builder_base

# split -> balanced question file stem (the unbalanced "all" files are 15x larger)
SPLITS = {"train": "train_balanced", "validation": "val_balanced", "testdev": "testdev_balanced"}


class JarlGqa(builder_base.ManualBuilder):
  """GQA balanced questions with their short answers.

  MANUAL_DOWNLOAD_INSTRUCTIONS (also in the class attribute):
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Balanced train/val/testdev; one example per question."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  From https://cs.stanford.edu/people/dorarad/gqa/download.html download questions1.2.zip
  and images.zip and unzip into the manual dir (default
  ~/tensorflow_datasets/downloads/manual/) so that it holds:
    gqa/questions/{train,val,testdev}_balanced_questions.json
    gqa/images/<imageId>.jpg
  Splits whose question file is absent are not built. Build:
    python -m jarl.data.tfds.build --dataset=jarl_gqa --manual_dir=DIR --data_dir=OUT
  Report GQA accuracy on `testdev` (the labelled test split the literature uses).
  """
  __doc__ += MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description="GQA balanced: compositional questions about Visual Genome images.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(encoding_format="jpeg"),
          "image/id": tfds.features.Text(),
          "question_id": tfds.features.Text(),
          "question": tfds.features.Text(),
          "answer": tfds.features.Text(),
          "full_answer": tfds.features.Text(),
        }
      ),
      homepage="https://cs.stanford.edu/people/dorarad/gqa/",
      citation="Hudson and Manning, GQA, CVPR 2019.",
    )

  def _split_generators(self, dl_manager):
    questions_dir = self.manual_path(dl_manager, "gqa", "questions")
    images = self.manual_path(dl_manager, "gqa", "images")
    splits = {}
    for split, stem in SPLITS.items():
      questions = questions_dir / f"{stem}_questions.json"
      if questions.exists():
        splits[split] = self._generate_examples(questions, images)
      else:
        logging.warning("jarl_gqa: %s not found, split %r not built", questions, split)
    if not splits:
      raise FileNotFoundError(
        f"jarl_gqa: no *_balanced_questions.json in {questions_dir}; "
        f"see MANUAL_DOWNLOAD_INSTRUCTIONS:\n"
        f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    return splits

  def _generate_examples(self, questions, images):
    for qid, q in builder_base.read_json(questions).items():
      path = images / f"{q['imageId']}.jpg"
      if not path.exists():
        raise FileNotFoundError(f"jarl_gqa: question {qid} of {questions}: missing {path}")
      yield (
        qid,
        {
          "image": path,
          "image/id": q["imageId"],
          "question_id": qid,
          "question": q["question"],
          "answer": q.get("answer", ""),
          "full_answer": q.get("fullAnswer", ""),
        },
      )
