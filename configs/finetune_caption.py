r"""Fine-tuning JARL for image captioning, from a pretraining checkpoint.

Variants (select with `configs/finetune_caption.py:<variant>`; sizes as in configs/common.py,
each on the model of configs/pretrain.py at the same size):
  tiny  the tests' model and a few steps on `shapes`:
        python -m jarl.main --config=configs/finetune_caption.py:tiny \
            --workdir=/tmp/jarl_caption_tiny --config.init_from=/tmp/jarl_tiny
  bench the benchmarks' fine-tuning (500 steps) from configs/pretrain.py:bench:
        python -m jarl.main --config=configs/finetune_caption.py:bench \
            --workdir=/tmp/jarl_caption_bench --config.init_from=/tmp/jarl_bench
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

import ml_collections

from configs import common

VARIANTS = common.FINETUNE_VARIANTS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.finetune(
    arg,
    "caption",
    demo=dict(
      total_steps=500,
      learning_rate=3e-4,
      warmup_steps=50,
      batch_size=32,
      eval_every=250,
      max_decode_len=24,
    ),
    base=dict(
      train="tfds:jarl_coco_karpathy:train",
      evals={"val": "tfds:jarl_coco_karpathy:validation", "test": "tfds:jarl_coco_karpathy:test"},
      total_steps=10_000,
      learning_rate=1e-4,
      warmup_steps=500,
      batch_size=512,
      eval_every=2000,
      max_decode_len=32,
    ),
  )
