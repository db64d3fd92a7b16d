r"""How FLOPs and step time grow with image resolution and text length, JARL vs concat.

    python -m benchmarks.scaling           # resolutions 64..512 px, text 16..256 tokens
    python -m benchmarks.scaling --quick   # CI smoke: two points per axis, FLOPs + 1 timed step

Uses the demo model (the growth exponents, not the absolute figures, are the point).
Concat fusion attends over all Nv + Nt tokens, so its cost grows faster than JARL's, whose
fusion always works on M joint tokens. Fitted exponents are slopes of log(cost) against
log(size). Writes scaling.png next to --out; the last line is one JSON object.
"""

import argparse
import os

import jax
import numpy as np

from benchmarks import record
from benchmarks.step_timer import time_train_step
from configs import pretrain
from jarl.tools import flops


def _config(fusion, image_size, text_len, batch_size):
  config = pretrain.get_config("demo")
  config.model.fusion.type = fusion
  config.model.vision.image_size = config.data.image_size = image_size
  config.model.text.max_len = config.data.text_len = text_len
  # The batch splits over every device of the data axis: round it up to a multiple of
  # their count (8 fake CPU devices under the tests' XLA_FLAGS make batch 2 into 8).
  devices = jax.device_count()
  config.global_batch_size = -(-batch_size // devices) * devices
  return config


def _slope(x, y):
  return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--steps", type=int, default=5)
  # Batch 2: at 512 px (4096 patches) a batch-8 train step of concat needs ~31 GB of host
  # memory, more than a 24 GiB machine has; the exponents only need one fixed batch size.
  parser.add_argument("--batch_size", type=int, default=2)
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args()
  resolutions = [64, 128] if args.quick else [64, 128, 256, 512]
  text_lengths = [16, 64] if args.quick else [16, 32, 64, 128, 256]
  steps = 1 if args.quick else args.steps
  axes = {"image_size": [(r, 24) for r in resolutions], "text_len": [(64, t) for t in text_lengths]}
  results = {}
  for fusion in ("jarl", "concat"):
    for axis, points in axes.items():
      rows = []
      for image_size, text_len in points:
        config = _config(fusion, image_size, text_len, args.batch_size)
        gflops = flops.measure(config, batch_size=1)["forward_gflops_per_example"]
        seconds, _ = time_train_step(config, steps=steps, warmup=1)
        rows.append(
          dict(
            image_size=image_size, text_len=text_len, forward_gflops=gflops, step_ms=1e3 * seconds
          )
        )
        print(
          f"{fusion:7s} {axis:10s} {image_size:4d}px {text_len:4d} tokens "
          f"{gflops:9.3f} GFLOPs/example {1e3 * seconds:9.1f} ms/step"
        )
      x = [r[axis] for r in rows]
      results[f"{fusion}/{axis}"] = dict(
        points=rows,
        flops_exponent=_slope(x, [r["forward_gflops"] for r in rows]),
        time_exponent=_slope(x, [r["step_ms"] for r in rows]),
      )
  os.makedirs(args.out, exist_ok=True)
  plot = os.path.join(args.out, "scaling.png")
  _plot(results, plot)
  record.emit(
    "scaling",
    dict(
      plot=plot,
      exponents={
        k: dict(flops=v["flops_exponent"], time=v["time_exponent"]) for k, v in results.items()
      },
      results=results,
    ),
    args,
  )


def _plot(results, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, axis, label in zip(
    axes, ("image_size", "text_len"), ("image resolution (px)", "text length (tokens)")
  ):
    for fusion in ("jarl", "concat"):
      rows = results[f"{fusion}/{axis}"]["points"]
      ax.loglog(
        [r[axis] for r in rows],
        [r["forward_gflops"] for r in rows],
        "o-",
        label=f"{fusion} (exp {results[f'{fusion}/{axis}']['flops_exponent']:.2f})",
      )
    ax.set_xlabel(label)
    ax.set_ylabel("forward GFLOPs / example")
    ax.legend()
  fig.suptitle("demo model: cost growth, JARL vs concat fusion")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


if __name__ == "__main__":
  main()
