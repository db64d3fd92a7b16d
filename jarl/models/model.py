"""The whole model, assembled from a validated, typed config: towers -> fusion -> decoder.

    model = build(config)            # the run config (or a config.ModelConfig)
    logits, out = model.apply({"params": params}, image, text, target, train=False)

image [B, H, W, 3] in [-1, 1]; text [B, Lt] int32 (0 = pad); target [B, Ld] int32, the
decoder's target (shifted right inside, with 0 as the start token); logits [B, Ld, V].

`out` is namespaced (big_vision's two-towers style):
  img/depth_{d} [B, N_d, Dv]  the ViT's residual stream after d blocks; img/grid (h, w) or
                              None once ELIP pruned; img/elip_index_{d}, img/elip_weights_{d}
  txt/depth_{d} [B, Lt, Dt]   the text tower's; txt/mask [B, Lt] bool
  fusion/...                  the fusion's own maps: fusion/image_weights, text_weights,
                              gates (jarl), fusion/weights_{k} (co_tokenization)
  aux/...                     auxiliary heads, only when on: aux/contrastive_img,
                              aux/contrastive_txt [P, B, E], aux/contrastive_log_scale [];
                              aux/mim_pred, aux/mim_target [B, N, p*p*3], aux/mim_mask
                              [B, N] (training and init only); aux/tag_logits [B, T]
ViCHA's heads (`config.model.vicha`, vicha.py) and the tagging head (`config.data.tags`,
tagging.py) add only aux/ entries and parameters of their own: with them off the model is
exactly the plain one.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jarl.models import decoder as decoder_lib
from jarl.models import fusion as fusion_lib
from jarl.models import tagging, vicha, vit
from jarl.models import text as text_lib
from jarl.models.config import ModelConfig


def make_decoder(config: ModelConfig) -> decoder_lib.Decoder:
  """The model's decoder, also usable alone with params["decoder"] (decode.py)."""
  return decoder_lib.Decoder(
    config.decoder, vocab_size=config.vocab_size, dtype=config.compute_dtype
  )


def _prefixed(prefix, out):
  return {f"{prefix}/{k}": v for k, v in out.items()}


class Model(nn.Module):
  config: ModelConfig

  def setup(self):
    c, dtype = self.config, self.config.compute_dtype
    # Towers stop at their last tap: blocks above it would feed nothing.
    self.vision = vit.ViT(
      dataclasses.replace(c.vision, depth=c.vision_depth),
      mask_token=c.vicha.mim_ratio > 0,
      dtype=dtype,
    )
    self.text = text_lib.TextEncoder(
      dataclasses.replace(c.text, depth=c.text_depth), vocab_size=c.vocab_size, dtype=dtype
    )
    self.fusion = fusion_lib.FUSIONS[c.fusion.type](c.fusion, dtype=dtype)
    self.decoder = make_decoder(c)
    if c.vicha.contrastive_depths:
      self.contrastive = vicha.ContrastiveHeads(
        c.vicha.contrastive_depths, c.vicha.embed_dim, c.vicha.temperature_init
      )
    if c.vicha.mim_ratio > 0:
      self.mim_head = vicha.MimHead(c.vision.patch_size**2 * 3, dtype)
    if c.num_tags:
      self.tag_head = tagging.TagHead(c.num_tags, dtype)

  def towers(self, image, text, train=False):
    """-> out with each tower's features: img/depth_{d}, img/grid, txt/depth_{d}, txt/mask
    (and img/elip_* with ELIP), see vit.py and text.py."""
    if self.config.vision.token_pruning == "elip":
      # ELIP prunes vision tokens by their similarity to the text, so the text runs first;
      # its guide is the top of the (built) text tower, padding masked.
      _, text_out = self.text(text, train)
      _, vision_out = self.vision(
        image,
        train,
        text_guide=text_out[f"depth_{self.config.text_depth}"],
        text_mask=text_out["mask"],
      )
    else:
      _, vision_out = self.vision(image, train)
      _, text_out = self.text(text, train)
    return {**_prefixed("img", vision_out), **_prefixed("txt", text_out)}

  def fuse(self, out, train=False):
    """Tower features (`towers`' out) -> memory [B, S, D], memory_mask [B, S] bool, and
    out with the fusion's fusion/* entries added."""
    f = self.config.fusion
    memory, memory_mask, fusion_out = self.fusion(
      [out[f"img/depth_{d}"] for d in f.vision_taps],
      [out[f"txt/depth_{d}"] for d in f.text_taps],
      out["txt/mask"],
      grid=out["img/grid"],
      train=train,
    )
    return memory, memory_mask, {**out, **_prefixed("fusion", fusion_out)}

  def encode(self, image, text, train=False):
    """-> memory [B, S, D], memory_mask [B, S] bool, out (img/*, txt/*, fusion/*)."""
    return self.fuse(self.towers(image, text, train), train=train)

  def __call__(self, image, text, target, train=False):
    c = self.config
    memory, memory_mask, out = self.encode(image, text, train)
    logits = self.decoder(decoder_lib.shift_right(target), memory, memory_mask, train=train)
    if c.vicha.contrastive_depths:
      out.update(self._contrastive_outputs(out, target, train))
    if c.vicha.mim_ratio > 0 and (train or self.is_initializing()):
      out.update(self._mim_outputs(image, train))
    if c.num_tags:
      out["aux/tag_logits"] = self.tag_head(out[f"img/depth_{c.vision_depth}"])
    return logits, out

  def _contrastive_outputs(self, out, target, train):
    """ViCHA hierarchical alignment inputs: aux/contrastive_img, aux/contrastive_txt
    [P, B, E] (unnormalised) and aux/contrastive_log_scale [].

    The text side is the *decoder target* run through the text tower: in JARL's tasks the
    encoder text is a prompt ("caption") that says nothing about the picture, while the
    target holds the caption (prefix_lm: its continuation) that the image should match.
    """
    _, target_out = self.text(target, train)
    depths = self.config.vicha.contrastive_depths
    image_embed, text_embed, log_scale = self.contrastive(
      [out[f"img/depth_{dv}"] for dv, _ in depths],
      [target_out[f"depth_{dt}"] for _, dt in depths],
      target_out["mask"],
    )
    return {
      "aux/contrastive_img": image_embed,
      "aux/contrastive_txt": text_embed,
      "aux/contrastive_log_scale": log_scale,
    }

  def _mim_outputs(self, image, train):
    """Masked image modelling: aux/mim_pred, aux/mim_target [B, N, p*p*3], aux/mim_mask
    [B, N] bool.

    A second pass of the (built part of the) ViT over the masked image, so the caption
    and alignment losses still see the whole picture; it costs one more vision forward
    and backward per training step, and none at inference. The rng stream "mim" draws
    the mask (the objective's `model_rngs` provides it).
    """
    p = self.config.vision.patch_size
    b, h, w, _ = image.shape
    n = (h // p) * (w // p)
    if train:
      mask = vicha.random_patch_mask(self.make_rng("mim"), b, n, self.config.vicha.mim_ratio)
    else:  # init only: build the head's parameters
      mask = jnp.zeros((b, n), bool)
    top, _ = self.vision(image, train, patch_mask=mask)
    return {
      "aux/mim_pred": self.mim_head(top),
      "aux/mim_target": vicha.patch_targets(image, p),
      "aux/mim_mask": mask,
    }


def build(config) -> Model:
  """The Model of a run config (validated through ModelConfig.from_config) or of a
  ModelConfig; errors name the config key and value."""
  if not isinstance(config, ModelConfig):
    config = ModelConfig.from_config(config)
  return Model(config)


def count_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(nn.meta.unbox(params)))
