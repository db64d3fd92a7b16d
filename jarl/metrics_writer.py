"""Metric writers: clu's default (log + TensorBoard) plus `<workdir>/metrics.jsonl`.

Only process 0 writes files; other processes only log. metrics.jsonl holds one JSON
object per write, `{"step": s, "name": value, ...}`, easy to read back in tests and
notebooks without TensorFlow.
"""

import json
import os

from clu import metric_writers
import jax
import numpy as np


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


def make_writer(workdir: str) -> metric_writers.MetricWriter:
  """Log + TensorBoard + metrics.jsonl on process 0; logging only elsewhere."""
  if jax.process_index() != 0:
    return metric_writers.create_default_writer(just_logging=True, asynchronous=False)
  os.makedirs(workdir, exist_ok=True)
  default = metric_writers.create_default_writer(workdir, asynchronous=False)
  return metric_writers.MultiWriter([default, JsonlWriter(os.path.join(workdir, "metrics.jsonl"))])


def read_jsonl(workdir: str) -> list[dict]:
  """All records of `<workdir>/metrics.jsonl` in write order."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
