"""Training and evaluation loop: `train_and_evaluate(config, workdir)`.

One jitted, donated, sharded train step over a `jax.sharding.Mesh`; Orbax checkpoints
with automatic resume; clu metric writers; periodic evaluators from `config.evals`.
"""

import dataclasses
import functools
import shlex
import time
from typing import Any
import zlib

from absl import logging
from clu import periodic_actions
from etils import epath
import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np
import optax

from jarl import batch as batch_lib
from jarl import (
  checkpoint,
  config_checks,
  losses,
  metrics_writer,
  optim,
  predict,
  preemption,
  sharding,
)
from jarl import train_step as train_step_lib
from jarl.data import pipeline, tokenizer
from jarl.evaluation import registry
from jarl.models import model as model_lib
from jarl.models import model_init

# The run's config beside its checkpoints, so `jarl.predict` needs only the workdir.
CONFIG_FILE = "config.json"
# More than this fraction of a log interval's examples cut to fit the text lengths is
# worth one warning per run: the model never sees those texts' ends.
TRUNCATION_WARNING = 0.05


def save_config(config, workdir: str) -> None:
  """Writes `<workdir>/config.json` (process 0 only; the config is the same everywhere)."""
  if jax.process_index() == 0:
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))


def _compiled_flops(compiled) -> float:
  """FLOPs of one step on one device, from XLA's cost analysis (0 when unavailable).

  Under SPMD the compiled program is the per-device one, so the caller multiplies by
  the number of devices (checked: an 8-way data-parallel matmul reports 1/8).
  """
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


@dataclasses.dataclass
class Trainer:
  """Everything the loop needs that depends only on config + mesh (nothing trained yet)."""

  model: nn.Module
  tx: optax.GradientTransformation
  mesh: Mesh
  state_sharding: Any  # TrainState of NamedSharding
  abstract_state: Any  # TrainState of sharded ShapeDtypeStruct
  batch_sharding: NamedSharding
  abstract_batch: dict  # the global batch (jarl.batch.batch_spec) as sharded shapes
  step_fn: Any  # jitted train_step(state, batch) -> (state, metrics), donates state


def make_trainer(config, mesh: Mesh) -> Trainer:
  """Model, optimizer, abstract sharded state (via jax.eval_shape) and the jitted step."""
  sharding.check_rules(config.logical_axis_rules, mesh)
  model = model_lib.build(config)
  schedule = optim.learning_rate_schedule(config.optimizer, config.total_steps)
  tx = optim.make_optimizer(config.optimizer, schedule)
  batch_sharding = sharding.batch_sharding(mesh, config.logical_axis_rules)
  replicated = NamedSharding(mesh, PartitionSpec())
  dummy = batch_lib.dummy_batch(config, 1)
  # Boxed leaves carry the logical names into the optimizer moments too.
  boxed = jax.eval_shape(
    functools.partial(train_step_lib.init_state, model, tx, dummy), jax.random.key(config.seed)
  )
  state_sharding = sharding.tree_shardings(boxed, mesh, config.logical_axis_rules)
  abstract_state = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), nn.unbox(boxed), state_sharding
  )
  metric_sharding = dict(
    loss=replicated,
    per_example_loss=batch_sharding,
    dataset_id=batch_sharding,
    grad_norm=replicated,
    param_norm=replicated,
    learning_rate=replicated,
    finite=replicated,
  )
  # Per-loss parts (loss_decoder, loss_contrastive, ...) when auxiliary losses are on.
  metric_sharding.update({f"loss_{t}": replicated for t in losses.make_objective(config).terms})
  step = train_step_lib.make_train_step(model, tx, schedule, config)
  rules = sharding.logical_rules(config.logical_axis_rules)

  def step_with_rules(state, batch):
    # The blocks' nn.with_logical_constraint calls are no-ops without rules in scope at
    # trace time; with them, activations stay batch-sharded under FSDP / tensor parallelism.
    with nn.logical_axis_rules(rules):
      return step(state, batch)

  step_fn = jax.jit(
    step_with_rules,
    in_shardings=(state_sharding, batch_sharding),
    out_shardings=(state_sharding, metric_sharding),
    donate_argnums=0,
  )
  abstract_batch = batch_lib.abstract_batch(config, config.global_batch_size, batch_sharding)
  return Trainer(
    model, tx, mesh, state_sharding, abstract_state, batch_sharding, abstract_batch, step_fn
  )


def initial_state(config, trainer: Trainer) -> train_step_lib.TrainState:
  """Fresh state, initialised directly in its shards; then `config.init_from` params."""
  dummy = batch_lib.dummy_batch(config, 1)
  init = lambda rng: nn.unbox(train_step_lib.init_state(trainer.model, trainer.tx, dummy, rng))
  state = jax.jit(init, out_shardings=trainer.state_sharding)(jax.random.key(config.seed))
  if config.get("model_init", ""):
    return _load_model_init(config, state)
  if not config_checks.init_from(config):
    return state
  loaded, report = checkpoint.load_params(config.init_from, trainer.abstract_state.params)
  logging.info(
    "init_from %s: loaded %d leaves; missing %s; unexpected %s; mismatched %s",
    config.init_from,
    len(loaded),
    report["missing"],
    report["unexpected"],
    report["mismatched"],
  )
  if not loaded:
    raise ValueError(
      f"config.init_from={config.init_from!r}: no parameter matches the "
      f"model (mismatched: {report['mismatched'][:5]})"
    )

  def take(path, fresh, spec):
    key = jax.tree_util.keystr(path)
    return jax.device_put(loaded[key], spec.sharding) if key in loaded else fresh

  params = jax.tree_util.tree_map_with_path(take, state.params, trainer.abstract_state.params)
  return state.replace(params=params)


def _load_model_init(config, state):
  """The towers from `config.model_init`'s public checkpoints, placed in their shards."""
  dont_load = config.get("model_load", {}).get("dont_load", ())
  loaded, reports = model_init.load(config.model_init, dont_load, state.params)
  for report in reports:
    logging.info("model_init: %s", report)
  put = lambda new, old: jax.device_put(new, old.sharding) if isinstance(new, np.ndarray) else old
  return state.replace(params=jax.tree.map(put, loaded, state.params))


def _dataset_names(config) -> list[str]:
  return [str(s.get("name", i)) for i, s in enumerate(config.data.get("sources", []))]


def _truncation_warning(config, truncated: float, examples: float) -> str | None:
  """The warning for `truncated` of a log interval's `examples`; None at or below the bar."""
  if examples <= 0 or truncated / examples <= TRUNCATION_WARNING:
    return None
  d, m = config.data, config.model
  return (
    f"{truncated:.0f} of the last {examples:.0f} training examples ({truncated / examples:.0%}) "
    "had their text or target cut to fit (data/truncated in the metrics). Raise "
    f"config.data.text_len={d.text_len} / config.data.target_len={d.target_len} together "
    f"with config.model.text.max_len={m.text.max_len} / "
    f"config.model.decoder.max_len={m.decoder.max_len}, or use a tokenizer with bigger "
    "pieces for your text (python -m jarl.tools.make_tokenizer; it prints the lengths "
    "that fit). Warned once per run."
  )


def _next_command(config, workdir: str) -> str:
  """What to run with this run's checkpoint: predict for a one-task (fine-tuning) run,
  else the fine-tuning command that starts from it."""
  tasks = {s["task"] for s in config.data.sources}
  if config.get("stage", "") == "finetune" and len(tasks) == 1 and tasks <= set(predict.TASKS):
    (task,) = tasks
    return f"  next: {task} on your own images:\n    {predict.command(workdir, task)}"
  workdir = workdir.rstrip("/")
  variant, data_arg = config.get("variant", "<size>"), config.get("data_arg", "")
  if "source=" in data_arg:  # the user's own records, with captions: caption them
    head, name = "  next: fine-tune it for captioning on the same data:", "finetune_caption"
  else:
    head = (
      "  next: fine-tune it for VQA (configs/finetune_caption.py and finetune_entailment.py alike):"
    )
    name = "finetune_vqa"
  arg = f"{variant},{data_arg}" if data_arg else variant
  return (
    f"{head}\n    python -m jarl.main "
    f"{shlex.quote(f'--config=configs/{name}.py:{arg}')} "
    f"{shlex.quote('--workdir=' + workdir + '_' + name.split('_')[1])} "
    f"{shlex.quote('--config.init_from=' + workdir)}"
  )


def _summary(config, workdir: str, step: int, last: dict, checkpoint_dir, seconds: float) -> str:
  """The run's closing lines: final metrics, checkpoint, wall time, what to run next.

  last: {name: (step, value)} of every scalar written (metrics_writer.Writer.last).
  """
  done = step >= config.total_steps
  head = "Finished" if done else "Stopped (preempted)"
  lines = [f"{head} at step {step} of {config.total_steps}; {seconds:.0f} s wall time."]
  if "train/loss" in last:
    lines.append(f"  train/loss {last['train/loss'][1]:.4f} (step {last['train/loss'][0]})")
  for name in config.get("evals", {}):
    got = {k[len(name) + 1 :]: v for k, v in last.items() if k.startswith(f"{name}/")}
    if got:
      at = max(s for s, _ in got.values())
      shown = ", ".join(f"{k} {v:.4g}" for k, (_, v) in sorted(got.items()))
      lines.append(f"  {name} (step {at}): {shown}")
  lines.append(f"  checkpoint: {checkpoint_dir or 'none written'}")
  if done:
    lines.append(_next_command(config, workdir))
  else:
    lines.append("  the same command resumes from the checkpoint.")
  return "\n".join(lines)


def train_and_evaluate(config, workdir: str) -> train_step_lib.TrainState:
  """Trains `config.total_steps` steps (resuming from `workdir`), evaluating periodically.

  Returns the final train state. On SIGTERM it saves at the next step boundary and
  returns early; on non-finite loss or gradients it raises FloatingPointError naming
  the step and the last good checkpoint (unless `config.skip_nonfinite`). Its last log
  lines (process 0) sum up the run and name the command to run next.
  """
  start_time = time.time()
  # ---- Build and check everything before compiling anything. ----
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_rules(config.logical_axis_rules, mesh)
  config_checks.check_run(config, workdir, sharding.batch_shards(mesh, config.logical_axis_rules))
  try:
    tok = tokenizer.load(config.data.tokenizer)
    config_checks.check_tokenizer(config, tok.vocab_size)
  except (OSError, ValueError) as e:  # a missing or remote-unreadable file too
    raise config_checks.ConfigError(str(e)) from e
  logging.info(
    "JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
  )

  with jax.set_mesh(mesh):
    trainer = make_trainer(config, mesh)
    evaluators = registry.make_evaluators(
      config, model=trainer.model, mesh=mesh, param_shardings=trainer.state_sharding.params
    )

    # ---- Resume or initialise. ----
    ckpt = checkpoint.Checkpointer(
      workdir, every_steps=config.ckpt_every_steps, keep=config.keep_checkpoints
    )
    train_data = pipeline.make_train_data(
      config.data,
      global_batch_size=config.global_batch_size,
      seed=config.seed,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      fields=batch_lib.batch_spec(config),
    )
    writer = metrics_writer.make_writer(workdir)
    flag = preemption.PreemptionFlag()
    try:
      resumed = ckpt.restore_latest(trainer.abstract_state)
      if resumed:
        start_step, state, data_state = resumed
        if data_state is None:
          logging.warning(
            "%s/%d was written by a different number of processes: resuming "
            "the train state with a freshly started data pipeline (the data "
            "order differs from the interrupted run).",
            ckpt.directory,
            start_step,
          )
        else:
          train_data.set_state(data_state)
        logging.info("Resumed from %s at step %d.", ckpt.directory, start_step)
      else:
        start_step = 0
        state = initial_state(config, trainer)
        if evaluators:  # the starting point of every validation curve
          writer.write_scalars(
            0, {k: v for e in evaluators for k, v in e.run(state.params).items()}
          )
      save_config(config, workdir)  # after the restore: a mismatching model never overwrites it

      if start_step >= config.total_steps:
        logging.info(
          "Checkpoint step %d >= config.total_steps=%d: nothing to train.",
          start_step,
          config.total_steps,
        )
      else:
        # ---- Compile the step once, ahead of time. ----
        local_batch = next(train_data)
        compiled = trainer.step_fn.lower(trainer.abstract_state, trainer.abstract_batch).compile()
        flops_per_step = _compiled_flops(compiled) * mesh.size
        logging.info(
          "Train step compiled: %.3g FLOPs per step (XLA cost analysis).", flops_per_step
        )

        state = _train_loop(
          config,
          state,
          start_step,
          local_batch,
          compiled,
          train_data,
          ckpt,
          writer,
          flag,
          evaluators,
          trainer.batch_sharding,
          flops_per_step,
        )
    finally:
      flag.restore_handler()
      ckpt.close()  # waits for the async saves: the summary names a complete checkpoint
      train_data.close()
      writer.flush()
      writer.close()
  if jax.process_index() == 0:
    latest = ckpt.latest_step()
    step_dir = ckpt.directory / str(latest) if latest is not None else None
    summary = _summary(
      config, workdir, int(state.step), writer.last, step_dir, time.time() - start_time
    )
    logging.info("%s", summary)
  return state


def _train_loop(
  config,
  state,
  start_step,
  local_batch,
  compiled,
  train_data,
  ckpt,
  writer,
  flag,
  evaluators,
  batch_sharding,
  flops_per_step,
):
  """Steps start_step+1 .. total_steps; `local_batch` is the batch for the first one."""
  names = _dataset_names(config)
  report = periodic_actions.ReportProgress(
    num_train_steps=config.total_steps,
    writer=writer,
    every_steps=config.log_every_steps,
    every_secs=None,
  )
  hooks = [report]
  if config.profile_steps:
    # Steps 5.. after (re)start: past compilation and the first checkpoint/eval.
    hooks.append(
      periodic_actions.Profile(
        logdir=ckpt.directory.parent,
        every_secs=None,
        num_profile_steps=config.profile_steps,
        profile_duration_ms=None,
        first_profile=start_step + 5,
      )
    )
  batch_keys = tuple(batch_lib.batch_spec(config))  # host-only fields stay on the host
  per_dataset = {}  # dataset id -> [loss sum, count] since the last log
  # Truncation counters at the last log (the first batch, drawn before, is not counted).
  stats = train_data.stats()
  seen = (stats["data/truncated"], stats["data/examples"])
  warned_truncation = False
  skipped, last_log_time, last_log_step = 0, time.time(), start_step
  for step in range(start_step + 1, config.total_steps + 1):
    if step > start_step + 1:
      local_batch = next(train_data)
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      state, metrics = compiled(
        state, sharding.global_batch({k: local_batch[k] for k in batch_keys}, batch_sharding)
      )
    if bool(metrics["finite"]):
      per_example = sharding.local_rows(metrics["per_example_loss"])
      train_data.update(dataset_id=local_batch["dataset_id"], loss=per_example, step=step)
      for d, loss in zip(
        local_batch["dataset_id"][local_batch["mask"]], per_example[local_batch["mask"]]
      ):
        acc = per_dataset.setdefault(int(d), [0.0, 0])
        acc[0] += float(loss)
        acc[1] += 1
    elif config.skip_nonfinite:
      skipped += 1  # the update was dropped; NaN losses must not steer the sampler either
    else:
      ckpt.wait()
      last = ckpt.latest_step()
      raise FloatingPointError(
        f"Non-finite loss or gradients at step {step} (loss={float(metrics['loss'])}, "
        f"grad_norm={float(metrics['grad_norm'])}); last good checkpoint: "
        f"{ckpt.directory / str(last) if last else 'none'}. "
        "Set config.skip_nonfinite=True to drop such updates instead."
      )
    for hook in hooks:
      hook(step)

    if step % config.log_every_steps == 0 or step == config.total_steps:
      elapsed = max(time.time() - last_log_time, 1e-9)
      steps_done = step - last_log_step
      scalars = {
        f"train/{k}": float(metrics[k])
        for k in ("loss", "grad_norm", "param_norm", "learning_rate")
      }
      scalars.update(
        {
          f"train/loss_{names[d] if d < len(names) else d}": s / max(n, 1)
          for d, (s, n) in per_dataset.items()
        }
      )
      scalars.update({f"train/{k}": float(v) for k, v in metrics.items() if k.startswith("loss_")})
      stats = train_data.stats()
      scalars.update(
        {k if k.startswith("data/") else f"data/{k}": float(v) for k, v in stats.items()}
      )
      scalars["data/batch_crc32"] = float(zlib.crc32(np.ascontiguousarray(local_batch["target"])))
      scalars["train/skipped_nonfinite"] = float(skipped)
      scalars["perf/examples_per_s"] = config.global_batch_size * steps_done / elapsed
      scalars["perf/tflops_per_s"] = flops_per_step * steps_done / elapsed / 1e12
      writer.write_scalars(step, scalars)
      per_dataset, last_log_time, last_log_step = {}, time.time(), step
      counts = (stats["data/truncated"], stats["data/examples"])
      warning = _truncation_warning(config, counts[0] - seen[0], counts[1] - seen[1])
      if warning and not warned_truncation:
        logging.warning("%s", warning)
        warned_truncation = True
      seen = counts

    preempted = flag.requested()
    if ckpt.should_save(step, config.total_steps) or preempted:
      ckpt.save(step, state, train_data.get_state())
    eval_start = time.time()
    for evaluator in evaluators:
      if step % evaluator.every_steps == 0 or step == config.total_steps:
        writer.write_scalars(step, evaluator.run(state.params))
    last_log_time += time.time() - eval_start  # examples/s counts training time only
    writer.flush()
    if preempted:
      logging.warning("Preempted: saved step %d to %s; exiting.", step, ckpt.directory)
      break
  return state
