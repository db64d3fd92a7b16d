"""The fusions: the paper's `jarl` against its equations, its switches, padding, the
co-tokenization rename and the perceiver baseline."""

import pathlib

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jarl.models import fusion, gated_fusion, layers, perceiver, resample
from jarl.models.config import FusionConfig

GOLDEN = pathlib.Path(__file__).parent / "data" / "co_tokenization_golden.npz"
B, NV, NT, DV, DT, W, N = 2, 16, 6, 12, 10, 16, 3


def config(**kw):
  fields = dict(
    type="jarl",
    width=W,
    num_heads=2,
    mlp_dim=32,
    num_tokens=N,
    layers_per_iteration=1,
    iterations=2,
    vision_taps=(1, 2),
    text_taps=(1, 2),
    reducer_hidden=8,
  )
  return FusionConfig(**{**fields, **kw})


def inputs(seed=0):
  rng = np.random.default_rng(seed)
  vision = [jnp.asarray(rng.normal(size=(B, NV, DV)), jnp.float32) for _ in range(2)]
  text = [jnp.asarray(rng.normal(size=(B, NT, DT)), jnp.float32) for _ in range(2)]
  mask = jnp.asarray([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
  return vision, text, mask


def init(module, vision, text, mask):
  return nn.unbox(module.init(jax.random.key(1), vision, text, mask, grid=(4, 4))["params"])


@pytest.mark.parametrize("resample_kind", resample.RESAMPLE)
def test_jarl_shapes_resampling_maps_and_padding(resample_kind):
  c = config(resample=resample_kind)
  vision, text, mask = inputs()
  m = gated_fusion.JarlFusion(c)
  params = init(m, vision, text, mask)
  memory, memory_mask, out = m.apply({"params": params}, vision, text, mask)
  assert memory.shape == (B, N, W) and bool(memory_mask.all())
  assert out["image_weights"].shape == (B, N, NV) and out["text_weights"].shape == (B, N, NT)
  np.testing.assert_allclose(out["image_weights"].sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(out["text_weights"].sum(-1), 1.0, rtol=1e-5)
  # Only the towers' top taps feed it: the lower taps have no parameters and no effect.
  lower = [vision[0] * 7.0, vision[1]], [text[0] + 3.0, text[1]]
  np.testing.assert_array_equal(m.apply({"params": params}, *lower, mask)[0], memory)
  # One gated block and one layer stack per iteration, resamplers once.
  assert set(params) == {
    "vision_proj",
    "vision_proj_norm",
    "text_proj",
    "text_proj_norm",
    "image_resampler",
    "text_resampler",
    "gated_0",
    "gated_1",
    "blocks_0",
    "blocks_1",
    "encoder_norm",
  }
  np.testing.assert_allclose(out["gates"], np.tanh(1.0), rtol=1e-6)  # gate_init = 1
  # Padded text gets zero resampling weight and changes nothing.
  assert float(jnp.abs(out["text_weights"][0, :, 3:]).max()) == 0.0
  # Other values under the padding, and a shorter padded length: the same fused tokens, so
  # N does not depend on the text length.
  noisy = [text[0], text[1].at[0, 3:].set(100.0)]
  np.testing.assert_allclose(m.apply({"params": params}, vision, noisy, mask)[0], memory, atol=1e-6)
  short = [t[:1, :3] for t in text]
  memory_short = m.apply({"params": params}, [v[:1] for v in vision], short, mask[:1, :3])[0]
  np.testing.assert_allclose(memory_short, memory[:1], rtol=1e-5, atol=1e-5)


def test_closed_gates_leave_exactly_the_residual_path():
  block = gated_fusion.GatedCrossAttention(num_heads=2, mlp_dim=32, gate_init=0.0)
  rng = np.random.default_rng(0)
  t = jnp.asarray(rng.normal(size=(B, N, W)), jnp.float32)
  f = jnp.asarray(rng.normal(size=(B, 5, W)), jnp.float32)
  params = nn.unbox(block.init(jax.random.key(0), t, f)["params"])
  assert float(params["alpha"]) == float(params["beta"]) == 0.0
  fused, gates = block.apply({"params": params}, t, f)
  t_norm = nn.LayerNorm().apply({"params": params["query_norm"]}, t)
  np.testing.assert_array_equal(fused, t_norm)  # P = LN(t), F = P: no attention, no MLP
  np.testing.assert_array_equal(gates, [0.0, 0.0])
  # Open gates: F = P + tanh(beta) MLP(P) with P = LN(t) + tanh(alpha) Attn(LN(t), LN(f)).
  params = dict(params, alpha=jnp.float32(0.5), beta=jnp.float32(-0.3))
  fused, _ = block.apply({"params": params}, t, f)
  f_norm = nn.LayerNorm().apply({"params": params["memory_norm"]}, f)
  attn = layers.MultiHeadDotProductAttention(2).apply(
    {"params": params["cross_attention"]}, t_norm, f_norm
  )
  p = t_norm + np.tanh(0.5) * attn
  mlp = layers.MlpBlock(32).apply({"params": params["mlp"]}, p)
  np.testing.assert_allclose(fused, p + np.tanh(-0.3) * mlp, rtol=1e-5, atol=1e-6)


def test_gated_residual_and_none_differ_exactly_as_defined():
  vision, text, mask = inputs()
  c = config(iterations=1)
  gated = gated_fusion.JarlFusion(c)
  params = init(gated, vision, text, mask)
  residual = gated_fusion.JarlFusion(config(iterations=1, combine="residual"))
  none = gated_fusion.JarlFusion(config(iterations=1, combine="none"))
  # residual and none have the same parameters as gated, less the gates.
  ungated = dict(
    params, gated_0={k: v for k, v in params["gated_0"].items() if k not in "alphabeta"}
  )
  assert jax.tree.structure(ungated) == jax.tree.structure(init(residual, vision, text, mask))
  # Gates saturated at tanh(20) = 1.0 in float32: gated is exactly residual.
  wide_open = dict(params, gated_0=dict(params["gated_0"], alpha=20.0, beta=20.0))
  res_memory = residual.apply({"params": ungated}, vision, text, mask)[0]
  np.testing.assert_array_equal(
    gated.apply({"params": wide_open}, vision, text, mask)[0], res_memory
  )
  # By hand from the submodules: residual carries t into the layers, none replaces it.
  _, _, out = residual.apply({"params": ungated}, vision, text, mask)
  step = gated_fusion.GatedCrossAttention(2, 32, gated=False)
  blocks = layers.Blocks(1, 2, 32)
  norm = nn.LayerNorm()
  f, t = _resampled(ungated, vision, text, mask)
  fused, _ = step.apply({"params": ungated["gated_0"]}, t, f)
  for name, module, carried in (("residual", residual, fused + t), ("none", none, fused)):
    expected = norm.apply(
      {"params": ungated["encoder_norm"]}, blocks.apply({"params": ungated["blocks_0"]}, carried)
    )
    got = module.apply({"params": ungated}, vision, text, mask)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=name)
  assert out["gates"].tolist() == [[1.0, 1.0]]


def _resampled(params, vision, text, mask):
  """f_N, t_N of Eq. 1-2 from the fusion's own parameters (latent resampling)."""

  def project(x, name):
    x = nn.LayerNorm().apply({"params": params[f"{name}_norm"]}, x)
    return x @ params[name]["kernel"]

  sampler = resample.LatentResampler(N, 2)
  f, _ = sampler.apply({"params": params["image_resampler"]}, project(vision[-1], "vision_proj"))
  t, _ = sampler.apply({"params": params["text_resampler"]}, project(text[-1], "text_proj"), mask)
  return f, t


def test_decoder_memory_fused_and_image_appends_the_image_latents():
  vision, text, mask = inputs()
  m = gated_fusion.JarlFusion(config(memory="fused_and_image"))
  params = init(m, vision, text, mask)
  memory, memory_mask, _ = m.apply({"params": params}, vision, text, mask)
  assert memory.shape == (B, 2 * N, W) and bool(memory_mask.all())
  fused_only = gated_fusion.JarlFusion(config()).apply({"params": params}, vision, text, mask)[0]
  np.testing.assert_allclose(memory[:, :N], fused_only, rtol=1e-6)  # per-token final norm
  f, _ = _resampled(params, vision, text, mask)
  np.testing.assert_allclose(
    memory[:, N:],
    nn.LayerNorm().apply({"params": params["encoder_norm"]}, f),
    rtol=1e-5,
    atol=1e-5,
  )


@pytest.mark.parametrize("reducer", ["tokenlearner_v11", "tokenlearner_v1"])
def test_co_tokenization_equals_the_old_jarl_module(reducer):
  """The rename changed nothing: same parameters, same outputs as the pre-rename `jarl`
  module (recorded in tests/data/co_tokenization_golden.npz)."""
  golden = np.load(GOLDEN)
  vision = [golden[f"in/vision_{i}"] for i in range(2)]
  text = [golden[f"in/text_{i}"] for i in range(2)]
  mask = golden["in/mask"]
  prefix = f"{reducer}/params/"
  params = traverse_util.unflatten_dict(
    {k[len(prefix) :]: golden[k] for k in golden.files if k.startswith(prefix)}, sep="/"
  )
  c = config(type="co_tokenization", layers_per_iteration=2, reducer=reducer)
  m = fusion.FUSIONS["co_tokenization"](c)
  fresh = nn.unbox(m.init(jax.random.key(1), vision, text, mask, grid=(4, 4))["params"])
  assert jax.tree.structure(fresh) == jax.tree.structure(params)
  memory, _, out = m.apply({"params": params}, vision, text, mask, grid=(4, 4))
  np.testing.assert_allclose(memory, golden[f"{reducer}/memory"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["weights_1"], golden[f"{reducer}/weights_1"], rtol=1e-5, atol=1e-7)


def test_perceiver_reads_the_full_inputs_every_iteration_and_ignores_padding():
  vision, text, mask = inputs()
  m = perceiver.PerceiverFusion(config(type="perceiver"))
  params = init(m, vision, text, mask)
  assert {f"read_{i}" for i in range(2)} <= set(params)
  memory, memory_mask, _ = m.apply({"params": params}, vision, text, mask)
  assert memory.shape == (B, N, W) and bool(memory_mask.all())
  noisy = [text[0], text[1].at[0, 3:].set(100.0)]
  np.testing.assert_allclose(m.apply({"params": params}, vision, noisy, mask)[0], memory, atol=1e-6)
  # Each iteration's cross-attention reads the inputs: changing them changes the output
  # even with the first read's keys and values made blind to them.
  blind = jax.tree.map(jnp.zeros_like, params["read_0"]["cross_attention"])
  p2 = dict(params, read_0=dict(params["read_0"], cross_attention=blind))
  a = m.apply({"params": p2}, vision, text, mask)[0]
  # Other image tokens (not a rescaling: the inputs pass a LayerNorm, scale-invariant but
  # for its epsilon).
  other = jax.random.normal(jax.random.key(5), vision[1].shape)
  b = m.apply({"params": p2}, [vision[0], other], text, mask)[0]
  assert not np.allclose(a, b)


def test_concat_depth_is_iterations_times_layers():
  vision, text, mask = inputs()
  m = fusion.ConcatFusion(config(type="concat", iterations=3, layers_per_iteration=2))
  params = init(m, vision, text, mask)
  assert set(params["blocks"]) == {f"encoderblock_{i}" for i in range(6)}


@pytest.mark.parametrize(
  "key,value,message",
  [
    ("resample", "pool", "config.model.fusion.resample='pool': choose from ('latent', 'spatial')"),
    (
      "combine",
      "sum",
      "config.model.fusion.combine='sum': choose from ('gated', 'residual', 'none')",
    ),
    ("memory", "all", "config.model.fusion.memory='all': choose from"),
    ("iterations", 0, "config.model.fusion.iterations=0: must be >= 1"),
    ("num_tokens", 0, "config.model.fusion.num_tokens=0: must be >= 1"),
    ("layers_per_iteration", 0, "config.model.fusion.layers_per_iteration=0: must be >= 1"),
    ("gate_init", float("nan"), "config.model.fusion.gate_init=nan: must be finite"),
    ("type", "co_tokenization", "config.model.fusion.iterations=3: co_tokenization reads one"),
  ],
)
def test_every_switch_names_its_key_and_bad_value(key, value, message):
  kw = {key: value}
  if key == "type":
    kw["iterations"] = 3  # two taps
  with pytest.raises(ValueError) as e:
    config(**kw)
  assert message in str(e.value) and "\n" not in str(e.value)
