r"""Fusion types on `shapes`: JARL vs concat vs cross-attention, accuracy and FLOPs.

    python -m benchmarks.fusion_quality          # bench size, seeds 0 1 2 (~30 min, 2 idle cores)
    python -m benchmarks.fusion_quality --quick  # smoke: tiny model, 1 seed, a few steps
    python -m benchmarks.fusion_quality --fusions=jarl,concat --seeds=0,1 --workdir=/tmp/fq

Only `model.fusion.type` differs (same towers, decoder, data, steps and seeds). For every
fusion and seed, benchmarks.shapes_runs's run: pretrain the demo model, fine-tune VQA,
read the final VQA accuracy on shapes:validation and on the compositional shapes:heldout
split. Default size: shapes_runs' `bench`, 3 fusions x 3 seeds = 9 runs of ~3 min, plus
~1 min per fusion to compile the base config for its FLOPs: ~30 min on 2 idle CPU cores.

FLOPs: XLA-counted forward GFLOPs per example (jarl.tools.flops.measure, batch 1, compile
only) of the trained model (`forward_gflops_demo`) and of configs/pretrain.py:base with the
same fusion type (`forward_gflops_base`; --quick measures configs/pretrain.py:demo there
instead, so the smoke run stays short). The paper claims ~33% fewer FLOPs than concat
fusion at its scale, so `claim_flops_at_most_0.67` checks the base ratio (the demo ratio
is reported beside it); `claim_accuracy_not_below_concat` checks JARL's mean validation
accuracy against concat's. Prints a table; the last line is one JSON object.
"""

import argparse

from benchmarks import record, shapes_runs
from configs import pretrain

FUSIONS = ("jarl", "concat", "cross_attention")
FLOPS_CLAIM = 0.67  # the paper: ~33% fewer FLOPs than concatenation fusion


def base_forward_gflops(fusion: str, variant: str) -> float:
  config = pretrain.get_config(variant)
  config.model.fusion.type = fusion
  return shapes_runs.forward_gflops(config)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--fusions", default=",".join(FUSIONS))
  shapes_runs.add_flags(parser)
  args = parser.parse_args()
  fusions = shapes_runs.choices(parser, "fusions", args.fusions, FUSIONS)
  size, seeds, root = shapes_runs.from_args(args, "fusion_quality")
  base_variant = "demo" if size.quick else "base"

  runs, summary = [], {}
  for fusion in fusions:
    per_seed, ft_config = [], None
    for seed in seeds:
      result, ft_config, _ = shapes_runs.run_one(
        fusion, seed, size=size, root=root, model=dict(fusion=dict(type=fusion))
      )
      runs.append(dict(method=fusion, seed=seed, **result))
      per_seed.append(result)
      shapes_runs.print_run(fusion, seed, result)
    summary[fusion] = dict(
      forward_gflops_demo=shapes_runs.forward_gflops(ft_config),
      forward_gflops_base=base_forward_gflops(fusion, base_variant),
      **shapes_runs.mean_std(per_seed),
    )

  ratios, claims = {}, {}
  if "jarl" in summary and "concat" in summary:
    jarl, concat = summary["jarl"], summary["concat"]
    for scale in ("demo", "base"):
      ratios[f"jarl_over_concat_flops_{scale}"] = (
        jarl[f"forward_gflops_{scale}"] / concat[f"forward_gflops_{scale}"]
      )
    claims = {
      f"claim_flops_at_most_{FLOPS_CLAIM}": ratios["jarl_over_concat_flops_base"] <= FLOPS_CLAIM,
      f"claim_flops_at_most_{FLOPS_CLAIM}_demo": ratios["jarl_over_concat_flops_demo"]
      <= FLOPS_CLAIM,
      "claim_accuracy_not_below_concat": jarl["val_accuracy_mean"] >= concat["val_accuracy_mean"],
    }

  print(
    f"\n{'fusion':16s} {'val acc':>15s} {'heldout acc':>15s} {'GFLOPs/ex ' + size.name:>16s} "
    f"{'GFLOPs/ex ' + base_variant:>16s}"
  )
  for fusion, s in summary.items():
    print(
      f"{fusion:16s} {s['val_accuracy_mean']:7.3f} ± {s['val_accuracy_std']:.3f} "
      f"{s['heldout_accuracy_mean']:7.3f} ± {s['heldout_accuracy_std']:.3f} "
      f"{s['forward_gflops_demo']:16.4f} {s['forward_gflops_base']:16.3f}"
    )
  for key, value in {**ratios, **claims}.items():
    print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
  record.emit(
    "fusion_quality",
    dict(
      config=size.name,
      base_flops_config=f"configs/pretrain.py:{base_variant}",
      seeds=seeds,
      pretrain_steps=size.pretrain_steps,
      finetune_steps=size.finetune_steps,
      eval_examples=size.eval_examples,
      methods=summary,
      runs=runs,
      **ratios,
      **claims,
    ),
    args,
  )


if __name__ == "__main__":
  main()
