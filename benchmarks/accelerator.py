r"""The `base` train step in bfloat16 on this machine's accelerator: step time, MFU.

    python -m benchmarks.accelerator                          # base, bf16, 128 per device
    python -m benchmarks.accelerator --per_device_batch=16    # chips under 40 GiB: fewer
    python -m benchmarks.accelerator --quick                  # smoke: tiny, 2 steps

The train step is the trainer's own (`benchmarks.step_timer.time_train_step`: sharded over
every device on `config.mesh`, donated, median of the timed steps after compilation), on
synthetic batches of `per_device_batch` x devices examples. FLOPs per step come from XLA's
cost analysis of that compiled step, all devices together; XLA counts every op it lowers
(softmax, norms, the optimizer's update), not only the model's matmuls. MFU = FLOPs per
step / step seconds / (devices x the chip's dense bf16 peak, step_timer.PEAK_BF16 matched
on `jax.devices()[0].device_kind`); an unknown chip gives `mfu` null and
`mfu_note` says why. `utilization` (step FLOP/s over the dense-matmul FLOP/s this process
reaches, as in step_throughput) is there whatever the chip.

`attention` says how the model attends (jarl/models/layers.py) and lists the custom calls
in the lowered forward program: none means XLA built attention from dots and a softmax,
a cuDNN / Pallas kernel would show there.

Not for CI on an accelerator (a paper-scale compile and run). Only a full run on a GPU or
TPU writes docs/results/accelerator.json; --quick and CPU runs print and record nothing.
The last line is one JSON object.
"""

import argparse
import re
import sys

import jax

from benchmarks import record
from benchmarks.step_timer import matmul_flops_per_sec, peak_bf16, time_train_step
from configs import pretrain
from jarl import batch as batch_lib
from jarl.models import config as config_lib
from jarl.models import model as model_lib
from jarl.tools import flops as flops_lib

# What jarl/models/layers.py runs; no config key switches it. jax resolves
# jax.nn.dot_product_attention's implementation=None to its XLA lowering.
ATTENTION = dict(
  towers_and_fusion="jax.nn.dot_product_attention, implementation=None (XLA)",
  decoder="einsum with a float32 softmax (layers.attend)",
  config_switch=None,
)


def custom_calls(config, batch_size: int) -> list[str]:
  """Custom-call targets of the model's lowered forward program (lowered, not compiled)."""
  model = model_lib.build(config)
  batch = batch_lib.abstract_batch(config, batch_size)
  params = flops_lib.abstract_model_params(model, batch)
  forward = jax.jit(lambda p, b: model.apply({"params": p}, b["image"], b["text"], b["target"]))
  text = forward.lower(params, batch).as_text()
  return sorted(set(re.findall(r'custom_call @"?([^"\s(]+)', text)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="base", choices=pretrain.VARIANTS)
  parser.add_argument("--dtype", default="bfloat16", choices=("auto", *config_lib.DTYPES))
  # Estimated from paper_tables' peak-memory record (16 per device, float32; activations
  # scaled by batch, halved for bf16) to fit a 40 GiB chip; not yet measured on one.
  parser.add_argument("--per_device_batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--quick", action="store_true", help="tiny, 2 per device, 2 steps")
  args = parser.parse_args()
  variant = "tiny" if args.quick else args.variant
  per_device = 2 if args.quick else args.per_device_batch
  steps = 2 if args.quick else args.steps
  devices = jax.devices()
  kind = devices[0].device_kind
  peak, note = peak_bf16(devices[0])

  config = pretrain.get_config(variant)
  config.model.dtype = args.dtype
  config.global_batch_size = per_device * len(devices)
  seconds, step_flops = time_train_step(config, steps=steps)
  achieved = step_flops / seconds
  result = dict(
    variant=variant,
    dtype=config_lib.ModelConfig.from_config(config).dtype,
    device_kind=kind,
    devices=len(devices),
    global_batch=config.global_batch_size,
    steps=steps,
    step_ms=1e3 * seconds,
    examples_per_sec=config.global_batch_size / seconds,
    gflops_per_step=step_flops / 1e9,
    achieved_tflops_per_sec=achieved / 1e12,
    peak_tflops_per_device=peak / 1e12 if peak else None,
    mfu=achieved / (peak * len(devices)) if peak else None,
    mfu_note=note,
    utilization=achieved / (matmul_flops_per_sec() * len(devices)),
    attention=dict(ATTENTION, custom_calls=custom_calls(config, per_device)),
  )
  mfu = f"{result['mfu']:.3f}" if peak else f"null ({note})"
  print(
    f"{variant} {result['dtype']} on {len(devices)} x {kind}: {result['step_ms']:.1f} ms/step, "
    f"{result['examples_per_sec']:.1f} examples/s, "
    f"{result['achieved_tflops_per_sec']:.3g} TFLOP/s, MFU {mfu}"
  )
  on_cpu = devices[0].platform == "cpu"
  if on_cpu:
    print("no accelerator: nothing recorded", file=sys.stderr)
  # --quick and CPU runs print the JSON line and record nothing.
  record.emit("accelerator", result, args, config=config, save=not on_cpu)


if __name__ == "__main__":
  main()
