"""The model's typed configuration, validated once when it is built.

    model_config = ModelConfig.from_config(config)   # the whole run config
    model = jarl.models.model.build(model_config)     # or build(config)

`from_config` reads `config.model` (sizes resolved from the `variant` strings) and
`config.data.tags` (the tag head has one logit per tag; none when empty). Each dataclass
checks its own fields in `__post_init__` and `ModelConfig` the ones that span towers;
every error names the config key and its value. Modules take these frozen (hashable)
dataclasses as fields and trust them: no check is repeated inside the model.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from jarl.models import fusion, gated_fusion, layers, resample, vit

# Variant table as in big_vision (width, depth, mlp_dim, num_heads).
VARIANTS = {
  "mu": (32, 1, 128, 2),
  "Ti": (192, 12, 768, 3),
  "S": (384, 12, 1536, 6),
  "M": (512, 12, 2048, 8),
  "B": (768, 12, 3072, 12),
  "L": (1024, 24, 4096, 16),
}
TOKEN_PRUNING = ("none", "elip")  # config.model.vision.token_pruning (elip.py)
# config.model.dtype: the compute dtype (activations, matmul inputs); parameters stay
# float32 whatever it is. "auto" is resolved once, when the typed config is built
# (ModelConfig.from_config, resolve_dtype): bfloat16 on TPU/GPU, whose matrix units run
# bf16 at full rate; float32 on CPU, where bf16 is slower, not faster, and where every
# recorded figure and test was measured in float32.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def decode_variant(variant: str, key: str) -> dict:
  """`"B/16"` -> dict(width, depth, mlp_dim, num_heads[, patch_size]); `key` names the config."""
  name, _, patch = variant.partition("/")
  if name not in VARIANTS:
    raise ValueError(f"{key}={variant!r}: unknown variant; choose from {sorted(VARIANTS)}")
  width, depth, mlp_dim, num_heads = VARIANTS[name]
  out = dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=num_heads)
  if patch:
    if not patch.isdigit() or int(patch) < 1:
      raise ValueError(f"{key}={variant!r}: patch size must be a positive integer")
    out["patch_size"] = int(patch)
  return out


def resolve_size(cfg, key: str) -> dict:
  """Variant defaults overridden by explicit width/depth/mlp_dim/num_heads of `cfg`."""
  size = decode_variant(cfg["variant"], f"{key}.variant")
  for name in ("width", "depth", "mlp_dim", "num_heads"):
    if cfg.get(name) is not None:
      size[name] = int(cfg[name])
  return size


def _positive(key: str, **values):
  for name, value in values.items():
    if value < 1:
      raise ValueError(f"{key}.{name}={value}: must be >= 1")


def _heads(key: str, width: int, num_heads: int):
  if width % num_heads:
    raise ValueError(f"{key}.width={width} is not divisible by {key}.num_heads={num_heads}")


def _choice(key: str, value, choices):
  if value not in choices:
    raise ValueError(f"{key}={value!r}: choose from {tuple(choices)}")


def resolve_dtype(name: str, backend: str | None = None) -> str:
  """config.model.dtype -> a DTYPES key; "auto" by `backend` (default jax.default_backend())."""
  _choice("config.model.dtype", name, ("auto", *DTYPES))
  if name != "auto":
    return name
  return "float32" if (backend or jax.default_backend()) == "cpu" else "bfloat16"


def check_taps(taps: tuple[int, ...], depth: int, key: str):
  """Taps are 1-based block outputs within `depth`, increasing."""
  for t in taps:
    if not 1 <= t <= depth:
      raise ValueError(f"{key}={taps}: tap {t} is outside the tower's depth 1..{depth}")
  if list(taps) != sorted(taps):
    raise ValueError(f"{key}={taps}: taps must be in increasing order")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """config.model.vision with the variant resolved (vit.py, elip.py)."""

  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  patch_size: int
  image_size: int
  posemb: str = "learn"  # learn | sincos2d
  stem: str = "patch"  # vit.STEMS
  scan: bool = False
  remat_policy: str = "none"  # layers.REMAT_POLICIES
  dropout: float = 0.0
  token_pruning: str = "none"  # TOKEN_PRUNING
  elip_layers: tuple[int, ...] = ()  # () unless token_pruning == "elip"
  elip_keep: tuple[float, ...] = ()

  def __post_init__(self):
    key = "config.model.vision"
    _positive(
      key, width=self.width, depth=self.depth, mlp_dim=self.mlp_dim, num_heads=self.num_heads
    )
    _heads(key, self.width, self.num_heads)
    _choice(f"{key}.stem", self.stem, vit.STEMS)
    _choice(f"{key}.posemb", self.posemb, vit.POSEMBS)
    if self.posemb == "sincos2d" and self.width % 4:
      raise ValueError(
        f"{key}.posemb='sincos2d' needs {key}.width % 4 == 0, got width={self.width}"
      )
    _choice(f"{key}.remat_policy", self.remat_policy, layers.REMAT_POLICIES)
    _choice(f"{key}.token_pruning", self.token_pruning, TOKEN_PRUNING)
    p = self.patch_size
    if self.stem == "conv" and (p < 2 or p & (p - 1)):
      raise ValueError(
        f"{key}.stem='conv' halves the image log2(patch) times: the patch "
        f"size {p} ({key}.variant) must be a power of two"
      )
    if self.image_size % p:
      raise ValueError(f"{key}.image_size={self.image_size} is not divisible by the patch size {p}")
    if self.token_pruning == "elip":
      self._check_elip(key)

  def _check_elip(self, key):
    layers_, keep = self.elip_layers, self.elip_keep
    named = f"{key}.elip_layers={layers_}"
    if not layers_ or len(layers_) != len(keep):
      raise ValueError(
        f"{named} and {key}.elip_keep={keep}: need one keep fraction per layer, at least one layer"
      )
    for layer in layers_:
      if not 1 <= layer <= self.depth:
        raise ValueError(f"{named}: layer {layer} is outside the ViT's depth 1..{self.depth}")
    if any(a >= b for a, b in zip(layers_, layers_[1:])):
      raise ValueError(f"{named}: layers must be strictly increasing")
    for k in keep:
      if not 0.0 < k <= 1.0:
        raise ValueError(f"{key}.elip_keep={keep}: keep {k} is not in (0, 1]")
    if self.scan:
      raise ValueError(
        f"{key}.scan=True: ELIP changes the token count between blocks, "
        f"which nn.scan cannot carry; set scan=False with token_pruning='elip'"
      )


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """config.model.text with the variant resolved (text.py)."""

  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  max_len: int
  scan: bool = False
  remat_policy: str = "none"
  dropout: float = 0.0

  def __post_init__(self):
    key = "config.model.text"
    _positive(
      key,
      width=self.width,
      depth=self.depth,
      mlp_dim=self.mlp_dim,
      num_heads=self.num_heads,
      max_len=self.max_len,
    )
    _heads(key, self.width, self.num_heads)
    _choice(f"{key}.remat_policy", self.remat_policy, layers.REMAT_POLICIES)


@dataclasses.dataclass(frozen=True)
class FusionConfig:
  """config.model.fusion (fusion.py and the modules it registers).

  iterations K, num_tokens N and layers_per_iteration n mean the same in every fusion
  that has them (concat: K * n blocks). The towers are built up to their last tap; `jarl`,
  `perceiver`, `concat` and `cross_attention` read only that top tap, `co_tokenization`
  reads one tap per iteration (so len(taps) == iterations).
  """

  type: str
  width: int
  num_heads: int
  mlp_dim: int
  num_tokens: int
  layers_per_iteration: int
  vision_taps: tuple[int, ...]
  text_taps: tuple[int, ...]
  iterations: int = 4
  resample: str = "latent"  # jarl: resample.RESAMPLE
  combine: str = "gated"  # jarl: gated_fusion.COMBINE
  gate_init: float = 1.0  # jarl, combine=gated: alpha and beta at initialisation
  memory: str = "fused"  # jarl: gated_fusion.MEMORY, what the decoder reads
  reducer: str = "tokenlearner_v11"  # co_tokenization: resample.REDUCERS
  reducer_hidden: int = 64  # co_tokenization, and jarl with resample=spatial
  dropout: float = 0.0

  def __post_init__(self):
    key = "config.model.fusion"
    _choice(f"{key}.type", self.type, fusion.FUSIONS)
    if not self.vision_taps or len(self.vision_taps) != len(self.text_taps):
      raise ValueError(
        f"{key}.vision_taps={self.vision_taps} and text_taps="
        f"{self.text_taps}: need the same number of taps in each, at least one"
      )
    _positive(
      key,
      width=self.width,
      num_heads=self.num_heads,
      mlp_dim=self.mlp_dim,
      num_tokens=self.num_tokens,
      layers_per_iteration=self.layers_per_iteration,
      iterations=self.iterations,
      reducer_hidden=self.reducer_hidden,
    )
    _heads(key, self.width, self.num_heads)
    _choice(f"{key}.resample", self.resample, resample.RESAMPLE)
    _choice(f"{key}.combine", self.combine, gated_fusion.COMBINE)
    _choice(f"{key}.memory", self.memory, gated_fusion.MEMORY)
    _choice(f"{key}.reducer", self.reducer, resample.REDUCERS)
    if not math.isfinite(self.gate_init):
      raise ValueError(f"{key}.gate_init={self.gate_init}: must be finite")
    if self.type == "co_tokenization" and len(self.vision_taps) != self.iterations:
      raise ValueError(
        f"{key}.iterations={self.iterations}: co_tokenization reads one tower tap per "
        f"iteration, and {key}.vision_taps={self.vision_taps} has {len(self.vision_taps)}"
      )


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """config.model.decoder (decoder.py)."""

  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  max_len: int
  dropout: float = 0.0

  def __post_init__(self):
    key = "config.model.decoder"
    _positive(
      key,
      width=self.width,
      depth=self.depth,
      num_heads=self.num_heads,
      mlp_dim=self.mlp_dim,
      max_len=self.max_len,
    )
    _heads(key, self.width, self.num_heads)


@dataclasses.dataclass(frozen=True)
class VichaConfig:
  """config.model.vicha (vicha.py): both heads off by default."""

  contrastive_depths: tuple[tuple[int, int], ...] = ()  # (vision depth, text depth) pairs
  embed_dim: int = 0
  temperature_init: float = 0.07
  mim_ratio: float = 0.0  # > 0: masked image modelling

  def __post_init__(self):
    key = "config.model.vicha"
    depths = self.contrastive_depths
    if len(set(depths)) != len(depths):
      raise ValueError(f"{key}.contrastive_depths={depths}: pairs repeat")
    if depths and self.embed_dim < 1:
      raise ValueError(f"{key}.embed_dim={self.embed_dim}: must be >= 1")
    if depths and not self.temperature_init > 0:
      raise ValueError(f"{key}.temperature_init={self.temperature_init}: must be > 0")
    if not 0.0 <= self.mim_ratio < 1.0:
      raise ValueError(f"{key}.mim_ratio={self.mim_ratio}: must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The whole model: towers -> fusion -> decoder, plus the auxiliary heads."""

  vision: VisionConfig
  text: TextConfig
  fusion: FusionConfig
  decoder: DecoderConfig
  vocab_size: int
  vicha: VichaConfig = VichaConfig()
  num_tags: int = 0  # > 0: the image tagging head (tagging.py), len(config.data.tags)
  dtype: str = "float32"  # compute dtype, a DTYPES key ("auto" resolved); params float32

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  @property
  def vision_depth(self) -> int:
    """Blocks the ViT builds: up to the last vision tap (blocks above would feed nothing)."""
    return self.fusion.vision_taps[-1]

  @property
  def text_depth(self) -> int:
    """Blocks the text tower builds: up to the last text tap."""
    return self.fusion.text_taps[-1]

  def __post_init__(self):
    if self.vocab_size < 2:
      raise ValueError(f"config.model.vocab_size={self.vocab_size}: must be >= 2")
    _choice("config.model.dtype", self.dtype, DTYPES)
    if self.num_tags < 0:
      raise ValueError(f"config.data.tags: {self.num_tags} tags; the tag head needs >= 0")
    f = self.fusion
    check_taps(f.vision_taps, self.vision.depth, "config.model.fusion.vision_taps")
    check_taps(f.text_taps, self.text.depth, "config.model.fusion.text_taps")
    if self.vision.token_pruning == "elip":
      self._check_elip()
    self._check_vicha()

  def _check_elip(self):
    v, named = self.vision, f"config.model.vision.elip_layers={self.vision.elip_layers}"
    for layer in v.elip_layers:
      if layer > self.vision_depth:
        raise ValueError(
          f"{named}: layer {layer} is above the last vision tap "
          f"{self.vision_depth} (config.model.fusion.vision_taps), where the "
          f"tower stops; the stage would never run"
        )
    if self.text.width != v.width:
      # ELIP is parameter-free: the guide is compared with image tokens in their own space.
      raise ValueError(
        f"config.model.vision.token_pruning='elip' compares text and image "
        f"features directly: config.model.text.width={self.text.width} must "
        f"equal config.model.vision.width={v.width}"
      )
    if self.fusion.type == "co_tokenization" and self.fusion.reducer == "tokenlearner_v1":
      raise ValueError(
        "config.model.fusion.reducer='tokenlearner_v1' needs the patch grid, "
        "which config.model.vision.token_pruning='elip' removes by pruning; "
        "use tokenlearner_v11"
      )

  def _check_vicha(self):
    key, depths = "config.model.vicha", self.vicha.contrastive_depths
    for dv, dt in depths:
      if not 1 <= dv <= self.vision_depth:
        raise ValueError(
          f"{key}.contrastive_depths={depths}: vision depth {dv} is outside "
          f"the built ViT 1..{self.vision_depth} (blocks above the last "
          f"config.model.fusion.vision_taps are not built)"
        )
      if not 1 <= dt <= self.text_depth:
        raise ValueError(
          f"{key}.contrastive_depths={depths}: text depth {dt} is outside "
          f"the built text tower 1..{self.text_depth} (blocks above the "
          f"last config.model.fusion.text_taps are not built)"
        )
    if self.vicha.mim_ratio > 0 and self.vision.token_pruning == "elip":
      raise ValueError(
        f"{key}.mim_ratio > 0 regresses every masked patch from its own "
        f"token, which config.model.vision.token_pruning='elip' prunes away; "
        f"use one or the other"
      )
    if depths and self.decoder.max_len > self.text.max_len:
      raise ValueError(
        f"{key}.contrastive_depths runs the text tower over the decoder "
        f"target: config.model.decoder.max_len={self.decoder.max_len} must "
        f"be <= config.model.text.max_len={self.text.max_len}"
      )

  @classmethod
  def from_config(cls, config) -> "ModelConfig":
    """From the run config: `config.model` and `config.data.tags` (the tag head's size)."""
    if "model" not in config:
      raise ValueError(
        "ModelConfig.from_config takes the whole run config (with `model` "
        f"and `data`), got one with keys {sorted(config.keys())}"
      )
    m = config.model
    data = config.get("data", None) or {}
    if "num_tags" in m:
      raise ValueError(
        f"config.model.num_tags={m.num_tags}: no longer a key; the tag head "
        f"has len(config.data.tags) logits"
      )
    if "reducer" in m.vision:
      raise ValueError(
        f"config.model.vision.reducer={m.vision.reducer!r}: renamed "
        f"config.model.vision.token_pruning"
      )
    return cls(
      vision=_vision(m.vision),
      text=_text(m.text),
      fusion=_fusion(m.fusion),
      decoder=_decoder(m.decoder),
      vocab_size=int(m.vocab_size),
      vicha=_vicha(m.get("vicha", None) or {}),
      num_tags=len(tuple(data.get("tags", ()) or ())),
      dtype=resolve_dtype(str(m.dtype)),
    )


def _vision(c) -> VisionConfig:
  size = resolve_size(c, "config.model.vision")
  if "patch_size" not in size:
    raise ValueError(f"config.model.vision.variant={c.variant!r}: needs a patch size, e.g. 'B/16'")
  pruning = str(c.get("token_pruning", "none"))
  elip = pruning == "elip"  # unused ELIP fields stay out of the model's config
  return VisionConfig(
    **size,
    image_size=int(c.image_size),
    posemb=str(c.posemb),
    stem=str(c.get("stem", "patch")),
    scan=bool(c.scan),
    remat_policy=str(c.remat_policy),
    dropout=float(c.dropout),
    token_pruning=pruning,
    elip_layers=tuple(int(x) for x in c.get("elip_layers", ())) if elip else (),
    elip_keep=tuple(float(x) for x in c.get("elip_keep", ())) if elip else (),
  )


def _text(c) -> TextConfig:
  return TextConfig(
    **resolve_size(c, "config.model.text"),
    max_len=int(c.max_len),
    scan=bool(c.scan),
    remat_policy=str(c.remat_policy),
    dropout=float(c.dropout),
  )


def _fusion(c) -> FusionConfig:
  return FusionConfig(
    type=str(c.type),
    width=int(c.width),
    num_heads=int(c.num_heads),
    mlp_dim=int(c.mlp_dim),
    num_tokens=int(c.num_tokens),
    layers_per_iteration=int(c.layers_per_iteration),
    vision_taps=tuple(int(t) for t in c.vision_taps),
    text_taps=tuple(int(t) for t in c.text_taps),
    iterations=int(c.iterations),
    resample=str(c.resample),
    combine=str(c.combine),
    gate_init=float(c.gate_init),
    memory=str(c.memory),
    reducer=str(c.reducer),
    reducer_hidden=int(c.reducer_hidden),
    dropout=float(c.dropout),
  )


def _decoder(c) -> DecoderConfig:
  return DecoderConfig(
    width=int(c.width),
    depth=int(c.depth),
    num_heads=int(c.num_heads),
    mlp_dim=int(c.mlp_dim),
    max_len=int(c.max_len),
    dropout=float(c.dropout),
  )


def _vicha(c) -> VichaConfig:
  return VichaConfig(
    contrastive_depths=tuple((int(dv), int(dt)) for dv, dt in c.get("contrastive_depths", ())),
    embed_dim=int(c.get("embed_dim", 0)),
    temperature_init=float(c.get("temperature_init", 0.07)),
    mim_ratio=float(c.get("mim_ratio", 0.0)),
  )
