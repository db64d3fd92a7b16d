r"""FLOPs and parameters of every fusion type and reducer, measured by XLA.

    python -m benchmarks.flops            # the `base` config (~3 min on 2 CPU cores)
    python -m benchmarks.flops --quick    # the `demo` config (seconds)

Prints a table and, as the last line, one JSON object with every figure and the
`jarl_over_concat` forward-FLOPs ratio (the paper's claim is <= 0.67).
"""

import argparse

from benchmarks import record
from configs import pretrain
from jarl.tools import flops

SETTINGS = (
  ("jarl", dict(type="jarl", reducer="tokenlearner_v11")),
  ("jarl_tokenlearner_v1", dict(type="jarl", reducer="tokenlearner_v1")),
  ("concat", dict(type="concat")),
  ("cross_attention", dict(type="cross_attention")),
)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="demo config instead of base")
  args = parser.parse_args()
  variant = "demo" if args.quick else "base"
  results = {}
  for name, fusion in SETTINGS:
    config = pretrain.get_config(variant)
    config.model.fusion.update(fusion)
    r = flops.measure(config, batch_size=1)
    results[name] = dict(
      forward_gflops=r["forward_gflops_per_example"],
      train_gflops=r["train_gflops_per_example"],
      params=r["params"],
      fusion_gflops=r["parts_gflops_per_example"]["fusion"],
      decoder_gflops=r["parts_gflops_per_example"]["decoder"],
    )
  print(f"{variant}: {'setting':22s} {'fwd GFLOPs':>11s} {'train GFLOPs':>13s} {'params':>13s}")
  for name, r in results.items():
    print(
      f"{variant}: {name:22s} {r['forward_gflops']:11.3f} {r['train_gflops']:13.3f} "
      f"{r['params']:13,d}"
    )
  ratio = results["jarl"]["forward_gflops"] / results["concat"]["forward_gflops"]
  record.emit(
    f"flops_{variant}",
    dict(
      config=variant,
      settings=results,
      jarl_over_concat=ratio,
      train_jarl_over_concat=results["jarl"]["train_gflops"] / results["concat"]["train_gflops"],
    ),
    args,
  )


if __name__ == "__main__":
  main()
