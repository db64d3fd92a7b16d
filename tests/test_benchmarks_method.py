"""benchmarks/method_comparison.py --quick: the pretrain -> fine-tune VQA chain for 5 methods."""
import json
import os
import subprocess
import sys

import pytest

import train_fixtures


@pytest.mark.slow
def test_quick_comparison_runs_every_method_and_prints_one_json_line(tmp_path):
  script = os.path.join(train_fixtures.repo_root(), "benchmarks", "method_comparison.py")
  proc = subprocess.run([sys.executable, script, "--quick", f"--workdir={tmp_path}"],
                        cwd=train_fixtures.repo_root(), env=train_fixtures.main_env(),
                        capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert set(result["methods"]) == {"jarl", "jarl_elip", "concat_elip", "jarl_vicha", "concat"}
  assert len(result["runs"]) == 5 and result["seeds"] == [0]
  for run in result["runs"]:
    for key in ("val_accuracy", "heldout_accuracy"):
      assert 0.0 <= run[key] <= 1.0
  gflops = {m: s["forward_gflops_per_example"] for m, s in result["methods"].items()}
  # ELIP prunes vision tokens: cheaper than the same fusion without it.
  assert gflops["jarl_elip"] < gflops["jarl"] and gflops["concat_elip"] < gflops["concat"]
  # ViCHA's losses are pretraining-only: the fine-tuned model is plain JARL, while its
  # pretraining step pays for the caption's text pass and the masked ViT pass.
  assert gflops["jarl_vicha"] == gflops["jarl"]
  pretrain_step = {m: s["pretrain_train_gflops_per_example"] for m, s in result["methods"].items()}
  assert pretrain_step["jarl_vicha"] > 1.2 * pretrain_step["jarl"]
  # The ViCHA pretraining run logged its per-loss metrics.
  records = [json.loads(line) for line in
             open(tmp_path / "jarl_vicha_seed0_pre" / "metrics.jsonl", encoding="utf-8")]
  assert any("train/loss_contrastive" in r and "train/loss_mim" in r for r in records)
