r"""The paper's Tables 2-4 (PAPER.md, as summarised) on our model: cost and accuracy.

    python -m benchmarks.paper_tables --part=cost            # base; compile only (~8 min
                                                             # on 2 CPU cores)
    python -m benchmarks.paper_tables --part=cost --quick    # tiny sizes (tests)
    python -m benchmarks.paper_tables --part=accuracy        # trains every arm x 3 seeds
    python -m benchmarks.paper_tables --part=accuracy --quick

The accuracy part is benchmarks/paper_accuracy.py (its docstring has the protocol); the
rest of this docstring is the cost part.

Every arm is configs/pretrain.py at one size (`base`; --quick: `tiny`) with only
`config.model.fusion` changed, so towers, decoder and text lengths are equal:
  Table 3  concat vs jarl;  Table 2  perceiver, co_tokenization, jarl;
  Table 4  jarl with iterations 1/2/4/8, tokens 16/32/64/128, resample latent/spatial,
           combine gated/residual/none, fusion layers 16/32 (iterations x
           layers_per_iteration), and what the decoder reads (fused / fused_and_image).
For each arm, XLA's cost analysis gives forward and train GFLOPs per example
(jarl.tools.flops: value and gradient of the objective). For Table 3's and Table 2's arms
the whole train step (optimizer included, jarl.tools.plan) is compiled at MEMORY_BATCH
examples on one device, whose peak memory equals a data-parallel device's at that many
examples per device; the towers' share of it (their parameters, gradients, Adam moments
and activations, the same in every arm) is measured apart from a towers-only gradient
program. Each figure stands beside the paper's; the `checks` say whether our model shows
the paper's cost claims. Nothing is trained or executed. Last line: one JSON object, also
written to docs/results/paper_tables.json under the key `cost` (see record.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import tempfile

import jax

from benchmarks import paper_accuracy, paper_verdicts, record
from configs import pretrain
from jarl import batch as batch_lib
from jarl.models import model as model_lib
from jarl.tools import flops, plan

GIB = 2**30
MEMORY_BATCH = 16  # examples per device for the memory figures (the issue's data:8 x 16)
FLOPS_CLAIM = 0.67  # paper Table 3: 38.9 / 58.4 GFLOPs
PAPER_MEMORY_RATIO = 9 / 15  # paper Table 3: 9 GB vs 15 GB

# Arm name -> (config.model.fusion overrides, the paper's GFLOPs or None).
ARMS = {
  "jarl": (dict(type="jarl"), 38.9),
  "concat": (dict(type="concat"), 58.4),
  "perceiver": (dict(type="perceiver"), 40.3),
  "co_tokenization": (dict(type="co_tokenization"), 43.8),
  "iterations_1": (dict(iterations=1), 34.2),
  "iterations_2": (dict(iterations=2), 35.5),
  "iterations_8": (dict(iterations=8), 42.5),
  "tokens_16": (dict(num_tokens=16), 18.5),
  "tokens_32": (dict(num_tokens=32), 28.4),
  "tokens_128": (dict(num_tokens=128), 72.9),
  "resample_spatial": (dict(resample="spatial"), 42.5),
  "combine_residual": (dict(combine="residual"), 38.9),
  "combine_none": (dict(combine="none"), 38.9),
  "layers_32": (dict(layers_per_iteration=8), 38.9),  # 4 x 8; base's default is 4 x 4
  "memory_fused_and_image": (dict(memory="fused_and_image"), None),
}
# At base jarl is 4 iterations x 4 layers, N = 64, latent, gated: the paper's defaults, with
# 16 fusion layers (the paper's Table 4 row at 30.5 GFLOPs; its default has 32).
TABLE3 = ("concat", "jarl")
TABLE2 = ("perceiver", "co_tokenization", "jarl")
TABLE4 = {
  "iterations": ("iterations_1", "iterations_2", "jarl", "iterations_8"),
  "tokens": ("tokens_16", "tokens_32", "jarl", "tokens_128"),
  "resample": ("jarl", "resample_spatial"),
  "combine": ("jarl", "combine_residual", "combine_none"),
  "layers": ("jarl", "layers_32"),
  "decoder memory": ("jarl", "memory_fused_and_image"),
}
# Where a Table 4 row gives the default arm another figure: the paper's 16-layer fusion.
TABLE4_PAPER = {("layers", "jarl"): 30.5}
MEMORY_ARMS = ("concat", "jarl", "perceiver", "co_tokenization")


def arm_config(size: str, overrides: dict):
  config = pretrain.get_config(size)
  config.model.fusion.update(overrides)  # validated when the model is built
  return config


def towers_memory(config, batch_size: int) -> dict:
  """Bytes the towers alone take in training at `batch_size` on one device: their
  parameters, gradients and two Adam moments, plus the activations of a gradient program
  through both towers (a stand-in loss on the features the fusion reads)."""
  model = model_lib.build(config)
  batch = batch_lib.abstract_batch(config, batch_size)
  params = flops.abstract_model_params(model, batch)
  towers = {k: params[k] for k in ("vision", "text")}
  mc = model.config

  def loss(p, b):
    out = model.apply({"params": p}, b["image"], b["text"], method=model_lib.Model.towers)
    top = (out[f"img/depth_{mc.vision_depth}"], out[f"txt/depth_{mc.text_depth}"])
    return sum((x.astype("float32") ** 2).mean() for x in top)

  _, memory = flops.compiled_cost_and_memory(jax.value_and_grad(loss), towers, batch)
  param_bytes = 4 * model_lib.count_params(towers)
  return dict(
    params=model_lib.count_params(towers),
    activations_bytes=memory["temp"],
    # parameters + gradients (in the program) + Adam's two moments (not in it)
    state_bytes=4 * param_bytes,
    total_bytes=memory["temp"] + 4 * param_bytes,
  )


def cost_part(size: str) -> dict:
  arms = {}
  for name, (overrides, paper) in ARMS.items():
    config = arm_config(size, overrides)
    r = flops.measure(config, batch_size=2, parts=False)
    arms[name] = dict(
      overrides=overrides,
      forward_gflops=r["forward_gflops_per_example"],
      train_gflops=r["train_gflops_per_example"],
      params=r["params"],
      paper_gflops=paper,
    )
    if name in MEMORY_ARMS:
      config.global_batch_size = MEMORY_BATCH
      p = plan.plan(config, hbm_gib=1e6, devices=jax.devices()[:1])
      arms[name]["memory"] = dict(
        peak_bytes=p["per_device_bytes"],
        params_bytes=p["params_bytes"],
        opt_bytes=p["opt_bytes"],
        temp_bytes=p["temp_bytes"],
      )
    print(f"{size}: measured {name}", flush=True)
  towers = towers_memory(arm_config(size, {}), MEMORY_BATCH)
  return dict(
    size=size,
    memory_setting=f"{MEMORY_BATCH} examples on one device (= data parallel, {MEMORY_BATCH} per"
    " device), whole train step with AdamW, XLA CPU memory analysis",
    arms=arms,
    towers_memory=towers,
    tables=dict(table3=TABLE3, table2=TABLE2, table4=TABLE4),
    table4_paper={f"{row}/{name}": v for (row, name), v in TABLE4_PAPER.items()},
    checks=checks(arms, towers),
  )


def checks(arms: dict, towers: dict) -> dict:
  """Each of the paper's cost claims on our numbers: value and whether it holds."""
  fwd = lambda name: arms[name]["forward_gflops"]
  mem = lambda name: arms[name]["memory"]["peak_bytes"]
  ratio = fwd("jarl") / fwd("concat")
  memory_ratio = mem("jarl") / mem("concat")
  without_towers = (mem("jarl") - towers["total_bytes"]) / (mem("concat") - towers["total_bytes"])
  cheapest = min(TABLE2, key=fwd)

  def increasing(names):
    values = [fwd(n) for n in names]
    return all(a < b for a, b in zip(values, values[1:]))

  combine = [fwd(n) for n in TABLE4["combine"]]
  return {
    "jarl_over_concat_forward": dict(
      value=ratio, paper=38.9 / 58.4, target=FLOPS_CLAIM, holds=ratio <= FLOPS_CLAIM
    ),
    "jarl_over_concat_train": dict(
      value=arms["jarl"]["train_gflops"] / arms["concat"]["train_gflops"]
    ),
    "jarl_over_concat_memory": dict(
      value=memory_ratio,
      paper=PAPER_MEMORY_RATIO,
      without_towers=without_towers,
      towers_share_of_jarl=towers["total_bytes"] / mem("jarl"),
    ),
    "jarl_cheapest_of_table2": dict(value=cheapest, holds=cheapest == "jarl"),
    "more_iterations_cost_more": dict(holds=increasing(TABLE4["iterations"])),
    "more_tokens_cost_more": dict(holds=increasing(TABLE4["tokens"])),
    "latent_cheaper_than_spatial": dict(
      holds=fwd("jarl") < fwd("resample_spatial"), paper=dict(latent=38.9, spatial=42.5)
    ),
    "combine_costs_equal": dict(
      spread=(max(combine) - min(combine)) / min(combine),
      holds=(max(combine) - min(combine)) / min(combine) < 0.01,
    ),
    "more_layers_cost_more": dict(holds=increasing(TABLE4["layers"])),
  }


def print_tables(result: dict):
  arms = result["arms"]

  def row(name, paper=None):
    a = arms[name]
    paper = paper or a["paper_gflops"]
    return (
      f"  {name:24s} {a['forward_gflops']:9.4g} {a['train_gflops']:9.4g} "
      f"{a['params'] / 1e6:8.1f}M  paper " + (f"{paper:5.1f}" if paper else "    -")
    )

  print(f"{result['size']}: {'arm':24s} {'fwd GF':>9s} {'train GF':>9s} {'params':>9s}")
  for table, names in (("Table 3", TABLE3), ("Table 2", TABLE2)):
    print(table)
    for name in names:
      print(row(name))
  for title, names in TABLE4.items():
    print(f"Table 4: {title}")
    for name in names:
      print(row(name, TABLE4_PAPER.get((title, name))))
  print(f"peak training memory, {result['memory_setting']}:")
  for name in MEMORY_ARMS:
    m = arms[name]["memory"]
    print(
      f"  {name:24s} {m['peak_bytes'] / GIB:7.3g} GiB (activations {m['temp_bytes'] / GIB:.3g})"
    )
  print(f"  towers' share            {result['towers_memory']['total_bytes'] / GIB:7.3g} GiB")
  print(json.dumps(result["checks"], indent=1, sort_keys=True, default=str))


def accuracy_summary(protocol, runs_dir: pathlib.Path) -> dict:
  """Every recorded run summarised: arms (figures, GFLOPs), verdicts, markdown tables."""
  pa = paper_accuracy
  runs = pa.collect(runs_dir, protocol)
  arms = paper_verdicts.summarise(runs)
  for name, a in arms.items():
    pre = pa.configs(protocol, pa.ARMS[name][0], a["seeds"][0])["pretrain"]
    a["overrides"] = pa.ARMS[name][0]
    a["trained"] = a["pretrain_loss_last_mean"] < a["pretrain_loss_first_mean"]
    a["gflops_demo"] = flops.measure(pre, batch_size=1, parts=False)["forward_gflops_per_example"]
    a["gflops_base"] = None if protocol.quick else pa.base_gflops(pre)
  result = dict(
    protocol=dataclasses.asdict(protocol),
    reference=pa.REFERENCE,
    arms=arms,
    # Each run's commit (the report judges the summary by its oldest run).
    commits={name: {str(r["seed"]): r["commit"] for r in rs} for name, rs in runs.items()},
    protocol_check=paper_verdicts.protocol_check(arms, runs),
    verdicts=paper_verdicts.verdicts(arms),
  )
  result["markdown"] = paper_verdicts.markdown(result)
  return result


def accuracy(args) -> dict:
  """Runs the arms x seeds not yet recorded, then summarises every recorded run."""
  protocol = paper_accuracy.QUICK if args.quick else paper_accuracy.PROTOCOL
  root = args.workdir or tempfile.mkdtemp(prefix="jarl_paper_tables_")
  # --quick records nothing in docs/: its runs go to the work folder.
  base = pathlib.Path(root) if args.quick else record.results_dir()
  runs_dir = base / paper_accuracy.RUNS_DIR
  names = args.arms.split(",") if args.arms else list(paper_accuracy.ARMS)
  unknown = [n for n in names if n not in paper_accuracy.ARMS]
  if unknown:
    raise SystemExit(f"--arms: unknown {unknown}; choose from {list(paper_accuracy.ARMS)}")
  seeds = [int(s) for s in args.seeds.split(",")]
  todo = paper_accuracy.pending(runs_dir, names, seeds, protocol, args.rerun)
  print(f"accuracy: {len(todo)} runs to do ({len(names) * len(seeds) - len(todo)} recorded)")

  def argv_for(name, seed):
    argv = [sys.executable, "-m", "benchmarks.paper_tables", "--part=accuracy", "--jobs=1"]
    argv += [f"--arms={name}", f"--seeds={seed}", f"--workdir={root}", "--runs_only", "--rerun"]
    return argv + (["--quick"] if args.quick else [])

  paper_accuracy.run_pending(
    todo, protocol=protocol, runs_dir=runs_dir, root=root, jobs=args.jobs, argv_for=argv_for
  )
  if args.runs_only:
    return {}
  result = accuracy_summary(protocol, runs_dir)
  print("\n".join(result["markdown"]))
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--part", choices=("cost", "accuracy"), required=True)
  parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, not recorded)")
  accuracy_flags = parser.add_argument_group("--part=accuracy")
  accuracy_flags.add_argument("--arms", default="", help="comma-separated (default: all)")
  accuracy_flags.add_argument("--seeds", default="0,1,2")
  accuracy_flags.add_argument("--rerun", action="store_true", help="repeat recorded runs")
  accuracy_flags.add_argument(
    "--jobs", type=int, default=2, help="runs at once, each on its share of the cores"
  )
  accuracy_flags.add_argument("--workdir", default="", help="default: a fresh temporary folder")
  accuracy_flags.add_argument(
    "--runs_only", action="store_true", help="record the runs, skip the summary"
  )
  args = parser.parse_args()
  if args.part == "accuracy":
    result = accuracy(args)
    if args.runs_only:
      return
  else:
    result = cost_part("tiny" if args.quick else "base")
    print_tables(result)
  # One record holds every part: keep the parts this run did not measure.
  previous = record.results_dir() / "paper_tables.json"
  parts = json.loads(previous.read_text())["result"] if previous.exists() else {}
  parts[args.part] = result
  print(json.dumps(result, sort_keys=True), flush=True)
  record.write("paper_tables", parts, args)


if __name__ == "__main__":
  main()
