r"""Forward FLOPs per example by part (vision, text, fusion, decoder), by fusion type.

    python -m benchmarks.flops_parts          # base; ELIP on base; the demo's two stems
    python -m benchmarks.flops_parts --quick  # tiny, jarl and concat only: a smoke run

Compile only (`jarl.tools.flops.measure`, XLA's cost analysis; nothing runs), so the figures
do not depend on the machine's speed. It answers three questions the docs lean on:

  fusions          every fusion type at equal towers: where the forward FLOPs go (the
                   decoder's share, docs/design.md; Table 3's ratio, `paper_tables`)
  vision_pruning   ELIP's text-guided token pruning in the ViT against none (docs/methods.md)
  stem             the demo's conv stem against the paper's linear patch stem, at `demo`

The last line is one JSON object, also written to docs/results/flops_parts.json.
"""

import argparse

from benchmarks import record
from configs import pretrain
from jarl.tools import flops

FUSIONS = ("jarl", "concat", "perceiver", "co_tokenization", "cross_attention")


def gflops_by_part(config) -> dict:
  """GFLOPs per example of each part, the forward pass and the train step; parameters (M)."""
  r = flops.measure(config, batch_size=1)
  row = {f"{part}_gflops": g for part, g in r["parts_gflops_per_example"].items()}
  row.update(
    forward_gflops=r["forward_gflops_per_example"],
    train_gflops=r["train_gflops_per_example"],
    params_millions=r["params"] / 1e6,
  )
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  size, stem_size = ("tiny", "tiny") if args.quick else ("base", "demo")

  fusions = {}
  for fusion in FUSIONS[:2] if args.quick else FUSIONS:
    config = pretrain.get_config(size)
    config.model.fusion.type = fusion
    fusions[fusion] = gflops_by_part(config)
    print(f"{size} {fusion:16s} forward {fusions[fusion]['forward_gflops']:8.3f} GFLOPs")

  pruning = {"none": fusions["jarl"]}
  config = pretrain.get_config(size)
  config.model.vision.token_pruning = "elip"
  if args.quick:  # tiny's ViT has 2 blocks: prune once, after the first
    config.model.vision.update(elip_layers=(1,), elip_keep=(0.5,))
  pruning["elip"] = gflops_by_part(config)

  stem = {}
  for kind in ("patch", "conv"):
    config = pretrain.get_config(stem_size)
    config.model.vision.stem = kind
    stem[kind] = flops.measure(config, batch_size=1, parts=False)["forward_gflops_per_example"]

  jarl, none, elip = fusions["jarl"], pruning["none"], pruning["elip"]
  result = dict(
    size=size,
    stem_size=stem_size,
    fusions=fusions,
    vision_pruning={
      k: {key: v[key] for key in ("vision_gflops", "forward_gflops")} for k, v in pruning.items()
    },
    stem={k: dict(forward_gflops=v) for k, v in stem.items()},
    jarl_over_concat_forward=jarl["forward_gflops"] / fusions["concat"]["forward_gflops"],
    decoder_share_of_jarl_forward=jarl["decoder_gflops"] / jarl["forward_gflops"],
    elip_over_none_vision=elip["vision_gflops"] / none["vision_gflops"],
    elip_over_none_forward=elip["forward_gflops"] / none["forward_gflops"],
    conv_over_patch_forward=stem["conv"] / stem["patch"],
  )
  print(f"jarl / concat forward {result['jarl_over_concat_forward']:.3f}")
  print(
    f"ELIP / none: vision {result['elip_over_none_vision']:.3f}, forward "
    f"{result['elip_over_none_forward']:.3f}"
  )
  print(f"{stem_size} conv / patch stem forward {result['conv_over_patch_forward']:.3f}")
  record.emit("flops_parts", result, args)


if __name__ == "__main__":
  main()
