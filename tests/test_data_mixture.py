"""Adaptive mixture weights: policies, floor, draws, state."""

import json

import ml_collections
import numpy as np
import pytest

from jarl.data import mixture


def _mixer(policy, n=3, **kw):
  kw = {**dict(update_every=10, tau=1.0, epsilon=0.05, smoothing=0.5), **kw}
  if policy == "excess_loss":
    kw.setdefault("reference", {f"s{i}": 0.5 for i in range(n)})
  return mixture.Mixer([f"s{i}" for i in range(n)], [1.0] * n, policy=policy, **kw)


def _clean_and_noisy(step):
  """Per-source losses [2] at `step`: a clean source learnt toward 0.5 nats, and a noisy one
  (captions of other scenes) whose loss stays at its high floor of 3.0 from the start."""
  return np.array([0.5 + 2.5 * np.exp(-step / 100.0), 3.0])


def _feed(mixer, losses_fn, steps, batch=30, rng=None):
  rng = rng or np.random.default_rng(0)
  for step in range(1, steps + 1):
    ids = rng.integers(len(mixer.names), size=batch)
    mixer.update(ids, losses_fn(ids, step), step)


def test_loss_policy_moves_toward_loss_proportional_weights():
  m = _mixer("loss")
  levels = np.array([4.0, 2.0, 1.0])
  _feed(m, lambda ids, step: levels[ids], steps=60)
  target = 0.05 + (1 - 3 * 0.05) * levels / levels.sum()
  np.testing.assert_allclose(m.weights, target, rtol=1e-6)
  assert m.weights[0] > m.weights[1] > m.weights[2]


def test_tau_sharpens_the_loss_policy():
  m1, m3 = _mixer("loss"), _mixer("loss", tau=3.0)
  levels = np.array([3.0, 2.0, 1.0])
  for m in (m1, m3):
    _feed(m, lambda ids, step: levels[ids], steps=30)
  assert m3.weights[0] > m1.weights[0] and m3.weights[2] < m1.weights[2]


def test_learning_progress_favours_the_source_whose_loss_falls():
  m = _mixer("learning_progress")
  # s0 plateaued, s1 falls steadily, s2 falls slowly.
  slopes = np.array([0.0, 0.02, 0.005])
  _feed(m, lambda ids, step: 5.0 - slopes[ids] * step, steps=100)
  assert m.weights[1] > m.weights[2] > m.weights[0]
  assert m.weights[0] == pytest.approx(0.05)  # no progress: exactly the floor


def test_loss_policy_leans_toward_the_noisy_source():
  m = _mixer("loss", n=2)
  _feed(m, lambda ids, step: _clean_and_noisy(step)[ids], steps=300)
  assert m.weights[1] > 0.7  # why the other two policies exist


@pytest.mark.parametrize("policy", ["excess_loss", "learning_progress"])
def test_a_noisy_source_with_constant_high_loss_loses_weight(policy):
  # excess_loss: the reference run reached 0.4 on clean and 3.0 (the floor) on noisy.
  m = _mixer(policy, n=2, reference={"s0": 0.4, "s1": 3.0})
  curve = []
  for start in range(0, 300, 50):
    _feed(m, lambda ids, step, start=start: _clean_and_noisy(start + step)[ids], steps=50)
    curve.append(m.weights[1])
  assert curve[-1] == pytest.approx(0.05)  # the floor: nothing left to learn there
  assert max(curve) <= 0.5 + 1e-9  # never above its 1:1 share


def test_excess_loss_weighs_what_is_left_above_the_reference():
  m = _mixer("excess_loss", reference={"s0": 1.0, "s1": 1.0, "s2": 2.5}, epsilon=0.0)
  levels = np.array([3.0, 2.0, 2.0])  # excess 2, 1, 0 (s2 is below its reference)
  _feed(m, lambda ids, step: levels[ids], steps=30)
  np.testing.assert_allclose(m.weights, [2 / 3, 1 / 3, 0.0])


def test_learning_progress_follows_the_trend_not_one_window():
  # Per-example noise as in training (std 0.3 nats, ~170 examples per source and window):
  # s0 falls 1% per update, s1 stays put. One window's fall is mostly noise; the EMA of
  # the fall keeps most of the weight on s0 at nearly every update.
  m = _mixer("learning_progress", n=2, smoothing=0.5, update_every=1, epsilon=0.05)
  rng = np.random.default_rng(0)
  on_s0 = []
  for step in range(1, 101):
    ids = rng.integers(2, size=340)
    level = np.where(ids == 0, 0.99**step, 1.0)
    m.update(ids, level * (1 + 0.3 * rng.standard_normal(340)), step)
    on_s0.append(m.weights[0])
  assert np.mean(on_s0[30:]) > 0.8 and np.mean(np.array(on_s0[30:]) < 0.5) < 0.1


def test_learning_progress_is_scale_free():
  # Both sources lose 1% of their loss per step; one is 10x the other's level.
  m = _mixer("learning_progress", n=2, epsilon=0.0)
  levels = np.array([10.0, 1.0])
  _feed(m, lambda ids, step: levels[ids] * 0.99**step, steps=100, batch=400)
  np.testing.assert_allclose(m.weights, [0.5, 0.5], atol=0.02)


def test_excess_loss_needs_a_reference_for_every_source():
  with pytest.raises(ValueError, match=r"reference_losses.*none for \['b'\]"):
    mixture.Mixer(["a", "b"], [1, 1], policy="excess_loss", reference={"a": 1.0})
  with pytest.raises(ValueError, match=r"\['c'\] are not config.data.sources names"):
    mixture.Mixer(["a"], [1], policy="excess_loss", reference={"a": 1.0, "c": 2.0})
  with pytest.raises(ValueError, match="finite and >= 0"):
    mixture.Mixer(["a"], [1], policy="excess_loss", reference={"a": float("nan")})


def _sampling(**kw):
  return ml_collections.ConfigDict(
    dict(
      sources=[dict(name="clean", weight=1.0), dict(name="noisy", weight=1.0)],
      sampling=dict(
        dict(
          policy="excess_loss",
          update_every=5,
          tau=1.0,
          epsilon=0.05,
          smoothing=0.9,
          progress_smoothing=0.9,
          reference_run="",
          reference_losses={},
        ),
        **kw,
      ),
    )
  )


def test_reference_losses_come_from_a_run_and_the_config(tmp_path):
  rows = [
    {"step": 50, "train/loss_clean": 2.0, "train/loss_noisy": 3.5, "data/smoothed_loss/clean": 9},
    {"step": 60, "train/loss": 1.0, "train/loss_decoder": 1.0},
    {"step": 100, "train/loss_clean": 0.7, "train/loss_noisy": 3.1},
  ]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  config = _sampling(reference_run=str(tmp_path))
  assert mixture.reference_losses(config) == {"clean": 0.7, "noisy": 3.1}
  config.sampling.reference_losses = {"noisy": 2.9}  # the config's numbers win
  np.testing.assert_array_equal(mixture.from_config(config).reference, [0.7, 2.9])


def test_a_bad_reference_run_is_one_clear_error(tmp_path):
  with pytest.raises(ValueError, match=r"reference_run=.*no metrics.jsonl"):
    mixture.from_config(_sampling(reference_run=str(tmp_path / "nowhere")))
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2.0}\n')
  with pytest.raises(ValueError, match=r"no train/loss_<source> records"):
    mixture.from_config(_sampling(reference_run=str(tmp_path)))
  with pytest.raises(ValueError, match=r"none for \['clean', 'noisy'\]"):
    mixture.from_config(_sampling())


@pytest.mark.parametrize("policy", mixture.POLICIES)
def test_weights_never_drop_below_epsilon_and_sum_to_one(policy):
  m = _mixer(policy, n=4)
  rng = np.random.default_rng(1)
  levels = np.array([100.0, 1e-4, 0.0, 3.0])
  for step in range(1, 200):
    ids = rng.integers(4, size=16)
    loss = levels[ids] * (1 + 10 * rng.random(16)) / step
    m.update(ids, loss, step)
    assert np.all(m.weights >= 0.05 - 1e-12) and m.weights.sum() == pytest.approx(1.0)


def test_static_policy_keeps_config_weights():
  m = mixture.Mixer(["a", "b"], [3.0, 1.0], policy="static", update_every=5, epsilon=0.0)
  _feed(m, lambda ids, step: np.where(ids == 0, 1.0, 9.0), steps=20)
  np.testing.assert_allclose(m.weights, [0.75, 0.25])


def test_draws_follow_weights_and_ignore_padding_ids():
  m = mixture.Mixer(["a", "b"], [3.0, 1.0], policy="loss", update_every=1)
  ids = np.concatenate([m.choose(1000) for _ in range(10)])
  assert abs(np.mean(ids == 0) - 0.75) < 0.02
  changed = m.update(np.array([-1, 5]), np.array([1.0, 1.0]), step=1)
  assert changed and np.all(np.isnan(m.smoothed))


def test_updates_happen_every_update_every_steps():
  m = _mixer("loss")
  results = [m.update(np.array([0]), np.array([1.0]), s) for s in range(1, 31)]
  assert [s for s, r in zip(range(1, 31), results) if r] == [10, 20, 30]


@pytest.mark.parametrize("policy", mixture.POLICIES)
def test_state_round_trip_through_json_repeats_the_future(policy):
  a = _mixer(policy)
  _feed(a, lambda ids, step: 3.0 - 0.01 * step * (ids + 1), steps=25)
  a.choose(7)
  # A restored run keeps the reference it started with, whatever it is given now.
  b = _mixer(policy, reference={"s0": 9.0, "s1": 9.0, "s2": 9.0})
  b.set_state(json.loads(json.dumps(a.get_state())))
  for m in (a, b):
    _feed(m, lambda ids, step: 2.0 + 0.01 * ids, steps=15, rng=np.random.default_rng(5))
  np.testing.assert_array_equal(a.choose(50), b.choose(50))
  np.testing.assert_array_equal(a.weights, b.weights)
  assert a.get_state() == b.get_state()


def test_bad_settings_name_the_config_key():
  with pytest.raises(ValueError, match="epsilon"):
    mixture.Mixer(["a", "b", "c"], [1, 1, 1], epsilon=0.5)
  with pytest.raises(ValueError, match="policy"):
    mixture.Mixer(["a"], [1], policy="greedy")
  with pytest.raises(ValueError, match="progress_smoothing=1.0"):
    mixture.Mixer(["a"], [1], progress_smoothing=1.0)
