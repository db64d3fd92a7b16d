"""jarl.flops: XLA-counted FLOPs add up, and fusion choices move them the right way."""
import json
import subprocess
import sys

import pytest

from configs import pretrain
from jarl import flops


@pytest.fixture(scope="module")
def demo_costs():
  out = {}
  for fusion_type in ("jarl", "concat", "cross_attention"):
    c = pretrain.get_config("demo").model
    c.fusion.type = fusion_type
    out[fusion_type] = flops.measure(c, batch_size=2)
  return out


def test_parts_add_up_to_the_forward_pass(demo_costs):
  r = demo_costs["jarl"]
  assert sum(r["parts_gflops_per_example"].values()) == pytest.approx(
      r["forward_gflops_per_example"], rel=1e-6)
  assert r["params"] == sum(r["params_per_part"].values())
  # A train step (forward + backward) costs about three forward passes.
  assert 2.0 < r["train_gflops_per_example"] / r["forward_gflops_per_example"] < 4.0


def test_jarl_fusion_is_cheaper_than_concat_at_equal_towers(demo_costs):
  jarl, concat = demo_costs["jarl"], demo_costs["concat"]
  for part in ("vision", "text"):
    assert jarl["parts_gflops_per_example"][part] == concat["parts_gflops_per_example"][part]
  assert jarl["parts_gflops_per_example"]["fusion"] < concat["parts_gflops_per_example"]["fusion"]
  # The decoder cross-attends to M joint tokens instead of all Nv + Nt tokens.
  assert jarl["parts_gflops_per_example"]["decoder"] < \
      demo_costs["cross_attention"]["parts_gflops_per_example"]["decoder"]


def test_cli_prints_a_json_last_line_and_accepts_overrides():
  proc = subprocess.run(
      [sys.executable, "-m", "jarl.flops", "--config=configs/pretrain.py:demo",
       "--config.model.fusion.num_tokens=4", "--batch_size=1"],
      capture_output=True, text=True, check=True)
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert {"forward_gflops_per_example", "train_gflops_per_example", "params"} <= set(result)
  assert result["forward_gflops_per_example"] > 0 and result["params"] > 0
