r"""Pretrain -> fine-tune VQA on `shapes`: the runner the accuracy benchmarks share.

One run of a setting and a seed: pretrain configs/pretrain.py:bench (its captions +
prefix-LM mixture unless the setting changes the data), then fine-tune VQA from that
checkpoint (configs/finetune_vqa.py:bench) and read the VQA accuracy on shapes:validation
(`val_*`) and on the compositional shapes:heldout split (`heldout_*`) from the
fine-tuning run's final evaluation.

Sizes (`Size`; --pretrain_steps, --finetune_steps, --eval_examples, --stem and --tags
change them, see `add_flags`):
  bench  the configs' `bench` size: the demo model with the paper's patch stem and no
         tagging loss, 400 pretraining + 500 fine-tuning steps, 1024 evaluation scenes
         per split, so that 3 settings x 3 seeds fit in about half an hour on 2 CPU cores.
  quick  QUICK_MODEL, a few steps, a few eval examples: checks the whole chain runs
         (the accuracies mean nothing).

Users: method_comparison, fusion_quality, data_efficiency.
"""

import dataclasses
import os
import tempfile
import time

import numpy as np

from configs import finetune_vqa, pretrain
from jarl import metrics_writer, train
from jarl.models.vit import STEMS
from jarl.tools import flops

QUICK_STEPS = 6
QUICK_EVAL_EXAMPLES = 16
# --quick: a tiny model and a few steps, to check the whole chain runs (numbers meaningless).
QUICK_MODEL = dict(
  vision=dict(
    image_size=32, width=32, depth=2, mlp_dim=64, num_heads=2, elip_layers=(1,), elip_keep=(0.75,)
  ),
  text=dict(max_len=16, width=32, depth=2, mlp_dim=64, num_heads=2),
  fusion=dict(
    width=32, num_heads=2, mlp_dim=64, num_tokens=4, vision_taps=(1, 2), text_taps=(1, 2)
  ),
  decoder=dict(width=32, depth=1, num_heads=2, mlp_dim=64, max_len=16),
  vicha=dict(embed_dim=16),
)
RESULT_KEYS = ("val_accuracy", "heldout_accuracy", "val_exact_match", "heldout_exact_match")


@dataclasses.dataclass(frozen=True)
class Size:
  """How big one run is: model (quick = QUICK_MODEL, else bench's) and lengths."""

  quick: bool
  pretrain_steps: int
  finetune_steps: int
  eval_examples: int  # per evaluation split
  stem: str | None = None  # config.model.vision.stem of every run; None = bench's (patch)
  tags: bool = False  # pretrain with the demo's image tagging loss (config.data.tags)

  @property
  def name(self) -> str:
    return "quick" if self.quick else "bench"


def add_flags(parser, default_seeds="0,1,2"):
  """--quick, --seeds, --pretrain_steps, --finetune_steps, --eval_examples, --stem,
  --tags, --workdir."""
  parser.add_argument("--quick", action="store_true", help="tiny model, 1 seed, few steps")
  parser.add_argument(
    "--seeds", default=None, help=f"comma-separated (default {default_seeds}; quick 0)"
  )
  parser.add_argument(
    "--pretrain_steps",
    type=int,
    default=None,
    help=f"default configs/pretrain.py:bench's (quick {QUICK_STEPS})",
  )
  parser.add_argument(
    "--finetune_steps",
    type=int,
    default=None,
    help=f"default configs/finetune_vqa.py:bench's (quick {QUICK_STEPS})",
  )
  parser.add_argument(
    "--eval_examples",
    type=int,
    default=None,
    help=f"per split; default configs/finetune_vqa.py:bench's (quick {QUICK_EVAL_EXAMPLES})",
  )
  parser.add_argument(
    "--stem",
    default=None,
    choices=STEMS,
    help="config.model.vision.stem of every run (default bench's: patch, "
    "the paper's; the demo uses conv)",
  )
  parser.add_argument(
    "--tags",
    action="store_true",
    help="pretrain with the demo's image tagging loss (bench has none)",
  )
  parser.add_argument("--workdir", default=None, help="default: a fresh temporary folder")
  parser.set_defaults(default_seeds=default_seeds)


def choices(parser, flag: str, value: str, known) -> list[str]:
  """The comma-separated `value` of --`flag` as a list; a parser error names unknown items."""
  items = value.split(",")
  unknown = [item for item in items if item not in known]
  if unknown:
    parser.error(f"--{flag}: unknown {unknown}; choose from {list(known)}")
  return items


def from_args(args, prefix: str):
  """(Size, seeds, root folder) from the flags of `add_flags`."""
  ft = finetune_vqa.get_config("bench")
  size = Size(
    quick=args.quick,
    pretrain_steps=args.pretrain_steps
    or (QUICK_STEPS if args.quick else pretrain.get_config("bench").total_steps),
    finetune_steps=args.finetune_steps or (QUICK_STEPS if args.quick else ft.total_steps),
    eval_examples=args.eval_examples
    or (QUICK_EVAL_EXAMPLES if args.quick else ft.evals.val.num_examples),
    stem=args.stem,
    tags=args.tags,
  )
  seeds = [int(s) for s in (args.seeds or ("0" if args.quick else args.default_seeds)).split(",")]
  root = args.workdir or tempfile.mkdtemp(prefix=f"jarl_{prefix}_")
  return size, seeds, root


def apply_model(model_config, overrides: dict):
  """Updates each part (`vision`, `fusion`, ...) of a model config from a nested dict."""
  for part, values in overrides.items():
    model_config[part].update(values)


def configure(config, demo, model: dict, *, size: Size, seed: int, steps: int):
  """A bench config (pretraining or fine-tuning) at `size`, with the setting's model
  overrides, seed and length; `demo` is the same config at the demo size."""
  if size.quick:
    apply_model(config.model, QUICK_MODEL)
    config.data.update(image_size=32, text_len=16, target_len=16)
    config.global_batch_size = 8
    config.log_every_steps = steps
  if size.stem:
    config.model.vision.stem = size.stem
  if size.tags:  # the demo's tag head; its loss where the demo has it (pretraining)
    config.data.tags, config.losses.tag_weight = demo.data.tags, demo.losses.tag_weight
  apply_model(config.model, model)
  config.seed = seed
  config.total_steps = steps
  # A tenth of the run, at most the demo's warmup (bench's own steps give bench's warmup).
  config.optimizer.warmup_steps = min(demo.optimizer.warmup_steps, max(steps // 10, 1))
  config.ckpt_every_steps = steps
  return config


def run_dirs(root: str, name: str, seed: int) -> tuple[str, str]:
  """(pretraining workdir, fine-tuning workdir) of one run."""
  return tuple(os.path.join(root, f"{name}_seed{seed}_{kind}") for kind in ("pre", "ft"))


def run_one(name: str, seed: int, *, size: Size, root: str, model: dict, edit_pretrain=None):
  """Pretrain + fine-tune one setting; returns (result, fine-tune config, pretrain config).

  model: overrides for both configs (the checkpoint must load into the fine-tuned model).
  edit_pretrain: optional fn(config) -> None for pretraining-only changes (losses, data,
  sampling policy), applied after the size and model.
  result: val/heldout accuracy and exact match of the final evaluation, and the seconds
  each phase took.
  """
  pre_dir, ft_dir = run_dirs(root, name, seed)
  pre = configure(
    pretrain.get_config("bench"),
    pretrain.get_config("demo"),
    model,
    size=size,
    seed=seed,
    steps=size.pretrain_steps,
  )
  if edit_pretrain is not None:
    edit_pretrain(pre)
  start = time.time()
  train.train_and_evaluate(pre, pre_dir)
  pre_seconds = time.time() - start

  steps = size.finetune_steps
  ft = configure(
    finetune_vqa.get_config("bench"),
    finetune_vqa.get_config("demo"),
    model,
    size=size,
    seed=seed,
    steps=steps,
  )
  ft.init_from = pre_dir
  for split in ft.evals:
    ft.evals[split]["num_examples"] = size.eval_examples
    ft.evals[split]["every_steps"] = steps
    if size.quick:
      ft.evals[split]["batch_size"] = 16
  start = time.time()
  train.train_and_evaluate(ft, ft_dir)
  ft_seconds = time.time() - start
  final = {}
  for record in metrics_writer.read_jsonl(ft_dir):
    if record.get("step") == steps:
      final.update(record)
  out = dict(pretrain_seconds=pre_seconds, finetune_seconds=ft_seconds)
  for key in RESULT_KEYS:
    split, metric = key.split("_", 1)
    if f"{split}/{metric}" not in final:
      raise RuntimeError(f"{ft_dir}: no {split}/{metric} at step {steps} in metrics.jsonl")
    out[key] = float(final[f"{split}/{metric}"])
  return out, ft, pre


def mean_std(per_seed: list[dict], keys=RESULT_KEYS) -> dict:
  """{key_mean, key_std} over seeds (sample std, ddof=1; 0 for one seed)."""
  out = {}
  for key in keys:
    values = np.array([r[key] for r in per_seed], np.float64)
    out[f"{key}_mean"] = float(values.mean())
    out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  return out


def forward_gflops(config) -> float:
  """XLA-counted forward GFLOPs per example at batch 1 (compile only)."""
  return flops.measure(config, batch_size=1)["forward_gflops_per_example"]


def pretrain_train_gflops(config) -> float:
  """GFLOPs per example of the value and gradient of the pretraining objective (batch 8,
  train=True): jarl.losses' objective, so every auxiliary loss that is on (ViCHA's text
  pass over the caption and its masked second ViT pass, tagging) is counted."""
  return flops.measure(config, batch_size=8)["train_gflops_per_example"]


def print_run(name: str, seed: int, result: dict):
  print(
    f"{name:18s} seed {seed}: val {result['val_accuracy']:.3f} heldout "
    f"{result['heldout_accuracy']:.3f} ({result['pretrain_seconds']:.0f} s + "
    f"{result['finetune_seconds']:.0f} s)",
    flush=True,
  )
