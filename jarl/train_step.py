"""Train state, its initialisation and the (jit-able) training step."""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jarl import losses


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 [], number of updates applied
  params: Any
  opt_state: Any


def init_state(
  model: nn.Module, tx: optax.GradientTransformation, dummy_batch: dict, rng: jax.Array
) -> TrainState:
  """Fresh state from `dummy_batch` (`jarl.batch.dummy_batch`). Leaves stay boxed
  (`nn.LogicallyPartitioned`) so that under `jax.eval_shape` the logical axis names reach
  the optimizer moments too; unbox with `nn.unbox` for the real arrays.
  """
  params_rng, dropout_rng = jax.random.split(rng)
  variables = model.init({"params": params_rng, "dropout": dropout_rng}, **dummy_batch, train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params))


def make_train_step(
  model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule, config
):
  """Returns `train_step(state, batch) -> (state, metrics)`.

  batch: the fields of `jarl.batch.batch_spec(config)`. metrics: loss [] (the objective,
  token mean over the batch), per_example_loss [B] and dataset_id [B] (for the adaptive
  sampler), grad_norm, param_norm, learning_rate, finite (bool: loss and gradients are
  finite; with `config.skip_nonfinite` a non-finite update is dropped), and loss_<term>
  for each of `jarl.losses.make_objective(config).terms` (the unweighted parts).
  """
  accum = config.optimizer.grad_accum_steps
  skip_nonfinite = config.skip_nonfinite
  base_rng = jax.random.key(config.seed)
  objective = losses.make_objective(config)

  def summed_loss(params, batch, rng):
    logits, out = objective.train_outputs(model, params, batch, rng)
    return objective.sums(logits, out, batch)

  grad_fn = jax.grad(summed_loss, has_aux=True)

  def accumulated_grads(params, batch, rng):
    # Micro-batch a holds rows a, a+accum, ...: each device's contiguous block of the
    # batch splits locally, so no example moves between devices.
    micro = jax.tree.map(
      lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1), batch
    )

    def body(grad_sum, xs):
      mb, index = xs
      grads, aux = grad_fn(params, mb, jax.random.fold_in(rng, index))
      return jax.tree.map(jnp.add, grad_sum, grads), aux

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, (loss_sum, count, aux_sums) = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
    unsplit = lambda x: x.swapaxes(0, 1).reshape(-1)
    aux_sums = {n: jnp.sum(v) for n, v in aux_sums.items()}
    return grads, (unsplit(loss_sum), unsplit(count), aux_sums)

  def train_step(state: TrainState, batch: dict):
    rng = jax.random.fold_in(base_rng, state.step)
    if accum == 1:
      grads, (loss_sum, count, aux_sums) = grad_fn(state.params, batch, rng)
    else:
      grads, (loss_sum, count, aux_sums) = accumulated_grads(state.params, batch, rng)
    # Normalise once by the batch's token count: identical for any accumulation split.
    total = jnp.maximum(jnp.sum(count), 1.0)
    grads = jax.tree.map(lambda g: g / total, grads)
    loss, parts = objective.normalise(loss_sum, count, aux_sums)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if skip_nonfinite:
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
      params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    metrics = dict(
      loss=loss,
      per_example_loss=loss_sum / jnp.maximum(count, 1.0),
      dataset_id=batch["dataset_id"],
      grad_norm=grad_norm,
      param_norm=optax.tree.norm(params),
      learning_rate=schedule(state.step),
      finite=finite,
      **parts,
    )
    return new_state, metrics

  return train_step
