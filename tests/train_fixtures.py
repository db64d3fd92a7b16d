"""A tiny JARL config for trainer tests: same code paths as the demo, compiles in seconds."""
import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np

from jarl import metrics_writer
from jarl import sharding
from jarl import train


def repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_pretrain():
  spec = importlib.util.spec_from_file_location(
      "jarl_configs_pretrain", os.path.join(repo_root(), "configs", "pretrain.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


pretrain = _load_pretrain()

# dotted config key -> value; used in-process (`tiny_config`) and as CLI overrides (`tiny_flags`).
TINY = {
    "model.vision.image_size": 16, "model.vision.width": 32, "model.vision.depth": 2,
    "model.vision.mlp_dim": 64, "model.vision.num_heads": 2,
    "model.text.max_len": 8, "model.text.width": 32, "model.text.depth": 1,
    "model.text.mlp_dim": 64, "model.text.num_heads": 2,
    "model.fusion.width": 32, "model.fusion.num_heads": 2, "model.fusion.mlp_dim": 64,
    "model.fusion.num_tokens": 4, "model.fusion.vision_taps": (2,),
    "model.fusion.text_taps": (1,),
    "model.decoder.width": 32, "model.decoder.depth": 1, "model.decoder.num_heads": 2,
    "model.decoder.mlp_dim": 64, "model.decoder.max_len": 8,
    "data.image_size": 16, "data.text_len": 8, "data.target_len": 8,
    "data.sampling.update_every": 2,
    "global_batch_size": 8, "total_steps": 6, "log_every_steps": 1, "ckpt_every_steps": 3,
    "optimizer.warmup_steps": 1, "optimizer.learning_rate": 3e-3,
    "evals.val.num_examples": 16, "evals.val.batch_size": 8, "evals.val.every_steps": 3,
}


def _set(config, dotted, value):
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  if isinstance(node, dict):
    node[leaf] = value
  else:
    setattr(node, leaf, value)


def tiny_config(**overrides):
  """configs/pretrain.py:demo shrunk by TINY, then `overrides` (use __ for dots)."""
  config = pretrain.get_config("demo")
  for k, v in {**TINY, **{k.replace("__", "."): v for k, v in overrides.items()}}.items():
    _set(config, k, v)
  return config


def tiny_flags(**overrides) -> list[str]:
  flags = []
  for k, v in {**TINY, **{k.replace("__", "."): v for k, v in overrides.items()}}.items():
    if isinstance(v, tuple):
      v = "(" + ",".join(map(str, v)) + ",)"
    flags.append(f"--config.{k}={v}")
  return flags


def main_command(workdir, **overrides) -> list[str]:
  return [sys.executable, "-m", "jarl.main", "--config=configs/pretrain.py:demo",
          f"--workdir={workdir}", *tiny_flags(**overrides)]


def main_env(cache_dir=None) -> dict:
  """Environment for `python -m jarl.main` subprocesses: CPU, and optionally a persistent
  compilation cache shared by the runs of one test module (3x faster start-up)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if cache_dir:
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env


def start_main(workdir, cache_dir=None, **overrides) -> subprocess.Popen:
  return subprocess.Popen(main_command(workdir, **overrides), cwd=repo_root(),
                          env=main_env(cache_dir), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def run_main(workdir, cache_dir=None, timeout=300, **overrides) -> subprocess.CompletedProcess:
  """`python -m jarl.main` on the tiny config, from the repository root."""
  return subprocess.run(main_command(workdir, **overrides), cwd=repo_root(),
                        env=main_env(cache_dir), capture_output=True, text=True,
                        timeout=timeout)


def batch(config, batch_size, seed=0):
  """A deterministic random batch with the tiny config's shapes."""
  rng = np.random.default_rng(seed)
  size, lt, ld = config.data.image_size, config.data.text_len, config.data.target_len
  target = rng.integers(1, config.model.vocab_size, (batch_size, ld)).astype(np.int32)
  target[:, ld // 2:] = 0  # padding must not count
  return dict(image=rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32),
              text=rng.integers(1, config.model.vocab_size, (batch_size, lt)).astype(np.int32),
              target=target, dataset_id=(np.arange(batch_size) % 2).astype(np.int32),
              mask=np.ones(batch_size, bool))


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
