"""Every benchmark's --quick run: exit 0, and its last stdout line is JSON with sane figures.

Each benchmark runs in a subprocess exactly as a user would (`python -m benchmarks.<name>
--quick` from the repository root), so import paths, flags and the JSON contract are what
is tested. The `ci`
marks pick the runs that fit CI's ~2 min budget for them (input_pipeline,
data_efficiency); the others are slow-only
(their reasons beside them); `pytest -m "" tests/test_benchmarks_quick.py` runs them all.
"""

import collections
import json
import subprocess
import sys

import pytest
import train_fixtures

from benchmarks import data_efficiency as de
from benchmarks import paper_tables, step_timer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_quick(module, *args, timeout=900) -> dict:
  """The last stdout line of `python -m <module> --quick <args>`, parsed."""
  proc = subprocess.run(
    [sys.executable, "-m", module, "--quick", *args],
    cwd=train_fixtures.repo_root(),
    env=train_fixtures.main_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC, f"{path} is not a PNG"


def assert_one_seed_summary(stats: dict, run: dict):
  """--quick runs one seed: each summary mean is that run's figure, with std 0."""
  for key in ("val_accuracy", "heldout_accuracy", "val_exact_match", "heldout_exact_match"):
    assert stats[f"{key}_mean"] == run[key] and stats[f"{key}_std"] == 0.0, (key, stats, run)


@pytest.mark.slow  # not ci: ~19 compiles; tests/test_fusion.py and test_flops.py cover the parts
def test_paper_tables_cost_quick():
  result = run_quick("benchmarks.paper_tables", "--part=cost")
  assert result["size"] == "tiny"
  assert set(result["arms"]) == set(paper_tables.ARMS)
  for name, arm in result["arms"].items():
    assert 0 < arm["forward_gflops"] < arm["train_gflops"] and arm["params"] > 0, name
  for name in paper_tables.MEMORY_ARMS:
    m = result["arms"][name]["memory"]
    assert m["peak_bytes"] >= m["params_bytes"] + m["opt_bytes"] + m["temp_bytes"] > 0, name
  arms, checks = result["arms"], result["checks"]
  ratio = arms["jarl"]["forward_gflops"] / arms["concat"]["forward_gflops"]
  assert checks["jarl_over_concat_forward"]["value"] == pytest.approx(ratio)
  assert checks["jarl_over_concat_forward"]["holds"] == (ratio <= 0.67)
  assert 0 < result["towers_memory"]["total_bytes"] < arms["jarl"]["memory"]["peak_bytes"]
  # The switches that change cost do: more tokens and more layers cost more at any size.
  fwd = [arms[n]["forward_gflops"] for n in ("tokens_16", "tokens_32", "tokens_128")]
  assert fwd == sorted(fwd) and checks["more_layers_cost_more"]["holds"]


@pytest.mark.slow  # not ci: two train-step compiles plus timed steps; keeps CI under 15 min
def test_step_throughput_quick():
  result = run_quick("benchmarks.step_throughput")
  assert result["steps"] == 3 and result["matmul_gflops_per_sec"] > 0
  for fusion in ("jarl", "co_tokenization", "concat"):
    s = result["settings"][fusion]
    assert s["examples_per_sec"] > 0 and s["step_ms"] > 0 and s["gflops_per_step"] > 0
    assert s["utilization"] > 0
  settings = result["settings"]
  assert result["jarl_over_concat_speed"] == pytest.approx(
    settings["jarl"]["examples_per_sec"] / settings["concat"]["examples_per_sec"]
  )


@pytest.mark.slow  # not ci: a bf16 train-step compile; the precision tests cover bf16 (fast)
def test_accelerator_quick(tmp_path, monkeypatch):
  monkeypatch.setenv("JARL_RESULTS_DIR", str(tmp_path))  # run_quick's env copies os.environ
  result = run_quick("benchmarks.accelerator")
  assert result["device_kind"] == "cpu"  # main_env: JAX_PLATFORMS=cpu, even on a GPU host
  assert result["variant"] == "tiny" and result["dtype"] == "bfloat16" and result["steps"] == 2
  assert result["step_ms"] > 0 and result["gflops_per_step"] > 0 and result["utilization"] > 0
  assert result["examples_per_sec"] == pytest.approx(
    result["global_batch"] / result["step_ms"] * 1e3
  )
  assert result["mfu"] is None and "CPU" in result["mfu_note"]
  assert result["attention"]["custom_calls"] == []  # XLA's own attention on CPU
  assert not list(tmp_path.iterdir())  # a quick (and a CPU) run records nothing


def test_accelerator_peak_is_the_most_specific_device_kind():
  def peak(kind, platform="gpu"):
    return step_timer.peak_bf16(collections.namedtuple("D", "device_kind platform")(kind, platform))

  assert peak("NVIDIA H100 80GB HBM3") == (989e12, None)
  assert peak("NVIDIA H100 PCIe")[0] == 756e12
  assert peak("NVIDIA A100-SXM4-80GB")[0] == 312e12  # not A10's
  assert peak("NVIDIA L40S")[0] == 362e12  # not L4's
  assert peak("TPU v5 lite", "tpu")[0] == 197e12 and peak("TPU v5", "tpu")[0] == 459e12
  assert peak("TPU v6 lite", "tpu")[0] == 918e12
  assert peak("Tesla V100-SXM2-16GB")[0] is None and "PEAK_BF16" in peak("Tesla V100")[1]
  assert peak("cpu", "cpu")[0] is None


@pytest.mark.slow  # not ci (81 s): the pipeline's own tests are fast (test_data_pipeline)
def test_input_pipeline_quick():
  result = run_quick("benchmarks.input_pipeline")
  assert result["pipeline_examples_per_sec"] > 0 and result["step_examples_per_sec"] > 0
  assert result["pipeline_over_step"] == pytest.approx(
    result["pipeline_examples_per_sec"] / result["step_examples_per_sec"]
  )


@pytest.mark.slow  # not ci: 8 compile-only FLOPs measurements + 8 timed steps, ~2.5 min idle
def test_scaling_quick(tmp_path):
  result = run_quick("benchmarks.scaling", f"--out={tmp_path}")
  assert_png(result["plot"])
  assert set(result["exponents"]) == {
    f"{f}/{a}" for f in ("jarl", "concat") for a in ("image_size", "text_len")
  }
  for name, e in result["exponents"].items():
    assert 0.0 < e["flops"] < 3.0, (name, e)
  # Concat fusion attends over every text token; JARL's fusion sees M joint tokens.
  exponents = result["exponents"]
  assert exponents["concat/text_len"]["flops"] > exponents["jarl/text_len"]["flops"]


@pytest.mark.slow  # not ci: 3 pretrain + fine-tune chains and 6 FLOPs compiles, ~2 min idle
def test_fusion_quality_quick(tmp_path):
  result = run_quick("benchmarks.fusion_quality", f"--workdir={tmp_path}")
  assert set(result["methods"]) == {"jarl", "concat", "cross_attention"}
  assert result["seeds"] == [0] and len(result["runs"]) == 3
  runs = {run["method"]: run for run in result["runs"]}
  for name, s in result["methods"].items():
    assert_one_seed_summary(s, runs[name])
    assert s["forward_gflops_demo"] > 0 and s["forward_gflops_base"] > 0, name
  for scale in ("demo", "base"):
    ratio = result[f"jarl_over_concat_flops_{scale}"]
    assert 0.0 < ratio < 2.0
    assert ratio == pytest.approx(
      result["methods"]["jarl"][f"forward_gflops_{scale}"]
      / result["methods"]["concat"][f"forward_gflops_{scale}"]
    )
  assert result["claim_flops_at_most_0.67"] == (result["jarl_over_concat_flops_base"] <= 0.67)
  assert result["claim_flops_at_most_0.67_demo"] == (result["jarl_over_concat_flops_demo"] <= 0.67)
  assert result["claim_accuracy_not_below_concat"] == (
    result["methods"]["jarl"]["val_accuracy_mean"]
    >= result["methods"]["concat"]["val_accuracy_mean"]
  )


# Not ci (~5 min of CI's budget): the pretrain -> fine-tune chain is CI's in
# test_finetune_configs, and adaptive sampling has its own fast tests.
@pytest.mark.slow
def test_data_efficiency_quick(tmp_path):
  plots = [tmp_path / "curves.png", tmp_path / "weights.png"]
  result = run_quick(
    "benchmarks.data_efficiency", f"--workdir={tmp_path}", "--plots=" + ",".join(map(str, plots))
  )
  policies = {"static", "loss", "excess_loss", "learning_progress", "clean_only"}
  assert set(result["policies"]) == policies and result["seeds"] == [0]
  gap = result["protocol_check"]["clean_only_gap"]  # the tiny model may tie: no headroom
  assert all(("headroom" in s) == bool(gap) for s in result["policies"].values())
  assert set(result["data_efficiency_ratio"]) == policies - {"clean_only"}  # a reference
  assert result["data_efficiency_ratio"]["static"] == {"mean": 1.0, "std": 0.0}
  assert result["verdicts"]["static"] == "the baseline"
  assert set(result["verdicts"].values()) <= {"the baseline", "one seed"}
  assert result["data_efficiency_measure"] in de.MEASURES.values()
  for path in plots:
    assert_png(path)
  runs = tmp_path / "runs" / "data_efficiency"
  for policy in policies:
    run = json.loads((runs / f"{policy}_seed0.json").read_text())["result"]
    assert [c[0] for c in run["curve"]] == [4, 8]  # QUICK's budgets, one fine-tune each
    weights = [w for rows in run["weights"].values() for _, w in rows]
    if policy == "static":  # never moves from the config's 1:1:1
      assert weights == pytest.approx([1 / 3] * len(weights))
    elif policy == "clean_only":  # one source, always drawn
      assert set(run["weights"]) == {"clean"} and weights == pytest.approx([1.0] * len(weights))
    else:  # the adaptive policies did update
      assert any(abs(w - 1 / 3) > 1e-6 for w in weights), (policy, weights)
  # excess_loss took static's last per-source training losses as its reference.
  pre = train_fixtures.read_metrics(tmp_path / "excess_loss_seed0_pretrain")
  static = json.loads((runs / "static_seed0.json").read_text())["result"]
  logged = [r for r in pre if "data/reference_loss/clean" in r][-1]
  reference = {k.split("/")[-1]: v for k, v in logged.items() if "reference_loss" in k}
  assert reference == static["final_loss"]


@pytest.mark.slow  # not ci: 5 pretrain + fine-tune chains, ~4 min idle
def test_method_comparison_quick(tmp_path):
  result = run_quick("benchmarks.method_comparison", f"--workdir={tmp_path}", timeout=1200)
  assert set(result["methods"]) == {"jarl", "jarl_elip", "concat_elip", "jarl_vicha", "concat"}
  assert len(result["runs"]) == 5 and result["seeds"] == [0]
  for run in result["runs"]:
    assert_one_seed_summary(result["methods"][run["method"]], run)
  gflops = {m: s["forward_gflops_per_example"] for m, s in result["methods"].items()}
  # ELIP prunes vision tokens: cheaper than the same fusion without it.
  assert gflops["jarl_elip"] < gflops["jarl"] and gflops["concat_elip"] < gflops["concat"]
  # ViCHA's losses are pretraining-only: the fine-tuned model is plain JARL, while its
  # pretraining step pays for the caption's text pass and the masked ViT pass.
  assert gflops["jarl_vicha"] == gflops["jarl"]
  pretrain_step = {m: s["pretrain_train_gflops_per_example"] for m, s in result["methods"].items()}
  assert pretrain_step["jarl_vicha"] > 1.2 * pretrain_step["jarl"]
  # The ViCHA pretraining run logged its per-loss metrics.
  records = train_fixtures.read_metrics(tmp_path / "jarl_vicha_seed0_pre")
  assert any("train/loss_contrastive" in r and "train/loss_mim" in r for r in records)


def test_image_decode_quick():
  result = run_quick("benchmarks.image_decode")
  assert set(result["sizes"]) == {"64", "224"}
  for s in result["sizes"].values():
    assert s["full_ms"] > 0 and s["draft_ms"] > 0
    assert s["draft_speedup"] == pytest.approx(s["full_ms"] / s["draft_ms"])


@pytest.mark.slow  # not ci: four short training runs (~3 min)
def test_pipeline_workers_quick():
  result = run_quick("benchmarks.pipeline_workers")
  assert result["variant"] == "tiny" and set(result["data"]) == {"shapes", "photos"}
  for kind in result["data"].values():
    assert set(kind["examples_per_sec"]) == {"0", "2"} and kind["speedup"]["0"] == 1.0
    assert all(r > 0 for r in kind["examples_per_sec"].values())


@pytest.mark.slow  # not ci: ~20 compiles (~1 min idle); tests/test_flops.py covers the parts
def test_flops_parts_quick():
  result = run_quick("benchmarks.flops_parts")
  assert result["size"] == result["stem_size"] == "tiny"
  parts = ("vision_gflops", "text_gflops", "fusion_gflops", "decoder_gflops")
  for name, row in result["fusions"].items():
    assert sum(row[p] for p in parts) == pytest.approx(row["forward_gflops"], rel=1e-6), name
    assert 0 < row["forward_gflops"] < row["train_gflops"] and row["params_millions"] > 0
  fusions, pruning = result["fusions"], result["vision_pruning"]
  assert result["jarl_over_concat_forward"] == pytest.approx(
    fusions["jarl"]["forward_gflops"] / fusions["concat"]["forward_gflops"]
  )
  assert pruning["none"]["forward_gflops"] == fusions["jarl"]["forward_gflops"]
  # Pruning tokens inside the ViT cuts its FLOPs; the conv stem costs more than the patch one.
  assert result["elip_over_none_vision"] < 1 and result["conv_over_patch_forward"] > 1


@pytest.mark.slow  # not ci: two 8-device train-step compiles in subprocesses (~1 min idle)
def test_plan_pod_quick():
  result = run_quick("benchmarks.plan_pod")
  assert result["devices"] == 8 and len(result["rows"]) == 2
  data, fsdp = result["rows"]["tiny data:8 batch 16"], result["rows"]["tiny data:4,fsdp:2 batch 16"]
  for row in (data, fsdp):
    assert row["fits"] and row["total_gib"] >= row["params_gib"] + row["optimizer_gib"] > 0
  # FSDP over 2 halves each device's parameter and optimizer shards.
  assert fsdp["params_gib"] == pytest.approx(data["params_gib"] / 2, rel=0.05)
  assert fsdp["optimizer_gib"] == pytest.approx(data["optimizer_gib"] / 2, rel=0.05)
