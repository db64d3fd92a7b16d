"""Times compiled train steps and dense matmuls in this process (shared by the benchmarks).

A figure from one machine means little on another, so the benchmarks report ratios:
step FLOP/s over the matmul FLOP/s the same process reaches on the same device.
"""

import statistics
import time

import jax
import jax.numpy as jnp

from jarl import batch as batch_lib
from jarl import sharding, train

# Dense bf16 peak FLOP/s per chip, for MFU on accelerators (vendor datasheets).
PEAK_BF16 = {
  "H100": 989e12,
  "H200": 989e12,
  "A100": 312e12,
  "TPU v4": 275e12,
  "TPU v5 lite": 197e12,
  "TPU v5e": 197e12,
  "TPU v5p": 459e12,
}


def time_train_step(config, steps=20, warmup=2):
  """Median seconds of one train step and its FLOPs (XLA cost analysis, all devices)."""
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    state = train.initial_state(config, trainer)
    batch = jax.device_put(
      batch_lib.synthetic_batch(config, config.global_batch_size), trainer.batch_sharding
    )
    compiled = trainer.step_fn.lower(state, batch).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) * mesh.size
    times = []
    for i in range(warmup + steps):
      start = time.perf_counter()
      state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics["loss"])
      if i >= warmup:
        times.append(time.perf_counter() - start)
  return statistics.median(times), flops


def matmul_flops_per_sec(n=None, repeats=10):
  """Dense-matmul FLOP/s this process reaches on the default device (bf16 on accelerators)."""
  device = jax.devices()[0]
  accel = device.platform != "cpu"
  n = n or (8192 if accel else 1024)
  dtype = jnp.bfloat16 if accel else jnp.float32
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(f(a))
    times.append(time.perf_counter() - start)
  return 2 * n**3 / statistics.median(times)


def chip_peak():
  kind = jax.devices()[0].device_kind
  for name, peak in PEAK_BF16.items():
    if name in kind:
      return kind, peak
  return kind, None
