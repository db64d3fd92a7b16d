"""Train state, its initialisation and the (jit-able) training step."""
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jarl import losses
from jarl import vicha_losses


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 [], number of updates applied
  params: Any
  opt_state: Any


def init_state(model: nn.Module, tx: optax.GradientTransformation, dummy_batch: dict,
               rng: jax.Array) -> TrainState:
  """Fresh state. Leaves stay boxed (`nn.LogicallyPartitioned`) so that under
  `jax.eval_shape` the logical axis names reach the optimizer moments too; unbox with
  `nn.unbox` for the real arrays.
  """
  params_rng, dropout_rng = jax.random.split(rng)
  variables = model.init({"params": params_rng, "dropout": dropout_rng},
                         dummy_batch["image"], dummy_batch["text"], dummy_batch["target"],
                         train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params))


def aux_loss_weights(config) -> dict:
  """{name: weight} of the auxiliary losses switched on (weight > 0) in config.losses.

  contrastive: ViCHA hierarchical alignment (needs config.model.vicha.contrastive_depths);
  mim: masked image modelling (needs config.model.vicha.mim_ratio > 0);
  tags: image tagging (needs config.model.num_tags = len(config.data.tags) > 0; the
  batch then carries `tags`). Empty when all are off: the train step is then exactly
  the plain decoder-loss step.
  """
  lc = config.get("losses", None) or {}
  vc = config.model.get("vicha", None) or {}
  weights = {}
  for name, key, needs, on in (
      ("contrastive", "contrastive_weight", "config.model.vicha.contrastive_depths",
       bool(tuple(vc.get("contrastive_depths", ())))),
      ("mim", "mim_weight", "config.model.vicha.mim_ratio > 0",
       float(vc.get("mim_ratio", 0.0)) > 0),
      ("tags", "tag_weight", "config.model.num_tags > 0",
       int(config.model.get("num_tags", 0)) > 0)):
    w = float(lc.get(key, 0.0))
    if w < 0:
      raise ValueError(f"config.losses.{key}={w}: must be >= 0")
    if w > 0 and not on:
      raise ValueError(f"config.losses.{key}={w} needs {needs}; the model has no such output")
    if w > 0:
      weights[name] = w
  if "tags" in weights:
    data_tags = tuple((config.get("data", None) or {}).get("tags", ()))
    if len(data_tags) != int(config.model.num_tags):
      raise ValueError(f"config.losses.tag_weight={weights['tags']}: config.model.num_tags="
                       f"{config.model.num_tags} must equal the length of config.data.tags="
                       f"{data_tags} (the head has one logit per tag)")
  return weights


def loss_terms(config) -> tuple:
  """Names of the per-loss metrics (`loss_<name>`) the train step adds: () when no
  auxiliary loss is on, else ("decoder", <aux names>...). `decoder` is the token
  cross-entropy (not `caption`: train/loss_<dataset name> already logs per-source losses)."""
  aux = aux_loss_weights(config)
  return ("decoder",) + tuple(aux) if aux else ()


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, config):
  """Returns `train_step(state, batch) -> (state, metrics)`.

  batch: image [B,H,W,3] f32, text [B,Lt] i32, target [B,Ld] i32, dataset_id [B] i32,
  mask [B] bool, and with the tagging loss on tags [B,T] f32. metrics: loss [] (token
  mean over the batch), per_example_loss [B] and dataset_id [B] (for the adaptive
  sampler), grad_norm, param_norm, learning_rate,
  finite (bool: loss and gradients are finite; with `config.skip_nonfinite` a
  non-finite update is dropped). With auxiliary losses on (`aux_loss_weights`), loss is
  the decoder loss + sum of weight * aux loss, and loss_<name> for each of `loss_terms`
  holds the unweighted parts.
  """
  accum = config.optimizer.grad_accum_steps
  smoothing = config.optimizer.label_smoothing
  skip_nonfinite = config.skip_nonfinite
  base_rng = jax.random.key(config.seed)
  aux_weights = aux_loss_weights(config)
  mim_masks = float((config.model.get("vicha", None) or {}).get("mim_ratio", 0.0)) > 0
  depth_weights = tuple((config.get("losses", None) or {}).get("contrastive_depth_weights", ()))

  def summed_loss(params, batch, rng):
    rngs = {"dropout": rng}
    if mim_masks:  # the model's MIM pass draws its mask from this stream
      rngs["mim"] = jax.random.fold_in(rng, 1)
    logits, out = model.apply({"params": params}, batch["image"], batch["text"],
                              batch["target"], train=True, rngs=rngs)
    loss_sum, count = losses.token_cross_entropy(logits, batch["target"], batch["mask"],
                                                 smoothing)
    if not aux_weights:
      return jnp.sum(loss_sum), (loss_sum, count)
    # Aux losses are batch means; scaling by this (micro-)batch's token count makes the
    # single division by the whole batch's count below give decoder mean + weight * aux
    # (with accumulation: the token-weighted mean of the micro-batch aux losses).
    tokens = jnp.sum(count)
    aux = {}
    if "contrastive" in aux_weights:
      aux["contrastive"] = vicha_losses.hierarchical_contrastive(out, batch["mask"],
                                                                 depth_weights)
    if "mim" in aux_weights:
      aux["mim"] = vicha_losses.masked_image_modelling(out, batch["mask"])
    if "tags" in aux_weights:
      aux["tags"] = losses.tag_cross_entropy(out["tag_logits"], batch["tags"], batch["mask"])
    aux_sums = {name: tokens * value for name, value in aux.items()}
    objective = jnp.sum(loss_sum) + sum(aux_weights[n] * v for n, v in aux_sums.items())
    return objective, (loss_sum, count, aux_sums)

  grad_fn = jax.grad(summed_loss, has_aux=True)

  def accumulated_grads(params, batch, rng):
    # Micro-batch a holds rows a, a+accum, ...: each device's contiguous block of the
    # batch splits locally, so no example moves between devices.
    micro = jax.tree.map(
        lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1), batch)

    def body(grad_sum, xs):
      mb, index = xs
      grads, aux = grad_fn(params, mb, jax.random.fold_in(rng, index))
      return jax.tree.map(jnp.add, grad_sum, grads), aux

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, (loss_sum, count, *aux_sums) = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
    unsplit = lambda x: x.swapaxes(0, 1).reshape(-1)
    aux_sums = [{n: jnp.sum(v) for n, v in a.items()} for a in aux_sums]
    return grads, (unsplit(loss_sum), unsplit(count), *aux_sums)

  def train_step(state: TrainState, batch: dict):
    rng = jax.random.fold_in(base_rng, state.step)
    if accum == 1:
      grads, (loss_sum, count, *aux_sums) = grad_fn(state.params, batch, rng)
    else:
      grads, (loss_sum, count, *aux_sums) = accumulated_grads(state.params, batch, rng)
    # Normalise once by the batch's token count: identical for any accumulation split.
    total = jnp.maximum(jnp.sum(count), 1.0)
    grads = jax.tree.map(lambda g: g / total, grads)
    loss = jnp.sum(loss_sum) / total
    parts = {}
    if aux_weights:
      parts["loss_decoder"] = loss
      for name, value in aux_sums[0].items():
        parts[f"loss_{name}"] = value / total
        loss = loss + aux_weights[name] * parts[f"loss_{name}"]
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if skip_nonfinite:
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
      params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    metrics = dict(
        loss=loss, per_example_loss=loss_sum / jnp.maximum(count, 1.0),
        dataset_id=batch["dataset_id"], grad_norm=grad_norm,
        param_norm=optax.tree.norm(params), learning_rate=schedule(state.step),
        finite=finite, **parts)
    return new_state, metrics

  return train_step
