"""THE objective: token cross-entropy plus a registry of auxiliary losses.

    objective = jarl.losses.make_objective(config)     # objective.py
    jarl.losses.AUX_LOSSES                             # registry.py: name -> AuxLoss

The loss functions themselves: token.py (decoder), contrastive.py and mim.py (ViCHA),
tags.py (image tagging).
"""

from jarl.losses.contrastive import hierarchical_contrastive, info_nce, l2_normalize
from jarl.losses.mim import masked_image_modelling
from jarl.losses.objective import TERM_NAMES, Objective, make_objective
from jarl.losses.registry import AUX_LOSSES, AuxLoss, active
from jarl.losses.tags import tag_cross_entropy
from jarl.losses.token import token_cross_entropy

__all__ = [
  "AUX_LOSSES",
  "AuxLoss",
  "Objective",
  "TERM_NAMES",
  "active",
  "hierarchical_contrastive",
  "info_nce",
  "l2_normalize",
  "make_objective",
  "masked_image_modelling",
  "tag_cross_entropy",
  "token_cross_entropy",
]
