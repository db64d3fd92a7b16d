"""jarl.tools.plan: compile-only memory/FLOPs of the train step for a simulated mesh."""

import importlib
import json
import subprocess
import sys

import jax
import pytest
import train_fixtures

from jarl import batch as batch_lib
from jarl import losses
from jarl.tools import flops, plan


def test_fsdp_shards_parameters_and_optimizer_but_not_flops():
  config = train_fixtures.tiny_config(mesh=[("data", 8), ("fsdp", 1), ("model", 1)])
  data_only = plan.plan(config, hbm_gib=1.0)
  config.mesh = [("data", 2), ("fsdp", 4), ("model", 1)]
  fsdp = plan.plan(config, hbm_gib=1e-5)  # 10.7 KiB: too small for this step

  # Replicated: every device holds all f32 parameters, Adam holds two moments of each.
  assert data_only["params_bytes"] == 4 * data_only["params"]
  assert data_only["opt_bytes"] >= 2 * data_only["params_bytes"]
  # FSDP splits every weight with an `embed` dimension 4 ways; only small vectors without
  # one (MLP / head biases) stay whole.
  assert fsdp["params"] == data_only["params"]
  assert fsdp["params_bytes"] < 0.3 * data_only["params_bytes"]
  assert fsdp["opt_bytes"] < 0.3 * data_only["opt_bytes"]
  for r in (data_only, fsdp):
    assert r["per_device_bytes"] == (
      r["argument_bytes"] + r["output_bytes"] - r["alias_bytes"] + r["temp_bytes"]
    )
    assert r["temp_bytes"] > 0
    # The donated state is aliased to the new state: it is counted once.
    assert r["alias_bytes"] >= r["params_bytes"] + r["opt_bytes"]
    assert r["examples_per_device"] == 1.0
  assert fsdp["per_device_bytes"] < data_only["per_device_bytes"]
  assert data_only["fits"] and data_only["per_device_bytes"] < 2**30
  assert not fsdp["fits"] and fsdp["per_device_bytes"] > 1e-5 * 2**30
  # FLOPs are per device x devices: replicated work (every device's full Adam update under
  # data parallelism) counts once per device, and FSDP shards it away. For this tiny model
  # that update is a large share; at paper scale the matmuls dominate (base/large: <1%).
  assert 0.5 * data_only["train_tflops_per_step"] < fsdp["train_tflops_per_step"]
  assert fsdp["train_tflops_per_step"] < data_only["train_tflops_per_step"]


def test_parse_mesh_fills_missing_axes_and_names_the_flag():
  axes = [("data", -1), ("fsdp", 1), ("model", 1)]
  assert plan.parse_mesh("data:32,fsdp:8", axes) == [("data", 32), ("fsdp", 8), ("model", 1)]
  with pytest.raises(ValueError, match="--mesh='data:4,pipe:2'.*'pipe'"):
    plan.parse_mesh("data:4,pipe:2", axes)
  with pytest.raises(ValueError, match="--mesh='data:x'"):
    plan.parse_mesh("data:x", axes)


def test_command_line_sets_its_own_device_count_and_ends_with_json():
  """With the tagging loss on, the batch carries `tags` (the demo's setting; the demo
  itself is compiled in test_plan_and_flops_compile_every_shipped_variant)."""
  # conftest gives this process 8 devices; the tool must start JAX with the 4 it was asked.
  cmd = [
    sys.executable,
    "-m",
    "jarl.tools.plan",
    "--config=configs/pretrain.py:tiny",
    "--config.data.tags=('circle','square')",
    "--config.losses.tag_weight=1.0",
    "--devices=4",
    "--mesh=data:2,fsdp:2",
    "--global_batch_size=8",
    "--hbm_gib=16",
  ]
  result = subprocess.run(
    cmd,
    cwd=train_fixtures.repo_root(),
    capture_output=True,
    text=True,
    timeout=300,
    env=train_fixtures.main_env(),
    check=True,
  )
  lines = result.stdout.strip().splitlines()
  last = json.loads(lines[-1])
  assert last["devices"] == 4 and last["mesh"] == {"data": 2, "fsdp": 2, "model": 1}
  assert last["global_batch_size"] == 8 and last["examples_per_device"] == 2.0
  assert last["fits"] is True and last["hbm_gib"] == 16.0
  assert 0 < last["per_device_bytes"] < 16 * 2**30
  assert last["train_tflops_per_step"] > 0
  assert "per device GiB" in result.stdout and "fits" in lines[1]


def _distinct_shipped_variants():
  """(config file, variant) of the shipped configs, one per distinct model, batch layout
  and objective: variants that differ only in schedule, sources or evals compile the
  same programs, so each of those is compiled once."""
  seen, out = set(), []
  for name in ("pretrain", "finetune_vqa", "finetune_caption", "finetune_entailment"):
    module = importlib.import_module(f"configs.{name}")
    for variant in module.VARIANTS:
      config = module.get_config(variant)
      key = json.dumps(
        [
          config.model.to_dict(),
          {k: str(v) for k, v in batch_lib.batch_spec(config).items()},
          losses.make_objective(config).terms,
        ],
        sort_keys=True,
        default=str,
      )
      if key not in seen:
        seen.add(key)
        out.append((name, variant))
  return out


# Each case compiles six programs (~1 min on 2 cores for the demo, minutes for ViT-B/L):
# run by hand (`pytest -m slow tests/test_plan.py`). The CI set keeps the demo (every
# option the shipped demo turns on; the only test that costs the demo itself); the fast
# tests cover both tools on `tiny`.
def _marks(name, variant):
  return (
    [pytest.mark.slow, pytest.mark.ci]
    if (name, variant) == ("pretrain", "demo")
    else [pytest.mark.slow]
  )


@pytest.mark.parametrize(
  "name, variant",
  [pytest.param(n, v, marks=_marks(n, v)) for n, v in _distinct_shipped_variants()],
)
def test_plan_and_flops_compile_every_shipped_variant(name, variant):
  """Compile-only, as shipped but for a 2-example batch on 2 devices: any batch field,
  loss or model option a variant turns on must reach both tools."""
  config = importlib.import_module(f"configs.{name}").get_config(variant)
  config.global_batch_size = 2
  config.mesh = [("data", 2), ("fsdp", 1), ("model", 1)]
  result = plan.plan(config, hbm_gib=1e6, devices=jax.devices()[:2])
  assert result["train_tflops_per_step"] > 0 and result["per_device_bytes"] > 0
  costs = flops.measure(config, batch_size=1)
  assert costs["train_gflops_per_example"] > costs["forward_gflops_per_example"] > 0


def test_pretrain_variant_arg_carries_mesh_sizes():
  get = train_fixtures.pretrain.get_config
  assert get("large,fsdp=8").mesh == [("data", -1), ("fsdp", 8), ("model", 1)]
  assert get("base,data=4,model=2").mesh == [("data", 4), ("fsdp", 1), ("model", 2)]
  with pytest.raises(ValueError, match="unknown key 'pipe'"):
    get("large,pipe=2")


def test_large_variant_is_vit_l14_sized():
  from jarl import batch as batch_lib  # pylint: disable=import-outside-toplevel
  from jarl.models import model as model_lib  # pylint: disable=import-outside-toplevel

  config = train_fixtures.pretrain.get_config("large")
  model = model_lib.build(config)
  params = jax.eval_shape(
    lambda: model.init({"params": jax.random.key(0)}, **batch_lib.dummy_batch(config))["params"]
  )
  counts = {k: model_lib.count_params(v) for k, v in params.items()}
  # ViT-L/14: 24 blocks of 12.6M + 14x14x3x1024 patches + 256 positions = 303M.
  assert 300e6 < counts["vision"] < 306e6
  # 1067M with text L, the paper's fusion (N = 64, 4 x (gated block + 4 layers)) and decoder.
  assert 1.0e9 < sum(counts.values()) < 1.1e9
