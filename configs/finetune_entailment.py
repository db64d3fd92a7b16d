r"""Fine-tuning JARL for visual entailment (answers yes / no / maybe), from pretraining.

Variants (select with `configs/finetune_entailment.py:<variant>`; sizes as in configs/common.py,
each on the model of configs/pretrain.py at the same size):
  tiny  the tests' model and a few steps on `shapes`:
        python -m jarl.main --config=configs/finetune_entailment.py:tiny \
            --workdir=/tmp/jarl_entailment_tiny --config.init_from=/tmp/jarl_tiny
  bench the benchmarks' fine-tuning (500 steps) from configs/pretrain.py:bench:
        python -m jarl.main --config=configs/finetune_entailment.py:bench \
            --workdir=/tmp/jarl_entailment_bench --config.init_from=/tmp/jarl_bench
  demo  the demo model of configs/pretrain.py:demo on `shapes` hypotheses (counts and
        spatial relations are decidable from the picture, material and weight are not:
        "maybe"); reports accuracy on `shapes:validation` (val/accuracy) and on
        `shapes:heldout` (heldout/accuracy).
  base  the base model of configs/pretrain.py:base on SNLI-VE (TFDS builder
        jarl_snli_ve; build it first, see jarl/data/tfds/snli_ve.py); reports accuracy on
        its validation (dev) and test splits (val/accuracy, test/accuracy).

Commands (`init_from` = a pretraining workdir, or one of its `checkpoints/<step>` dirs):
  python -m jarl.main --config=configs/finetune_entailment.py:demo \
      --workdir=/tmp/jarl_entailment --config.init_from=/tmp/jarl_demo
  python -m jarl.main --config=configs/finetune_entailment.py:base \
      --workdir=gs://BUCKET/jarl_snli_ve --config.init_from=gs://BUCKET/jarl_base \
      --config.data.tfds_data_dir=gs://BUCKET/tfds
"""

import ml_collections

from configs import common

VARIANTS = common.FINETUNE_VARIANTS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.finetune(
    arg,
    "entailment",
    demo=dict(
      total_steps=600,
      learning_rate=1e-3,
      warmup_steps=50,
      batch_size=32,
      eval_every=300,
      max_decode_len=4,
    ),
    base=dict(
      train="tfds:jarl_snli_ve:train",
      evals={"val": "tfds:jarl_snli_ve:validation", "test": "tfds:jarl_snli_ve:test"},
      total_steps=10_000,
      learning_rate=1e-4,
      warmup_steps=500,
      batch_size=512,
      eval_every=2000,
      max_decode_len=4,
    ),
  )
