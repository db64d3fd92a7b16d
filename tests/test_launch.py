"""launch/*.sh --dry-run: the exact commands each script would run, parsed as a shell would."""

import os
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dry_run(script, *args) -> list[list[str]]:
  """Each printed line split into words by shlex (i.e. as bash would parse it)."""
  result = subprocess.run(
    ["bash", os.path.join(ROOT, "launch", script), "--dry-run", *args],
    capture_output=True,
    text=True,
    timeout=30,
    check=True,
  )
  return [shlex.split(line) for line in result.stdout.splitlines()]


def test_tpu_vm_creates_installs_runs_on_all_workers_tails_and_deletes():
  lines = _dry_run(
    "tpu_vm.sh",
    "--name=jarl-base",
    "--zone=us-central2-b",
    "--accelerator=v4-32",
    "--bucket=gs://bkt/",
    "--spot",
    "--",
    "--config.total_steps=10",
    "--config.note=it's",
  )
  gcloud = [line[4:] for line in lines if line[:4] == ["gcloud", "compute", "tpus", "tpu-vm"]]
  assert [g[0] for g in gcloud] == ["create", "scp", "ssh", "ssh", "ssh", "delete"]
  assert gcloud[0] == [
    "create",
    "jarl-base",
    "--zone=us-central2-b",
    "--accelerator-type=v4-32",
    "--version=tpu-ubuntu2204-base",
    "--spot",
  ]
  install, train, tail = gcloud[2], gcloud[3], gcloud[4]
  assert "--worker=all" in install and "pip install -q -e '.[tpu]'" in install[-1]
  assert "--worker=all" in train and "--worker=0" in tail
  command = train[-1].removeprefix("--command=")
  assert "export TFDS_DATA_DIR=gs://bkt/tensorflow_datasets" in command
  # The remote shell must see jarl.main's flags as separate words, the quote included.
  main = shlex.split(command.split("nohup ", 1)[1].split(" > ")[0])
  assert main == [
    "python",
    "-m",
    "jarl.main",
    "--multihost",
    # --bucket also sets base's tokenizer and shard paths (configs/pretrain.py `bucket=`).
    "--config=configs/pretrain.py:base,bucket=gs://bkt",
    "--workdir=gs://bkt/jarl/jarl-base",
    "--config.data.tfds_data_dir=gs://bkt/tensorflow_datasets",
    "--config.total_steps=10",
    "--config.note=it's",
  ]
  assert "tail --pid" in tail[-1]
  assert gcloud[5] == ["delete", "jarl-base", "--zone=us-central2-b", "--quiet"]
  assert lines[0][:2] == ["git", "-C"] and "archive" in lines[0]


def test_tpu_vm_keeps_a_bucket_in_the_config_and_warns_of_uncommitted_changes(tmp_path):
  lines = _dry_run(
    "tpu_vm.sh", "--name=n", "--zone=z", "--bucket=gs://b", "--config=c.py:large,bucket=gs://o"
  )
  assert any("--config=c.py:large,bucket=gs://o" in " ".join(line) for line in lines)
  # A checkout with an uncommitted change: the script names what will not ship.
  repo = tmp_path / "repo"
  shutil.copytree(os.path.join(ROOT, "launch"), repo / "launch")
  git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
  git("init", "-q")
  git("add", ".")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
  with open(repo / "launch" / "common.sh", "a") as f:
    f.write("# an edit not yet committed\n")
  result = subprocess.run(
    [
      "bash",
      str(repo / "launch" / "tpu_vm.sh"),
      "--dry-run",
      "--name=n",
      "--zone=z",
      "--bucket=gs://b",
    ],
    capture_output=True,
    text=True,
    timeout=30,
    check=True,
  )
  assert "uncommitted changes" in result.stderr and "will not run" in result.stderr


def test_tpu_vm_keep_skips_delete_and_missing_bucket_fails():
  lines = _dry_run("tpu_vm.sh", "--name=n", "--zone=z", "--bucket=gs://b", "--keep")
  assert not any("delete" in line for line in lines)
  with pytest.raises(subprocess.CalledProcessError) as e:
    _dry_run("tpu_vm.sh", "--name=n", "--zone=z", "--bucket=/local/dir")
  assert "--bucket=gs://" in e.value.stderr


def test_gpu_uses_every_gpu_unless_told_how_many():
  lines = _dry_run("gpu.sh", "--workdir=/tmp/w")
  assert not any("CUDA_VISIBLE_DEVICES" in word for word in lines[1])


def test_gpu_runs_one_process_on_n_gpus():
  lines = _dry_run(
    "gpu.sh",
    "--gpus=4",
    "--workdir=/tmp/run dir",
    "--install",
    "--",
    "--config.total_steps=7",
  )
  assert lines[0] == ["pip", "install", "-e", f"{ROOT}[gpu]"]
  assert lines[1] == ["mkdir", "-p", "/tmp/run dir"]
  assert lines[2][:3] == ["(cd", ROOT, "&&"]
  words = lines[2][lines[2].index("env") :]
  assert words[:3] == ["env", "CUDA_VISIBLE_DEVICES=0,1,2,3", "XLA_PYTHON_CLIENT_MEM_FRACTION=0.9"]
  assert words[3:] == [
    "python",
    "-m",
    "jarl.main",
    "--config=configs/pretrain.py:base",
    "--workdir=/tmp/run dir",
    "--config.total_steps=7",
    "2>&1",
    "|",
    "tee",
    "-a",
    "/tmp/run dir/train.log)",
  ]


def test_local_multiprocess_starts_every_process_with_its_id():
  lines = _dry_run(
    "local_multiprocess.sh",
    "--workdir=/tmp/mp",
    "--processes=3",
    "--devices=2",
    "--port=23456",
    "--",
    "--config.total_steps=5",
  )
  assert lines[0] == ["mkdir", "-p", "/tmp/mp"] and lines[-1] == ["wait"]
  starts = lines[1:-1]
  assert len(starts) == 3
  for i, words in enumerate(starts):
    assert words[-4:] == [">", f"/tmp/mp/process_{i}.log", "2>&1)", "&"]
    env = words[words.index("env") : words.index("python")]
    assert env[1:] == [
      "JAX_PLATFORMS=cpu",
      "JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo",
      "XLA_FLAGS=--xla_force_host_platform_device_count=2",
    ]
    assert words[words.index("python") : -4] == [
      "python",
      "-m",
      "jarl.main",
      "--multihost",
      "--coordinator=127.0.0.1:23456",
      "--num_processes=3",
      f"--process_id={i}",
      "--config=configs/pretrain.py:demo",
      "--workdir=/tmp/mp",
      "--config.total_steps=5",
    ]
