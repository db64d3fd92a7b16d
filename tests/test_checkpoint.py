"""Orbax checkpointing: round trip, keep-K, corrupt latest, shape mismatch, init_from."""

import os

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np
import optax
import pytest

from jarl import checkpoint, sharding, train_step


def _mesh():
  return sharding.make_mesh([("data", 4), ("fsdp", 2), ("model", 1)])


def _state(mesh, width=4, scale=1.0, extra=False):
  """A small sharded TrainState with an Adam state, like the trainer's."""
  params = {
    "dense": {
      "kernel": jnp.arange(8 * width, dtype=jnp.float32).reshape(8, width) * scale,
      "bias": jnp.full((width,), scale),
    }
  }
  if extra:
    params["head"] = {"kernel": jnp.ones((width, 3))}
  tx = optax.adam(1e-3)
  state = train_step.TrainState(
    step=jnp.array(7, jnp.int32), params=params, opt_state=tx.init(params)
  )
  fsdp = NamedSharding(mesh, PartitionSpec("fsdp"))
  shardings = jax.tree.map(
    lambda x: fsdp if x.ndim == 2 else NamedSharding(mesh, PartitionSpec()), state
  )
  return jax.device_put(state, shardings)


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def test_round_trip_keeps_values_shardings_and_data_state(tmp_path):
  mesh = _mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=2, keep=3)
  state = _state(mesh)
  ckpt.save(2, state, {"epoch": 1, "weights": [0.25, 0.75]})
  ckpt.save(4, _state(mesh, scale=2.0), {"epoch": 2, "weights": [0.5, 0.5]})
  ckpt.close()
  assert os.path.exists(tmp_path / "checkpoints" / "4" / "data" / "process_0-of-1.json")

  again = checkpoint.Checkpointer(str(tmp_path), every_steps=2, keep=3)
  step, restored, data_state = again.restore_latest(_abstract(state))
  again.close()
  assert step == 4 and data_state == {"epoch": 2, "weights": [0.5, 0.5]}
  np.testing.assert_array_equal(
    restored.params["dense"]["kernel"], np.arange(32, dtype=np.float32).reshape(8, 4) * 2.0
  )
  assert restored.params["dense"]["kernel"].sharding.spec == PartitionSpec("fsdp")
  assert int(restored.step) == 7


def test_other_process_count_resumes_the_train_state_without_data_state(tmp_path):
  # As if written by 2 processes: no data file for this (1-process) layout.
  mesh = _mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=2, keep=3)
  ckpt.save(2, _state(mesh, scale=3.0), {"epoch": 1})
  ckpt.close()
  data_dir = tmp_path / "checkpoints" / "2" / "data"
  os.rename(data_dir / "process_0-of-1.json", data_dir / "process_0-of-2.json")
  again = checkpoint.Checkpointer(str(tmp_path), every_steps=2, keep=3)
  step, restored, data_state = again.restore_latest(_abstract(_state(mesh)))
  again.close()
  assert step == 2 and data_state is None  # not step 0: the training is kept
  np.testing.assert_array_equal(restored.params["dense"]["bias"], np.full((4,), 3.0))


def test_keeps_only_the_last_k(tmp_path):
  mesh = _mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep=2)
  for step in (1, 2, 3, 4):
    ckpt.save(step, _state(mesh, scale=step), {"step": step})
  ckpt.close()
  assert checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep=2).all_steps() == [3, 4]


def test_should_save_periodic_and_final():
  ckpt_steps = [
    s
    for s in range(1, 11)
    if checkpoint.Checkpointer.should_save(type("C", (), {"every_steps": 4})(), s, 10)
  ]
  assert ckpt_steps == [4, 8, 10]


def test_corrupt_latest_falls_back_to_previous(tmp_path):
  mesh = _mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep=3)
  ckpt.save(1, _state(mesh, scale=1.0), {"step": 1})
  ckpt.save(2, _state(mesh, scale=2.0), {"step": 2})
  ckpt.close()
  # Damage step 2: its array data is gone (as after a disk or copy failure).
  state_dir = tmp_path / "checkpoints" / "2" / "state"
  for root, _, files in os.walk(state_dir):
    for f in files:
      if f not in ("_METADATA", "_CHECKPOINT_METADATA", "commit_success.txt"):
        os.remove(os.path.join(root, f))
  again = checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep=3)
  step, restored, data_state = again.restore_latest(_abstract(_state(mesh)))
  again.close()
  assert step == 1 and data_state == {"step": 1}
  np.testing.assert_array_equal(restored.params["dense"]["bias"], np.ones(4))


def test_different_model_shape_is_a_clear_error(tmp_path):
  mesh = _mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep=3)
  ckpt.save(1, _state(mesh, width=4), {})
  ckpt.close()
  again = checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep=3)
  with pytest.raises(ValueError, match="holds a checkpoint of a different model") as e:
    again.restore_latest(_abstract(_state(mesh, width=6)))
  again.close()
  assert "params/dense/kernel: checkpoint (8, 4) vs model (8, 6)" in str(e.value)


def test_load_params_reports_missing_unexpected_and_mismatched(tmp_path):
  mesh = _mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep=3)
  ckpt.save(5, _state(mesh, width=4, scale=3.0, extra=True), {})
  ckpt.close()
  target = {
    "dense": {
      "kernel": jax.ShapeDtypeStruct((8, 4), jnp.float32),
      "bias": jax.ShapeDtypeStruct((5,), jnp.float32),
    },
    "new": {"kernel": jax.ShapeDtypeStruct((2, 2), jnp.float32)},
  }
  loaded, report = checkpoint.load_params(str(tmp_path), target)
  assert sorted(loaded) == ["['dense']['kernel']"]
  np.testing.assert_array_equal(
    loaded["['dense']['kernel']"], np.arange(32, dtype=np.float32).reshape(8, 4) * 3.0
  )
  assert report["missing"] == ["['new']['kernel']"]
  assert report["unexpected"] == ["['head']['kernel']"]
  assert report["mismatched"] == ["['dense']['bias']: checkpoint (4,) vs model (5,)"]
