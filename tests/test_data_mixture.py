"""Adaptive mixture weights: policies, floor, draws, state."""

import json

import numpy as np
import pytest

from jarl.data import mixture


def _mixer(policy, n=3, **kw):
  kw = {**dict(update_every=10, tau=1.0, epsilon=0.05, smoothing=0.5), **kw}
  return mixture.Mixer([f"s{i}" for i in range(n)], [1.0] * n, policy=policy, **kw)


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


def test_state_round_trip_through_json_repeats_the_future():
  a = _mixer("learning_progress")
  _feed(a, lambda ids, step: 3.0 - 0.01 * step * (ids + 1), steps=25)
  a.choose(7)
  b = _mixer("learning_progress")
  b.set_state(json.loads(json.dumps(a.get_state())))
  for m in (a, b):
    _feed(m, lambda ids, step: 2.0 + 0.01 * ids, steps=15, rng=np.random.default_rng(5))
  np.testing.assert_array_equal(a.choose(50), b.choose(50))
  np.testing.assert_array_equal(a.weights, b.weights)


def test_bad_settings_name_the_config_key():
  with pytest.raises(ValueError, match="epsilon"):
    mixture.Mixer(["a", "b", "c"], [1, 1, 1], epsilon=0.5)
  with pytest.raises(ValueError, match="policy"):
    mixture.Mixer(["a"], [1], policy="greedy")
