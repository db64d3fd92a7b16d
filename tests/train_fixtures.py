"""Helpers for the trainer tests: the tiny config with overrides, `python -m jarl.main` runs,
deterministic batches, and the lockstep multi-process job. The tiny config itself is
configs/pretrain.py:tiny (same code paths as the demo, compiles in seconds)."""

import os
import re
import subprocess
import sys

import jax
import numpy as np

from configs import pretrain
from jarl import batch as batch_lib
from jarl import metrics_writer, sharding, train


def repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _set(config, dotted, value):
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  if isinstance(node, dict):
    node[leaf] = value
  else:
    setattr(node, leaf, value)


def _dotted(overrides: dict) -> dict:
  return {k.replace("__", "."): v for k, v in overrides.items()}


def forward(m, method=None):
  """`m.apply` on a batch dict, jitted: one compile per program, where eager execution
  compiles every op on its own."""
  return jax.jit(lambda params, b: m.apply({"params": params}, **b, method=method))


def tiny_config(**overrides):
  """configs/pretrain.py:tiny, then `overrides` (dotted keys; __ for dots)."""
  config = pretrain.get_config("tiny")
  for k, v in _dotted(overrides).items():
    _set(config, k, v)
  return config


def tiny_flags(**overrides) -> list[str]:
  """`overrides` as --config.<key>=<value> flags (for --config=configs/pretrain.py:tiny)."""
  flags = []
  for k, v in _dotted(overrides).items():
    if isinstance(v, tuple):
      v = "(" + ",".join(map(str, v)) + ",)" if v else "()"
    flags.append(f"--config.{k}={v}")
  return flags


def main_command(workdir, **overrides) -> list[str]:
  return [
    sys.executable,
    "-m",
    "jarl.main",
    "--config=configs/pretrain.py:tiny",
    f"--workdir={workdir}",
    *tiny_flags(**overrides),
  ]


def xla_flags(devices: int | None = None) -> str:
  """The session's XLA_FLAGS (conftest.py) with `devices` fake CPU devices, or with the
  fake-device flag removed (None): for subprocesses that need another device count."""
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ["XLA_FLAGS"])
  if devices is not None:
    flags += f" --xla_force_host_platform_device_count={devices}"
  return " ".join(flags.split())


def main_env() -> dict:
  """Environment for `python -m jarl.main` subprocesses: CPU, and the test session's
  compilation cache (conftest.py), inherited with the rest of the environment."""
  return dict(os.environ, JAX_PLATFORMS="cpu")


def start_main(workdir, **overrides) -> subprocess.Popen:
  return subprocess.Popen(
    main_command(workdir, **overrides),
    cwd=repo_root(),
    env=main_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def run_main(workdir, timeout=300, **overrides) -> subprocess.CompletedProcess:
  """`python -m jarl.main` on the tiny config, from the repository root."""
  return subprocess.run(
    main_command(workdir, **overrides),
    cwd=repo_root(),
    env=main_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def batch(config, batch_size, seed=0):
  """A deterministic random batch of the config's layout (`jarl.batch.synthetic_batch`),
  its targets half padding (padding must not count) and two data sets alternating."""
  out = batch_lib.synthetic_batch(config, batch_size, seed)
  out["target"][:, config.data.target_len // 2 :] = 0
  out["dataset_id"] = (np.arange(batch_size) % 2).astype(np.int32)
  return out


def run_steps(config, mesh_config, devices, batches):
  mesh = sharding.make_mesh(mesh_config, devices)
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    state = train.initial_state(config, trainer)
    out = []
    for b in batches:
      state, metrics = trainer.step_fn(state, sharding.global_batch(b, trainer.batch_sharding))
      out.append(jax.tree.map(np.asarray, metrics))
    params = jax.tree.map(np.asarray, state.params)
  return out, params


def read_metrics(workdir) -> list[dict]:
  return metrics_writer.read_jsonl(str(workdir))


# ---- A lockstep training job, one copy per JAX process (tests/test_train_multiprocess.py) ----
# Every process runs the trainer's own step (`train.make_trainer`) on deterministic global
# batches (`batch(config, 8, seed=step)`) and feeds only the rows its devices hold, so the
# losses must not depend on how the devices are split into processes.

LOCKSTEP_MESH = [("data", 2), ("fsdp", 2), ("model", 1)]  # 4 devices in any process layout


def _local_rows(global_batch, batch_sharding):
  """This process's rows of a global NumPy batch: the block its devices hold."""
  n = len(global_batch["mask"])
  spans = {
    (idx[0].start or 0, n if idx[0].stop is None else idx[0].stop)
    for idx in batch_sharding.addressable_devices_indices_map((n,)).values()
  }
  lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
  assert sum(b - a for a, b in spans) == hi - lo, f"rows {sorted(spans)} are not one block"
  return {k: v[lo:hi] for k, v in global_batch.items()}


def _record_shard_reads(out: dict, config, process_index: int, process_count: int):
  """Draws two batches from the real pipeline, noting which source records it read."""
  from jarl.data import pipeline, sources  # pylint: disable=import-outside-toplevel

  read = []
  original = sources.ShapesSource.__getitem__

  def spy(self, index):
    read.append(int(index))
    return original(self, index)

  sources.ShapesSource.__getitem__ = spy
  data = pipeline.make_train_data(
    config.data,
    global_batch_size=config.global_batch_size,
    seed=config.seed,
    process_index=process_index,
    process_count=process_count,
  )
  try:
    next(data), next(data)
  finally:
    data.close()
    sources.ShapesSource.__getitem__ = original
  out["records_read"] = sorted(set(read))


def lockstep_run(
  config, trainer, *, steps: int, save_at: int = 0, workdir: str = "", resume: str = ""
) -> dict[int, float]:
  """Trains to `steps` from scratch or from the checkpoint step dir `resume`; saves the
  state after step `save_at` (if > 0) under `workdir`. Returns {step: loss}."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  from jarl import checkpoint  # pylint: disable=import-outside-toplevel

  if resume:
    # The train state only: the data state is per process and the processes differ here.
    state = ocp.StandardCheckpointer().restore(
      os.path.join(resume, checkpoint.STATE), trainer.abstract_state
    )
  else:
    state = train.initial_state(config, trainer)
  ckpt = checkpoint.Checkpointer(workdir, every_steps=save_at, keep=2) if save_at else None
  losses = {}
  for step in range(int(state.step) + 1, steps + 1):
    # Two batches alternating: random tokens, so a batch seen before is the one whose loss
    # must visibly fall within a few steps (a fresh batch each step is noise at this size).
    seed = step % 2
    local = _local_rows(batch(config, config.global_batch_size, seed=seed), trainer.batch_sharding)
    state, metrics = trainer.step_fn(state, sharding.global_batch(local, trainer.batch_sharding))
    losses[step] = float(metrics["loss"])
    if step == save_at:
      ckpt.save(
        step, state, {"process_index": jax.process_index(), "process_count": jax.process_count()}
      )
  if ckpt:
    ckpt.close()
  return losses


def lockstep_main(argv=None):
  """One process of the job: fresh run (saving), then a run resumed from `--resume`."""
  import argparse  # pylint: disable=import-outside-toplevel
  import json  # pylint: disable=import-outside-toplevel

  parser = argparse.ArgumentParser()
  parser.add_argument("--coordinator", required=True)
  parser.add_argument("--num_processes", type=int, required=True)
  parser.add_argument("--process_id", type=int, required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, required=True)
  parser.add_argument("--save_at", type=int, required=True)
  parser.add_argument("--resume", required=True, help="checkpoint step dir to resume from")
  parser.add_argument("--out", required=True, help="writes <out>.<process_index>.json")
  args = parser.parse_args(argv)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  config = tiny_config(mesh=LOCKSTEP_MESH)
  out = dict(
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    local_devices=jax.local_device_count(),
  )
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    out["fresh"] = lockstep_run(
      config, trainer, steps=args.steps, save_at=args.save_at, workdir=args.workdir
    )
    out["resumed"] = lockstep_run(config, trainer, steps=args.steps, resume=args.resume)
  writer = metrics_writer.make_writer(args.workdir)  # the trainer's: files on process 0 only
  writer.write_scalars(args.steps, {"train/loss": out["fresh"][args.steps]})
  writer.close()
  _record_shard_reads(out, config, jax.process_index(), jax.process_count())
  with open(f"{args.out}.{jax.process_index()}.json", "w", encoding="utf-8") as f:
    json.dump(out, f)


if __name__ == "__main__":
  lockstep_main()
