r"""Fine-tuning JARL for open-ended VQA (generative answers), from a pretraining checkpoint.

Variants (select with `configs/finetune_vqa.py:<variant>`; sizes as in configs/common.py,
each on the model of configs/pretrain.py at the same size):
  tiny  the tests' model and a few steps on `shapes`:
        python -m jarl.main --config=configs/finetune_vqa.py:tiny \
            --workdir=/tmp/jarl_vqa_tiny --config.init_from=/tmp/jarl_tiny
  bench the benchmarks' fine-tuning (500 steps) from configs/pretrain.py:bench:
        python -m jarl.main --config=configs/finetune_vqa.py:bench \
            --workdir=/tmp/jarl_vqa_bench --config.init_from=/tmp/jarl_bench
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

import ml_collections

from configs import common

VARIANTS = common.FINETUNE_VARIANTS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.finetune(
    arg,
    "vqa",
    demo=dict(
      total_steps=4000,
      learning_rate=5e-4,
      warmup_steps=100,
      batch_size=32,
      eval_every=1000,
      max_decode_len=8,
    ),
    base=dict(
      train="tfds:jarl_vqav2:train",
      evals={"val": "tfds:jarl_vqav2:validation"},
      total_steps=20_000,
      learning_rate=1e-4,
      warmup_steps=1000,
      batch_size=512,
      eval_every=2000,
      max_decode_len=8,
    ),
  )
