"""Several JAX processes on this machine (gloo collectives over 127.0.0.1), as on a pod:

* CI: 2 processes x 2 CPU devices train like 1 process x 4 devices (same losses), a
  checkpoint of either layout resumes in the other, each process reads only its shard of
  the data, and only process 0 writes metric files.
* slow: 2 processes x 4 devices of `python -m jarl.main`; SIGTERM to one host stops both
  at the same step, per-process data state in checkpoints, resume.
"""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import train_fixtures

from jarl import sharding, train


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start_processes(tmp_path, command_for, *, devices_per_process, num_processes=2):
  """Starts `command_for(process_id, coordinator)` for each process; logs go to
  tmp_path/process_<i>.log. All share the session's compilation cache (conftest.py)."""
  coordinator = f"127.0.0.1:{_free_port()}"
  env = dict(
    train_fixtures.main_env(),
    XLA_FLAGS=train_fixtures.xla_flags(devices_per_process),
    JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    PYTHONPATH=train_fixtures.repo_root(),
  )
  procs = []
  for i in range(num_processes):
    log = open(tmp_path / f"process_{i}.log", "a", encoding="utf-8")
    procs.append(
      subprocess.Popen(
        command_for(i, coordinator),
        cwd=train_fixtures.repo_root(),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
      )
    )
  return procs


def _start_job(workdir, tmp_path, **overrides):
  """`python -m jarl.main --multihost` on 2 processes x 4 devices."""

  def command(i, coordinator):
    return train_fixtures.main_command(workdir, **overrides) + [
      "--multihost",
      f"--coordinator={coordinator}",
      "--num_processes=2",
      f"--process_id={i}",
    ]

  return _start_processes(tmp_path, command, devices_per_process=4)


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
    "commit_success.txt",
    "process_0-of-2.json",
    "process_1-of-2.json",
  ]

  assert _wait_all(_start_job(workdir, tmp_path, **dict(run, total_steps=step + 3))) == [0, 0]
  for i in range(2):
    assert f"at step {step}." in (tmp_path / f"process_{i}.log").read_text()
  losses = [r for r in train_fixtures.read_metrics(workdir) if "train/loss" in r]
  assert losses[-1]["step"] == step + 3
  # Only process 0 writes metric files: one record per step, one TensorBoard file per run.
  assert [r["step"] for r in losses] == sorted({r["step"] for r in losses})
  assert len(glob.glob(str(workdir / "events.out.tfevents.*"))) == 2


@pytest.mark.slow
@pytest.mark.ci
def test_two_processes_train_like_one_and_swap_checkpoints(tmp_path):
  steps, save_at = 4, 2
  config = train_fixtures.tiny_config(mesh=train_fixtures.LOCKSTEP_MESH)
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:4])  # 1 process x 4 devices
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    one = train_fixtures.lockstep_run(
      config, trainer, steps=steps, save_at=save_at, workdir=str(tmp_path / "one")
    )

  two_dir = tmp_path / "two"

  def command(i, coordinator):
    return [
      sys.executable,
      os.path.join("tests", "train_fixtures.py"),
      f"--coordinator={coordinator}",
      "--num_processes=2",
      f"--process_id={i}",
      f"--workdir={two_dir}",
      f"--steps={steps}",
      f"--save_at={save_at}",
      f"--resume={tmp_path / 'one' / 'checkpoints' / str(save_at)}",
      f"--out={tmp_path / 'two'}",
    ]

  procs = _start_processes(tmp_path, command, devices_per_process=2)
  codes = _wait_all(procs, timeout=240)
  assert codes == [0, 0], (tmp_path / "process_0.log").read_text()[-3000:]
  outs = []
  for i in range(2):
    with open(tmp_path / f"two.{i}.json", encoding="utf-8") as f:
      out = json.load(f)
    outs.append(
      {
        k: {int(s): v for s, v in out[k].items()} if k in ("fresh", "resumed") else out[k]
        for k in out
      }
    )
  assert [(o["process_index"], o["process_count"], o["local_devices"]) for o in outs] == [
    (0, 2, 2),
    (1, 2, 2),
  ]

  with jax.set_mesh(mesh):  # the 1-process job resumes the 2-process checkpoint
    one_resumed = train_fixtures.lockstep_run(
      config, trainer, steps=steps, resume=str(two_dir / "checkpoints" / str(save_at))
    )

  assert one[1] > 1.0 and one[3] < one[1] - 0.1  # a real loss; batch 1 again at step 3
  for out in outs:
    np.testing.assert_allclose([out["fresh"][s] for s in one], list(one.values()), rtol=1e-5)
    # 2 processes resume the 1-process checkpoint: the same next losses as the 1-process run.
    assert sorted(out["resumed"]) == [3, 4]
    np.testing.assert_allclose([out["resumed"][s] for s in (3, 4)], [one[3], one[4]], rtol=1e-5)
  np.testing.assert_allclose(
    [one_resumed[s] for s in (3, 4)], [outs[0]["fresh"][3], outs[0]["fresh"][4]], rtol=1e-5
  )
  assert sorted(os.listdir(two_dir / "checkpoints" / str(save_at) / "data")) == [
    "commit_success.txt",
    "process_0-of-2.json",
    "process_1-of-2.json",
  ]

  # Each process reads only its own shard (records i with i % 2 == process index).
  for out in outs:
    read = out["records_read"]
    assert read and all(r % 2 == out["process_index"] for r in read), read[:10]
  # Only process 0 writes metric files.
  assert train_fixtures.read_metrics(two_dir) == [
    {"step": steps, "train/loss": pytest.approx(one[steps], rel=1e-5)}
  ]
  assert len(glob.glob(str(two_dir / "events.out.tfevents.*"))) == 1
