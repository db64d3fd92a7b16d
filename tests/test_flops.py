"""jarl.tools.flops: XLA-counted FLOPs add up, fusion choices move them the right way, and
the train step is costed with the whole objective."""

import json
import subprocess
import sys

import pytest

from configs import pretrain
from jarl.tools import flops


@pytest.fixture(scope="module")
def tiny_costs():
  """The tests' tiny model (the demo's code paths) on 32 px images: 16 patches + 8 text
  tokens, against the fusion's 2 x 4 latents."""
  out = {}
  for fusion_type in ("jarl", "concat", "cross_attention"):
    c = pretrain.get_config("tiny")
    c.model.vision.image_size = c.data.image_size = 32
    c.model.fusion.type = fusion_type
    out[fusion_type] = flops.measure(c, batch_size=2)
  return out


def test_parts_add_up_to_the_forward_pass(tiny_costs):
  r = tiny_costs["jarl"]
  assert sum(r["parts_gflops_per_example"].values()) == pytest.approx(
    r["forward_gflops_per_example"], rel=1e-6
  )
  assert r["params"] == sum(r["params_per_part"].values())
  # A train step (forward + backward) costs about three forward passes.
  assert 2.0 < r["train_gflops_per_example"] / r["forward_gflops_per_example"] < 4.0


def test_jarl_fusion_is_cheaper_than_concat_at_equal_towers(tiny_costs):
  jarl, concat = tiny_costs["jarl"], tiny_costs["concat"]
  for part in ("vision", "text"):
    assert jarl["parts_gflops_per_example"][part] == concat["parts_gflops_per_example"][part]
  assert jarl["parts_gflops_per_example"]["fusion"] < concat["parts_gflops_per_example"]["fusion"]
  # The decoder cross-attends to 2N = 8 latents instead of all Nv + Nt = 24 tokens.
  assert (
    jarl["parts_gflops_per_example"]["decoder"]
    < tiny_costs["cross_attention"]["parts_gflops_per_example"]["decoder"]
  )


def test_cli_prints_a_json_last_line_and_accepts_overrides():
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "jarl.tools.flops",
      "--config=configs/pretrain.py:tiny",
      "--config.model.fusion.num_tokens=2",
      "--batch_size=1",
    ],
    capture_output=True,
    text=True,
    check=True,
  )
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert {"forward_gflops_per_example", "train_gflops_per_example", "params"} <= set(result)
  assert result["forward_gflops_per_example"] > 0 and result["params"] > 0


def test_train_cost_includes_the_auxiliary_losses_that_are_on():
  """ViCHA's alignment runs the text tower over the target: counted only while weighted."""
  config = pretrain.get_config("tiny")
  config.data.tags = ("circle", "square")
  config.losses.tag_weight = 1.0
  config.model.vicha.contrastive_depths = ((1, 1), (2, 1))
  config.losses.contrastive_weight = 0.0
  off = flops.measure(config, batch_size=2)
  config.losses.contrastive_weight = 1.0
  on = flops.measure(config, batch_size=2)
  assert on["forward_gflops_per_example"] == off["forward_gflops_per_example"]
  assert on["train_gflops_per_example"] > 1.05 * off["train_gflops_per_example"]
  assert on["train_losses"] == ("decoder", "contrastive", "tags")
  assert off["train_losses"] == ("decoder", "tags")
