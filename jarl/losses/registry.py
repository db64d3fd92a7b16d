"""The auxiliary losses, by name: what switches each on, what it reads, what it needs.

Each entry declares its weight key in `config.losses` (0 = off) and any other keys it
reads there, the model `out` entries it reads, the model option that produces them, and
the batch fields it needs beyond the base layout (jarl/batch.py). Adding a loss is one
module with its function plus one entry here; the train step, the loss evaluator, the
FLOPs counter, the batch layout and the benchmarks all find it through `active`.

The order of `AUX_LOSSES` is the order the parts are summed and logged in.
"""

from collections.abc import Callable
import dataclasses
from typing import Any

import numpy as np

from jarl.losses import contrastive, mim, tags


@dataclasses.dataclass(frozen=True)
class AuxLoss:
  name: str  # logged as train/loss_<name>
  weight_key: str  # config.losses.<weight_key>: the loss's weight, 0 = off
  out_keys: tuple[str, ...]  # the model `out` entries it reads
  head: str  # the config option that makes the model produce `out_keys` (for errors)
  has_head: Callable[[Any], bool]  # config -> does the model produce `out_keys`?
  # (out, batch, config) -> float32 scalar, a mean over the batch's valid rows.
  loss: Callable[[dict, dict, Any], Any]
  # config -> {field: (per-example shape, dtype)} the batch must carry while it is on.
  batch_fields: Callable[[Any], dict] = lambda config: {}
  config_keys: tuple[str, ...] = ()  # other config.losses keys it reads
  check: Callable[[Any], None] = lambda config: None  # raises ValueError naming the key


def _vicha(config):
  return config.model.get("vicha", None) or {}


def _depth_weights(config) -> tuple:
  return tuple(float(w) for w in config.losses.get("contrastive_depth_weights", ()))


def _check_depth_weights(config):
  weights, pairs = _depth_weights(config), tuple(_vicha(config).get("contrastive_depths", ()))
  if weights and len(weights) != len(pairs):
    raise ValueError(
      f"config.losses.contrastive_depth_weights={weights}: need one weight per "
      f"config.model.vicha.contrastive_depths pair ({len(pairs)}), or ()"
    )


def _data_tags(config) -> tuple:
  return tuple((config.get("data", None) or {}).get("tags", ()))


AUX_LOSSES = {
  loss.name: loss
  for loss in (
    AuxLoss(
      name="contrastive",
      weight_key="contrastive_weight",
      config_keys=("contrastive_depth_weights",),
      out_keys=("aux/contrastive_img", "aux/contrastive_txt", "aux/contrastive_log_scale"),
      head="config.model.vicha.contrastive_depths",
      has_head=lambda c: bool(tuple(_vicha(c).get("contrastive_depths", ()))),
      loss=lambda out, batch, c: contrastive.hierarchical_contrastive(
        out, batch["mask"], _depth_weights(c)
      ),
      check=_check_depth_weights,
    ),
    AuxLoss(
      name="mim",
      weight_key="mim_weight",
      out_keys=("aux/mim_pred", "aux/mim_target", "aux/mim_mask"),
      head="config.model.vicha.mim_ratio > 0",
      has_head=lambda c: float(_vicha(c).get("mim_ratio", 0.0)) > 0,
      loss=lambda out, batch, c: mim.masked_image_modelling(out, batch["mask"]),
    ),
    AuxLoss(
      name="tags",
      weight_key="tag_weight",
      out_keys=("aux/tag_logits",),
      head="config.data.tags (the tag head has one logit per tag)",
      has_head=lambda c: bool(_data_tags(c)),
      loss=lambda out, batch, c: tags.tag_cross_entropy(
        out["aux/tag_logits"], batch["tags"], batch["mask"]
      ),
      batch_fields=lambda c: {"tags": ((len(_data_tags(c)),), np.float32)},
    ),
  )
}


def active(config) -> dict[str, tuple[AuxLoss, float]]:
  """{name: (loss, weight)} of the auxiliary losses switched on (weight > 0), in order.

  Raises ValueError naming the key for a negative weight, a weight whose model head is
  off, or a bad setting of a loss's own keys. Empty when every weight is 0: the objective
  is then exactly the decoder's token cross-entropy.
  """
  settings = config.get("losses", None) or {}
  known = {key for loss in AUX_LOSSES.values() for key in (loss.weight_key, *loss.config_keys)}
  unknown = sorted(set(settings) - known)
  if unknown:
    raise ValueError(
      f"config.losses.{unknown[0]}: unknown key; config.losses takes {sorted(known)}"
    )
  on = {}
  for loss in AUX_LOSSES.values():
    weight = float(settings.get(loss.weight_key, 0.0))
    if weight < 0:
      raise ValueError(f"config.losses.{loss.weight_key}={weight}: must be >= 0")
    if weight > 0 and not loss.has_head(config):
      raise ValueError(
        f"config.losses.{loss.weight_key}={weight} needs {loss.head}; the model has no such output"
      )
    if weight > 0:
      loss.check(config)
      on[loss.name] = (loss, weight)
  return on
