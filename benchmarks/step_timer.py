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

# Dense (no sparsity) bf16 peak FLOP/s per device, from the vendors' datasheets, keyed by a
# substring of `device_kind`; the longest matching key wins ("H100 PCIe" over "H100",
# "TPU v5 lite" over "TPU v5"). JAX names TPU v5e "TPU v5 lite", v5p "TPU v5", v6e
# "TPU v6 lite"; a TPU v2/v3 device is one of a chip's two cores.
PEAK_BF16 = {
  "TPU v2": 22.5e12,
  "TPU v3": 61.5e12,
  "TPU v4": 275e12,
  "TPU v5 lite": 197e12,
  "TPU v5e": 197e12,
  "TPU v5": 459e12,
  "TPU v5p": 459e12,
  "TPU v6 lite": 918e12,
  "TPU v6e": 918e12,
  "A100": 312e12,
  "A10": 125e12,  # also A10G
  "L4": 121e12,
  "L40": 181e12,
  "L40S": 362e12,
  "H100": 989e12,  # SXM
  "H100 PCIe": 756e12,
  "H100 NVL": 835e12,
  "H200": 989e12,  # SXM; also GH200
  "H200 NVL": 835e12,
  "B200": 2250e12,
}


def compile_train_step(config):
  """(step, flops): `step()` runs one compiled train step on a fixed synthetic batch and
  waits for it; flops are its XLA cost analysis over all devices. The state is kept
  between calls, so several configs can be compiled first and timed interleaved."""
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
  carry = [state]

  def step():
    with jax.set_mesh(mesh):
      carry[0], metrics = compiled(carry[0], batch)
      jax.block_until_ready(metrics["loss"])

  return step, float(cost.get("flops", 0.0)) * mesh.size


def median_seconds(step, steps: int) -> float:
  """Median wall seconds of `steps` calls of `step`."""
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_train_step(config, steps=20, warmup=2):
  """Median seconds of one train step and its FLOPs (XLA cost analysis, all devices)."""
  step, flops = compile_train_step(config)
  for _ in range(warmup):
    step()
  return median_seconds(step, steps), flops


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


def peak_bf16(device) -> tuple[float | None, str | None]:
  """(dense bf16 peak FLOP/s, None) of a jax device, or (None, why there is none)."""
  kind = device.device_kind
  keys = [k for k in PEAK_BF16 if k in kind]
  if keys:
    return PEAK_BF16[max(keys, key=len)], None
  if device.platform == "cpu":
    return None, "a CPU has no bf16 peak in PEAK_BF16"
  return None, f"device_kind {kind!r} is not in PEAK_BF16 (benchmarks/step_timer.py)"


def chip_peak():
  """(device_kind, dense bf16 peak FLOP/s or None) of the first device."""
  device = jax.devices()[0]
  return device.device_kind, peak_bf16(device)[0]
