r"""Per-device training memory of `base` and `large` on a 256-chip pod slice (32 GiB each).

    python -m benchmarks.plan_pod          # 6 plans: base, large x data / data+fsdp x batch
    python -m benchmarks.plan_pod --quick  # tiny on 8 devices, a smoke run (not recorded)

Each row is one `python -m jarl.tools.plan` run, in its own process because the count of
simulated devices is fixed when JAX starts: the trainer's train step compiled (never run)
for the mesh, and XLA's memory analysis per device (docs/scaling.md). The CPU compiler's
buffer plan stands in for the TPU's, so `temp_gib` is an estimate. The last line is one
JSON object, also written to docs/results/plan_pod.json.
"""

import argparse
import json
import subprocess
import sys

from benchmarks import record

GIB = 1024**3
# (size, mesh, global batch): data parallelism alone vs FSDP over 8, at base's batch and at
# a larger one for `large`.
PLANS = (
  ("base", "data:256", 4096),
  ("base", "data:32,fsdp:8", 4096),
  ("large", "data:256", 4096),
  ("large", "data:32,fsdp:8", 4096),
  ("large", "data:256", 6144),
  ("large", "data:32,fsdp:8", 6144),
)
QUICK_PLANS = (("tiny", "data:8", 16), ("tiny", "data:4,fsdp:2", 16))


def plan(size: str, mesh: str, batch: int, devices: int, hbm_gib: float) -> dict:
  """jarl.tools.plan's JSON line for one (size, mesh, batch) on `devices` fake devices."""
  command = [
    sys.executable,
    "-m",
    "jarl.tools.plan",
    f"--config=configs/pretrain.py:{size}",
    f"--devices={devices}",
    f"--mesh={mesh}",
    f"--hbm_gib={hbm_gib}",
    f"--global_batch_size={batch}",
  ]
  proc = subprocess.run(command, cwd=record.ROOT, capture_output=True, text=True)
  if proc.returncode != 0:
    raise SystemExit(f"{' '.join(command[1:])} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--hbm_gib", type=float, default=32.0)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  plans, devices = (QUICK_PLANS, 8) if args.quick else (PLANS, 256)
  rows = {}
  for size, mesh, batch in plans:
    r = plan(size, mesh, batch, devices, args.hbm_gib)
    rows[f"{size} {mesh} batch {batch}"] = dict(
      params_gib=r["params_bytes"] / GIB,
      optimizer_gib=r["opt_bytes"] / GIB,
      temp_gib=r["temp_bytes"] / GIB,
      total_gib=r["per_device_bytes"] / GIB,
      fits=r["fits"],
      train_tflops_per_step=r["train_tflops_per_step"],
      compile_seconds=r["compile_seconds"],
    )
    row = rows[f"{size} {mesh} batch {batch}"]
    print(
      f"{size:6s} {mesh:15s} batch {batch:5d}: {row['total_gib']:6.2f} GiB per device "
      f"({'fits' if row['fits'] else 'does not fit'} in {args.hbm_gib:g})"
    )
  record.emit("plan_pod", dict(devices=devices, hbm_gib=args.hbm_gib, rows=rows), args)


if __name__ == "__main__":
  main()
