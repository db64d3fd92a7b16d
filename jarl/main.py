r"""Entry point: `python -m jarl.main --config=configs/pretrain.py:demo --workdir=/tmp/jarl`.

Overrides: `--config.total_steps=100 --config.optimizer.learning_rate=3e-4`.
Multi-host (TPU pods, SLURM/MPI GPU clusters): `--multihost` (or JARL_MULTIHOST=1) calls
`jax.distributed.initialize()`, which finds the coordinator from the environment; elsewhere
also pass `--coordinator=host:port --num_processes=N --process_id=i` on every process.
"""

import os

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from jarl import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (`file.py:variant`).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and logs go here.")
_MULTIHOST = flags.DEFINE_bool(
  "multihost", os.environ.get("JARL_MULTIHOST") == "1", "Call jax.distributed.initialize() first."
)
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 (multihost).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job (multihost).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multihost).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _MULTIHOST.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  logging.info(
    "JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
  )
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
