"""Vision tower: a ViT without pooling whose every depth is tappable.

The parameter tree matches big_vision's `vit.py` (`embedding`, `pos_embedding`,
`Transformer/encoderblock_{i}/...`, `Transformer/encoder_norm`), so its `.npz` checkpoints
load with `load_big_vision_npz`. Only `depth` blocks are built: with fusion taps that end
mid-tower, the joint tokens replace the upper blocks (DESIGN.md, "The model").
"""
from typing import Any

import flax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jarl.models import transformer


def sincos2d(h, w, width, temperature=10_000.0):
  """Fixed 2-D sine-cosine position embedding, [1, h*w, width] (MoCo v3 / big_vision)."""
  if width % 4:
    raise ValueError(f"sincos2d position embedding needs width % 4 == 0, got width={width}")
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
  y = np.einsum("m,d->md", y.flatten(), omega)
  x = np.einsum("m,d->md", x.flatten(), omega)
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return jnp.asarray(pe, jnp.float32)[None]


class ViT(nn.Module):
  """image [B, H, W, 3] in [-1, 1] -> (tokens [B, N, D] after encoder_norm, out).

  out[f"depth_{d}"] holds the residual stream after d blocks, [B, N, D].
  """
  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  patch_size: int
  posemb: str = "learn"
  dropout: float = 0.0
  scan: bool = False
  remat_policy: str = "none"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image, train=False):
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", name="embedding",
                dtype=self.dtype,
                kernel_init=nn.with_logical_partitioning(
                    nn.initializers.lecun_normal(), (None, None, None, "embed")),
                bias_init=transformer.bias_init(("embed",)))(image.astype(self.dtype))
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    if self.posemb == "learn":
      pos = self.param("pos_embedding", nn.with_logical_partitioning(
          nn.initializers.normal(stddev=1 / np.sqrt(d)), (None, "length", "embed")),
          (1, h * w, d), jnp.float32)
    elif self.posemb == "sincos2d":
      pos = sincos2d(h, w, d)
    else:
      raise ValueError(f"config.model.vision.posemb={self.posemb!r}: choose learn or sincos2d")
    x = x + pos.astype(x.dtype)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x, out = transformer.Encoder(self.depth, self.num_heads, self.mlp_dim, self.dropout,
                                 self.scan, self.remat_policy, self.dtype,
                                 name="Transformer")(x, None, train)
    out["grid"] = (h, w)
    return x, out


def load_big_vision_npz(path, params, scan=False):
  """Loads a big_vision ViT `.npz` into `params` (our ViT tree). Returns (params, report).

  Keys are '/'-joined paths. Extra checkpoint keys (a classifier `head`, blocks above our
  depth, a `cls` token) are reported as unexpected; our keys missing from the file keep
  their initial values and are reported as missing. A shape mismatch is an error naming
  the key. `scan` converts between the loop layout (`encoderblock_{i}`) and the scan
  layout (`encoderblock` stacked on axis 0) whichever the file uses.
  """
  with open(path, "rb") as f:
    ckpt = dict(np.load(f, allow_pickle=False))
  ckpt = _to_layout(ckpt, scan)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  new, missing = {}, []
  for key, value in flat.items():
    boxed = isinstance(value, nn.LogicallyPartitioned)
    array = value.unbox() if boxed else value
    if key in ckpt:
      if tuple(ckpt[key].shape) != tuple(array.shape):
        raise ValueError(f"{path}: key {key!r} has shape {ckpt[key].shape}, "
                         f"the model expects {array.shape}")
      loaded = jnp.asarray(ckpt[key], array.dtype)
      new[key] = value.replace_boxed(loaded) if boxed else loaded
    else:
      missing.append(key)
      new[key] = value
  unexpected = sorted(set(ckpt) - set(flat))
  report = dict(missing=sorted(missing), unexpected=unexpected)
  return flax.traverse_util.unflatten_dict(new, sep="/"), report


def save_big_vision_npz(path, params):
  """Writes params (ours or big_vision's) as a big_vision-style `.npz` of '/'-joined keys."""
  params = nn.meta.unbox(params)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  with open(path, "wb") as f:
    np.savez(f, **{k: np.asarray(v) for k, v in flat.items()})


def _to_layout(ckpt, scan):
  """Converts '/'-keyed arrays between loop (`encoderblock_{i}`) and scan layouts."""
  ckpt = dict(ckpt)
  if scan:
    groups = {}  # (prefix, suffix) -> {layer: array}
    for k in [k for k in ckpt if "/encoderblock_" in k]:
      prefix, rest = k.split("/encoderblock_")
      layer, suffix = rest.split("/", 1)
      groups.setdefault((prefix, suffix), {})[int(layer)] = ckpt.pop(k)
    for (prefix, suffix), layers in groups.items():
      ckpt[f"{prefix}/encoderblock/{suffix}"] = np.stack([layers[i] for i in sorted(layers)])
  else:
    for k in [k for k in ckpt if "/encoderblock/" in k]:
      prefix, suffix = k.split("/encoderblock/")
      for i, layer in enumerate(ckpt.pop(k)):
        ckpt[f"{prefix}/encoderblock_{i}/{suffix}"] = layer
  return ckpt
