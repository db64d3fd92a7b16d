"""Mesh construction, logical rules and global batches on 8 fake CPU devices."""

import flax.linen as nn
import jax
from jax.sharding import AxisType, PartitionSpec
import numpy as np
import pytest

from jarl import sharding

RULES = [
  ("batch", ("data", "fsdp")),
  ("embed", "fsdp"),
  ("mlp", "model"),
  ("vocab", "model"),
  ("kv", None),
]


def test_mesh_shape_fills_minus_one():
  assert sharding.mesh_shape([("data", -1), ("fsdp", 2), ("model", 1)], 8) == dict(
    data=4, fsdp=2, model=1
  )
  assert sharding.mesh_shape([("data", 2), ("fsdp", 4)], 8) == dict(data=2, fsdp=4)


@pytest.mark.parametrize(
  "mesh, message",
  [
    ([("data", -1), ("fsdp", -1)], "at most one axis may be -1"),
    ([("data", -1), ("fsdp", 3)], "does not divide the 8"),
    ([("data", 2), ("fsdp", 2)], "uses 4 devices but 8 are available"),
    ([("data", -1), ("data", 1)], "must be unique"),
    ([("data", 0)], "sizes must be >= 1 or -1"),
  ],
)
def test_mesh_shape_errors_name_config_mesh(mesh, message):
  with pytest.raises(ValueError, match="config.mesh=") as e:
    sharding.mesh_shape(mesh, 8)
  assert message in str(e.value)


def test_make_mesh_is_auto_and_uses_given_devices():
  mesh = sharding.make_mesh([("data", -1), ("fsdp", 2), ("model", 1)])
  assert dict(mesh.shape) == dict(data=4, fsdp=2, model=1)
  assert mesh.axis_types == (AxisType.Auto,) * 3
  one = sharding.make_mesh([("data", -1), ("fsdp", 1), ("model", 1)], jax.devices()[:1])
  assert one.size == 1


def test_check_rules_rejects_unknown_mesh_axis():
  mesh = sharding.make_mesh([("data", -1)])
  with pytest.raises(ValueError, match="'embed' -> 'fsdp'"):
    sharding.check_rules([("embed", "fsdp")], mesh)


def test_batch_sharding_splits_over_data_and_fsdp():
  mesh = sharding.make_mesh([("data", 4), ("fsdp", 2), ("model", 1)])
  s = sharding.batch_sharding(mesh, RULES)
  assert s.spec == PartitionSpec(("data", "fsdp"))
  assert sharding.batch_shards(mesh, RULES) == 8


def test_tree_shardings_follow_logical_names():
  mesh = sharding.make_mesh([("data", 2), ("fsdp", 2), ("model", 2)])
  boxed = {
    "w": nn.LogicallyPartitioned(jax.ShapeDtypeStruct((4, 6), np.float32), ("embed", "mlp")),
    "count": jax.ShapeDtypeStruct((), np.int32),
  }
  s = sharding.tree_shardings(boxed, mesh, RULES)
  assert s["w"].spec == PartitionSpec("fsdp", "model")
  assert s["count"].spec == PartitionSpec()


def test_global_batch_and_local_rows_round_trip():
  mesh = sharding.make_mesh([("data", 4), ("fsdp", 2), ("model", 1)])
  s = sharding.batch_sharding(mesh, RULES)
  local = {
    "x": np.arange(16 * 3, dtype=np.float32).reshape(16, 3),
    "id": np.arange(16, dtype=np.int32),
  }
  batch = sharding.global_batch(local, s)
  assert batch["x"].shape == (16, 3)
  assert len(batch["x"].sharding.device_set) == 8
  np.testing.assert_array_equal(sharding.local_rows(batch["id"]), local["id"])
  np.testing.assert_array_equal(sharding.local_rows(batch["x"] * 2), local["x"] * 2)
