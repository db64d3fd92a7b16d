"""Gradient accumulation and non-finite handling of the jitted train step."""

import jax
import numpy as np
import train_fixtures

from jarl import sharding, train


def test_gradient_accumulation_matches_one_big_batch():
  # Two steps: the first has learning rate 0 (warmup), the second really moves params.
  batches = [train_fixtures.batch(train_fixtures.tiny_config(), 8, seed) for seed in (3, 4)]
  mesh_config = [("data", -1), ("fsdp", 1), ("model", 1)]
  # The reference on one device: the plain tiny step the other trainer tests compile too
  # (one compile per session with the shared cache). The split runs data-parallel on 2
  # devices, so each device's rows are micro-batched locally.
  whole, p_whole = train_fixtures.run_steps(
    train_fixtures.tiny_config(), mesh_config, jax.devices()[:1], batches
  )
  split, p_split = train_fixtures.run_steps(
    train_fixtures.tiny_config(optimizer__grad_accum_steps=2),
    mesh_config,
    jax.devices()[:2],
    batches,
  )
  for a, b in zip(whole, split):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    # Per-example losses come back in the batch's original row order.
    np.testing.assert_allclose(a["per_example_loss"], b["per_example_loss"], rtol=1e-5)
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
  # As in test_train_step: zero-true-gradient biases may differ by float noise only.
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=3e-4), p_whole, p_split
  )


def test_nonfinite_batch_is_flagged_and_skipped():
  # (Without skip_nonfinite the loop stops; tests/test_train_loop.py checks that.)
  config = train_fixtures.tiny_config(skip_nonfinite=True, optimizer__warmup_steps=0)
  bad = train_fixtures.batch(config, 8)
  bad["image"][0, 0, 0, 0] = np.nan
  mesh = sharding.make_mesh([("data", -1), ("fsdp", 1), ("model", 1)], jax.devices()[:1])
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    state = train.initial_state(config, trainer)
    before = jax.tree.map(np.asarray, state.params)
    state, metrics = trainer.step_fn(state, sharding.global_batch(bad, trainer.batch_sharding))
  assert not bool(metrics["finite"])
  assert int(state.step) == 1
  after = jax.tree.map(np.asarray, state.params)
  unchanged = jax.tree.leaves(jax.tree.map(np.array_equal, before, after))
  assert all(unchanged)
  assert np.isnan(float(metrics["loss"]))
