r"""Fine-tuning JARL for open-ended VQA (generative answers), from a pretraining checkpoint.

Variants (select with `configs/finetune_vqa.py:<variant>`):
  demo  the demo model of configs/pretrain.py:demo on `shapes` VQA (counts, colours,
        shapes, sizes, existence, spatial relations); reports VQA accuracy on
        `shapes:validation` (val/accuracy) and on the compositional `shapes:heldout`
        split (heldout/accuracy).
  base  the base model of configs/pretrain.py:base on VQA v2 (TFDS builder jarl_vqav2,
        train split; build it first, see jarl/data/tfds/vqav2.py); reports VQA v2
        accuracy on its validation split (val/accuracy, the official leave-one-out score).

Commands (`init_from` = a pretraining workdir, or one of its `checkpoints/<step>` dirs):
  python -m jarl.main --config=configs/pretrain.py:demo --workdir=/tmp/jarl_demo
  python -m jarl.main --config=configs/finetune_vqa.py:demo --workdir=/tmp/jarl_vqa \
      --config.init_from=/tmp/jarl_demo
  python -m jarl.predict --checkpoint=/tmp/jarl_vqa --image=scene.png \
      --question="how many red shapes are there"
  python -m jarl.main --config=configs/finetune_vqa.py:base --workdir=gs://BUCKET/jarl_vqa \
      --config.init_from=gs://BUCKET/jarl_base --config.data.tfds_data_dir=gs://BUCKET/tfds
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "jarl_configs_finetune_common",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "finetune_common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

VARIANTS = ("demo", "base")


def get_config(arg=None):
  return common.make(
      "vqa", arg or "base", variants=VARIANTS,
      # Val / heldout VQA accuracy from configs/pretrain.py:demo as it is now (conv stem,
      # tagging loss, 2000 steps), 4000 steps at 5e-4: step 2000 83.4% / 69.9%, step 3000
      # 89.4% / 74.5%, step 4000 91.9% / 77.0% (README "Downstream"). From the 1000-step
      # demos: patch stem, 1500 steps at 5e-4 66.4% / 57.3%, at 1e-3 63.8% / 61.9%, 3000
      # at 2e-3 59.5% / 54.2%; conv stem without tagging, 3000 at 5e-4 77.8% / 68.6%.
      demo=dict(total_steps=4000, learning_rate=5e-4, warmup_steps=100, batch_size=32,
                eval_every=1000, max_decode_len=8),
      full=dict(train="tfds:jarl_vqav2:train", evals={"val": "tfds:jarl_vqav2:validation"},
                total_steps=20_000, learning_rate=1e-4, warmup_steps=1000,
                batch_size=512, eval_every=2000, max_decode_len=8))
