"""`python -m jarl.main` end to end: exact resume after SIGTERM / SIGKILL, init_from,
and a workdir holding another model. Subprocesses, so these are `slow` (CI runs `ci`)."""

import os
import shutil
import signal
import time

import pytest
import train_fixtures

from jarl import metrics_writer

N = 30
# An adaptive sampling policy, so that resuming must restore the mixer's weights too.
RUN = dict(
  total_steps=N,
  ckpt_every_steps=10,
  evals__val__every_steps=10,
  data__sampling__policy="learning_progress",
)


def _by_step(workdir, key):
  """{step: value} of `key` in metrics.jsonl; a re-run step keeps its last value."""
  return {r["step"]: r[key] for r in metrics_writer.read_jsonl(workdir) if key in r}


def _wait_for(predicate, proc, timeout=240):
  deadline = time.time() + timeout
  while not predicate():
    if proc.poll() is not None:
      raise AssertionError(
        f"run ended (rc={proc.returncode}) before the test could "
        f"interrupt it:\n{proc.stdout.read()[-3000:]}"
      )
    if time.time() > deadline:
      proc.kill()
      raise AssertionError("timed out waiting for the run")
    time.sleep(0.01)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run of N steps."""
  workdir = tmp_path_factory.mktemp("reference")
  result = train_fixtures.run_main(workdir, **RUN)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _assert_same_run(reference, resumed, resumed_from):
  ref_loss, loss = _by_step(reference, "train/loss"), _by_step(resumed, "train/loss")
  assert sorted(loss) == list(range(1, N + 1))
  assert abs(loss[N] - ref_loss[N]) <= 1e-6, (loss[N], ref_loss[N])
  # Same data order after the resume point: identical batches, step by step.
  ref_crc, crc = _by_step(reference, "data/batch_crc32"), _by_step(resumed, "data/batch_crc32")
  assert [crc[s] for s in range(resumed_from + 1, N + 1)] == [
    ref_crc[s] for s in range(resumed_from + 1, N + 1)
  ]
  assert abs(_by_step(resumed, "val/loss")[N] - _by_step(reference, "val/loss")[N]) <= 1e-6
  # The same sampling weights after the resume point, and they did move.
  for key in ("data/weight/caption", "data/weight/prefix_lm"):
    ref_w, w = _by_step(reference, key), _by_step(resumed, key)
    assert [w[s] for s in range(resumed_from + 1, N + 1)] == [
      ref_w[s] for s in range(resumed_from + 1, N + 1)
    ]
    assert len(set(ref_w.values())) > 1, (key, ref_w)


@pytest.mark.slow
@pytest.mark.ci
def test_sigterm_saves_exits_cleanly_and_resumes_exactly(reference, tmp_path):
  proc = train_fixtures.start_main(tmp_path, **RUN)
  metrics = tmp_path / "metrics.jsonl"
  _wait_for(lambda: metrics.exists() and '"step": 5,' in metrics.read_text(), proc)
  proc.send_signal(signal.SIGTERM)
  output = proc.communicate(timeout=240)[0]
  assert proc.returncode == 0, output[-3000:]
  saved = max(int(s) for s in os.listdir(tmp_path / "checkpoints"))
  assert 5 <= saved < N, f"SIGTERM should stop the run early; last checkpoint {saved}"
  assert max(_by_step(tmp_path, "train/loss")) == saved  # stopped at the saved step

  result = train_fixtures.run_main(tmp_path, **RUN)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from {tmp_path / 'checkpoints'} at step {saved}" in result.stderr
  _assert_same_run(reference, tmp_path, saved)


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_resumes_exactly(reference, tmp_path):
  proc = train_fixtures.start_main(tmp_path, **RUN)
  # A step directory appears only after its save is complete (atomic rename).
  _wait_for(lambda: (tmp_path / "checkpoints" / "10").exists(), proc)
  proc.send_signal(signal.SIGKILL)
  proc.communicate(timeout=60)
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert steps and steps[-1] < N

  result = train_fixtures.run_main(tmp_path, **RUN)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"at step {steps[-1]}" in result.stderr
  _assert_same_run(reference, tmp_path, steps[-1])


@pytest.mark.slow
@pytest.mark.ci
def test_workdir_with_another_model_is_a_clear_error(reference, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(reference, workdir)
  result = train_fixtures.run_main(workdir, **RUN, model__decoder__mlp_dim=48)
  assert result.returncode != 0
  assert "holds a checkpoint of a different model" in result.stderr
  assert "params/decoder" in result.stderr and "vs model" in result.stderr


@pytest.mark.slow
def test_init_from_loads_parameters_only(reference, tmp_path):
  result = train_fixtures.run_main(
    tmp_path, total_steps=2, ckpt_every_steps=10, init_from=str(reference)
  )
  assert result.returncode == 0, result.stderr[-3000:]
  # Step-0 validation of the new run = final validation of the run it starts from.
  start = _by_step(tmp_path, "val/loss")[0]
  assert abs(start - _by_step(reference, "val/loss")[N]) <= 1e-6
  assert "init_from" in result.stderr and "missing []" in result.stderr
