"""Two JAX processes x 4 CPU devices (gloo collectives), as on a 2-host pod slice:
per-process data state in checkpoints, SIGTERM to one host stops both at the same step."""
import os
import signal
import socket
import subprocess
import time

import pytest

import train_fixtures


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_job(workdir, tmp_path, **overrides):
  port = _free_port()
  env = dict(train_fixtures.main_env(tmp_path / "jax_cache"),
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  procs = []
  for i in range(2):
    cmd = train_fixtures.main_command(workdir, **overrides) + [
        "--multihost", f"--coordinator=localhost:{port}", "--num_processes=2",
        f"--process_id={i}"]
    log = open(tmp_path / f"process_{i}.log", "a", encoding="utf-8")
    procs.append(subprocess.Popen(cmd, cwd=train_fixtures.repo_root(), env=env, stdout=log,
                                  stderr=subprocess.STDOUT))
  return procs


def _wait_all(procs, timeout=300):
  try:
    return [p.wait(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()


@pytest.mark.slow
def test_two_processes_preempt_together_and_resume(tmp_path):
  workdir = tmp_path / "w"
  run = dict(total_steps=60, ckpt_every_steps=50, evals__val__every_steps=50)
  procs = _start_job(workdir, tmp_path, **run)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 300
  while not (metrics.exists() and '"step": 5,' in metrics.read_text()):
    assert time.time() < deadline and all(p.poll() is None for p in procs), "job ended early"
    time.sleep(0.01)
  procs[1].send_signal(signal.SIGTERM)  # only one host hears about the preemption
  assert _wait_all(procs) == [0, 0]
  steps = os.listdir(workdir / "checkpoints")
  assert len(steps) == 1 and 5 <= int(steps[0]) < 60
  step = int(steps[0])
  assert sorted(os.listdir(workdir / "checkpoints" / steps[0] / "data")) == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]

  assert _wait_all(_start_job(workdir, tmp_path, **dict(run, total_steps=step + 3))) == [0, 0]
  for i in range(2):
    assert f"at step {step}." in (tmp_path / f"process_{i}.log").read_text()
  losses = [r for r in train_fixtures.read_metrics(workdir) if "train/loss" in r]
  assert losses[-1]["step"] == step + 3
