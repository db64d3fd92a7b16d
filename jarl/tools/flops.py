r"""FLOPs, parameters and compiled memory of a config, from XLA's own cost analysis.

    python -m jarl.tools.flops --config=configs/pretrain.py:base
    python -m jarl.tools.flops --config=configs/pretrain.py:base --config.model.fusion.type=concat

Nothing is executed: each part of the model is lowered and compiled with abstract inputs,
and XLA's cost analysis of the compiled program gives its FLOPs. Part FLOPs are
differences of nested programs (towers; towers + fusion; whole forward), so they add up
to the total. The train step's cost is that of the value and gradient of the objective
(jarl.losses: decoder loss plus every auxiliary loss that is on, with the model in
training mode). The last printed line is one JSON object.
"""

import json

from absl import app, flags
import flax.linen as nn
import jax
from ml_collections import config_flags

from jarl import batch as batch_lib
from jarl import losses
from jarl.models import model as model_lib

_CONFIG = _BATCH = None  # set by _define_flags() when run as a program


def _define_flags():
  """Flags exist only when run as a program, so importing this module next to another
  command-line module (jarl.tools.plan, tests) never registers `--config` twice."""
  global _CONFIG, _BATCH
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (file.py:variant).")
  _BATCH = flags.DEFINE_integer(
    "batch_size", 8, "Examples per compiled program; figures are per example."
  )


def compiled_cost(fn, *abstract_args):
  """(flops, bytes of temporary memory) of `fn` compiled for the given abstract inputs."""
  flops, memory = compiled_cost_and_memory(fn, *abstract_args)
  return flops, memory["temp"]


def compiled_cost_and_memory(fn, *abstract_args):
  """(flops, memory) of `fn` compiled for the given abstract inputs on one device; memory
  in bytes: temp (activations and scratch), arguments, outputs, and peak = arguments +
  outputs - aliased + temp (XLA's memory analysis)."""
  compiled = jax.jit(fn).lower(*abstract_args).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax returned one dict per device program
    cost = cost[0]
  m = compiled.memory_analysis()
  size = lambda name: int(getattr(m, f"{name}_size_in_bytes", 0)) if m is not None else 0
  memory = dict(temp=size("temp"), arguments=size("argument"), outputs=size("output"))
  memory["peak"] = memory["arguments"] + memory["outputs"] - size("alias") + memory["temp"]
  return float(cost.get("flops", 0.0)), memory


def abstract_model_params(model, batch):
  """The model's parameters as unboxed ShapeDtypeStructs, for a batch of the config's
  layout (abstract or concrete; only its MODEL_INPUTS are read); nothing is initialised."""
  inputs = {k: batch[k] for k in batch_lib.MODEL_INPUTS}
  return nn.meta.unbox(
    jax.eval_shape(lambda b: model.init({"params": jax.random.key(0)}, **b)["params"], inputs)
  )


def measure(config, batch_size=8, parts=True):
  """Per-example GFLOPs of each part (parts=False: only forward and train, two compiles)
  and of the train step, parameters per part, and the memory of the train program (value
  and gradient of the objective, no optimizer) at `batch_size` on one device."""
  model = model_lib.build(config)
  objective = losses.make_objective(config)
  batch = batch_lib.abstract_batch(config, batch_size)
  abstract_params = abstract_model_params(model, batch)

  def apply(method):
    return lambda p, b: model.apply({"params": p}, b, method=method)

  # Vision is costed as (both towers) - (text tower): with ELIP the ViT needs the text guide.
  towers = apply(
    lambda m, b: {k: v for k, v in m.towers(b["image"], b["text"]).items() if hasattr(v, "shape")}
  )  # features, not the static grid
  text = apply(lambda m, b: m.text(b["text"])[0])
  encode = apply(lambda m, b: m.encode(b["image"], b["text"])[0])
  forward = apply(lambda m, b: m(b["image"], b["text"], b["target"])[0])

  def train_loss(p, b):
    logits, out = objective.train_outputs(model, p, b, jax.random.key(0))
    return objective.mean(logits, out, b)[0]

  programs = (("towers", towers), ("text", text), ("encode", encode)) if parts else ()
  flops = {}
  for name, fn in (*programs, ("forward", forward)):
    flops[name], _ = compiled_cost(fn, abstract_params, batch)
  flops["train"], train_memory = compiled_cost_and_memory(
    jax.value_and_grad(train_loss), abstract_params, batch
  )
  per = lambda x: x / batch_size / 1e9
  params = {k: model_lib.count_params(v) for k, v in abstract_params.items()}
  result = dict(
    params_per_part=params,
    forward_gflops_per_example=per(flops["forward"]),
    train_gflops_per_example=per(flops["train"]),
    train_losses=("decoder", *objective.aux),
    params=sum(params.values()),
    train_temp_bytes_per_example=train_memory["temp"] // batch_size,
    train_program_bytes=train_memory,
    batch_size=batch_size,
    fusion_type=config.model.fusion.type,
  )
  if parts:
    result["parts_gflops_per_example"] = {
      "vision": per(flops["towers"] - flops["text"]),
      "text": per(flops["text"]),
      "fusion": per(flops["encode"] - flops["towers"]),
      "decoder": per(flops["forward"] - flops["encode"]),
    }
  return result


def main(argv):
  del argv
  result = measure(_CONFIG.value, _BATCH.value)
  print(f"{'part':10s} {'GFLOPs/example':>15s} {'params':>14s}")
  for part, gflops in result["parts_gflops_per_example"].items():
    print(f"{part:10s} {gflops:15.3f} {result['params_per_part'].get(part, 0):14,d}")
  print(f"{'forward':10s} {result['forward_gflops_per_example']:15.3f} {result['params']:14,d}")
  print(f"{'train':10s} {result['train_gflops_per_example']:15.3f}")
  peak = result["train_program_bytes"]["peak"] / 2**30
  print(
    f"train program (value and gradient, no optimizer) at batch {result['batch_size']} on "
    f"one device: peak {peak:.2f} GiB; the whole train step on a mesh: jarl.tools.plan"
  )
  print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
