"""The notebooks run end to end (QUICK=1 sizes) in a fresh kernel of this interpreter."""

import json
import os
import re
import sys
import time

import pytest
import train_fixtures

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
KERNEL = "jarl-test-python"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
  """A kernelspec that starts `sys.executable` (whatever `python3` kernels the machine has
  may belong to another interpreter). The kernels inherit the session's compilation cache
  (conftest.py), so the second notebook's pretraining, model init and decoding come from
  the first's when both run."""
  root = tmp_path_factory.mktemp("jupyter")
  spec_dir = root / "kernels" / KERNEL
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(
    json.dumps(
      dict(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="JARL test",
        language="python",
      )
    )
  )
  return dict(
    JUPYTER_PATH=str(root),
    QUICK="1",
    JAX_PLATFORMS="cpu",
  )


def run_notebook(name, cwd, env, monkeypatch):
  import nbclient  # pylint: disable=import-outside-toplevel
  import nbformat  # pylint: disable=import-outside-toplevel

  for key, value in env.items():
    monkeypatch.setenv(key, value)
  # conftest's 8 fake devices are for in-process sharding tests; the notebooks run as a
  # user's would, on the one default CPU device.
  monkeypatch.setenv("XLA_FLAGS", train_fixtures.xla_flags())
  cwd.mkdir()
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  start = time.time()
  nbclient.NotebookClient(
    nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(cwd)}}
  ).execute()
  return nb, time.time() - start


def texts(nb) -> str:
  return "".join(
    o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
  )


def outputs(nb, mime):
  return [
    o
    for c in nb.cells
    if c.cell_type == "code"
    for o in c.get("outputs", [])
    if mime in o.get("data", {})
  ]


@pytest.mark.slow
@pytest.mark.ci
def test_quickstart_notebook_runs(tmp_path, kernel_env, monkeypatch):
  nb, seconds = run_notebook("quickstart.ipynb", tmp_path / "quickstart", kernel_env, monkeypatch)
  print(f"quickstart.ipynb: {seconds:.0f} s")
  # QUICK reached the kernel: 10 training steps, not 1000.
  assert re.search(r"\b10 steps in", texts(nb))
  # A training curve, two answered scenes and two latent-token figures (two questions).
  assert len(outputs(nb, "image/png")) >= 5
  maps = [c for c in nb.cells if c.cell_type == "code" and "plot_fusion_maps" in c.source]
  assert len(maps) == 2
  assert all(any("image/png" in o.get("data", {}) for o in c.outputs) for c in maps)
  # The default fusion is the paper's: the same image gives the same image latents.
  assert "image latents the same as for the first question: True" in texts(nb)


# Not ci (~3 min of CI's budget): its fine-tuning, evaluation and prediction run in CI in
# test_finetune_configs.py; this checks the notebook itself.
@pytest.mark.slow
def test_finetune_and_evaluate_notebook_runs(tmp_path, kernel_env, monkeypatch):
  nb, seconds = run_notebook(
    "finetune_and_evaluate.ipynb", tmp_path / "finetune", kernel_env, monkeypatch
  )
  print(f"finetune_and_evaluate.ipynb: {seconds:.0f} s")
  out = texts(nb)
  assert re.search(r"pretrained 10 steps.*fine-tuned 10 steps", out, re.S)
  assert "heldout" in out and "\nall " in out  # the per-type accuracy table
  assert len(outputs(nb, "image/png")) >= 3  # curves, answer grid(s), latent tokens
