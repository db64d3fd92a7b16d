r"""Entry point: `python -m jarl.main --config=configs/pretrain.py:demo --workdir=/tmp/jarl`.

Overrides: `--config.total_steps=100 --config.optimizer.learning_rate=3e-4`.
Multi-host (TPU pods, SLURM/MPI GPU clusters): `--multihost` (or JARL_MULTIHOST=1) calls
`jax.distributed.initialize()`, which finds the coordinator from the environment; elsewhere
also pass `--coordinator=host:port --num_processes=N --process_id=i` on every process.
The log shows JARL's own INFO lines and every library's warnings and errors; `--verbose`
adds the libraries' INFO lines (Orbax, TensorFlow, JAX, Grain, clu).
"""

import contextlib
import logging as std_logging
import os
import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from jarl import predict

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (`file.py:variant`).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and logs go here.")
_MULTIHOST = flags.DEFINE_bool(
  "multihost", os.environ.get("JARL_MULTIHOST") == "1", "Call jax.distributed.initialize() first."
)
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 (multihost).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job (multihost).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multihost).")
_VERBOSE = flags.DEFINE_bool(
  "verbose", False, "Also log third-party INFO lines (Orbax, TensorFlow, JAX, Grain, clu)."
)
flags.mark_flags_as_required(["config", "workdir"])

_JARL_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _OwnInfoOnly(std_logging.Filter):
  """INFO and below from JARL's own files only; every library's warnings and errors.

  Orbax, clu and Grain log through absl's one `absl` logger, so a logger's name cannot tell
  them from us; absl records the calling file, which can.
  """

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or record.pathname.startswith(_JARL_DIR)


@contextlib.contextmanager
def _stderr_to_devnull():
  """Points file descriptor 2 at /dev/null for the block (C++ libraries write to it)."""
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _VERBOSE.value:
    logging.get_absl_handler().addFilter(_OwnInfoOnly())
    # Fine-tuning's init_from prints a benign Orbax warning when it loads the parameters.
    std_logging.getLogger("absl").addFilter(predict.NoItemMetadataWarning())
    # TensorFlow (clu's TensorBoard writer) prints its oneDNN notice from C++ while it
    # loads, through absl's C++ logging, which TF_CPP_MIN_LOG_LEVEL no longer reaches
    # (TF 2.21): so it loads here with stderr closed. An import error still raises after.
    with _stderr_to_devnull():
      import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  # Imported after the above: it imports clu and with it TensorFlow.
  from jarl import train  # pylint: disable=import-outside-toplevel

  if _MULTIHOST.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  logging.info(
    "JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
  )
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
