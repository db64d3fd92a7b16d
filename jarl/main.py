r"""Entry point: `python -m jarl.main --config=configs/pretrain.py:demo --workdir=/tmp/jarl`.

Overrides: `--config.total_steps=100 --config.optimizer.learning_rate=3e-4`.
Multi-host (TPU pods, SLURM/MPI GPU clusters): `--multihost` (or JARL_MULTIHOST=1) calls
`jax.distributed.initialize()`, which finds the coordinator from the environment; elsewhere
also pass `--coordinator=host:port --num_processes=N --process_id=i` on every process.
The log shows JARL's own INFO lines and every library's warnings and errors; `--verbose`
adds the libraries' INFO lines (Orbax, TensorFlow, JAX, Grain, clu).

A mistake found at start-up (a flag or config key that does not exist or does not parse,
a `--workdir` that is a file, an `init_from` without a checkpoint, a source glob that
matches nothing, a fine-tune without `init_from`; jarl/config_checks.py) prints one
`jarl.main: error: ...` line naming the flag or key and exits with status 2, before any
model is built; `--debug` shows the traceback instead.
"""

import contextlib
import logging as std_logging
import os
import re
import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from jarl import config_checks

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
_DEBUG = flags.DEFINE_bool("debug", False, "Start-up mistakes raise with their traceback.")
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


def _fail(message: str):
  """One line on stderr, exit status 2 (the usage-error status, as jarl.predict's)."""
  print(f"jarl.main: error: {' '.join(message.split())}", file=sys.stderr)
  sys.exit(2)


def _flag_error(error: BaseException, argv: list[str]) -> str:
  """The message of a flag-parsing error, naming the flag. absl and ml_collections wrap the
  config file's own error (a ValueError naming the config argument) in traceback text."""
  chain = []
  while error is not None:
    chain.append(error)
    error = error.__cause__ or error.__context__
  keys = [e for e in chain if isinstance(e, KeyError)]
  if keys:  # an override's path: KeyError("'modl'\nDid you mean \"model\" ...?")
    key, _, hint = str(keys[0].args[0]).partition("\n")
    key = key.strip("'")
    named = [a.split("=")[0] for a in argv if re.match(rf"--config(\.\w+)*\.{key}\b", a)]
    return f"{named[0] if named else '--config'}: the config has no key {key!r}. {hint}"
  text = next((str(e) for e in chain if str(e).strip() and "Traceback" not in str(e)), "")
  lines = [line.strip() for line in text.splitlines() if line.strip()] or [repr(chain[0])]
  # A config file that failed to load says why on its last line ([Errno 2] ...).
  message = lines[0] if len(lines) == 1 else lines[-1]
  return message if "--" in message or "config argument" in message else f"--config: {message}"


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with the config file loaded too, a mistake made one line."""
  try:
    rest = flags.FLAGS(argv)
    _CONFIG.value.keys()  # a config file that failed to load raises here, not later
  except Exception as e:  # pylint: disable=broad-except
    if "--debug" in argv:
      raise
    _fail(_flag_error(e, argv))
  return rest


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _VERBOSE.value:
    logging.get_absl_handler().addFilter(_OwnInfoOnly())
    # TensorFlow (clu's TensorBoard writer) prints its oneDNN notice from C++ while it
    # loads, through absl's C++ logging, which TF_CPP_MIN_LOG_LEVEL no longer reaches
    # (TF 2.21): so it loads here with stderr closed. An import error still raises after.
    with _stderr_to_devnull():
      import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  # Imported after the above: it imports clu and with it TensorFlow.
  from jarl import train  # pylint: disable=import-outside-toplevel

  if _MULTIHOST.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except config_checks.ConfigError as e:
    if _DEBUG.value:
      raise
    _fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
