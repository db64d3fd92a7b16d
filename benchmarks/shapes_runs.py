r"""Pretrain -> fine-tune VQA on `shapes`: the runner the accuracy benchmarks share.

One run of a setting and a seed: pretrain configs/pretrain.py:demo (its captions +
prefix-LM mixture unless the setting changes the data), then fine-tune VQA from that
checkpoint (configs/finetune_vqa.py:demo) and read the VQA accuracy on shapes:validation
(`val_*`) and on the compositional shapes:heldout split (`heldout_*`) from the
fine-tuning run's final evaluation.

Sizes (`Size`; every figure can be overridden by a flag, see `add_flags`):
  bench  the demo model as configs/pretrain.py:demo defines it when the script runs,
         but with the vision stem of --stem (default `patch`, the paper's linear patch
         embedding, with which the README's Results were measured; the demo itself now
         uses `conv`), trained for BENCH_PRETRAIN_STEPS + BENCH_FINETUNE_STEPS steps (the
         demo configs train 1000 + 3000): ~2.8 min a run on 2 idle CPU cores (concat
         fusion ~15% more), so that 3 settings x 3 seeds fit in half an hour.
  quick  QUICK_MODEL, a few steps, a few eval examples: checks the whole chain runs
         (the accuracies mean nothing).

Users: method_comparison.py, fusion_quality.py, data_efficiency.py.
"""
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import finetune_vqa, pretrain  # noqa: E402
from jarl import flops, losses, metrics_writer, train, vicha_losses  # noqa: E402
from jarl import train_step as train_step_lib  # noqa: E402
from jarl.models import model as model_lib  # noqa: E402
from jarl.models.vit import STEMS  # noqa: E402

# One bench run (jarl, seed 0, 400 + 600 steps) took 181 s + 232 s with three other
# training jobs on the 2 cores, ~2.2x slower than idle (pretraining 80 vs 188 examples/s):
# ~3.1 min idle, and 57.4% / 56.0% val / heldout VQA accuracy (the full demo schedule
# reaches 66.4% / 57.3%). 500 fine-tuning steps keep 9 runs (~2.8 min each) plus the
# FLOPs compiles of fusion_quality.py under 30 min.
BENCH_PRETRAIN_STEPS = 400
BENCH_FINETUNE_STEPS = 500
BENCH_EVAL_EXAMPLES = 1024  # per split; 1024 keeps one seed's accuracy within ~±1.5%
QUICK_STEPS = 6
QUICK_EVAL_EXAMPLES = 16
# --quick: a tiny model and a few steps, to check the whole chain runs (numbers meaningless).
QUICK_MODEL = dict(
    vision=dict(image_size=32, width=32, depth=2, mlp_dim=64, num_heads=2, elip_layers=(1,),
                elip_keep=(0.75,)),
    text=dict(max_len=16, width=32, depth=2, mlp_dim=64, num_heads=2),
    fusion=dict(width=32, num_heads=2, mlp_dim=64, num_tokens=4, vision_taps=(1, 2),
                text_taps=(1, 2)),
    decoder=dict(width=32, depth=1, num_heads=2, mlp_dim=64, max_len=16),
    vicha=dict(embed_dim=16))
RESULT_KEYS = ("val_accuracy", "heldout_accuracy", "val_exact_match", "heldout_exact_match")


@dataclasses.dataclass(frozen=True)
class Size:
  """How big one run is: model (quick = QUICK_MODEL, else the demo model) and lengths."""
  quick: bool
  pretrain_steps: int
  finetune_steps: int
  eval_examples: int  # per evaluation split
  stem: str = "patch"  # config.model.vision.stem of every run
  tags: bool = False  # the demo's image tagging loss (config.data.tags) in pretraining

  @property
  def name(self) -> str:
    return "quick" if self.quick else "demo"


def add_flags(parser, default_seeds="0,1,2"):
  """--quick, --seeds, --pretrain_steps, --finetune_steps, --eval_examples, --stem,
  --tags, --workdir."""
  parser.add_argument("--quick", action="store_true", help="tiny model, 1 seed, few steps")
  parser.add_argument("--seeds", default=None,
                      help=f"comma-separated (default {default_seeds}; quick 0)")
  parser.add_argument("--pretrain_steps", type=int, default=None,
                      help=f"default {BENCH_PRETRAIN_STEPS} (quick {QUICK_STEPS})")
  parser.add_argument("--finetune_steps", type=int, default=None,
                      help=f"default {BENCH_FINETUNE_STEPS} (quick {QUICK_STEPS})")
  parser.add_argument("--eval_examples", type=int, default=None,
                      help=f"per split; default {BENCH_EVAL_EXAMPLES} "
                      f"(quick {QUICK_EVAL_EXAMPLES})")
  parser.add_argument("--stem", default="patch", choices=STEMS,
                      help="config.model.vision.stem of every run (the demo uses conv; the "
                      "README's Results were measured with patch)")
  parser.add_argument("--tags", action="store_true",
                      help="pretrain with the demo's image tagging loss (off by default: the "
                      "README's Results were measured before the demo had it)")
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
  size = Size(
      quick=args.quick,
      pretrain_steps=args.pretrain_steps or (QUICK_STEPS if args.quick else BENCH_PRETRAIN_STEPS),
      finetune_steps=args.finetune_steps or (QUICK_STEPS if args.quick else BENCH_FINETUNE_STEPS),
      eval_examples=args.eval_examples or (QUICK_EVAL_EXAMPLES if args.quick
                                           else BENCH_EVAL_EXAMPLES),
      stem=args.stem, tags=args.tags)
  seeds = [int(s) for s in (args.seeds or ("0" if args.quick else args.default_seeds)).split(",")]
  root = args.workdir or tempfile.mkdtemp(prefix=f"jarl_{prefix}_")
  return size, seeds, root


def apply_model(model_config, overrides: dict):
  """Updates each part (`vision`, `fusion`, ...) of a model config from a nested dict."""
  for part, values in overrides.items():
    model_config[part].update(values)


def configure(config, model: dict, *, size: Size, seed: int, steps: int):
  """Sets size, the setting's model overrides, seed and length of a pretrain/fine-tune config."""
  if size.quick:
    apply_model(config.model, QUICK_MODEL)
    config.data.update(image_size=32, text_len=16, target_len=16)
    config.global_batch_size = 8
    config.log_every_steps = steps
  config.model.vision.stem = size.stem
  if not size.tags:
    config.model.num_tags, config.data.tags, config.losses.tag_weight = 0, (), 0.0
  apply_model(config.model, model)
  config.seed = seed
  config.total_steps = steps
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, max(steps // 10, 1))
  config.ckpt_every_steps = steps
  return config


def run_dirs(root: str, name: str, seed: int) -> tuple[str, str]:
  """(pretraining workdir, fine-tuning workdir) of one run."""
  return tuple(os.path.join(root, f"{name}_seed{seed}_{kind}") for kind in ("pre", "ft"))


def run_one(name: str, seed: int, *, size: Size, root: str, model: dict,
            edit_pretrain=None):
  """Pretrain + fine-tune one setting; returns (result, fine-tune config, pretrain config).

  model: overrides for both configs (the checkpoint must load into the fine-tuned model).
  edit_pretrain: optional fn(config) -> None for pretraining-only changes (losses, data,
  sampling policy), applied after the size and model.
  result: val/heldout accuracy and exact match of the final evaluation, and the seconds
  each phase took.
  """
  pre_dir, ft_dir = run_dirs(root, name, seed)
  pre = configure(pretrain.get_config("demo"), model, size=size, seed=seed,
                  steps=size.pretrain_steps)
  if edit_pretrain is not None:
    edit_pretrain(pre)
  pre.evals = {}  # the fine-tuned accuracy is the measure; skip pretraining evals
  start = time.time()
  train.train_and_evaluate(pre, pre_dir)
  pre_seconds = time.time() - start

  steps = size.finetune_steps
  ft = configure(finetune_vqa.get_config("demo"), model, size=size, seed=seed, steps=steps)
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


def forward_gflops(model_config) -> float:
  """XLA-counted forward GFLOPs per example at batch 1 (compile only)."""
  return flops.measure(model_config, batch_size=1)["forward_gflops_per_example"]


def pretrain_train_gflops(config) -> float:
  """GFLOPs per example of value_and_grad of the pretraining objective (batch 8, train=True).

  Auxiliary losses included: jarl.flops costs the decoder loss only, so ViCHA's text pass
  over the caption and its masked second ViT pass show up here alone.
  """
  model = model_lib.build(config.model)
  batch = model_lib.dummy_batch(config.model, 8)
  batch["mask"] = jnp.ones([8], bool)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
  params = nn.meta.unbox(jax.eval_shape(lambda b: model.init(
      {"params": jax.random.key(0)}, b["image"], b["text"], b["target"])["params"], abstract))
  weights = train_step_lib.aux_loss_weights(config)

  def objective(p, b):
    logits, out = model.apply({"params": p}, b["image"], b["text"], b["target"], train=True,
                              rngs={"dropout": jax.random.key(1), "mim": jax.random.key(2)})
    loss_sum, count = losses.token_cross_entropy(logits, b["target"], b["mask"])
    loss = jnp.sum(loss_sum) / jnp.maximum(jnp.sum(count), 1.0)
    if "contrastive" in weights:
      loss += weights["contrastive"] * vicha_losses.hierarchical_contrastive(out, b["mask"])
    if "mim" in weights:
      loss += weights["mim"] * vicha_losses.masked_image_modelling(out, b["mask"])
    return loss

  total, _ = flops.compiled_cost(jax.value_and_grad(objective), params, abstract)
  return total / 8 / 1e9


def print_run(name: str, seed: int, result: dict):
  print(f"{name:18s} seed {seed}: val {result['val_accuracy']:.3f} heldout "
        f"{result['heldout_accuracy']:.3f} ({result['pretrain_seconds']:.0f} s + "
        f"{result['finetune_seconds']:.0f} s)", flush=True)
