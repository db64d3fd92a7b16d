"""The jitted train step on 1 vs 8 devices; loss, weight-decay mask, schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_fixtures

from jarl import losses, optim


@pytest.mark.parametrize(
  "mesh",
  [
    # Data + FSDP alone: a subset of the next case, run by hand (`-m slow`).
    pytest.param([("data", 4), ("fsdp", 2), ("model", 1)], marks=pytest.mark.slow),
    # FSDP + tensor parallelism: weights split on embed (fsdp) and heads/mlp/vocab (model).
    [("data", 2), ("fsdp", 2), ("model", 2)],
  ],
  ids=["data4_fsdp2", "data2_fsdp2_model2"],
)
def test_one_device_and_eight_devices_agree(mesh):
  config = train_fixtures.tiny_config()
  batches = [train_fixtures.batch(config, 8, seed) for seed in range(3)]
  one, params_one = train_fixtures.run_steps(
    config, [("data", -1), ("fsdp", 1), ("model", 1)], jax.devices()[:1], batches
  )
  eight, params_eight = train_fixtures.run_steps(config, mesh, jax.devices(), batches)
  assert one[0]["loss"] > 1.0  # a real cross-entropy, not a degenerate zero
  for a, b in zip(one, eight):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    np.testing.assert_allclose(a["per_example_loss"], b["per_example_loss"], rtol=1e-5)
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
  # Key biases and the reducer's last bias have exactly zero true gradient (softmax is
  # shift-invariant), so Adam turns float noise into updates of up to ~learning_rate there,
  # which differ with the reduction order of each mesh: those only have to stay that small.
  # Everything else moves by ~learning_rate (3e-3) per step, far above the tolerance.
  noise_only = lambda path: (
    path.endswith("key/bias") or ("reducer_" in path and path.endswith("Dense_1/bias"))
  )
  lr_budget = len(batches) * config.optimizer.learning_rate
  for path, x in jax.tree_util.tree_flatten_with_path(params_one)[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    y = _leaf(params_eight, path)
    if noise_only(name):
      assert np.abs(x).max() <= lr_budget and np.abs(y).max() <= lr_budget, name
    else:
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=3e-4, err_msg=name)


def _leaf(tree, path):
  for key in path:
    tree = tree[getattr(key, "key", key)]
  return tree


def test_token_cross_entropy_by_hand():
  logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))  # [1, 2, 3]
  target = jnp.array([[1, 0]])  # second token is padding
  loss_sum, count = losses.token_cross_entropy(logits, target, jnp.array([True]))
  np.testing.assert_allclose(loss_sum, [-np.log(0.25)], rtol=1e-6)
  np.testing.assert_allclose(count, [1.0])
  masked, count = losses.token_cross_entropy(logits, target, jnp.array([False]))
  assert float(masked[0]) == 0.0 and float(count[0]) == 0.0
  smooth, _ = losses.token_cross_entropy(logits, target, jnp.array([True]), 0.1)
  expected = 0.9 * -np.log(0.25) + 0.1 * -np.mean(np.log([0.5, 0.25, 0.25]))
  np.testing.assert_allclose(smooth, [expected], rtol=1e-6)


def test_decay_mask_only_kernels():
  params = {
    "Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
    "LayerNorm_0": {"scale": jnp.ones(2)},
    "Embed_0": {"embedding": jnp.ones((4, 2))},
    "pos_embedding": jnp.ones((1, 4, 2)),
  }
  mask = optim.decay_mask(params)
  assert mask == {
    "Dense_0": {"kernel": True, "bias": False},
    "LayerNorm_0": {"scale": False},
    "Embed_0": {"embedding": False},
    "pos_embedding": False,
  }


def test_schedule_warms_up_then_decays_to_zero():
  opt = train_fixtures.tiny_config(
    optimizer__warmup_steps=10, optimizer__learning_rate=1e-3
  ).optimizer
  schedule = optim.learning_rate_schedule(opt, 110)
  np.testing.assert_allclose(
    [schedule(0), schedule(5), schedule(10), schedule(60), schedule(110)],
    [0.0, 5e-4, 1e-3, 5e-4, 0.0],
    atol=1e-9,
  )


def test_schedule_of_a_run_shorter_than_its_warmup_still_reaches_the_peak():
  opt = train_fixtures.tiny_config(
    optimizer__warmup_steps=100, optimizer__learning_rate=1e-3
  ).optimizer
  schedule = optim.learning_rate_schedule(opt, 6)
  np.testing.assert_allclose([schedule(0), schedule(5)], [0.0, 1e-3], atol=1e-9)


def test_weight_decay_leaves_biases_alone():
  opt = train_fixtures.tiny_config(
    optimizer__weight_decay=0.5, optimizer__clip_norm=0.0, optimizer__warmup_steps=0
  ).optimizer
  tx = optim.make_optimizer(opt, optim.learning_rate_schedule(opt, 10))
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["bias"], 0.0)
  np.testing.assert_allclose(updates["kernel"], -opt.learning_rate * 0.5, rtol=1e-6)
