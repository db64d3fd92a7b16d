"""The layer library: initialisers, norms, attention, MLP and pre-LayerNorm encoder blocks.

Every tower, fusion, head and the decoder builds from these. Parameter names of the
encoder blocks follow big_vision's ViT (`MultiHeadDotProductAttention_0/{query,key,value,
out}`, `MlpBlock_0/{Dense_0,Dense_1}`, `LayerNorm_{0,1}`, `encoderblock_{i}`,
`encoder_norm`) so its public checkpoints load into our towers. Every parameter carries
logical axis names (`embed`, `mlp`, `heads`, `kv`, `vocab`, `length`, `joint`) that the
trainer maps onto the mesh; the initialisers below attach them.
"""

from typing import Any

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

# Finite "minus infinity" for masking: with -inf, a fully masked row (-inf - -inf) and dead
# beams (-inf + -inf comparisons, -inf * 0) would produce NaN; softmax still gives exactly 0.
NEG_INF = -1.0e9


# --- initialisers with logical axis names ----------------------------------------------------


def dense_init(names):
  """Xavier-uniform kernel."""
  return nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names)


def bias_init(names):
  """Zeros (biases, LayerNorm offsets)."""
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


def ones_init(names):
  """Ones (LayerNorm scales)."""
  return nn.with_logical_partitioning(nn.initializers.ones_init(), names)


def normal_init(stddev, names):
  """N(0, stddev^2): embeddings, learned tokens, big_vision's MLP biases."""
  return nn.with_logical_partitioning(nn.initializers.normal(stddev), names)


def lecun_init(names):
  """LeCun-normal kernel (convolutions, the auxiliary heads' projections)."""
  return nn.with_logical_partitioning(nn.initializers.lecun_normal(), names)


def zeros_kernel_init(names):
  """Zero kernel (classifier heads: no random gradient reaches the body before a label)."""
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


# --- norms, projections, attention, MLP -------------------------------------------------------


def layer_norm(name=None, dtype=jnp.float32, names=("embed",)):
  """LayerNorm with float32 parameters; `names` the logical axis of its scale and offset."""
  return nn.LayerNorm(
    name=name, dtype=dtype, scale_init=ones_init(names), bias_init=bias_init(names)
  )


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
    n_in, n_out = len(self.in_shape), len(self.out_shape)
    # Xavier over the grouped in/out axes (fan_avg of the products), as for a 2-D kernel.
    init = nn.initializers.variance_scaling(
      1.0,
      "fan_avg",
      "uniform",
      in_axis=tuple(range(n_in)),
      out_axis=tuple(range(n_in, n_in + n_out)),
    )
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(init, self.kernel_names),
      self.in_shape + self.out_shape,
      jnp.float32,
    )
    bias = self.param("bias", bias_init(self.bias_names), self.out_shape, jnp.float32)
    letters = "abcdefgh"
    ins, outs = letters[:n_in], letters[n_in : n_in + n_out]
    y = jnp.einsum(
      f"...{ins},{ins}{outs}->...{outs}", x.astype(self.dtype), kernel.astype(self.dtype)
    )
    return y + bias.astype(self.dtype)


def head_projection(width, num_heads, dtype, name):
  """Query/key/value projection: [..., embed] -> [..., heads, width // heads]."""
  return HeadProjection(
    (width,),
    (num_heads, width // num_heads),
    ("embed", "heads", "kv"),
    ("heads", "kv"),
    dtype,
    name=name,
  )


def out_projection(num_heads, head_dim, width, dtype, name):
  """Attention output projection: [..., heads, head_dim] -> [..., embed]."""
  return HeadProjection(
    (num_heads, head_dim), (width,), ("heads", "kv", "embed"), ("embed",), dtype, name=name
  )


def attention_weights(q, k, mask):
  """Scaled dot-product attention probabilities, softmax in float32 (bf16 stability).

  q [B, L, H, K], k [B, S, H, K], mask bool broadcastable to [B, H, L, S] (True = may
  attend) -> float32 [B, H, L, S].
  """
  q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  logits = jnp.einsum("blhk,bshk->bhls", q, k).astype(jnp.float32)
  # where() instead of adding a bias: masked entries become exactly exp(-1e9 - max) = 0,
  # so a cached (padded to max_len) key set gives the same numbers as the exact one.
  logits = jnp.where(mask, logits, NEG_INF)
  return jax.nn.softmax(logits, axis=-1)


def attend(q, k, v, mask, dtype):
  """Scaled dot-product attention (the decoder's): q [B, L, H, K], k/v [B, S, H, K], mask
  as attention_weights' -> [B, L, H, K]."""
  weights = attention_weights(q, k, mask).astype(dtype)
  return jnp.einsum("bhls,bshk->blhk", weights, v)


class MultiHeadDotProductAttention(nn.Module):
  """Multi-head attention of x [B, Lq, D] over memory [B, Lk, D]; `mask` [B, 1|Lq, Lk] bool
  (True = attend). Self-attention when memory is x."""

  num_heads: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, memory, mask=None):
    width = x.shape[-1]
    q, k, v = (
      nn.with_logical_constraint(
        head_projection(width, self.num_heads, self.dtype, name)(inp), HEAD_ACTIVATION
      )
      for name, inp in (("query", x), ("key", memory), ("value", memory))
    )
    if mask is not None:
      mask = mask[:, None]  # [B, 1(heads), Lq|1, Lk]
    y = nn.with_logical_constraint(
      jax.nn.dot_product_attention(q, k, v, mask=mask), HEAD_ACTIVATION
    )  # [B, Lq, N, H]
    return out_projection(self.num_heads, width // self.num_heads, width, self.dtype, "out")(y)


class MlpBlock(nn.Module):
  """x [B, L, D] -> Dense(mlp_dim) -> GELU -> dropout -> Dense(D).

  `names`: the two Dense layers' names, None for flax's `Dense_0`/`Dense_1` (big_vision's
  tree); `bias_stddev`: biases drawn from N(0, stddev^2) (big_vision's 1e-6), 0 = zeros.
  """

  mlp_dim: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  names: tuple[str, str] | None = None
  bias_stddev: float = 1e-6

  @nn.compact
  def __call__(self, x, train=False):
    width = x.shape[-1]
    names = self.names or (None, None)
    bias = (lambda n: normal_init(self.bias_stddev, n)) if self.bias_stddev else bias_init
    x = nn.Dense(
      self.mlp_dim,
      dtype=self.dtype,
      kernel_init=dense_init(("embed", "mlp")),
      bias_init=bias(("mlp",)),
      name=names[0],
    )(x)
    x = nn.with_logical_constraint(nn.gelu(x), MLP_ACTIVATION)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return nn.Dense(
      width,
      dtype=self.dtype,
      kernel_init=dense_init(("mlp", "embed")),
      bias_init=bias(("embed",)),
      name=names[1],
    )(x)


# --- encoder blocks and the stack -------------------------------------------------------------


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


# config.model.{vision,text}.remat_policy: what a rematerialised block keeps for backward.
REMAT_POLICIES = {
  "none": None,
  "full": jax.checkpoint_policies.nothing_saveable,
  "dots": jax.checkpoint_policies.checkpoint_dots,
  "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def block_class(remat_policy="none"):
  """Encoder1DBlock, rematerialised under `remat_policy` (a REMAT_POLICIES key)."""
  if remat_policy == "none":
    return Encoder1DBlock
  return nn.remat(Encoder1DBlock, policy=REMAT_POLICIES[remat_policy], static_argnums=(3,))


class Encoder(nn.Module):
  """A stack of `depth` blocks plus `encoder_norm`.

  x [B, L, D], mask [B, 1, L] bool or None -> (encoded [B, L, D], out) with
  out[f"depth_{d}"] the residual stream after d blocks (d = 0 is the input), so fusion can
  tap any depth. `scan=True` stacks the block parameters under `encoderblock` (big_vision's
  scan layout) and runs them with `nn.scan`.
  """

  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  scan: bool = False
  remat_policy: str = "none"
  dtype: Dtype = jnp.float32

  @classmethod
  def of(cls, tower, dtype: Dtype, **kwargs) -> "Encoder":
    """The encoder a tower config describes (its depth, num_heads, mlp_dim, dropout, scan
    and remat_policy; config.VisionConfig, config.TextConfig)."""
    fields = ("depth", "num_heads", "mlp_dim", "dropout", "scan", "remat_policy")
    return cls(**{f: getattr(tower, f) for f in fields}, dtype=dtype, **kwargs)

  @nn.compact
  def __call__(self, x, mask=None, train=False):
    out = {"depth_0": x}
    block = block_class(self.remat_policy)
    if self.scan:
      stack = nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast),
        length=self.depth,
        metadata_params={nn.PARTITION_NAME: "layers"},
      )
      x, per_depth = stack(
        self.num_heads, self.mlp_dim, self.dropout, self.dtype, scanned=True, name="encoderblock"
      )(x, mask, train)
      for d in range(self.depth):
        out[f"depth_{d + 1}"] = per_depth[d]
    else:
      for d in range(self.depth):
        x = block(self.num_heads, self.mlp_dim, self.dropout, self.dtype, name=f"encoderblock_{d}")(
          x, mask, train
        )
        out[f"depth_{d + 1}"] = x
    return layer_norm("encoder_norm", self.dtype)(x), out


class Blocks(nn.Module):
  """`depth` Encoder1DBlocks (`encoderblock_{i}`) without a final norm: the fusions' layers."""

  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, train=False):
    for i in range(self.depth):
      x = Encoder1DBlock(
        self.num_heads, self.mlp_dim, self.dropout, self.dtype, name=f"encoderblock_{i}"
      )(x, mask, train)
    return x


def project(x, width, dtype, name):
  """LayerNorm (`{name}_norm`) -> Dense(width) without bias (`name`): a tower's features
  into the fusion width (the paper's Eq. 1). No bias: the fusions that mix modalities add a
  learned modality embedding next, which is the bias."""
  x = layer_norm(f"{name}_norm", dtype)(x)
  return nn.Dense(
    width, use_bias=False, dtype=dtype, name=name, kernel_init=dense_init((None, "embed"))
  )(x)


def modality_embedding(module, width):
  """module's learned [3, width] table, one vector per token kind (vision, text, joint), so
  reducers and blocks can tell the kinds apart in a concatenated sequence."""
  return module.param(
    "modality_embedding", normal_init(0.02, (None, "embed")), (3, width), jnp.float32
  )


def key_mask(valid):
  """valid [B, L] bool -> attention mask [B, 1, L] (every query may see valid keys)."""
  return valid[:, None, :]
