r"""JARL against its siblings on `shapes`: pretrain, fine-tune VQA, accuracy and GFLOPs.

    python -m benchmarks.method_comparison                  # bench size, seeds 0 1 2
    python -m benchmarks.method_comparison --quick          # smoke: tiny model, 1 seed, a few steps
    python -m benchmarks.method_comparison --methods=jarl,concat --seeds=0 --workdir=/tmp/cmp

Methods (same towers, decoder and data; only the named options differ):
  jarl         joint adaptive fusion (configs/pretrain.py:bench)
  jarl_elip    + ELIP text-guided vision-token pruning in the ViT (model.vision.token_pruning=elip)
  concat_elip  concat fusion + ELIP
  jarl_vicha   JARL pretrained with ViCHA's hierarchical contrastive + MIM losses
               (config.model.vicha / config.losses; fine-tuning uses the plain JARL model)
  concat       the concatenation baseline

For every method and seed, benchmarks.shapes_runs's run: pretrain the demo model, then
fine-tune VQA from that checkpoint and read the VQA accuracy on shapes:validation and on
the compositional shapes:heldout split from the fine-tuning run's final evaluation.
Default size is shapes_runs' `bench` (the demo model, shorter training; --pretrain_steps,
--finetune_steps, --eval_examples override it): 5 methods x 3 seeds = 15 runs of ~3 min,
~45 min on 2 idle CPU cores (jarl_vicha's pretraining step costs ~1.5x the others').
GFLOPs/example: XLA-counted forward of the fine-tuned model (jarl.tools.flops.measure, batch
1); pretrain_train_gflops_per_example: the XLA-counted forward + backward of the
*pretraining* loss, auxiliary losses included (jarl.tools.flops costs the decoder loss only, so
ViCHA's extra text pass over the caption and its masked second ViT pass show up here
alone). Prints a table; the last line is one JSON object with every run and the
per-method mean and standard deviation over seeds.
"""

import argparse

from benchmarks import record, shapes_runs

# Model overrides shared by pretraining and fine-tuning (the checkpoint must load).
ARCHITECTURES = {
  "jarl": dict(fusion=dict(type="jarl"), vision=dict(token_pruning="none")),
  "jarl_elip": dict(fusion=dict(type="jarl"), vision=dict(token_pruning="elip")),
  "concat_elip": dict(fusion=dict(type="concat"), vision=dict(token_pruning="elip")),
  "jarl_vicha": dict(fusion=dict(type="jarl"), vision=dict(token_pruning="none")),
  "concat": dict(fusion=dict(type="concat"), vision=dict(token_pruning="none")),
}
# Pretraining-only auxiliary losses. Demo taps are vision (2, 4), text (1, 2): align the
# middle and the top of both towers. Weights are ours (ViCHA sums its losses unweighted;
# MIM's pixel MSE is on a different scale, so it gets half).
PRETRAIN_EXTRAS = {
  "jarl_vicha": dict(
    vicha=dict(contrastive_depths=((2, 1), (4, 2)), mim_ratio=0.25),
    losses=dict(contrastive_weight=1.0, mim_weight=0.5),
  ),
}
# The quick model's towers have 2 layers: align at depths 1 and 2.
QUICK_PRETRAIN_EXTRAS = {"jarl_vicha": dict(vicha=dict(contrastive_depths=((1, 1), (2, 2))))}


def pretrain_extras(method, quick):
  """fn(config) adding the method's pretraining-only losses, or None."""
  if method not in PRETRAIN_EXTRAS:
    return None

  def edit(config):
    extras = PRETRAIN_EXTRAS[method]
    config.model.vicha.update(extras["vicha"])
    config.losses.update(extras["losses"])
    if quick:
      config.model.vicha.update(QUICK_PRETRAIN_EXTRAS[method]["vicha"])

  return edit


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--methods", default=",".join(ARCHITECTURES))
  shapes_runs.add_flags(parser)
  args = parser.parse_args()
  methods = shapes_runs.choices(parser, "methods", args.methods, ARCHITECTURES)
  size, seeds, root = shapes_runs.from_args(args, "method_comparison")

  runs, summary = [], {}
  for method in methods:
    per_seed, ft_config, pre_config = [], None, None
    for seed in seeds:
      result, ft_config, pre_config = shapes_runs.run_one(
        method,
        seed,
        size=size,
        root=root,
        model=ARCHITECTURES[method],
        edit_pretrain=pretrain_extras(method, size.quick),
      )
      runs.append(dict(method=method, seed=seed, **result))
      per_seed.append(result)
      shapes_runs.print_run(method, seed, result)
    summary[method] = dict(
      forward_gflops_per_example=shapes_runs.forward_gflops(ft_config),
      pretrain_train_gflops_per_example=shapes_runs.pretrain_train_gflops(pre_config),
      **shapes_runs.mean_std(per_seed),
    )

  print(
    f"\n{'method':12s} {'val acc':>15s} {'heldout acc':>15s} {'GFLOPs/ex':>10s} "
    f"{'pretrain step GFLOPs/ex':>24s}"
  )
  for method, s in summary.items():
    print(
      f"{method:12s} {s['val_accuracy_mean']:7.3f} ± {s['val_accuracy_std']:.3f} "
      f"{s['heldout_accuracy_mean']:7.3f} ± {s['heldout_accuracy_std']:.3f} "
      f"{s['forward_gflops_per_example']:10.4f} "
      f"{s['pretrain_train_gflops_per_example']:24.4f}"
    )
  record.emit(
    "method_comparison",
    dict(
      config=size.name,
      seeds=seeds,
      pretrain_steps=size.pretrain_steps,
      finetune_steps=size.finetune_steps,
      eval_examples=size.eval_examples,
      methods=summary,
      runs=runs,
    ),
    args,
  )


if __name__ == "__main__":
  main()
