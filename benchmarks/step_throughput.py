r"""Train-step throughput of JARL vs co-tokenization and concat at equal towers, here.

    python -m benchmarks.step_throughput                 # demo model, batch 32, 20 timed steps
    python -m benchmarks.step_throughput --variant=base  # paper-scale (accelerator)
    python -m benchmarks.step_throughput --quick         # CI smoke: tiny batch, 3 steps

Each figure is the median of the timed steps after compilation. `utilization` is the
step's achieved FLOP/s (XLA-counted, all devices) over the dense-matmul FLOP/s this process
reaches on one device times the device count, so it carries across machines; on a GPU/TPU
`mfu` is against the chips' bf16 peak (per device, times the count). The last line is one
JSON object.
"""

import argparse

import jax

from benchmarks import record
from benchmarks.step_timer import chip_peak, matmul_flops_per_sec, time_train_step
from configs import pretrain


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="demo", choices=pretrain.VARIANTS)
  parser.add_argument("--batch_size", type=int, default=None)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  steps = 3 if args.quick else args.steps
  # The step runs on every device (time_train_step's mesh); the matmul and peak are one's.
  devices = jax.device_count()
  matmul = matmul_flops_per_sec() * devices
  kind, peak = chip_peak()
  peak = peak * devices if peak else None
  results = {}
  # co_tokenization with the demo's earlier fusion settings where the variant is the demo
  # (8 joint tokens, the decoder reading them): the demo's fusion until it became jarl.
  for fusion in ("jarl", "co_tokenization", "concat"):
    config = pretrain.get_config(args.variant)
    config.model.fusion.type = fusion
    if fusion == "co_tokenization" and args.variant == "demo":
      config.model.fusion.update(num_tokens=8, memory="fused")
    config.global_batch_size = args.batch_size or (8 if args.quick else config.global_batch_size)
    seconds, flops = time_train_step(config, steps=steps)
    results[fusion] = dict(
      examples_per_sec=config.global_batch_size / seconds,
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
  record.emit(
    "step_throughput" if args.variant == "demo" else f"step_throughput_{args.variant}",
    dict(
      variant=args.variant,
      device=kind,
      devices=devices,
      steps=steps,
      matmul_gflops_per_sec=matmul / 1e9,
      settings=results,
      jarl_over_concat_speed=results["jarl"]["examples_per_sec"]
      / results["concat"]["examples_per_sec"],
      jarl_over_co_tokenization_speed=results["jarl"]["examples_per_sec"]
      / results["co_tokenization"]["examples_per_sec"],
    ),
    args,
  )


if __name__ == "__main__":
  main()
