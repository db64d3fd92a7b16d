r"""Train-step throughput of JARL vs co-tokenization and concat at equal towers, here.

    python -m benchmarks.step_throughput                 # demo, batch 32, 5 rounds x 8 steps
    python -m benchmarks.step_throughput --variant=base  # paper-scale (accelerator)
    python -m benchmarks.step_throughput --quick         # CI smoke: tiny batch, 1 round x 3

The three fusions are compiled first and then timed in interleaved rounds (each round
times every fusion for `--steps` steps, in a rotated order), so a slow spell of the
machine falls on all three alike (timed one after another, four runs put jarl /
co-tokenization anywhere from 0.91 to 1.08). Each fusion's figure is the median over rounds of
its per-round median step; each speed ratio is the median of the per-round ratios, with
their smallest and largest beside it. `utilization` is the
step's achieved FLOP/s (XLA-counted, all devices) over the dense-matmul FLOP/s this process
reaches on one device times the device count, so it carries across machines; on a GPU/TPU
`mfu` is against the chips' bf16 peak (per device, times the count). The last line is one
JSON object.
"""

import argparse
import statistics

import jax

from benchmarks import record
from benchmarks.step_timer import (
  chip_peak,
  compile_train_step,
  matmul_flops_per_sec,
  median_seconds,
)
from configs import pretrain


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="demo", choices=pretrain.VARIANTS)
  parser.add_argument("--batch_size", type=int, default=None)
  parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  steps, rounds = (3, 1) if args.quick else (args.steps, args.rounds)
  # The step runs on every device (compile_train_step's mesh); the matmul and peak are one's.
  devices = jax.device_count()
  matmul = matmul_flops_per_sec() * devices
  kind, peak = chip_peak()
  peak = peak * devices if peak else None
  fusions = ("jarl", "co_tokenization", "concat")
  batch = args.batch_size or (
    8 if args.quick else pretrain.get_config(args.variant).global_batch_size
  )
  step_fns, step_flops = {}, {}
  # co_tokenization with the demo's earlier fusion settings where the variant is the demo
  # (8 joint tokens, the decoder reading them): the demo's fusion until it became jarl.
  for fusion in fusions:
    config = pretrain.get_config(args.variant)
    config.model.fusion.type = fusion
    if fusion == "co_tokenization" and args.variant == "demo":
      config.model.fusion.update(num_tokens=8, memory="fused")
    config.global_batch_size = batch
    step_fns[fusion], step_flops[fusion] = compile_train_step(config)
    for _ in range(2):  # warm-up: the first calls allocate and settle
      step_fns[fusion]()
  per_round = {f: [] for f in fusions}
  for r in range(rounds):
    for fusion in fusions[r % 3 :] + fusions[: r % 3]:
      per_round[fusion].append(median_seconds(step_fns[fusion], steps))
  results = {}
  for fusion in fusions:
    seconds, flops = statistics.median(per_round[fusion]), step_flops[fusion]
    results[fusion] = dict(
      examples_per_sec=batch / seconds,
      step_ms=1e3 * seconds,
      gflops_per_step=flops / 1e9,
      achieved_gflops_per_sec=flops / seconds / 1e9,
      utilization=flops / seconds / matmul,
      mfu=(flops / seconds / peak) if peak else None,
    )
    print(
      f"{fusion:15s} {results[fusion]['examples_per_sec']:9.1f} examples/s "
      f"{results[fusion]['step_ms']:8.1f} ms/step  utilization "
      f"{results[fusion]['utilization']:.3f}"
    )

  def speed_ratio(other):
    """jarl's speed over `other`'s: median, min and max over the rounds."""
    ratios = [o / j for j, o in zip(per_round["jarl"], per_round[other], strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)

  over_concat, over_co_tok = speed_ratio("concat"), speed_ratio("co_tokenization")
  print(
    f"jarl / concat speed {over_concat[0]:.3f} ({over_concat[1]:.3f}-{over_concat[2]:.3f}), "
    f"jarl / co_tokenization {over_co_tok[0]:.3f} ({over_co_tok[1]:.3f}-{over_co_tok[2]:.3f}) "
    f"over {rounds} rounds"
  )
  record.emit(
    "step_throughput" if args.variant == "demo" else f"step_throughput_{args.variant}",
    dict(
      variant=args.variant,
      device=kind,
      devices=devices,
      steps=steps,
      rounds=rounds,
      matmul_gflops_per_sec=matmul / 1e9,
      settings=results,
      jarl_over_concat_speed=over_concat[0],
      jarl_over_concat_speed_range=list(over_concat[1:]),
      jarl_over_co_tokenization_speed=over_co_tok[0],
      jarl_over_co_tokenization_speed_range=list(over_co_tok[1:]),
    ),
    args,
  )


if __name__ == "__main__":
  main()
