r"""Will a config fit a pod slice? Compile (never run) its train step for a simulated mesh.

    python -m jarl.tools.plan --config=configs/pretrain.py:base --devices=256 \
        --mesh=data:32,fsdp:8 --hbm_gib=32
    python -m jarl.tools.plan --config=configs/pretrain.py:large --devices=256 \
        --mesh=data:256 --global_batch_size=4096

`--devices` fake CPU devices stand in for the accelerators (XLA's
`--xla_force_host_platform_device_count`, which must be set before JAX starts, so the flag
is read from the command line ahead of every import). The train step is the trainer's
own (`train.make_trainer`): same shardings, same donation, same logical rules. XLA's
memory analysis of the compiled per-device program gives:

  params / opt   this device's shards of the parameters and optimizer state (f32)
  batch          this device's rows of the global batch
  temp           activations, gradients and scratch XLA allocates inside the step
  total          arguments + outputs - donated (aliased) buffers + temp

and its cost analysis the FLOPs of one step (per device x devices). The CPU compiler
schedules buffers like the TPU one does not (no HBM-aware rematerialisation, different
fusions), so treat `temp` as an estimate: on TPU it is usually lower. The last printed
line is one JSON object with `per_device_bytes` (the peak training memory per device),
`fits`, `train_tflops_per_step`, `train_gflops_per_example` and `fusion_type`.
"""

import os
import re
import sys

_DEVICE_FLAG = re.compile(r"--xla_force_host_platform_device_count=\d+")


def _devices_from_argv(argv) -> int | None:
  for i, arg in enumerate(argv):
    if arg.startswith("--devices="):
      return int(arg.split("=", 1)[1])
    if arg == "--devices" and i + 1 < len(argv):
      return int(argv[i + 1])
  return None


def force_host_devices(count: int) -> None:
  """Makes the CPU backend expose `count` devices; only effective before JAX starts."""
  flags = _DEVICE_FLAG.sub("", os.environ.get("XLA_FLAGS", "")).strip()
  os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
  # Fake devices exist only on the CPU backend; on a GPU/TPU host plan for them, not for
  # the real chips.
  os.environ["JAX_PLATFORMS"] = "cpu"


if __name__ == "__main__" and _devices_from_argv(sys.argv):
  force_host_devices(_devices_from_argv(sys.argv))

# pylint: disable=wrong-import-position
import json
import math
import time

from absl import app, flags
import jax
from ml_collections import config_flags
import numpy as np

from jarl import config_checks, sharding, train

_CONFIG = _DEVICES = _MESH = _HBM_GIB = _GLOBAL_BATCH = None  # set by _define_flags()


def _define_flags():
  """Flags exist only when run as a program: importing this module (tests, jarl.tools.flops
  in the same process) must not register a second `--config`."""
  global _CONFIG, _DEVICES, _MESH, _HBM_GIB, _GLOBAL_BATCH
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (file.py:variant).")
  _DEVICES = flags.DEFINE_integer("devices", None, "Simulated devices (fake CPU devices).")
  _MESH = flags.DEFINE_string(
    "mesh", None, "Mesh sizes, e.g. data:32,fsdp:8 (missing axes are 1); default: config.mesh."
  )
  _HBM_GIB = flags.DEFINE_float("hbm_gib", 32.0, "Memory per device: 32 TPU v4, 16 v5e, 80 H100.")
  _GLOBAL_BATCH = flags.DEFINE_integer(
    "global_batch_size", None, "Overrides config.global_batch_size."
  )
  flags.mark_flags_as_required(["config"])


GIB = 1024**3


def parse_mesh(text: str, config_mesh) -> list[tuple[str, int]]:
  """'data:32,fsdp:8' -> config.mesh's axes in order, unnamed axes of size 1."""
  sizes = {}
  for part in text.split(","):
    name, _, size = part.partition(":")
    if not size.isdigit() or int(size) < 1:
      raise ValueError(f"--mesh={text!r}: {part!r} is not <axis>:<size> with size >= 1")
    sizes[name] = int(size)
  axes = [str(name) for name, _ in config_mesh]
  unknown = sorted(set(sizes) - set(axes))
  if unknown:
    raise ValueError(f"--mesh={text!r}: axes {unknown} are not in config.mesh axes {axes}")
  return [(axis, sizes.get(axis, 1)) for axis in axes]


def _shard_bytes(tree) -> int:
  """Bytes of this device's shard of every leaf of a tree of sharded ShapeDtypeStructs."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total


def plan(config, hbm_gib: float = 32.0, devices=None) -> dict:
  """Compiles the train step of `config` on `devices` (default: all) and sizes it."""
  devices = jax.devices() if devices is None else list(devices)
  mesh = sharding.make_mesh(config.mesh, devices)
  config_checks.check(config, sharding.batch_shards(mesh, config.logical_axis_rules))
  start = time.time()
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    batch = trainer.abstract_batch  # jarl.batch.batch_spec(config), as the pipeline feeds it
    compiled = trainer.step_fn.lower(trainer.abstract_state, batch).compile()
  compile_s = time.time() - start
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  arguments, outputs = memory.argument_size_in_bytes, memory.output_size_in_bytes
  aliased, temp = memory.alias_size_in_bytes, memory.temp_size_in_bytes
  per_device = arguments + outputs - aliased + temp
  params = _shard_bytes(trainer.abstract_state.params)
  opt = _shard_bytes(trainer.abstract_state.opt_state)
  return dict(
    config=str(config.get("variant", "")),
    devices=len(devices),
    mesh=dict(mesh.shape),
    global_batch_size=int(config.global_batch_size),
    examples_per_device=config.global_batch_size
    / sharding.batch_shards(mesh, config.logical_axis_rules),
    params=sum(math.prod(x.shape) for x in jax.tree.leaves(trainer.abstract_state.params)),
    params_bytes=params,
    opt_bytes=opt,
    batch_bytes=_shard_bytes(batch),
    temp_bytes=temp,
    argument_bytes=arguments,
    output_bytes=outputs,
    alias_bytes=aliased,
    per_device_bytes=per_device,
    hbm_gib=hbm_gib,
    fits=bool(per_device <= hbm_gib * GIB),
    train_tflops_per_step=float(cost.get("flops", 0.0)) * mesh.size / 1e12,
    train_gflops_per_example=float(cost.get("flops", 0.0))
    * mesh.size
    / config.global_batch_size
    / 1e9,
    fusion_type=str(config.model.fusion.type),
    compile_seconds=round(compile_s, 1),
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if _GLOBAL_BATCH.value:
    config.global_batch_size = _GLOBAL_BATCH.value
  if _MESH.value:
    config.mesh = parse_mesh(_MESH.value, config.mesh)
  devices = jax.devices()
  if _DEVICES.value:
    if len(devices) < _DEVICES.value:
      raise ValueError(
        f"--devices={_DEVICES.value} but JAX has {len(devices)} devices: run "
        "`python -m jarl.tools.plan` in a fresh process (the count is fixed "
        "when JAX starts)"
      )
    devices = devices[: _DEVICES.value]
  result = plan(config, _HBM_GIB.value, devices)
  gib = lambda key: result[key] / GIB
  mesh = ",".join(f"{k}:{v}" for k, v in result["mesh"].items())
  print(
    f"config {result['config']}  mesh {mesh}  global batch {result['global_batch_size']} "
    f"({result['examples_per_device']:g} per device)  params {result['params']:,}  "
    f"compiled in {result['compile_seconds']} s"
  )
  print(
    f"per device GiB: params {gib('params_bytes'):.2f}  opt {gib('opt_bytes'):.2f}  "
    f"batch {gib('batch_bytes'):.2f}  temp {gib('temp_bytes'):.2f}  "
    f"total {gib('per_device_bytes'):.2f} of {result['hbm_gib']:g} -> "
    f"{'fits' if result['fits'] else 'DOES NOT FIT'}"
  )
  print(
    f"train step ({result['fusion_type']} fusion): {result['train_tflops_per_step']:.1f} "
    f"TFLOPs, {result['train_gflops_per_example']:.1f} GFLOPs per example (optimizer included)"
  )
  print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
