"""SIGTERM handling and the metrics.jsonl writer (no model, instant)."""

import os
import signal

from jarl import metrics_writer, preemption


def test_sigterm_sets_the_flag_instead_of_killing():
  previous = signal.getsignal(signal.SIGTERM)
  flag = preemption.PreemptionFlag()
  try:
    assert not flag.requested()
    os.kill(os.getpid(), signal.SIGTERM)  # would end the test process without the handler
    assert flag.requested()
  finally:
    flag.restore_handler()
  assert signal.getsignal(signal.SIGTERM) == previous


def test_jsonl_writer_appends_one_object_per_write(tmp_path):
  writer = metrics_writer.make_writer(str(tmp_path))
  writer.write_scalars(1, {"train/loss": 2.5, "data/weight/a": 0.25})
  writer.write_scalars(2, {"val/loss": 1.0})
  writer.flush()
  writer.close()
  assert metrics_writer.read_jsonl(str(tmp_path)) == [
    {"step": 1, "train/loss": 2.5, "data/weight/a": 0.25},
    {"step": 2, "val/loss": 1.0},
  ]
  # A resumed run appends to the same file.
  again = metrics_writer.make_writer(str(tmp_path))
  again.write_scalars(3, {"val/loss": 0.5})
  again.close()
  assert [r["step"] for r in metrics_writer.read_jsonl(str(tmp_path))] == [1, 2, 3]
