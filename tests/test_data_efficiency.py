"""benchmarks/data_efficiency.py: the data-efficiency ratio and the protocol check."""

import math

import pytest

from benchmarks import data_efficiency as de


def test_examples_to_reach_interpolates_between_budgets():
  curve = [(100, 0.5), (200, 0.7), (400, 0.8)]
  assert de.examples_to_reach(curve, 0.6) == pytest.approx(150)
  assert de.examples_to_reach(curve, 0.75) == pytest.approx(300)
  assert de.examples_to_reach(curve, 0.4) == 100  # there at the first budget already
  assert de.examples_to_reach(curve, 0.9) == math.inf
  losses = [(100, 2.0), (200, 1.0)]  # lower is better
  assert de.examples_to_reach(losses, 1.5, higher=False) == pytest.approx(150)


def test_ratio_is_examples_static_needs_over_examples_the_policy_needs():
  static = [(100, 0.5), (200, 0.6), (400, 0.7)]
  twice_as_fast = [(100, 0.6), (200, 0.7), (400, 0.75)]
  # The worse final is static's 0.7: static needs 400 examples, the policy 200.
  assert de.efficiency_ratio(static, twice_as_fast) == pytest.approx(2.0)
  assert de.efficiency_ratio(twice_as_fast, static) == pytest.approx(0.5)
  assert de.efficiency_ratio(static, static) == 1.0


def _run(vals, weight=1 / 3):
  budgets = de.QUICK.budgets
  return dict(
    curve=[[b, b * 8, v, v] for b, v in zip(budgets, vals)],
    weights={n: [[1, weight], [2, weight]] for n, _ in de.SOURCES},
    val_loss=[[0, 5.0], [budgets[-1], 1.0]],
  )


def test_protocol_check_reads_static_alone():
  flat = de.summarise({"static": {0: _run([0.60, 0.61])}, "loss": {0: _run([0.5, 0.9])}}, de.QUICK)
  assert flat["protocol_check"]["separates"] is False
  assert flat["protocol_check"]["static_gain"] == pytest.approx(0.01)
  rising = de.summarise({"static": {0: _run([0.60, 0.70]), 1: _run([0.6, 0.72])}}, de.QUICK)
  assert rising["protocol_check"]["separates"] is True
  assert rising["data_efficiency_ratio"]["static"] == {"mean": 1.0, "std": 0.0}
  assert rising["policies"]["static"]["val_8_std"] == pytest.approx(0.0141421356)


def test_clean_only_is_static_over_the_clean_source():
  pre = de.configs(de.QUICK, de.CLEAN_ONLY, 0, None)["pretrain"]
  assert [s["name"] for s in pre.data.sources] == ["clean"]
  assert pre.data.sampling.policy == "static"
  mixed = de.configs(de.QUICK, "static", 0, None)["pretrain"]
  assert [s["name"] for s in mixed.data.sources] == [n for n, _ in de.SOURCES]


def test_headroom_is_the_share_of_the_clean_only_gap_a_policy_closes():
  clean = _run([0.80, 0.90])
  clean["weights"] = {"clean": [[1, 1.0], [2, 1.0]]}  # the other sources are never drawn
  runs = {"static": {0: _run([0.6, 0.6])}, "loss": {0: _run([0.6, 0.75])}, "clean_only": {0: clean}}
  result = de.summarise(runs, de.QUICK)
  check = result["protocol_check"]
  assert check["separates"] is False and check["sees_quality"] is True
  assert check["clean_only_gap"] == pytest.approx(0.3)
  assert result["policies"]["loss"]["headroom"] == pytest.approx(0.5)
  assert result["policies"]["static"]["headroom"] == 0.0
  assert result["policies"]["clean_only"]["weight_noisy_run_mean"] == 0.0
  text = "\n".join(de.markdown(dict(result, seeds=[0]), de.QUICK, "cmd"))
  assert "| `loss` | 1 |" in text and "| 0.50 |" in text and "it does." in text


def test_headline_reads_the_loss_ratio_when_the_check_fails():
  faster = _run([0.6, 0.6])
  faster["val_loss"] = [[0, 5.0], [4, 1.0], [8, 0.5]]  # static's final 1.0 at half the steps
  flat = de.summarise({"static": {0: _run([0.6, 0.6])}, "loss": {0: faster}}, de.QUICK)
  assert flat["data_efficiency_measure"] == "clean-caption validation loss"
  assert flat["data_efficiency_ratio"]["loss"] == {"mean": pytest.approx(2.0), "std": 0.0}
  assert flat["verdicts"]["loss"] == "one seed"
  rising = de.summarise({"static": {0: _run([0.6, 0.7])}, "loss": {0: faster}}, de.QUICK)
  assert rising["data_efficiency_measure"] == "val VQA accuracy"
  assert rising["data_efficiency_ratio"]["loss"]["mean"] == pytest.approx(1.0)


def test_verdict_needs_a_gap_beyond_the_spread_over_seeds():
  assert de.verdict(1.4, 0.1, 3) == "beats static"
  assert de.verdict(0.7, 0.1, 3) == "trails static"
  assert de.verdict(1.4, 0.5, 3) == "within noise"
  assert de.verdict(1.4, 0.0, 1) == "one seed"
  # Within the ratio two static seeds get against each other (1.3, or 1/1.3): noise.
  assert de.verdict(1.4, 0.2, 3, floor=1.3) == "within noise"
  assert de.verdict(1.6, 0.2, 3, floor=1.3) == "beats static"
  assert de.verdict(0.8, 0.0, 3, floor=1.3) == "within noise"
  assert de.verdict(0.7, 0.0, 3, floor=1.3) == "trails static"


def test_static_seeds_against_each_other_give_the_noise_floor():
  slower = _run([0.6, 0.6])
  slower["val_loss"] = [[0, 5.0], [4, 1.5], [8, 1.0]]  # seed 0's final 1.0 at twice the steps
  fast = _run([0.6, 0.6])
  fast["val_loss"] = [[0, 5.0], [4, 1.0], [8, 0.9]]
  result = de.summarise({"static": {0: fast, 1: slower}}, de.QUICK)
  assert result["protocol_check"]["static_seed_ratios"] == [pytest.approx(0.5)]
  assert result["verdicts"]["static"] == "the baseline"
  text = "\n".join(de.markdown(dict(result, seeds=[0, 1]), de.QUICK, "cmd"))
  assert "gives ratios 0.50 (2.00 the other way) on the same" in text


def test_ratios_use_the_seeds_static_has_the_rest_still_count():
  faster = _run([0.6, 0.6])
  faster["val_loss"] = [[0, 5.0], [4, 1.0], [8, 0.5]]
  runs = {"static": {0: _run([0.6, 0.6])}, "loss": {0: faster, 1: _run([0.8, 0.8])}}
  result = de.summarise(runs, de.QUICK)
  loss = result["policies"]["loss"]
  assert loss["seeds"] == [0, 1] and loss["ratio_seeds"] == [0]
  assert loss["val_8_mean"] == pytest.approx(0.7)  # both seeds
  assert result["data_efficiency_ratio"]["loss"]["mean"] == pytest.approx(2.0)  # seed 0's
  assert result["verdicts"]["loss"] == "one seed"
