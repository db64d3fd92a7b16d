"""train_and_evaluate in-process on the tiny config: metrics, checkpoints, errors."""

import os

import numpy as np
import pytest
import train_fixtures

from jarl import metrics_writer, train
from jarl.data import pipeline


def test_trains_evaluates_checkpoints_and_logs(tmp_path, caplog):
  workdir = str(tmp_path)
  state = train.train_and_evaluate(train_fixtures.tiny_config(total_steps=6), workdir)
  assert int(state.step) == 6
  # The tiny config's 8-token texts are nearly all cut: one warning, not one per log step.
  truncation = [r for r in caplog.records if "cut to fit" in r.getMessage()]
  assert len(truncation) == 1 and truncation[0].levelname == "WARNING"
  records = metrics_writer.read_jsonl(workdir)
  losses = {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
  assert sorted(losses) == [1, 2, 3, 4, 5, 6]
  val = {r["step"]: r["val/loss"] for r in records if "val/loss" in r}
  assert sorted(val) == [0, 3, 6]
  # Every validation example counted exactly once (padding rows masked out).
  assert {r["val/examples"] for r in records if "val/examples" in r} == {16.0}
  assert val[6] < val[0] - 0.3  # it learns: lr 3e-3 on the shapes captions
  last = [r for r in records if "train/loss" in r][-1]
  for key in (
    "train/learning_rate",
    "train/grad_norm",
    "perf/examples_per_s",
    "perf/tflops_per_s",
    "data/batch_crc32",
  ):
    assert key in last and np.isfinite(last[key])
  assert last["perf/tflops_per_s"] > 0
  assert any(k.startswith("train/loss_") for k in last)  # per-dataset losses
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6"]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(global_batch_size=7), "config.global_batch_size=7"),
    (dict(optimizer__learning_rate=-1.0), "config.optimizer.learning_rate=-1.0"),
    (dict(optimizer__grad_accum_steps=3), "config.optimizer.grad_accum_steps=3"),
    (dict(optimizer__b2=1.0), "config.optimizer.b2=1.0"),
    (dict(mesh=[("data", 3), ("fsdp", -1), ("model", 1)]), "config.mesh="),
    (dict(evals__val__type="bleu"), "config.evals.val.type='bleu'"),
    (dict(evals__val__batch_size=12), "config.evals.val.batch_size=12"),
    (dict(model__fusion__num_tokens=0), "config.model.fusion.num_tokens=0"),
    (dict(model__vocab_size=300), "config.model.vocab_size=300"),
  ],
)
def test_bad_config_fails_before_anything_is_written(tmp_path, overrides, message):
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(train_fixtures.tiny_config(**overrides), str(tmp_path))
  assert message in str(e.value)
  assert not os.path.exists(tmp_path / "metrics.jsonl")
  assert not os.path.exists(tmp_path / "checkpoints")


def test_nonfinite_loss_stops_with_step_and_last_checkpoint(tmp_path, monkeypatch):
  real = pipeline.make_train_data

  class PoisonAtBatch4:
    """The real pipeline, with a NaN pixel in the 4th batch."""

    def __init__(self, *args, **kwargs):
      self._inner, self._count = real(*args, **kwargs), 0

    def __next__(self):
      batch = next(self._inner)
      self._count += 1
      if self._count == 4:
        batch["image"][0, 0, 0, 0] = np.nan
      return batch

    def __getattr__(self, name):
      return getattr(self._inner, name)

  monkeypatch.setattr(pipeline, "make_train_data", PoisonAtBatch4)
  config = train_fixtures.tiny_config(total_steps=6, ckpt_every_steps=2)
  with pytest.raises(FloatingPointError) as e:
    train.train_and_evaluate(config, str(tmp_path))
  assert "at step 4" in str(e.value)
  assert str(tmp_path / "checkpoints" / "2") in str(e.value)
