"""SIGTERM (TPU preemption, `kill`) -> save at the next step boundary and exit cleanly."""

import signal

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np


class PreemptionFlag:
  """Set by SIGTERM; the train loop polls `requested(step)` once per step.

  Installing the handler replaces the default "die now" so the signal cannot land in
  the middle of an update or a checkpoint write. On several processes the hosts agree
  (logical OR) so that all of them save the same step.
  """

  def __init__(self):
    self._flag = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received signal %d: will save a checkpoint and exit at the next step.", signum)
    self._flag = True

  def requested(self) -> bool:
    if jax.process_count() == 1:
      return self._flag
    flags = multihost_utils.process_allgather(np.array(self._flag))
    return bool(np.any(flags))

  def restore_handler(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)
