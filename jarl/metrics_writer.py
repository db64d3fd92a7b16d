"""Metric writers: a log line per write, TensorBoard, and `<workdir>/metrics.jsonl`.

Only process 0 writes files; other processes only log. metrics.jsonl holds one JSON
object per write, `{"step": s, "name": value, ...}`, easy to read back in tests and
notebooks without TensorFlow. The log line leads with what a reader looks for first
(`step 6 | loss 5.64 | 312 examples/s | ...`), and the writer keeps each scalar's last
value for the end-of-run summary (`Writer.last`).
"""

import json
import os

from absl import logging
from clu import metric_writers
import jax
import numpy as np

# Shown first in the log line (key, how); the rest follow in name order.
LEAD = (("train/loss", "loss {:.4f}"), ("perf/examples_per_s", "{:.1f} examples/s"))
# clu's ReportProgress writes these each log step: examples/s already says it in the log
# line (TensorBoard and metrics.jsonl keep them).
NOT_LOGGED = ("steps_per_sec", "uptime")


def format_scalars(step: int, scalars) -> str:
  """`step 6 | loss 5.6396 | 312.4 examples/s | name=value, ...` (values to 6 digits)."""
  values = {k: float(np.asarray(v)) for k, v in scalars.items() if k not in NOT_LOGGED}
  parts = [f"step {int(step)}"]
  parts += [how.format(values.pop(key)) for key, how in LEAD if key in values]
  rest = ", ".join(f"{k}={v:.6g}" for k, v in sorted(values.items()))
  return " | ".join(parts + ([rest] if rest else []))


class LogWriter(metric_writers.LoggingWriter):
  """clu's LoggingWriter with our scalar line (`format_scalars`), logged from this module
  so that it passes jarl.main's filter of third-party INFO lines."""

  def write_scalars(self, step, scalars):
    if set(scalars) - set(NOT_LOGGED):
      logging.info("%s", format_scalars(step, scalars))


class Writer(metric_writers.MultiWriter):
  """Writes to every writer and keeps `last`: {name: (step, value)} of every scalar."""

  def __init__(self, writers):
    super().__init__(writers)
    self.last: dict[str, tuple[int, float]] = {}

  def write_scalars(self, step, scalars):
    super().write_scalars(step, scalars)
    self.last.update({k: (int(step), float(np.asarray(v))) for k, v in scalars.items()})


class JsonlWriter(metric_writers.MetricWriter):
  """Appends scalars as JSON lines; other kinds of summaries are ignored."""

  def __init__(self, path: str):
    self._path = path
    self._file = open(path, "a", encoding="utf-8")

  def write_scalars(self, step, scalars):
    record = {"step": int(step)}
    record.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._file.write(json.dumps(record) + "\n")

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


def make_writer(workdir: str) -> Writer:
  """Log + TensorBoard + metrics.jsonl on process 0; logging only elsewhere."""
  if jax.process_index() != 0:
    return Writer([LogWriter()])
  os.makedirs(workdir, exist_ok=True)
  return Writer(
    [
      LogWriter(),
      metric_writers.SummaryWriter(workdir),
      JsonlWriter(os.path.join(workdir, "metrics.jsonl")),
    ]
  )


def read_jsonl(workdir: str) -> list[dict]:
  """All records of `<workdir>/metrics.jsonl` in write order."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
