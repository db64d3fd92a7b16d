"""configs/finetune_*.py: same model as pretraining, right data and evals; config.json; the
end-to-end chain pretrain -> fine-tune -> predict (slow, ci)."""
import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

from jarl import metrics_writer
from jarl import predict
from jarl import train
from jarl.data import shapes
from jarl.evaluation import registry
from jarl.models import model as model_lib
import train_fixtures

FULL_TRAIN = {"vqa": "tfds:jarl_vqav2:train", "caption": "tfds:jarl_coco_karpathy:train",
              "entailment": "tfds:jarl_snli_ve:train"}
FULL_VAL = {"vqa": "tfds:jarl_vqav2:validation",
            "caption": "tfds:jarl_coco_karpathy:validation",
            "entailment": "tfds:jarl_snli_ve:validation"}


def _load(task):
  path = os.path.join(train_fixtures.repo_root(), "configs", f"finetune_{task}.py")
  spec = importlib.util.spec_from_file_location(f"finetune_{task}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("task", ["vqa", "caption", "entailment"])
def test_demo_and_base_reuse_the_pretraining_model_and_point_at_their_data(task):
  module = _load(task)
  for variant, pre in (("demo", "demo"), ("base", "base")):
    c = module.get_config(variant)
    # Leaf-for-leaf the pretraining model, so init_from loads every parameter.
    assert c.model.to_dict() == train_fixtures.pretrain.get_config(pre).model.to_dict()
    assert c.data.tokenizer == train_fixtures.pretrain.get_config(pre).data.tokenizer
    (source,) = c.data.sources
    assert source["task"] == task
    assert source["source"] == ("shapes:train" if variant == "demo" else FULL_TRAIN[task])
    for name, e in c.evals.items():
      assert e["type"] == task and e["type"] in registry.EVALUATORS
      assert e["batch_size"] % 8 == 0 and c.global_batch_size % 8 == 0
      assert 1 <= e["max_decode_len"] <= c.model.decoder.max_len
    if variant == "demo":
      assert c.evals["val"]["source"] == "shapes:validation"
      assert c.evals["heldout"]["source"] == "shapes:heldout"
    else:
      assert c.evals["val"]["source"] == FULL_VAL[task]
    assert c.init_from == "" and c.total_steps >= 1
  with pytest.raises(ValueError, match=f"configs/finetune_{task}.py:huge"):
    module.get_config("huge")


def test_saved_config_rebuilds_the_same_model(tmp_path):
  config = _load("vqa").get_config("demo")
  train.save_config(config, str(tmp_path))
  loaded, file = predict.load_config(str(tmp_path))
  assert file.name == train.CONFIG_FILE == predict.CONFIG_FILE
  assert model_lib.build(loaded.model) == model_lib.build(config.model)
  assert loaded.data.image_size == config.data.image_size
  assert [dict(s) for s in loaded.data.sources] == [dict(s) for s in config.data.sources]


def _tiny(config, **overrides):
  for k, v in {**train_fixtures.TINY, "data.text_len": 24, "model.text.max_len": 24,
               **overrides}.items():
    if not k.startswith("evals."):
      train_fixtures._set(config, k, v)  # pylint: disable=protected-access
  return config


@pytest.mark.slow
@pytest.mark.ci
def test_pretrain_then_finetune_vqa_then_predict(tmp_path):
  pre_dir, vqa_dir = str(tmp_path / "pre"), str(tmp_path / "vqa")
  # As the demo: pretraining with its image tagging loss, fine-tuning without it.
  tags = train_fixtures.pretrain.get_config("demo").data.tags
  pre = _tiny(train_fixtures.pretrain.get_config("demo"), total_steps=4, ckpt_every_steps=4,
              evals={}, **{"model.num_tags": len(tags), "data.tags": tags,
                           "losses.tag_weight": 1.0})
  train.train_and_evaluate(pre, pre_dir)
  assert all("train/loss_tags" in r for r in metrics_writer.read_jsonl(pre_dir)
             if "train/loss" in r)
  ft = _tiny(_load("vqa").get_config("demo"), total_steps=4, ckpt_every_steps=4,
             init_from=pre_dir, **{"model.num_tags": len(tags)})
  for e in ft.evals.values():
    e.update(num_examples=12, batch_size=8, every_steps=4)
  train.train_and_evaluate(ft, vqa_dir)
  records = metrics_writer.read_jsonl(vqa_dir)
  final = {k: v for r in records if r["step"] == 4 for k, v in r.items()}
  for split in ("val", "heldout"):
    assert final[f"{split}/examples"] == 12
    assert 0.0 <= final[f"{split}/accuracy"] <= 1.0
  assert os.path.exists(os.path.join(vqa_dir, "config.json"))
  # The fine-tuned workdir alone is enough to answer a question about a PNG.
  scene = shapes.example("validation", 0, image_size=16)
  Image.fromarray(scene["image"]).save(tmp_path / "scene.png")
  p = predict.Predictor.from_checkpoint(vqa_dir)
  answer = p.answer(str(tmp_path / "scene.png"), scene["questions"][0])
  assert isinstance(answer, str)
  assert answer == p.answer([np.asarray(scene["image"])], [scene["questions"][0]])[0]
