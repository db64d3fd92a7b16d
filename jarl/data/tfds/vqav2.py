"""TFDS builder `jarl_vqav2`: VQA v2 (Goyal et al., CVPR 2017) on COCO 2014/2015 images.

One example per question (images repeat, ~5.4 questions per image: simple random access
and every question evaluated once; the price is disk, ~5x the COCO JPEG bytes, about
70 GB for train). Fields match jarl/data/sources.canonical: `question`
and `answers` (the 10 human answers) feed the `vqa` task; `vqa` trains on the most
frequent answer and the evaluator scores with jarl.evaluation.vqa.
"""

import collections

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from jarl.data.tfds import builder_base

# split -> (question/annotation file stem, COCO image folder)
SPLITS = {
  "train": ("train2014", "train2014"),
  "validation": ("val2014", "val2014"),
  "test_dev": ("test-dev2015", "test2015"),
  "test": ("test2015", "test2015"),
}


class JarlVqav2(builder_base.ManualBuilder):
  """VQA v2 open-ended questions with their 10 human answers.

  MANUAL_DOWNLOAD_INSTRUCTIONS (also in the class attribute):
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "One example per question; 10 answers; ArrayRecord."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  From https://visualqa.org/download.html and https://cocodataset.org/#download download
  and unzip into the manual dir (default ~/tensorflow_datasets/downloads/manual/):
    vqav2/v2_OpenEnded_mscoco_{train2014,val2014,test-dev2015,test2015}_questions.json
        (v2_Questions_{Train,Val,Test}_mscoco.zip)
    vqav2/v2_mscoco_{train2014,val2014}_annotations.json
        (v2_Annotations_{Train,Val}_mscoco.zip)
    coco/train2014/COCO_train2014_<12-digit id>.jpg   (train2014.zip)
    coco/val2014/COCO_val2014_<12-digit id>.jpg       (val2014.zip)
    coco/test2015/COCO_test2015_<12-digit id>.jpg     (test2015.zip)
  Splits whose question file is absent are not built (e.g. skip test2015 if you only
  evaluate on validation). Build:
    python -m jarl.data.tfds.build --dataset=jarl_vqav2 --manual_dir=DIR --data_dir=OUT
  and train with source="tfds:jarl_vqav2:train", config.data.tfds_data_dir=OUT.
  """
  __doc__ += MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description="VQA v2: open-ended questions about COCO images, 10 answers each.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(encoding_format="jpeg"),
          "image/id": np.int64,
          "image/filename": tfds.features.Text(),
          "question_id": np.int64,
          "question": tfds.features.Text(),
          "question_type": tfds.features.Text(),
          "answer_type": tfds.features.Text(),
          "multiple_choice_answer": tfds.features.Text(),
          "answers": tfds.features.Sequence(tfds.features.Text()),
        }
      ),
      homepage="https://visualqa.org/",
      citation="Goyal et al., Making the V in VQA Matter, CVPR 2017.",
    )

  def _split_generators(self, dl_manager):
    questions_dir = self.manual_path(dl_manager, "vqav2")
    splits = {}
    for split, (stem, folder) in SPLITS.items():
      questions = questions_dir / f"v2_OpenEnded_mscoco_{stem}_questions.json"
      if not questions.exists():
        logging.warning("jarl_vqav2: %s not found, split %r not built", questions, split)
        continue
      annotations = (
        None
        if split.startswith("test")
        else (self.manual_path(dl_manager, "vqav2", f"v2_mscoco_{stem}_annotations.json"))
      )
      images = self.manual_path(dl_manager, "coco", folder)
      splits[split] = self._generate_examples(questions, annotations, images, folder)
    if not splits:
      raise FileNotFoundError(
        f"jarl_vqav2: no v2_OpenEnded_mscoco_*_questions.json in "
        f"{questions_dir}; see MANUAL_DOWNLOAD_INSTRUCTIONS:\n"
        f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    return splits

  def _generate_examples(self, questions, annotations, images, folder):
    by_question = {}
    if annotations is not None:
      by_question = {
        a["question_id"]: a for a in builder_base.read_json(annotations)["annotations"]
      }
    skipped = collections.Counter()
    for q in builder_base.read_json(questions)["questions"]:
      qid = int(q["question_id"])
      name = f"COCO_{folder}_{int(q['image_id']):012d}.jpg"
      path = images / name
      if not path.exists():
        if annotations is not None:  # a labelled split must be complete
          raise FileNotFoundError(f"jarl_vqav2: question {qid} of {questions}: missing {path}")
        skipped["missing_image"] += 1  # test2015 lists a few images that were never released
        continue
      ann = by_question.get(qid)
      if annotations is not None and ann is None:
        raise ValueError(f"jarl_vqav2: question {qid} of {questions} has no entry in {annotations}")
      ann = ann or {}
      yield (
        qid,
        {
          "image": path,
          "image/id": int(q["image_id"]),
          "image/filename": name,
          "question_id": qid,
          "question": q["question"],
          "question_type": ann.get("question_type", ""),
          "answer_type": ann.get("answer_type", ""),
          "multiple_choice_answer": ann.get("multiple_choice_answer", ""),
          "answers": [a["answer"] for a in ann.get("answers", [])],
        },
      )
    if skipped:
      logging.warning("jarl_vqav2: %s skipped %s", questions, dict(skipped))
