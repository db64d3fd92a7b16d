"""Device mesh, logical-axis rules and global arrays.

The mesh comes from `config.mesh`, a list of `(axis_name, size)` with at most one
`-1` ("the remaining devices"), e.g. `[('data', -1), ('fsdp', 1), ('model', 1)]`.
Parameters carry logical axis names (`nn.with_logical_partitioning`); the rules in
`config.logical_axis_rules` map them onto mesh axes. The same code runs on one CPU,
8 fake CPU devices, a GPU or a TPU pod slice: only the mesh sizes change.
"""

from collections.abc import Sequence
import math

import flax.linen as nn
import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
import numpy as np

# Logical name of the leading (example) dimension of every batch array.
BATCH_AXIS = "batch"


def mesh_shape(mesh_config: Sequence[tuple[str, int]], num_devices: int) -> dict[str, int]:
  """Resolves `config.mesh` (one size may be -1) to {axis_name: size} for `num_devices`."""
  names = [str(name) for name, _ in mesh_config]
  sizes = [int(size) for _, size in mesh_config]
  if len(set(names)) != len(names):
    raise ValueError(f"config.mesh={list(mesh_config)}: axis names must be unique")
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh={list(mesh_config)}: at most one axis may be -1")
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh={list(mesh_config)}: sizes must be >= 1 or -1")
  known = math.prod(s for s in sizes if s != -1)
  if num_devices % known:
    raise ValueError(
      f"config.mesh={list(mesh_config)}: fixed axes use {known} devices, "
      f"which does not divide the {num_devices} available"
    )
  if -1 in sizes:
    sizes[sizes.index(-1)] = num_devices // known
  elif known != num_devices:
    raise ValueError(
      f"config.mesh={list(mesh_config)}: uses {known} devices but "
      f"{num_devices} are available; set one size to -1"
    )
  return dict(zip(names, sizes))


def make_mesh(mesh_config: Sequence[tuple[str, int]], devices=None) -> Mesh:
  """Builds the device mesh; every axis is `AxisType.Auto` (the compiler shards)."""
  devices = jax.devices() if devices is None else list(devices)
  shape = mesh_shape(mesh_config, len(devices))
  return jax.make_mesh(
    tuple(shape.values()),
    tuple(shape.keys()),
    axis_types=(AxisType.Auto,) * len(shape),
    devices=devices,
  )


def logical_rules(rules) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
  """`config.logical_axis_rules` (lists from ConfigDict) as the tuples flax expects."""
  out = []
  for name, target in rules:
    if isinstance(target, (list, tuple)):
      target = tuple(target)
    out.append((name, target))
  return tuple(out)


def check_rules(rules, mesh: Mesh) -> None:
  """Fails when a rule maps onto a mesh axis that does not exist."""
  for name, target in logical_rules(rules):
    targets = target if isinstance(target, tuple) else (target,)
    for axis in targets:
      if axis is not None and axis not in mesh.axis_names:
        raise ValueError(
          f"config.logical_axis_rules: '{name}' -> '{axis}', but "
          f"config.mesh has only axes {mesh.axis_names}"
        )


def tree_shardings(boxed_tree, mesh: Mesh, rules):
  """NamedShardings for a tree whose leaves are `nn.LogicallyPartitioned` (or plain).

  Plain leaves (optimizer counters, step) are replicated.
  """
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, logical_rules(rules))


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
  """Sharding of batch arrays: dimension 0 split as the `batch` rule says, rest replicated."""
  spec = nn.logical_to_mesh_axes((BATCH_AXIS,), logical_rules(rules))
  return NamedSharding(mesh, PartitionSpec(*spec))


def batch_shards(mesh: Mesh, rules) -> int:
  """How many ways dimension 0 of a batch is split across the mesh."""
  spec = batch_sharding(mesh, rules).spec[0]
  axes = spec if isinstance(spec, tuple) else (spec,)
  return math.prod(mesh.shape[a] for a in axes if a is not None)


def global_batch(
  local_batch: dict[str, np.ndarray], sharding: NamedSharding
) -> dict[str, jax.Array]:
  """Per-process NumPy batch {key: [b, ...]} -> global arrays {key: [b * processes, ...]}."""
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
    for k, v in local_batch.items()
  }


def local_rows(array: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in the order it fed them.

  The adaptive sampler of each process wants the per-example losses of the examples
  that process produced; those are exactly the rows on its addressable devices.
  """
  rows = {}
  for shard in array.addressable_shards:
    start = (shard.index[0].start or 0) if shard.index else 0
    rows.setdefault(start, np.asarray(shard.data))
  return np.concatenate([rows[k] for k in sorted(rows)], axis=0)
