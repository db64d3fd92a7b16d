r"""JARL against its siblings on `shapes`: pretrain, fine-tune VQA, accuracy and GFLOPs.

    python benchmarks/method_comparison.py                  # demo size, seeds 0 1 2 (hours on 2 CPU cores)
    python benchmarks/method_comparison.py --quick          # smoke: tiny model, 1 seed, a few steps
    python benchmarks/method_comparison.py --methods=jarl,concat --seeds=0 --workdir=/tmp/cmp

Methods (same towers, decoder and data; only the named options differ):
  jarl         joint adaptive fusion (configs/pretrain.py:demo)
  jarl_elip    + ELIP text-guided vision-token pruning in the ViT (model.vision.reducer=elip)
  concat_elip  concat fusion + ELIP
  jarl_vicha   JARL pretrained with ViCHA's hierarchical contrastive + MIM losses
               (config.model.vicha / config.losses; fine-tuning uses the plain JARL model)
  concat       the concatenation baseline

For every method and seed: pretrain (configs/pretrain.py:demo, captions + prefix-LM),
then fine-tune VQA from that checkpoint (configs/finetune_vqa.py:demo) and read the VQA
accuracy on shapes:validation and on the compositional shapes:heldout split from the
fine-tuning run's final evaluation. GFLOPs/example: XLA-counted forward of the
fine-tuned model (jarl.flops.measure, batch 1); pretrain_train_gflops_per_example: the
XLA-counted forward + backward of the *pretraining* loss, auxiliary losses included
(jarl.flops costs the decoder loss only, so ViCHA's extra text pass over the caption and
its masked second ViT pass show up here alone). Prints a table; the last line is one
JSON object with every run and the per-method mean and standard deviation over seeds.
"""
import argparse
import json
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

# Model overrides shared by pretraining and fine-tuning (the checkpoint must load).
ARCHITECTURES = {
    "jarl": dict(fusion=dict(type="jarl"), vision=dict(reducer="none")),
    "jarl_elip": dict(fusion=dict(type="jarl"), vision=dict(reducer="elip")),
    "concat_elip": dict(fusion=dict(type="concat"), vision=dict(reducer="elip")),
    "jarl_vicha": dict(fusion=dict(type="jarl"), vision=dict(reducer="none")),
    "concat": dict(fusion=dict(type="concat"), vision=dict(reducer="none")),
}
# Pretraining-only auxiliary losses. Demo taps are vision (2, 4), text (1, 2): align the
# middle and the top of both towers. Weights are ours (ViCHA sums its losses unweighted;
# MIM's pixel MSE is on a different scale, so it gets half).
PRETRAIN_EXTRAS = {
    "jarl_vicha": dict(vicha=dict(contrastive_depths=((2, 1), (4, 2)), mim_ratio=0.25),
                       losses=dict(contrastive_weight=1.0, mim_weight=0.5)),
}
# --quick: a tiny model and a few steps, to check the whole chain runs (numbers meaningless).
QUICK_MODEL = dict(
    vision=dict(image_size=32, width=32, depth=2, mlp_dim=64, num_heads=2, elip_layers=(1,),
                elip_keep=(0.75,)),
    text=dict(max_len=16, width=32, depth=2, mlp_dim=64, num_heads=2),
    fusion=dict(width=32, num_heads=2, mlp_dim=64, num_tokens=4, vision_taps=(1, 2),
                text_taps=(1, 2)),
    decoder=dict(width=32, depth=1, num_heads=2, mlp_dim=64, max_len=16),
    vicha=dict(embed_dim=16))
QUICK_PRETRAIN_EXTRAS = {"jarl_vicha": dict(vicha=dict(contrastive_depths=((1, 1), (2, 2))))}


def _apply_model(model_config, overrides):
  for part, values in overrides.items():
    model_config[part].update(values)


def configure(config, method, *, quick, seed, steps, pretraining):
  """Sets the method's model (and, when pretraining, its losses), size, seed and steps."""
  if quick:
    _apply_model(config.model, QUICK_MODEL)
    config.data.update(image_size=32, text_len=16, target_len=16)
    config.global_batch_size = 8
    config.log_every_steps = steps
  _apply_model(config.model, ARCHITECTURES[method])
  if pretraining and method in PRETRAIN_EXTRAS:
    extras = PRETRAIN_EXTRAS[method]
    config.model.vicha.update(extras["vicha"])
    config.losses.update(extras["losses"])
    if quick:
      config.model.vicha.update(QUICK_PRETRAIN_EXTRAS[method]["vicha"])
  config.seed = seed
  config.total_steps = steps
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, max(steps // 10, 1))
  config.ckpt_every_steps = steps
  return config


def pretrain_train_gflops(config) -> float:
  """GFLOPs per example of value_and_grad of the pretraining objective (batch 8, train=True)."""
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


def run_one(method, seed, *, quick, pretrain_steps, finetune_steps, eval_examples, root):
  """Pretrain + fine-tune; returns the fine-tuning run's final accuracies and timings."""
  pre_dir, ft_dir = (os.path.join(root, f"{method}_seed{seed}_{kind}") for kind in ("pre", "ft"))
  pre = configure(pretrain.get_config("demo"), method, quick=quick, seed=seed,
                  steps=pretrain_steps, pretraining=True)
  pre.evals = {}  # the fine-tuned accuracy is the measure; skip pretraining evals
  start = time.time()
  train.train_and_evaluate(pre, pre_dir)
  pre_seconds = time.time() - start

  ft = configure(finetune_vqa.get_config("demo"), method, quick=quick, seed=seed,
                 steps=finetune_steps, pretraining=False)
  ft.init_from = pre_dir
  for name in ft.evals:
    ft.evals[name]["num_examples"] = eval_examples
    ft.evals[name]["every_steps"] = finetune_steps
    if quick:
      ft.evals[name]["batch_size"] = 16
  start = time.time()
  train.train_and_evaluate(ft, ft_dir)
  ft_seconds = time.time() - start
  final = {}
  for record in metrics_writer.read_jsonl(ft_dir):
    if record.get("step") == finetune_steps:
      final.update(record)
  out = dict(pretrain_seconds=pre_seconds, finetune_seconds=ft_seconds)
  for split in ("val", "heldout"):
    for metric in ("accuracy", "exact_match"):
      key = f"{split}/{metric}"
      if key not in final:
        raise RuntimeError(f"{ft_dir}: no {key} at step {finetune_steps} in metrics.jsonl")
      out[f"{split}_{metric}"] = float(final[key])
  return out, ft, pre


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny model, 1 seed, few steps")
  parser.add_argument("--methods", default=",".join(ARCHITECTURES))
  parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; quick 0)")
  parser.add_argument("--pretrain_steps", type=int, default=None)
  parser.add_argument("--finetune_steps", type=int, default=None)
  parser.add_argument("--eval_examples", type=int, default=None)
  parser.add_argument("--workdir", default=None, help="default: a fresh temporary folder")
  args = parser.parse_args()
  methods = args.methods.split(",")
  unknown = [m for m in methods if m not in ARCHITECTURES]
  if unknown:
    parser.error(f"--methods: unknown {unknown}; choose from {list(ARCHITECTURES)}")
  seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
  # Demo defaults: the configs' own lengths (1000 pretraining, 1500 fine-tuning steps).
  pretrain_steps = args.pretrain_steps or (6 if args.quick else pretrain.get_config("demo").total_steps)
  finetune_steps = args.finetune_steps or (6 if args.quick else finetune_vqa.get_config("demo").total_steps)
  eval_examples = args.eval_examples or (16 if args.quick else 1024)
  root = args.workdir or tempfile.mkdtemp(prefix="jarl_method_comparison_")

  runs, summary = [], {}
  for method in methods:
    per_seed, ft_config, pre_config = [], None, None
    for seed in seeds:
      result, ft_config, pre_config = run_one(method, seed, quick=args.quick, pretrain_steps=pretrain_steps,
                                  finetune_steps=finetune_steps, eval_examples=eval_examples,
                                  root=root)
      runs.append(dict(method=method, seed=seed, **result))
      per_seed.append(result)
      print(f"{method:12s} seed {seed}: val {result['val_accuracy']:.3f} heldout "
            f"{result['heldout_accuracy']:.3f} ({result['pretrain_seconds']:.0f} s + "
            f"{result['finetune_seconds']:.0f} s)", flush=True)
    gflops = flops.measure(ft_config.model, batch_size=1)["forward_gflops_per_example"]
    summary[method] = dict(forward_gflops_per_example=gflops,
                           pretrain_train_gflops_per_example=pretrain_train_gflops(pre_config))
    for key in ("val_accuracy", "heldout_accuracy", "val_exact_match", "heldout_exact_match"):
      values = np.array([r[key] for r in per_seed])
      summary[method][f"{key}_mean"] = float(values.mean())
      summary[method][f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0

  print(f"\n{'method':12s} {'val acc':>15s} {'heldout acc':>15s} {'GFLOPs/ex':>10s} "
        f"{'pretrain step GFLOPs/ex':>24s}")
  for method, s in summary.items():
    print(f"{method:12s} {s['val_accuracy_mean']:7.3f} ± {s['val_accuracy_std']:.3f} "
          f"{s['heldout_accuracy_mean']:7.3f} ± {s['heldout_accuracy_std']:.3f} "
          f"{s['forward_gflops_per_example']:10.4f} "
          f"{s['pretrain_train_gflops_per_example']:24.4f}")
  print(json.dumps(dict(config="quick" if args.quick else "demo", seeds=seeds,
                        pretrain_steps=pretrain_steps, finetune_steps=finetune_steps,
                        eval_examples=eval_examples, methods=summary, runs=runs),
                   sort_keys=True))


if __name__ == "__main__":
  main()
