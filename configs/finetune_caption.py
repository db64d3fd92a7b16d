r"""Fine-tuning JARL for image captioning, from a pretraining checkpoint.

Variants (select with `configs/finetune_caption.py:<variant>`):
  demo  the demo model of configs/pretrain.py:demo on `shapes` captions; reports CIDEr-D
        and BLEU-1..4 against all captions of each scene on `shapes:validation`
        (val/cider, val/bleu4) and on `shapes:heldout` (heldout/...).
  base  the base model of configs/pretrain.py:base on COCO captions, Karpathy splits
        (TFDS builder jarl_coco_karpathy: train = train + restval; build it first, see
        jarl/data/tfds/coco_karpathy.py); reports CIDEr-D and BLEU-4 on the Karpathy
        validation (val/...) and test (test/...) splits, 5 references per image.

Commands (`init_from` = a pretraining workdir, or one of its `checkpoints/<step>` dirs):
  python -m jarl.main --config=configs/finetune_caption.py:demo --workdir=/tmp/jarl_caption \
      --config.init_from=/tmp/jarl_demo
  python -m jarl.predict --checkpoint=/tmp/jarl_caption --image=scene.png --task=caption
  python -m jarl.main --config=configs/finetune_caption.py:base \
      --workdir=gs://BUCKET/jarl_caption --config.init_from=gs://BUCKET/jarl_base \
      --config.data.tfds_data_dir=gs://BUCKET/tfds
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
      "caption", arg or "base", variants=VARIANTS,
      demo=dict(total_steps=500, learning_rate=3e-4, warmup_steps=50, batch_size=32,
                eval_every=250, max_decode_len=24),
      full=dict(train="tfds:jarl_coco_karpathy:train",
                evals={"val": "tfds:jarl_coco_karpathy:validation",
                       "test": "tfds:jarl_coco_karpathy:test"},
                total_steps=10_000, learning_rate=1e-4, warmup_steps=500,
                batch_size=512, eval_every=2000, max_decode_len=32))
