"""Evaluator `loss`: token cross-entropy of the decoder on a held-out split.

config.evals.<name> = dict(type="loss", source=..., task=..., every_steps=N,
                           num_examples=E, batch_size=B)
Writes `<name>/loss` (the objective's decoder token cross-entropy, without label
smoothing, token mean over the whole split) and `<name>/examples`. Auxiliary losses are
training signals (MIM masks only in training, tags only on training batches) and are not
evaluated here.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jarl import batch as batch_lib
from jarl import losses, sharding
from jarl.data import pipeline

KEYS = (*batch_lib.MODEL_INPUTS, "mask")


class LossEvaluator:
  """Runs the model with train=False over every example of the split exactly once."""

  def __init__(self, name: str, eval_config: dict, *, config, model, mesh, param_shardings):
    self.name = name
    self.every_steps = int(eval_config["every_steps"])
    batch_size = int(eval_config["batch_size"])
    shards = sharding.batch_shards(mesh, config.logical_axis_rules)
    if batch_size % shards or batch_size % jax.process_count():
      raise ValueError(
        f"config.evals.{name}.batch_size={batch_size}: must divide by the "
        f"{shards} batch shards of config.mesh and by the "
        f"{jax.process_count()} processes"
      )
    if int(eval_config["num_examples"]) < 1:
      raise ValueError(
        f"config.evals.{name}.num_examples={eval_config['num_examples']}: must be >= 1"
      )
    self._data = pipeline.make_eval_data(
      config.data,
      dict(eval_config),
      batch_size=batch_size,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    self._batch_sharding = sharding.batch_sharding(mesh, config.logical_axis_rules)
    objective = losses.make_objective(config)

    def eval_step(params, batch):
      logits, _ = model.apply(
        {"params": params}, batch["image"], batch["text"], batch["target"], train=False
      )
      loss_sum, count = objective.decoder_sums(logits, batch, label_smoothing=0.0)
      return dict(
        loss_sum=jnp.sum(loss_sum),
        tokens=jnp.sum(count),
        examples=jnp.sum(batch["mask"].astype(jnp.float32)),
      )

    self._eval_step = jax.jit(eval_step, in_shardings=(param_shardings, self._batch_sharding))

  def run(self, params) -> dict[str, float]:
    totals = dict(loss_sum=0.0, tokens=0.0, examples=0.0)
    for local in self._data:
      batch = sharding.global_batch({k: local[k] for k in KEYS}, self._batch_sharding)
      for k, v in self._eval_step(params, batch).items():
        totals[k] += float(np.asarray(v))  # float64 on host: no drift over many batches
    return {
      f"{self.name}/loss": totals["loss_sum"] / max(totals["tokens"], 1.0),
      f"{self.name}/examples": totals["examples"],
    }
