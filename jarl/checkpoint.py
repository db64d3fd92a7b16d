"""Orbax checkpoints: train state + per-process data-pipeline state, auto-resume.

Layout under `<workdir>/checkpoints/<step>/`:
  state/   the sharded train state (Orbax StandardSave; every process writes its shards)
  data/    `process_<i>-of-<n>.json`: each process's pipeline + adaptive-sampler state,
           so a resumed run draws exactly the batches the interrupted one would have.
Saves are async (training continues while files are written) and atomic (a step
directory appears only once complete); a latest checkpoint that still fails to load is
reported and the previous one is used.
"""

import contextlib
import dataclasses
import json
import logging as std_logging
from typing import Any

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

STATE = "state"
DATA = "data"


class ModelMismatchError(ValueError):
  """The workdir's checkpoint was written by a model of other shapes."""


class DataStateHandler(ocp.CheckpointHandler):
  """Writes / reads one JSON file per process (the pipeline state is per-process)."""

  def _file(self, directory: epath.Path) -> epath.Path:
    return epath.Path(directory) / f"process_{jax.process_index()}-of-{jax.process_count()}.json"

  def save(self, directory, args: "DataStateSave"):
    self._file(directory).write_text(json.dumps(args.state))

  def restore(self, directory, args: "DataStateRestore | None" = None) -> dict:
    path = self._file(directory)
    if not path.exists():
      raise FileNotFoundError(
        f"{path}: no data-pipeline state for this process; was the "
        "checkpoint written with a different number of processes?"
      )
    return json.loads(path.read_text())

  def metadata(self, directory):
    return None

  def finalize(self, directory):
    pass

  def close(self):
    pass


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: dict


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


def _path_name(path) -> str:
  """'params/decoder/kernel' for a key path. Orbax metadata stores dataclasses and
  namedtuples as dicts, so attribute, dict and index keys all become plain names."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  return {
    _path_name(p): tuple(getattr(v, "shape", ()))
    for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _shape_mismatches(saved_tree, abstract_tree) -> list[str]:
  """'path: saved shape vs expected shape' for every leaf that differs or is missing."""
  saved, expected = _shapes(saved_tree), _shapes(abstract_tree)
  problems = [
    f"{k}: checkpoint {saved[k]} vs model {expected[k]}"
    for k in expected
    if k in saved and saved[k] != expected[k]
  ]
  problems += [f"{k}: missing from checkpoint" for k in expected if k not in saved]
  problems += [f"{k}: in checkpoint but not in model" for k in saved if k not in expected]
  return problems


class Checkpointer:
  """Periodic async saving and automatic resume for one training run."""

  def __init__(self, workdir: str, *, every_steps: int, keep: int, async_save: bool = True):
    self.directory = epath.Path(workdir) / "checkpoints"
    self.every_steps = every_steps
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=True,
        enable_async_checkpointing=async_save,
        # Our loop decides when to save (periodic, final, preemption).
        save_interval_steps=1,
      ),
      item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: DataStateHandler()},
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def should_save(self, step: int, total_steps: int) -> bool:
    return step % self.every_steps == 0 or step == total_steps

  def save(self, step: int, state, data_state: dict) -> None:
    """Starts an async save; returns once the arrays are copied off the devices."""
    self._manager.save(
      step,
      args=ocp.args.Composite(
        **{STATE: ocp.args.StandardSave(state), DATA: DataStateSave(data_state)}
      ),
      force=True,
    )

  def restore(self, step: int, abstract_state) -> tuple[Any, dict | None]:
    """Train state (sharded like `abstract_state`'s ShapeDtypeStructs) + data state.

    The data state is None when the checkpoint was written by a different number of
    processes: the pipeline state is per process and cannot be re-split, but the train
    state can, so the run resumes with a freshly started pipeline instead of losing
    its training (the caller warns that the data order changes).
    """
    self._check_shapes(step, abstract_state)
    data_file = DataStateHandler()._file(self.directory / str(step) / DATA)  # pylint: disable=protected-access
    items = {STATE: ocp.args.StandardRestore(abstract_state)}
    if data_file.exists():
      items[DATA] = DataStateRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return restored[STATE], restored[DATA] if DATA in items else None

  def _check_shapes(self, step: int, abstract_state) -> None:
    saved = self._manager.item_metadata(step)[STATE]
    problems = _shape_mismatches(saved, abstract_state)
    if problems:
      shown = "\n  ".join(problems[:10])
      raise ModelMismatchError(
        f"{self.directory / str(step)} holds a checkpoint of a different model "
        f"({len(problems)} mismatching leaves):\n  {shown}\nUse a fresh --workdir, or "
        "config.init_from to start from its parameters."
      )

  def restore_latest(self, abstract_state) -> tuple[int, Any, dict] | None:
    """Resumes from the newest checkpoint that loads; None when there is none.

    A different model shape is a user error and is raised; any other failure (a
    truncated or deleted file) is logged and the next older checkpoint is tried.
    """
    for step in sorted(self.all_steps(), reverse=True):
      try:
        self._check_shapes(step, abstract_state)
      except ModelMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        logging.error(
          "Checkpoint %s has unreadable metadata (%s: %s); trying the previous one.",
          self.directory / str(step),
          type(e).__name__,
          e,
        )
        continue
      try:
        state, data_state = self.restore(step, abstract_state)
      except Exception as e:  # pylint: disable=broad-except
        # Orbax/TensorStore raise many types for damaged files; all mean "skip this one".
        logging.error(
          "Checkpoint %s is unreadable (%s: %s); trying the previous one.",
          self.directory / str(step),
          type(e).__name__,
          e,
        )
        continue
      return step, state, data_state
    return None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


class _NoItemMetadataWarning(std_logging.Filter):
  """Drops Orbax's 'Metadata file does not exist: <step>/state/_CHECKPOINT_METADATA'.

  load_params opens the `state` item directory with a plain Checkpointer, which looks for
  the step's metadata file there; CheckpointManager writes it one level up, in the step
  directory, so nothing is missing and the restore is unaffected.
  """

  def filter(self, record):
    return not (
      record.msg == "Metadata file does not exist: %s"
      and str(record.args[0]).endswith(f"/{STATE}/_CHECKPOINT_METADATA")
    )


@contextlib.contextmanager
def _quiet_item_metadata_warning():
  quiet, absl_logger = _NoItemMetadataWarning(), std_logging.getLogger("absl")  # Orbax's
  absl_logger.addFilter(quiet)
  try:
    yield
  finally:
    absl_logger.removeFilter(quiet)


def load_params(path: str, abstract_params) -> tuple[Any, dict[str, list[str]]]:
  """Parameters from another run's checkpoint for `config.init_from`; no optimizer state.

  `path` is a workdir (latest step is used), its `checkpoints/` directory, or one step
  directory. Leaves present in both with equal shapes are loaded; the rest keep
  the caller's fresh values. Returns ({keystr path: NumPy array} of the loadable leaves,
  report) where report lists `missing`, `unexpected` and `mismatched` leaves.
  """
  step_dir = find_step_dir(path)
  with _quiet_item_metadata_warning():
    return _load_params(path, step_dir, abstract_params)


def _load_params(path: str, step_dir: epath.Path, abstract_params):
  saved_tree = ocp.StandardCheckpointer().metadata(step_dir / STATE).item_metadata.tree
  if "params" not in saved_tree:
    raise ValueError(f"config.init_from={path!r}: {step_dir / STATE} has no 'params'")
  saved = {
    jax.tree_util.keystr(p): tuple(v.shape)
    for p, v in jax.tree_util.tree_flatten_with_path(saved_tree["params"])[0]
  }
  wanted = {
    jax.tree_util.keystr(p): tuple(v.shape)
    for p, v in jax.tree_util.tree_flatten_with_path(abstract_params)[0]
  }
  report = dict(
    missing=sorted(k for k in wanted if k not in saved),
    unexpected=sorted(k for k in saved if k not in wanted),
    mismatched=sorted(
      f"{k}: checkpoint {saved[k]} vs model {wanted[k]}"
      for k in wanted
      if k in saved and saved[k] != wanted[k]
    ),
  )
  # Only the params subtree, as host NumPy arrays: the caller places them on its mesh.
  item = {"params": saved_tree["params"]}
  restored = ocp.PyTreeCheckpointer().restore(
    step_dir / STATE,
    args=ocp.args.PyTreeRestore(
      item=item,
      partial_restore=True,
      restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item),
    ),
  )
  loaded = {
    jax.tree_util.keystr(p): np.asarray(v)
    for p, v in jax.tree_util.tree_flatten_with_path(restored["params"])[0]
  }
  return {k: v for k, v in loaded.items() if wanted.get(k) == v.shape}, report


def find_step_dir(path: str) -> epath.Path:
  """The step directory `path` names: itself, or a workdir's (or its `checkpoints/`'s)
  latest step. FileNotFoundError naming config.init_from when there is none."""
  directory = epath.Path(path)
  if not directory.is_dir():
    raise FileNotFoundError(f"config.init_from={path!r}: no such directory")
  if (directory / STATE).exists():
    return directory
  root = directory / "checkpoints" if (directory / "checkpoints").exists() else directory
  steps = sorted((int(p.name) for p in root.iterdir() if p.name.isdigit()), reverse=True)
  if not steps:
    raise FileNotFoundError(
      f"config.init_from={path!r}: no checkpoint there (expected a training workdir, its "
      "checkpoints/ directory or one checkpoints/<step> directory)"
    )
  return root / str(steps[0])
