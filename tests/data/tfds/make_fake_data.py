"""Writes the tiny fake manual-download tree the TFDS builder tests read (run once, commit).

    /work/venv/bin/python tests/data/tfds/make_fake_data.py

tests/data/tfds/manual/ mirrors the real manual dir (one tree for all builders, as in
~/tensorflow_datasets/downloads/manual/): 8x8 JPEGs of one flat colour each, so a test
can tell which image an example carries from its mean value, and the real file layouts
of VQA v2, GQA, SNLI-VE, COCO Karpathy and img2dataset output (parquet, webdataset tar,
files folders).
"""

import io
import json
import os
import tarfile

import numpy as np
from PIL import Image
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manual")


def jpeg(value: int) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full([8, 8, 3], value, np.uint8)).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def write(path: str, data) -> None:
  path = os.path.join(ROOT, path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if isinstance(data, bytes):
    with open(path, "wb") as f:
      f.write(data)
  elif path.endswith(".jsonl"):
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(d) + "\n" for d in data)
  else:
    with open(path, "w", encoding="utf-8") as f:
      json.dump(data, f, indent=1)


def coco():
  """COCO images (shared by VQA v2 and Karpathy): value = 10 * image id."""
  for folder, ids in (("train2014", (1, 2)), ("val2014", (3, 4)), ("test2015", (5,))):
    for i in ids:
      write(f"coco/{folder}/COCO_{folder}_{i:012d}.jpg", jpeg(10 * i))


def vqav2():
  def answers(*pairs):
    return [
      {"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
      for k, a in enumerate(a for a, n in pairs for _ in range(n))
    ]

  questions = {
    "train2014": [
      (1, 10, "How many dogs?", answers(("2", 7), ("3", 3))),
      (1, 11, "Is it sunny?", answers(("yes", 10))),
      (2, 20, "What color is the car?", answers(("red", 9), ("dark red", 1))),
    ],
    "val2014": [
      (3, 30, "What is on the table?", answers(("cake", 6), ("pie", 4))),
      (4, 40, "Is this a cat?", answers(("no", 10))),
    ],
  }
  for stem, qs in questions.items():
    write(
      f"vqav2/v2_OpenEnded_mscoco_{stem}_questions.json",
      {"questions": [{"image_id": i, "question": q, "question_id": qid} for i, qid, q, _ in qs]},
    )
    write(
      f"vqav2/v2_mscoco_{stem}_annotations.json",
      {
        "annotations": [
          {
            "image_id": i,
            "question_id": qid,
            "question_type": "what",
            "answer_type": "other",
            "multiple_choice_answer": a[0]["answer"],
            "answers": a,
          }
          for i, qid, _, a in qs
        ]
      },
    )
  test = [
    {"image_id": 5, "question": "What time is it?", "question_id": 50},
    {"image_id": 6, "question": "Missing image?", "question_id": 60},
  ]
  write("vqav2/v2_OpenEnded_mscoco_test2015_questions.json", {"questions": test})
  write("vqav2/v2_OpenEnded_mscoco_test-dev2015_questions.json", {"questions": test[:1]})


def karpathy():
  def image(cocoid, folder, split, caps):
    return {
      "filepath": folder,
      "filename": f"COCO_{folder}_{cocoid:012d}.jpg",
      "cocoid": cocoid,
      "split": split,
      "sentences": [{"raw": c, "tokens": c.lower().split()} for c in caps],
    }

  write(
    "karpathy/dataset_coco.json",
    {
      "dataset": "coco",
      "images": [
        image(1, "train2014", "train", ["A dog on grass.", "Two dogs play."]),
        image(2, "train2014", "restval", ["A red car."]),
        image(3, "val2014", "val", ["A cake on a table."]),
        image(4, "val2014", "test", ["A cat sleeps.", "A sleeping cat."]),
      ],
    },
  )


def gqa():
  for image_id, value in (("2354786", 110), ("n161313", 120), ("2400000", 130)):
    write(f"gqa/images/{image_id}.jpg", jpeg(value))

  def q(image_id, question, answer, full):
    return {
      "imageId": image_id,
      "question": question,
      "answer": answer,
      "fullAnswer": full,
      "isBalanced": True,
      "types": {"structural": "query"},
    }

  write(
    "gqa/questions/train_balanced_questions.json",
    {
      "201307251": q("2354786", "Is the sky blue?", "yes", "Yes, the sky is blue."),
      "201640614": q("n161313", "What is on the left?", "table", "The table is on the left."),
    },
  )
  write(
    "gqa/questions/val_balanced_questions.json",
    {"05515938": q("2400000", "Which color is the bus?", "red", "The bus is red.")},
  )
  write(
    "gqa/questions/testdev_balanced_questions.json",
    {"20968379": q("2354786", "Are there clouds?", "no", "No, there are no clouds.")},
  )


def snli_ve():
  for flickr_id, value in (("1000092795", 140), ("10002456", 150), ("1000268201", 160)):
    write(f"flickr30k_images/{flickr_id}.jpg", jpeg(value))

  def pair(flickr_id, pair_id, hyp, label):
    return {
      "Flickr30K_ID": flickr_id,
      "pairID": pair_id,
      "gold_label": label,
      "sentence1": "Two young guys with shaggy hair look at their hands.",
      "sentence2": hyp,
      "captionID": f"{flickr_id}.jpg#0",
    }

  write(
    "snli_ve/snli_ve_train.jsonl",
    [
      pair("1000092795", "1000092795.jpg#0r1e", "Two men are outside.", "entailment"),
      pair("1000092795", "1000092795.jpg#0r1n", "Two men are friends.", "neutral"),
      pair("10002456", "10002456.jpg#0r1c", "Nobody is outside.", "contradiction"),
    ],
  )
  write(
    "snli_ve/snli_ve_dev.jsonl",
    [pair("1000268201", "1000268201.jpg#0r1e", "A child is present.", "entailment")],
  )
  write(
    "snli_ve/snli_ve_test.jsonl",
    [pair("10002456", "10002456.jpg#1r1n", "They are at work.", "neutral")],
  )


def img2dataset():
  """cc3m: train as parquet, validation as webdataset tar; cc12m: train as files folders."""
  rows = [
    {
      "key": "000000000",
      "caption": "a photo of a beach",
      "url": "http://x/0.jpg",
      "status": "success",
      "jpg": jpeg(170),
    },
    {
      "key": "000000001",
      "caption": "failed download",
      "url": "http://x/1.jpg",
      "status": "failed_to_download",
      "jpg": None,
    },
    {
      "key": "000000002",
      "caption": "a mountain at dusk",
      "url": "http://x/2.jpg",
      "status": "success",
      "jpg": jpeg(180),
    },
  ]
  path = os.path.join(ROOT, "img2dataset/cc3m/train/00000.parquet")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pq.write_table(pa.Table.from_pylist(rows), path)
  tar_path = os.path.join(ROOT, "img2dataset/cc3m/validation/00000.tar")
  os.makedirs(os.path.dirname(tar_path), exist_ok=True)
  with tarfile.open(tar_path, "w") as tar:
    for key, cap, value in (("100000000", "a red bicycle", 190), ("100000001", "snow", 200)):
      for ext, data in (
        ("jpg", jpeg(value)),
        ("txt", cap.encode()),
        ("json", json.dumps({"key": key, "url": f"http://y/{key}"}).encode()),
      ):
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size, info.mtime = len(data), 0  # fixed mtime: the committed file is reproducible
        tar.addfile(info, io.BytesIO(data))
  for key, cap, value in (("000000000", "a city at night", 210), ("000010000", "a cup", 220)):
    shard = key[:5]
    write(f"img2dataset/cc12m/train/{shard}/{key}.jpg", jpeg(value))
    write(f"img2dataset/cc12m/train/{shard}/{key}.txt", cap.encode())
    write(
      f"img2dataset/cc12m/train/{shard}/{key}.json",
      json.dumps({"key": key, "url": f"http://z/{key}", "caption": cap}).encode(),
    )


if __name__ == "__main__":
  for make in (coco, vqav2, karpathy, gqa, snli_ve, img2dataset):
    make()
