"""configs/finetune_*.py: same model as pretraining, right data and evals; config.json; the
end-to-end chain pretrain -> fine-tune -> predict (slow, ci)."""

import importlib
import os

import numpy as np
from PIL import Image
import pytest

from configs import pretrain
from jarl import metrics_writer, predict, train
from jarl.data import shapes
from jarl.evaluation import registry
from jarl.models import model as model_lib

FULL_TRAIN = {
  "vqa": "tfds:jarl_vqav2:train",
  "caption": "tfds:jarl_coco_karpathy:train",
  "entailment": "tfds:jarl_snli_ve:train",
}
FULL_VAL = {
  "vqa": "tfds:jarl_vqav2:validation",
  "caption": "tfds:jarl_coco_karpathy:validation",
  "entailment": "tfds:jarl_snli_ve:validation",
}


def _load(task):
  return importlib.import_module(f"configs.finetune_{task}")


@pytest.mark.parametrize("task", ["vqa", "caption", "entailment"])
def test_every_size_reuses_the_pretraining_model_and_points_at_its_data(task):
  module = _load(task)
  for variant in module.VARIANTS:
    c, pre = module.get_config(variant), pretrain.get_config(variant)
    # Leaf-for-leaf the pretraining model of the same size, so init_from loads every
    # parameter (the tag head included: data.tags stays, its loss is off).
    assert c.model.to_dict() == pre.model.to_dict(), variant
    assert c.data.tokenizer == pre.data.tokenizer and c.data.tags == pre.data.tags
    assert c.losses.tag_weight == 0.0
    (source,) = c.data.sources
    assert source["task"] == task
    assert source["source"] == ("shapes:train" if variant != "base" else FULL_TRAIN[task])
    for name, e in c.evals.items():
      assert e["type"] == task and e["type"] in registry.EVALUATORS
      assert e["batch_size"] % 8 == 0 and c.global_batch_size % 8 == 0
      assert 1 <= e["max_decode_len"] <= c.model.decoder.max_len, (variant, name)
      assert e["every_steps"] <= c.total_steps
    if variant == "base":
      assert c.evals["val"]["source"] == FULL_VAL[task]
    else:
      assert c.evals["val"]["source"] == "shapes:validation"
      assert c.evals["heldout"]["source"] == "shapes:heldout"
    assert c.init_from == "" and c.total_steps >= 1
  with pytest.raises(ValueError, match="unknown variant 'huge'"):
    module.get_config("huge")


def test_bench_fine_tunes_the_bench_pretraining_for_500_steps():
  c = _load("vqa").get_config("bench")
  assert c.model.vision.stem == "patch" and c.data.tags == ()
  assert c.total_steps == c.ckpt_every_steps == 500 and c.optimizer.warmup_steps == 50
  assert {e["num_examples"] for e in c.evals.values()} == {1024}


def test_saved_config_rebuilds_the_same_model(tmp_path):
  config = _load("vqa").get_config("demo")
  train.save_config(config, str(tmp_path))
  loaded, file = predict.load_config(str(tmp_path))
  assert file.name == train.CONFIG_FILE == predict.CONFIG_FILE
  assert model_lib.build(loaded) == model_lib.build(config)
  assert loaded.data.image_size == config.data.image_size
  assert [dict(s) for s in loaded.data.sources] == [dict(s) for s in config.data.sources]


def _question_length(config):
  """The tiny size's 8 text tokens cut `shapes` questions short: 24, as the demo."""
  config.data.text_len = config.model.text.max_len = 24
  return config


# Not in CI (~50 s): tests/test_own_data.py runs pretrain -> fine-tune -> predict there; this
# one adds the demo's tagging loss, VQA's val/heldout evaluation and predict's answers.
@pytest.mark.slow
def test_pretrain_then_finetune_vqa_then_predict(tmp_path):
  pre_dir, vqa_dir = str(tmp_path / "pre"), str(tmp_path / "vqa")
  # As the demo: pretraining with its image tagging loss, fine-tuning without it.
  tags = pretrain.get_config("demo").data.tags
  pre = _question_length(pretrain.get_config("tiny"))
  pre.update(total_steps=4, ckpt_every_steps=4, evals={})
  pre.data.tags, pre.losses.tag_weight = tags, 1.0
  train.train_and_evaluate(pre, pre_dir)
  assert all(
    "train/loss_tags" in r for r in metrics_writer.read_jsonl(pre_dir) if "train/loss" in r
  )
  ft = _question_length(_load("vqa").get_config("tiny"))
  ft.update(total_steps=4, ckpt_every_steps=4, init_from=pre_dir)
  ft.data.tags = tags  # the pretrained tag head loads; its loss stays off
  for e in ft.evals.values():
    e.update(num_examples=12, batch_size=8, every_steps=4)
  train.train_and_evaluate(ft, vqa_dir)
  records = metrics_writer.read_jsonl(vqa_dir)
  final = {k: v for r in records if r["step"] == 4 for k, v in r.items()}
  for split in ("val", "heldout"):
    assert final[f"{split}/examples"] == 12 and f"{split}/accuracy" in final
  assert os.path.exists(os.path.join(vqa_dir, "config.json"))
  # The fine-tuned workdir alone is enough to answer a question about a PNG.
  scene = shapes.example("validation", 0, image_size=16)
  Image.fromarray(scene["image"]).save(tmp_path / "scene.png")
  p = predict.Predictor.from_checkpoint(vqa_dir)
  answer = p.answer(str(tmp_path / "scene.png"), scene["questions"][0])
  assert answer == p.answer([np.asarray(scene["image"])], [scene["questions"][0]])[0]
