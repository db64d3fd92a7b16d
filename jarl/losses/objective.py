"""THE training objective: decoder token cross-entropy + sum of weight * auxiliary loss.

    objective = make_objective(config)
    logits, out = objective.train_outputs(model, params, batch, rng)
    loss, parts = objective.mean(logits, out, batch)

The train step (jarl/train_step.py) uses the summed form (`sums` then `normalise`) so that
a batch split into micro-batches or over devices is normalised exactly once; the loss
evaluator, the FLOPs counter and the benchmarks use `mean`. Nothing else assembles a loss.
"""

import jax
import jax.numpy as jnp

from jarl.losses import registry
from jarl.losses.token import token_cross_entropy

# Every name a logged part `train/loss_<term>` can have. Sources log `train/loss_<source>`
# in the same namespace, so config_checks keeps source names out of this set.
TERM_NAMES = ("decoder", *registry.AUX_LOSSES)


class Objective:
  """The objective of one config; `terms` names its logged parts."""

  def __init__(self, config):
    self.aux = registry.active(config)  # {name: (AuxLoss, weight)}, validated
    self.label_smoothing = float(config.optimizer.get("label_smoothing", 0.0))
    self._config = config
    vicha = config.model.get("vicha", None) or {}
    # The model's MIM pass (train=True) draws its patch mask from the "mim" stream whenever
    # the head exists, whether or not its loss is weighted.
    self._mim_stream = float(vicha.get("mim_ratio", 0.0)) > 0

  @property
  def terms(self) -> tuple[str, ...]:
    """Logged parts `loss_<term>`: () when no auxiliary loss is on, else ("decoder", ...).
    `decoder` is the token cross-entropy (train/loss_<source> already logs per source)."""
    return ("decoder", *self.aux) if self.aux else ()

  def batch_fields(self) -> dict:
    """{field: (per-example shape, dtype)} the auxiliary losses that are on need."""
    fields = {}
    for loss, _ in self.aux.values():
      fields.update(loss.batch_fields(self._config))
    return fields

  def model_rngs(self, rng) -> dict:
    """The rng streams `model.apply(..., train=True)` needs, all derived from `rng`."""
    rngs = {"dropout": rng}
    if self._mim_stream:
      rngs["mim"] = jax.random.fold_in(rng, 1)
    return rngs

  def train_outputs(self, model, params, batch, rng):
    """(logits, out) of `model` on the batch's inputs in training mode, with the rng
    streams it needs (`model_rngs`)."""
    inputs = (batch["image"], batch["text"], batch["target"])
    return model.apply({"params": params}, *inputs, train=True, rngs=self.model_rngs(rng))

  def decoder_sums(self, logits, batch, label_smoothing: float | None = None):
    """(loss_sum [B], token_count [B]) of the decoder's token cross-entropy."""
    smoothing = self.label_smoothing if label_smoothing is None else label_smoothing
    return token_cross_entropy(logits, batch["target"], batch["mask"], smoothing)

  def sums(self, logits, out, batch):
    """-> (objective_sum [], (loss_sum [B], count [B], aux_sums {name: []})).

    Auxiliary losses are batch means; scaling each by this (micro-)batch's token count
    makes one division by the whole batch's token count (`normalise`) give decoder mean +
    weight * aux (with accumulation: the token-weighted mean of the micro-batch values).
    """
    loss_sum, count = self.decoder_sums(logits, batch)
    if not self.aux:
      return jnp.sum(loss_sum), (loss_sum, count, {})
    tokens = jnp.sum(count)
    aux_sums = {
      name: tokens * loss.loss(out, batch, self._config) for name, (loss, _) in self.aux.items()
    }
    objective = jnp.sum(loss_sum) + sum(self.aux[n][1] * v for n, v in aux_sums.items())
    return objective, (loss_sum, count, aux_sums)

  def normalise(self, loss_sum, count, aux_sums):
    """Sums of the whole batch (see `sums`) -> (loss [], parts {loss_<term>: []})."""
    total = jnp.maximum(jnp.sum(count), 1.0)
    loss = jnp.sum(loss_sum) / total
    parts = {}
    if self.aux:
      parts["loss_decoder"] = loss
      for name, value in aux_sums.items():
        parts[f"loss_{name}"] = value / total
        loss = loss + self.aux[name][1] * parts[f"loss_{name}"]
    return loss, parts

  def mean(self, logits, out, batch):
    """(loss [], parts {loss_<term>: []}) of one batch: the training objective's value."""
    _, (loss_sum, count, aux_sums) = self.sums(logits, out, batch)
    return self.normalise(loss_sum, count, aux_sums)


def make_objective(config) -> Objective:
  """The validated objective of `config` (errors name the config.losses key)."""
  return Objective(config)
