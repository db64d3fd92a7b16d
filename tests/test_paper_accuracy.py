"""benchmarks/paper_accuracy.py and paper_verdicts.py: the accuracy part of paper_tables.

The verdict rules and the record-and-skip logic on synthetic figures (fast); every arm's
configs at the protocol's size; and the whole `--quick` chain (slow: three compiles an arm).
"""

import dataclasses
import json
import subprocess
import sys

import pytest
import train_fixtures

from benchmarks import paper_accuracy, paper_verdicts, run_jobs
from jarl import config_checks
from jarl.data import shapes


def arm(mean, std, seeds=3, metric="val_vqa"):
  return {"seeds": list(range(seeds)), f"{metric}_mean": mean, f"{metric}_std": std}


@pytest.mark.parametrize(
  "better, worse, verdict",
  [
    (arm(0.90, 0.01), arm(0.85, 0.01), "holds"),
    (arm(0.85, 0.01), arm(0.90, 0.01), "contradicted"),
    (arm(0.86, 0.03), arm(0.85, 0.03), "within noise"),
    (arm(0.90, 0.0, seeds=1), arm(0.50, 0.0, seeds=1), "too few seeds"),  # no spread known
  ],
)
def test_compare(better, worse, verdict):
  v = paper_verdicts.compare({"a": better, "b": worse}, "a", "b")
  assert v["verdict"] == verdict
  assert v["difference"] == pytest.approx(better["val_vqa_mean"] - worse["val_vqa_mean"])


def test_compare_names_a_missing_arm():
  assert paper_verdicts.compare({"a": arm(0.9, 0.01)}, "a", "b")["verdict"] == "not measured"


def test_diminishing_returns():
  row = ("w", "x", "y", "z")
  shrinking = dict(zip(row, (arm(0.70, 0.01), arm(0.80, 0.01), arm(0.84, 0.01), arm(0.85, 0.01))))
  growing = dict(zip(row, (arm(0.70, 0.01), arm(0.71, 0.01), arm(0.75, 0.01), arm(0.85, 0.01))))
  assert paper_verdicts.diminishing(shrinking, row)["verdict"] == "holds"
  assert paper_verdicts.diminishing(growing, row)["verdict"] == "contradicted"


def test_every_claim_has_a_verdict_and_names_real_arms():
  v = paper_verdicts.verdicts({})
  assert v and all(x["verdict"] == "not measured" for x in v.values())
  assert {n for x in v.values() for n in x["arms"]} <= set(paper_accuracy.ARMS)
  tables = [*paper_verdicts.TABLE3, *paper_verdicts.TABLE2]
  tables += [n for row in paper_verdicts.TABLE4.values() for n in row]
  assert set(tables) == set(paper_accuracy.ARMS)


def fake_result(seed, val_vqa=0.9):
  out = {m: val_vqa for m in paper_accuracy.METRICS}
  return dict(out, seed=seed, pretrain_loss_first=5.0, pretrain_loss_last=1.0)


def test_runs_are_recorded_once_and_skipped(tmp_path):
  protocol = paper_accuracy.QUICK
  paper_accuracy.run_file(tmp_path, "jarl", 0, protocol, fake_result(0))
  rec = json.loads((tmp_path / "jarl_seed0.json").read_text())
  assert rec["command"].endswith("--arms=jarl --seeds=0 --rerun") and rec["commit"]
  todo = paper_accuracy.pending(tmp_path, ["jarl", "concat"], [0, 1], protocol, rerun=False)
  assert todo == [("jarl", 1), ("concat", 0), ("concat", 1)]
  assert len(paper_accuracy.pending(tmp_path, ["jarl"], [0], protocol, rerun=True)) == 1
  # A run made under another protocol is neither skipped nor summarised.
  other = dataclasses.replace(protocol, vqa_steps=protocol.vqa_steps + 1)
  assert paper_accuracy.pending(tmp_path, ["jarl"], [0], other, rerun=False) == [("jarl", 0)]
  assert paper_accuracy.collect(tmp_path, other)["jarl"] == []
  paper_accuracy.run_file(tmp_path, "jarl", 1, protocol, fake_result(1, 0.8))
  arms = paper_verdicts.summarise(paper_accuracy.collect(tmp_path, protocol))
  assert arms["jarl"]["seeds"] == [0, 1] and "concat" not in arms
  assert arms["jarl"]["val_vqa_mean"] == pytest.approx(0.85)
  assert arms["jarl"]["val_vqa_std"] == pytest.approx(0.0707107, rel=1e-5)


def test_accuracy_by_kind_is_averaged_over_seeds_and_tabled(tmp_path):
  protocol = paper_accuracy.QUICK
  for seed, relation in ((0, 0.5), (1, 0.7)):
    by_kind = {"val": {"count": 0.9, "relation": relation}, "heldout": {}}
    result = dict(fake_result(seed), entailment_by_kind=by_kind)
    paper_accuracy.run_file(tmp_path, "jarl", seed, protocol, result)
  paper_accuracy.run_file(tmp_path, "concat", 0, protocol, fake_result(0))  # no kinds
  arms = paper_verdicts.summarise(paper_accuracy.collect(tmp_path, protocol))
  assert arms["jarl"]["entailment_val_by_kind"] == {
    "count": pytest.approx(0.9),
    "relation": pytest.approx(0.6),
  }
  assert "entailment_val_by_kind" not in arms["concat"] and "vqa_val_by_kind" not in arms["jarl"]
  assert paper_verdicts.by_kind_table(arms, "entailment") == [
    "| arm | count | relation |",
    "|---|---|---|",
    "| `jarl` | 90.0 | 60.0 |",
  ]
  assert paper_verdicts.by_kind_table(arms, "vqa") == []


@pytest.mark.parametrize("name", list(paper_accuracy.ARMS))
def test_every_arm_builds_at_the_protocol(name):
  cfg = paper_accuracy.configs(paper_accuracy.PROTOCOL, paper_accuracy.ARMS[name][0], seed=1)
  assert list(cfg) == ["pretrain", "vqa", "entailment"]
  for config in cfg.values():
    config_checks.check(config, num_batch_shards=1)
    # One model for the three phases: the checkpoint loads into both fine-tunes.
    assert config.model.to_dict() == cfg["pretrain"].model.to_dict()
    assert config.seed == 1 and config.data.image_size == paper_accuracy.PROTOCOL.image_size
  assert cfg["pretrain"].total_steps == paper_accuracy.PROTOCOL.pretrain_steps
  assert cfg["vqa"].evals.val.num_examples == paper_accuracy.PROTOCOL.eval_examples


@pytest.mark.slow  # 13 arms x (3 trainings, 3 compiles): ~10 min on 2 cores
def test_quick_accuracy_part(tmp_path):
  proc = subprocess.run(
    [sys.executable, "-m", "benchmarks.paper_tables", "--part=accuracy", "--quick"]
    + ["--seeds=0", "--jobs=2", f"--workdir={tmp_path}"],
    cwd=train_fixtures.repo_root(),
    env=train_fixtures.main_env(),
    capture_output=True,
    text=True,
    timeout=1800,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert set(result["arms"]) == set(paper_accuracy.ARMS)
  for name, a in result["arms"].items():
    assert a["trained"], (name, a)  # the pretraining loss fell
    for key in ("seeds", "val_vqa_mean", "heldout_vqa_std", "val_entailment_mean", "gflops_demo"):
      assert key in a, (name, key)
    # Per kind of question and hypothesis, from the evaluators' metrics.
    assert set(a["vqa_val_by_kind"]) <= set(shapes.QUESTION_TYPES) and a["vqa_val_by_kind"]
    assert set(a["entailment_val_by_kind"]) <= set(shapes.HYPOTHESIS_TYPES)
  assert all(list(result["commits"][name]) == ["0"] for name in paper_accuracy.ARMS)
  assert set(result["verdicts"]) == set(paper_verdicts.verdicts({}))
  assert all(v["verdict"] == "too few seeds" for v in result["verdicts"].values())  # one seed


def test_protocol_check_reads_the_bar_and_the_curves():
  runs = {"a": [dict(vqa_curve=[[1, 0.5, 0.4], [2, 0.80, 0.7]])], "b": []}
  arms = {"a": arm(0.80, 0.0), "b": arm(0.90, 0.0)}
  check = paper_verdicts.protocol_check(arms, runs)
  assert check["best_arm"] == "b" and check["verdict"] == "holds"
  assert check["last_curve_gain"] == {"a": pytest.approx(0.30)}
  assert paper_verdicts.protocol_check({"a": arm(0.84, 0.0)}, {})["verdict"] == "not met"
  assert paper_verdicts.protocol_check({}, {})["verdict"] == "not measured"


def test_a_run_starts_from_empty_workdirs(tmp_path):
  """A stopped run's checkpoints would be resumed by the trainer: the next run of that
  arm and seed clears its folders first, and only its own (seed 1 is not seed 10)."""
  for name in ("jarl_seed1_pretrain", "jarl_seed1_vqa", "jarl_seed10_pretrain", "concat_seed1_vqa"):
    (tmp_path / name / "checkpoints").mkdir(parents=True)
  run_jobs.clear_workdirs(str(tmp_path), "jarl_seed1_")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["concat_seed1_vqa", "jarl_seed10_pretrain"]
  run_jobs.clear_workdirs(str(tmp_path / "absent"), "jarl_seed1_")  # nothing there yet
