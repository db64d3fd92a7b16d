r"""Fine-tuning JARL for visual entailment (answers yes / no / maybe), from pretraining.

Variants (select with `configs/finetune_entailment.py:<variant>`):
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
      "entailment", arg or "base", variants=VARIANTS,
      demo=dict(total_steps=600, learning_rate=1e-3, warmup_steps=50, batch_size=32,
                eval_every=300, max_decode_len=4),
      full=dict(train="tfds:jarl_snli_ve:train",
                evals={"val": "tfds:jarl_snli_ve:validation",
                       "test": "tfds:jarl_snli_ve:test"},
                total_steps=10_000, learning_rate=1e-4, warmup_steps=500,
                batch_size=512, eval_every=2000, max_decode_len=4))
