"""Pre-LayerNorm transformer encoder blocks shared by the vision and text towers and fusion.

Parameter names follow big_vision's ViT (`MultiHeadDotProductAttention_0/{query,key,value,out}`,
`MlpBlock_0/{Dense_0,Dense_1}`, `LayerNorm_{0,1}`, `encoderblock_{i}`, `encoder_norm`) so its
public checkpoints load into our towers. Every parameter carries logical axis names
(`embed`, `mlp`, `heads`, `kv`) that the trainer maps onto the mesh.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
# Logical names of activations. Constraints name them so that, under FSDP (weights split on
# `embed`), XLA gathers weights rather than splitting examples differently, and under
# tensor parallelism heads and MLP hidden units stay split over `model` between the two
# matmuls of each block (no all-gather in between). No-ops unless rules are in scope.
ACTIVATION = ("batch", "length", "embed")
HEAD_ACTIVATION = ("batch", "length", "heads", "kv")
MLP_ACTIVATION = ("batch", "length", "mlp")

# Variant table as in big_vision (width, depth, mlp_dim, num_heads).
VARIANTS = {
    "mu": (32, 1, 128, 2),
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
}


def decode_variant(variant, key):
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


def resolve_size(cfg, key):
  """Variant defaults overridden by explicit width/depth/mlp_dim/num_heads; validated."""
  size = decode_variant(cfg["variant"], f"{key}.variant")
  for name in ("width", "depth", "mlp_dim", "num_heads"):
    if cfg.get(name) is not None:
      size[name] = int(cfg[name])
  for name in ("width", "depth", "mlp_dim", "num_heads"):
    if size[name] < 1:
      raise ValueError(f"{key}.{name}={size[name]}: must be >= 1")
  if size["width"] % size["num_heads"]:
    raise ValueError(f"{key}.width={size['width']} is not divisible by "
                     f"{key}.num_heads={size['num_heads']}")
  return size


def dense_init(names):
  return nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names)


def bias_init(names):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


def layer_norm(name=None, dtype=jnp.float32):
  return nn.LayerNorm(name=name, dtype=dtype,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
                      bias_init=bias_init(("embed",)))


class HeadProjection(nn.Module):
  """A multi-axis dense layer: x [..., *in] -> [..., *out] by one einsum.

  Used instead of nn.DenseGeneral, whose kernel init goes through a flattened 2-D shape
  that a rank-3 logical-axis constraint cannot describe when a mesh is active.
  """
  in_shape: tuple
  out_shape: tuple
  kernel_names: tuple
  bias_names: tuple
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.with_logical_partitioning(
        nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=tuple(
            range(len(self.in_shape))), out_axis=tuple(range(len(self.in_shape), len(
                self.in_shape) + len(self.out_shape)))), self.kernel_names),
        self.in_shape + self.out_shape, jnp.float32)
    bias = self.param("bias", bias_init(self.bias_names), self.out_shape, jnp.float32)
    letters = "abcdefgh"
    n_in, n_out = len(self.in_shape), len(self.out_shape)
    ins, outs = letters[:n_in], letters[n_in:n_in + n_out]
    y = jnp.einsum(f"...{ins},{ins}{outs}->...{outs}", x.astype(self.dtype),
                   kernel.astype(self.dtype))
    return y + bias.astype(self.dtype)


class MultiHeadDotProductAttention(nn.Module):
  """Multi-head attention; `mask` [B, 1|Lq, Lk] bool (True = attend)."""
  num_heads: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, memory, mask=None):
    width = x.shape[-1]
    heads = (self.num_heads, width // self.num_heads)
    proj = lambda name: HeadProjection((width,), heads, ("embed", "heads", "kv"),
                                       ("heads", "kv"), self.dtype, name=name)
    q, k, v = (nn.with_logical_constraint(proj(name)(inp), HEAD_ACTIVATION)  # [B, L, N, H]
               for name, inp in (("query", x), ("key", memory), ("value", memory)))
    if mask is not None:
      mask = mask[:, None]  # [B, 1(heads), Lq|1, Lk]
    y = nn.with_logical_constraint(jax.nn.dot_product_attention(q, k, v, mask=mask),
                                   HEAD_ACTIVATION)
    return HeadProjection(heads, (width,), ("heads", "kv", "embed"), ("embed",), self.dtype,
                          name="out")(y)


class MlpBlock(nn.Module):
  mlp_dim: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    width = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=dense_init(("embed", "mlp")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.normal(1e-6), ("mlp",)))(x)
    x = nn.with_logical_constraint(nn.gelu(x), MLP_ACTIVATION)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return nn.Dense(width, dtype=self.dtype, kernel_init=dense_init(("mlp", "embed")),
                    bias_init=nn.with_logical_partitioning(nn.initializers.normal(1e-6), ("embed",)))(x)


class Encoder1DBlock(nn.Module):
  """x + Attn(LN(x)); x + MLP(LN(x)). `mask` [B, 1, L] bool over keys.

  `scanned=True` returns (x, x): the `nn.scan` body form, emitting every depth so fusion
  can tap it, with the block's own parameter names (big_vision's scan layout).
  """
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  scanned: bool = False

  @nn.compact
  def __call__(self, x, mask=None, train=False):
    x = nn.with_logical_constraint(x, ACTIVATION)
    y = layer_norm(dtype=self.dtype)(x)
    y = MultiHeadDotProductAttention(self.num_heads, dtype=self.dtype)(y, y, mask)
    x = x + nn.Dropout(self.dropout)(y, deterministic=not train)
    y = layer_norm(dtype=self.dtype)(x)
    y = MlpBlock(self.mlp_dim, self.dropout, dtype=self.dtype)(y, train)
    x = x + nn.Dropout(self.dropout)(y, deterministic=not train)
    x = nn.with_logical_constraint(x, ACTIVATION)
    return (x, x) if self.scanned else x


REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Encoder(nn.Module):
  """A stack of `depth` blocks plus `encoder_norm`.

  Returns (encoded [B, L, D], out) with out[f"depth_{d}"] the residual stream after d
  blocks (d = 0 is the input), so fusion can tap any depth. `scan=True` stacks the block
  parameters under `encoderblock` (big_vision's scan layout) and runs them with `nn.scan`.
  """
  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  scan: bool = False
  remat_policy: str = "none"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, train=False):
    out = {"depth_0": x}
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy={self.remat_policy!r}: choose from {sorted(REMAT_POLICIES)}")
    remat = self.remat_policy != "none"
    if self.scan:
      body = Encoder1DBlock
      if remat:
        body = nn.remat(body, policy=REMAT_POLICIES[self.remat_policy], static_argnums=(3,))
      stack = nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                      in_axes=(nn.broadcast, nn.broadcast), length=self.depth,
                      metadata_params={nn.PARTITION_NAME: "layers"})
      x, per_depth = stack(self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                           scanned=True, name="encoderblock")(x, mask, train)
      for d in range(self.depth):
        out[f"depth_{d + 1}"] = per_depth[d]
    else:
      block = Encoder1DBlock
      if remat:
        block = nn.remat(block, policy=REMAT_POLICIES[self.remat_policy], static_argnums=(3,))
      for d in range(self.depth):
        x = block(self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                  name=f"encoderblock_{d}")(x, mask, train)
        out[f"depth_{d + 1}"] = x
    return layer_norm("encoder_norm", self.dtype)(x), out


def key_mask(valid):
  """valid [B, L] bool -> attention mask [B, 1, L] (every query may see valid keys)."""
  return valid[:, None, :]


def check_taps(taps: Sequence[int], depth: int, key: str):
  for t in taps:
    if not 1 <= int(t) <= depth:
      raise ValueError(f"{key}={tuple(taps)}: tap {t} is outside the tower's depth 1..{depth}")
  if list(taps) != sorted(taps):
    raise ValueError(f"{key}={tuple(taps)}: taps must be in increasing order")
