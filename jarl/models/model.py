"""The whole model, assembled from `config.model`: towers -> fusion -> decoder.

    model = build(config.model)
    logits, out = model.apply({"params": params}, image, text, target, train=False)

image [B, H, W, 3] in [-1, 1]; text [B, Lt] int32 (0 = pad); target [B, Ld] int32, the
decoder's target (shifted right inside, with 0 as the start token); logits [B, Ld, V].

ViCHA's auxiliary-loss heads (`config.model.vicha`, see vicha.py) and the tagging head
(`config.model.num_tags`, see tagging.py) add entries to `out` only when switched on;
with them off the model is exactly the plain one.
"""
from typing import Any, Dict

import flax.linen as nn
import jax
import jax.numpy as jnp

from jarl.models import decoder as decoder_lib
from jarl.models import fusion as fusion_lib
from jarl.models import reducers, tagging, text as text_lib, transformer, vicha, vit

FUSION_TYPES = ("jarl", "concat", "cross_attention")
VISION_REDUCERS = ("none", "elip")  # token reducer inside the ViT (vit.py)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Model(nn.Module):
  """Fields hold validated, fully resolved sizes (see `build`)."""
  vision_config: Dict[str, Any]
  text_config: Dict[str, Any]
  fusion_config: Dict[str, Any]
  decoder_config: Dict[str, Any]
  vocab_size: int
  dtype: Any = jnp.float32
  # Resolved config.model.vicha (see `build`); None = all ViCHA options off.
  vicha_config: Any = None
  num_tags: int = 0  # > 0: the image tagging head (tagging.py) with that many tags

  def setup(self):
    v, t, f = self.vision_config, self.text_config, self.fusion_config
    # Towers stop at their last tap: blocks above it would feed nothing.
    self.vision = vit.ViT(v["width"], f["vision_taps"][-1], v["mlp_dim"], v["num_heads"],
                          v["patch_size"], v["posemb"], v["dropout"], v["scan"],
                          v["remat_policy"], self.dtype, v["reducer"], v["elip_layers"],
                          v["elip_keep"], mask_token=self._mim_ratio > 0, stem=v["stem"])
    self.text = text_lib.TextEncoder(self.vocab_size, t["width"], f["text_taps"][-1],
                                     t["mlp_dim"], t["num_heads"], t["max_len"], t["dropout"],
                                     t["scan"], t["remat_policy"], self.dtype)
    common = dict(width=f["width"], dtype=self.dtype)
    if f["type"] == "jarl":
      self.fusion = fusion_lib.JointAdaptiveFusion(
          num_heads=f["num_heads"], mlp_dim=f["mlp_dim"], num_tokens=f["num_tokens"],
          layers_per_iteration=f["layers_per_iteration"], reducer=f["reducer"],
          reducer_hidden=f["reducer_hidden"], dropout=f["dropout"], **common)
    elif f["type"] == "concat":
      self.fusion = fusion_lib.ConcatFusion(
          num_heads=f["num_heads"], mlp_dim=f["mlp_dim"],
          depth=len(f["vision_taps"]) * f["layers_per_iteration"], dropout=f["dropout"],
          **common)
    else:
      self.fusion = fusion_lib.CrossAttentionFusion(**common)
    self.decoder = make_decoder(self)
    if self._contrastive_depths:
      self.contrastive = vicha.ContrastiveHeads(
          self._contrastive_depths, self.vicha_config["embed_dim"],
          self.vicha_config["temperature_init"])
    if self._mim_ratio > 0:
      self.mim_head = vicha.MimHead(v["patch_size"] ** 2 * 3, self.dtype)
    if self.num_tags:
      self.tag_head = tagging.TagHead(self.num_tags, self.dtype)

  @property
  def _contrastive_depths(self):
    return tuple(self.vicha_config["contrastive_depths"]) if self.vicha_config else ()

  @property
  def _mim_ratio(self):
    return float(self.vicha_config["mim_ratio"]) if self.vicha_config else 0.0

  def towers(self, image, text, train=False):
    """-> (vision_out, text_out): each tower's per-depth features (see vit.py, text.py)."""
    f = self.fusion_config
    if self.vision_config["reducer"] == "elip":
      # ELIP prunes vision tokens by their similarity to the text, so the text runs first;
      # its guide is the top of the (built) text tower, padding masked.
      _, text_out = self.text(text, train)
      _, vision_out = self.vision(image, train, text_guide=text_out[
          f"depth_{f['text_taps'][-1]}"], text_mask=text_out["mask"])
    else:
      _, vision_out = self.vision(image, train)
      _, text_out = self.text(text, train)
    return vision_out, text_out

  def encode(self, image, text, train=False):
    """-> memory [B, S, D], memory_mask [B, S] bool, out (reducer maps, grid)."""
    return self.fuse(*self.towers(image, text, train), train=train)

  def fuse(self, vision_out, text_out, train=False):
    """Tower outputs (see `towers`) -> memory, memory_mask, out (as `encode`)."""
    f = self.fusion_config
    vision_taps = [vision_out[f"depth_{d}"] for d in f["vision_taps"]]
    text_taps = [text_out[f"depth_{d}"] for d in f["text_taps"]]
    memory, memory_mask, out = self.fusion(vision_taps, text_taps, text_out["mask"],
                                           grid=vision_out["grid"], train=train)
    out["grid"] = vision_out["grid"]
    return memory, memory_mask, out

  def __call__(self, image, text, target, train=False):
    vision_out, text_out = self.towers(image, text, train)
    memory, memory_mask, out = self.fuse(vision_out, text_out, train)
    logits = self.decoder(decoder_lib.shift_right(target), memory, memory_mask, train=train)
    if self._contrastive_depths:
      out.update(self._contrastive_outputs(vision_out, target, train))
    if self._mim_ratio > 0 and (train or self.is_initializing()):
      out.update(self._mim_outputs(image, train))
    if self.num_tags:
      out["tag_logits"] = self.tag_head(
          vision_out[f"depth_{self.fusion_config['vision_taps'][-1]}"])
    return logits, out

  def _contrastive_outputs(self, vision_out, target, train):
    """ViCHA hierarchical alignment inputs: vicha_image_embed, vicha_text_embed [P, B, E]
    (unnormalised) and vicha_log_scale [].

    The text side is the *decoder target* run through the text tower: in JARL's tasks the
    encoder text is a prompt ("caption") that says nothing about the picture, while the
    target holds the caption (prefix_lm: its continuation) that the image should match.
    """
    _, target_out = self.text(target, train)
    depths = self._contrastive_depths
    image_embed, text_embed, log_scale = self.contrastive(
        [vision_out[f"depth_{dv}"] for dv, _ in depths],
        [target_out[f"depth_{dt}"] for _, dt in depths], target_out["mask"])
    return dict(vicha_image_embed=image_embed, vicha_text_embed=text_embed,
                vicha_log_scale=log_scale)

  def _mim_outputs(self, image, train):
    """Masked image modelling: mim_pred, mim_target [B, N, p*p*3], mim_mask [B, N] bool.

    A second pass of the (built part of the) ViT over the masked image, so the caption
    and alignment losses still see the whole picture; it costs one more vision forward
    and backward per training step, and none at inference. The rng stream "mim" draws
    the mask (the train step provides it).
    """
    p = self.vision_config["patch_size"]
    b, h, w, _ = image.shape
    n = (h // p) * (w // p)
    if train:
      mask = vicha.random_patch_mask(self.make_rng("mim"), b, n, self._mim_ratio)
    else:  # init only: build the head's parameters
      mask = jnp.zeros((b, n), bool)
    top, _ = self.vision(image, train, patch_mask=mask)
    return dict(mim_pred=self.mim_head(top), mim_target=vicha.patch_targets(image, p),
                mim_mask=mask)


def make_decoder(model):
  """The decoder module of `model`, also usable alone with params["decoder"] (generation)."""
  d = model.decoder_config
  return decoder_lib.Decoder(vocab_size=model.vocab_size, width=d["width"], depth=d["depth"],
                             num_heads=d["num_heads"], mlp_dim=d["mlp_dim"],
                             max_len=d["max_len"], dropout=d["dropout"], dtype=model.dtype)


def generate(model, params, image, text, *, max_len, eos_id, beam_size=1, length_penalty=0.6):
  """Greedy (beam_size=1) or beam-search answers: tokens [B, max_len] int32, scores [B]."""
  memory, memory_mask, _ = model.apply({"params": params}, image, text, method=Model.encode)
  decoder = make_decoder(model)
  return decoder_lib.generate(decoder, params["decoder"], memory, memory_mask,
                              max_len=max_len, eos_id=eos_id, beam_size=beam_size,
                              length_penalty=length_penalty)


def dummy_batch(model_config, batch_size=1):
  """Zero inputs of the configured shapes, for init / eval_shape / compile-only costing."""
  size = model_config.vision.image_size
  return dict(image=jnp.zeros((batch_size, size, size, 3), jnp.float32),
              text=jnp.ones((batch_size, model_config.text.max_len), jnp.int32),
              target=jnp.ones((batch_size, model_config.decoder.max_len), jnp.int32))


def build(model_config) -> Model:
  """Validates `config.model` and returns the Model; errors name the key and value."""
  c = model_config
  vision = dict(transformer.resolve_size(c.vision, "config.model.vision"),
                posemb=c.vision.posemb, dropout=c.vision.dropout, scan=c.vision.scan,
                remat_policy=c.vision.remat_policy)
  if "patch_size" not in vision:
    raise ValueError(f"config.model.vision.variant={c.vision.variant!r}: needs a patch size, "
                     f"e.g. 'B/16'")
  vision["stem"] = c.vision.get("stem", "patch")
  if vision["stem"] not in vit.STEMS:
    raise ValueError(f"config.model.vision.stem={vision['stem']!r}: choose from {vit.STEMS}")
  p = vision["patch_size"]
  if vision["stem"] == "conv" and (p < 2 or p & (p - 1)):
    raise ValueError(f"config.model.vision.stem='conv' halves the image log2(patch) times: "
                     f"the patch size {p} of config.model.vision.variant="
                     f"{c.vision.variant!r} must be a power of two")
  if c.vision.image_size % vision["patch_size"]:
    raise ValueError(f"config.model.vision.image_size={c.vision.image_size} is not divisible "
                     f"by the patch size {vision['patch_size']}")
  vision.update(reducer=c.vision.get("reducer", "none"),
                elip_layers=tuple(int(x) for x in c.vision.get("elip_layers", ())),
                elip_keep=tuple(float(x) for x in c.vision.get("elip_keep", ())))
  if vision["reducer"] not in VISION_REDUCERS:
    raise ValueError(f"config.model.vision.reducer={vision['reducer']!r}: choose from "
                     f"{VISION_REDUCERS}")
  if vision["reducer"] != "elip":  # unused: keep them out of the model's fields
    vision.update(elip_layers=(), elip_keep=())
  text = dict(transformer.resolve_size(c.text, "config.model.text"), max_len=c.text.max_len,
              dropout=c.text.dropout, scan=c.text.scan, remat_policy=c.text.remat_policy)
  for tower in (vision, text):
    if tower["remat_policy"] not in transformer.REMAT_POLICIES:
      raise ValueError(f"remat_policy={tower['remat_policy']!r}: choose from "
                       f"{sorted(transformer.REMAT_POLICIES)}")

  f = dict(c.fusion)
  if f["type"] not in FUSION_TYPES:
    raise ValueError(f"config.model.fusion.type={f['type']!r}: choose from {FUSION_TYPES}")
  f["vision_taps"], f["text_taps"] = tuple(f["vision_taps"]), tuple(f["text_taps"])
  if not f["vision_taps"] or len(f["vision_taps"]) != len(f["text_taps"]):
    raise ValueError(f"config.model.fusion.vision_taps={f['vision_taps']} and text_taps="
                     f"{f['text_taps']}: need one tap per iteration in each, same count")
  transformer.check_taps(f["vision_taps"], vision["depth"], "config.model.fusion.vision_taps")
  transformer.check_taps(f["text_taps"], text["depth"], "config.model.fusion.text_taps")
  for key in ("width", "num_heads", "mlp_dim", "num_tokens", "layers_per_iteration"):
    if int(f[key]) < 1:
      raise ValueError(f"config.model.fusion.{key}={f[key]}: must be >= 1")
  if f["width"] % f["num_heads"]:
    raise ValueError(f"config.model.fusion.width={f['width']} is not divisible by "
                     f"config.model.fusion.num_heads={f['num_heads']}")
  if f["reducer"] not in reducers.REDUCERS:
    raise ValueError(f"config.model.fusion.reducer={f['reducer']!r}: choose from "
                     f"{sorted(reducers.REDUCERS)}")

  if vision["reducer"] == "elip":
    _check_elip(vision, text, f)

  vicha_config = _resolve_vicha(c, vision, text, f)

  d = dict(c.decoder)
  for key in ("width", "depth", "num_heads", "mlp_dim", "max_len"):
    if int(d[key]) < 1:
      raise ValueError(f"config.model.decoder.{key}={d[key]}: must be >= 1")
  if d["width"] % d["num_heads"]:
    raise ValueError(f"config.model.decoder.width={d['width']} is not divisible by "
                     f"config.model.decoder.num_heads={d['num_heads']}")
  if c.vocab_size < 2:
    raise ValueError(f"config.model.vocab_size={c.vocab_size}: must be >= 2")
  if c.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype={c.dtype!r}: choose from {sorted(DTYPES)}")
  if vicha_config and vicha_config["contrastive_depths"] and d["max_len"] > text["max_len"]:
    raise ValueError(f"config.model.vicha.contrastive_depths runs the text tower over the "
                     f"decoder target: config.model.decoder.max_len={d['max_len']} must be <= "
                     f"config.model.text.max_len={text['max_len']}")
  num_tags = int(c.get("num_tags", 0))
  if num_tags < 0:
    raise ValueError(f"config.model.num_tags={num_tags}: must be >= 0 (0 = no tagging head)")
  return Model(vision, text, f, d, int(c.vocab_size), DTYPES[c.dtype], vicha_config,
               num_tags)


def _resolve_vicha(c, vision, text, f):
  """Validated config.model.vicha as a plain dict, or None when every option is off."""
  vc = c.get("vicha", None)
  if vc is None:
    return None
  depths = tuple((int(dv), int(dt)) for dv, dt in vc.get("contrastive_depths", ()))
  mim_ratio = float(vc.get("mim_ratio", 0.0))
  if not depths and mim_ratio == 0.0:
    return None
  for dv, dt in depths:
    if not 1 <= dv <= f["vision_taps"][-1]:
      raise ValueError(f"config.model.vicha.contrastive_depths={depths}: vision depth {dv} is "
                       f"outside the built ViT 1..{f['vision_taps'][-1]} (blocks above the "
                       f"last config.model.fusion.vision_taps are not built)")
    if not 1 <= dt <= f["text_taps"][-1]:
      raise ValueError(f"config.model.vicha.contrastive_depths={depths}: text depth {dt} is "
                       f"outside the built text tower 1..{f['text_taps'][-1]} (blocks above "
                       f"the last config.model.fusion.text_taps are not built)")
  if len(set(depths)) != len(depths):
    raise ValueError(f"config.model.vicha.contrastive_depths={depths}: pairs repeat")
  embed_dim = int(vc.get("embed_dim", 0))
  if depths and embed_dim < 1:
    raise ValueError(f"config.model.vicha.embed_dim={embed_dim}: must be >= 1")
  temperature = float(vc.get("temperature_init", 0.07))
  if not temperature > 0:
    raise ValueError(f"config.model.vicha.temperature_init={temperature}: must be > 0")
  if not 0.0 <= mim_ratio < 1.0:
    raise ValueError(f"config.model.vicha.mim_ratio={mim_ratio}: must be in [0, 1)")
  if mim_ratio > 0 and vision["reducer"] == "elip":
    raise ValueError("config.model.vicha.mim_ratio > 0 regresses every masked patch from its "
                     "own token, which config.model.vision.reducer='elip' prunes away; use "
                     "one or the other")
  return dict(contrastive_depths=depths, embed_dim=embed_dim, temperature_init=temperature,
              mim_ratio=mim_ratio)


def _check_elip(vision, text, f):
  layers, keep = vision["elip_layers"], vision["elip_keep"]
  named = f"config.model.vision.elip_layers={layers}"
  if not layers or len(layers) != len(keep):
    raise ValueError(f"{named} and config.model.vision.elip_keep={keep}: need one keep "
                     f"fraction per layer, at least one layer")
  for layer in layers:
    if not 1 <= layer <= vision["depth"]:
      raise ValueError(f"{named}: layer {layer} is outside the ViT's depth 1..{vision['depth']}")
    if layer > f["vision_taps"][-1]:
      raise ValueError(f"{named}: layer {layer} is above the last vision tap "
                       f"{f['vision_taps'][-1]} (config.model.fusion.vision_taps), where the "
                       f"tower stops; the stage would never run")
  if any(a >= b for a, b in zip(layers, layers[1:])):
    raise ValueError(f"{named}: layers must be strictly increasing")
  for k in keep:
    if not 0.0 < k <= 1.0:
      raise ValueError(f"config.model.vision.elip_keep={keep}: keep {k} is not in (0, 1]")
  if vision["scan"]:
    raise ValueError("config.model.vision.scan=True: ELIP changes the token count between "
                     "blocks, which nn.scan cannot carry; set scan=False with reducer='elip'")
  if text["width"] != vision["width"]:
    # ELIP is parameter-free: the guide is compared with image tokens in their own space.
    raise ValueError(f"config.model.vision.reducer='elip' compares text and image features "
                     f"directly: config.model.text.width={text['width']} must equal "
                     f"config.model.vision.width={vision['width']}")
  if f["reducer"] == "tokenlearner_v1":
    raise ValueError("config.model.fusion.reducer='tokenlearner_v1' needs the patch grid, "
                     "which config.model.vision.reducer='elip' removes by pruning; use "
                     "tokenlearner_v11")


def count_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(nn.meta.unbox(params)))
