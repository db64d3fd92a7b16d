"""Compute dtype: `auto` resolves by backend, parameters stay float32, and the tiny model in
bfloat16 agrees with itself in float32 (same parameters) within bf16 rounding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import finetune_caption, finetune_entailment, finetune_vqa, pretrain
from jarl import batch as batch_lib
from jarl import losses
from jarl.models import config as config_lib
from jarl.models import model as model_lib

# bf16 keeps 8 significant bits (relative rounding 2^-8 ~ 0.4%), and the tiny model rounds
# at every matmul input and activation. Measured on the tiny model (batch 8, 5 batches):
# logits max |bf16 - f32| 0.019-0.026 (logits within +-2), loss |diff| <= 6.3e-4 (loss ~5.7),
# gradient ||g_bf16 - g_f32|| / ||g_f32|| 0.9-1.1%. The tolerances leave 2-4x that, since
# where rounding happens depends on XLA's fusion (the tests compile at -O0) and the CPU's
# kernels. They catch gross breakage of the bf16 path (a wrong cast, a lost mask, an
# overflow), not finer choices: a bf16 attention softmax moves these short-sequence
# logits by less than the rounding above.
LOGITS_ATOL = 0.06
LOSS_ATOL = 3e-3
GRAD_RTOL = 0.04


def test_auto_is_float32_on_cpu_and_bfloat16_on_accelerators():
  assert jax.default_backend() == "cpu"  # conftest.py: the tests run on CPU
  modules = (pretrain, finetune_caption, finetune_entailment, finetune_vqa)
  for module, variant in ((m, v) for m in modules for v in m.VARIANTS):
    config = module.get_config(variant)
    assert config.model.dtype == "auto", (module.__name__, variant)
    assert config_lib.ModelConfig.from_config(config).dtype == "float32", variant
  for backend in ("tpu", "gpu"):
    assert config_lib.resolve_dtype("auto", backend) == "bfloat16"
  assert config_lib.resolve_dtype("bfloat16", "cpu") == "bfloat16"
  assert config_lib.resolve_dtype("float32", "tpu") == "float32"
  with pytest.raises(ValueError, match=r"config.model.dtype='float16': choose from \('auto'"):
    config_lib.resolve_dtype("float16")


def _model(dtype):
  config = pretrain.get_config("tiny")
  config.model.dtype = dtype
  return model_lib.build(config), config


def test_parameters_stay_float32_in_bfloat16(tiny_model_and_params):
  _, params = tiny_model_and_params
  model, config = _model("bfloat16")
  assert model.config.compute_dtype == jnp.bfloat16
  shapes = jax.eval_shape(model.init, jax.random.key(0), **batch_lib.dummy_batch(config))
  shapes = nn.unbox(shapes["params"])
  assert jax.tree.structure(shapes) == jax.tree.structure(params)
  dtypes = {str(x.dtype) for x in jax.tree.leaves(shapes)}
  assert dtypes == {"float32"}


def _loss_grad_logits(model, config):
  """jit(params, batch) -> ((loss, logits), grads) of the training objective."""
  objective = losses.make_objective(config)

  def loss(params, batch):
    logits, out = model.apply({"params": params}, batch["image"], batch["text"], batch["target"])
    return objective.mean(logits, out, batch)[0], logits

  return jax.jit(jax.value_and_grad(loss, has_aux=True))


def test_bfloat16_matches_float32_from_the_same_params(tiny_model_and_params, tiny_batch):
  _, params = tiny_model_and_params
  results = {}
  for dtype in ("float32", "bfloat16"):
    model, config = _model(dtype)
    results[dtype] = _loss_grad_logits(model, config)(params, tiny_batch)
  (loss32, logits32), grads32 = results["float32"]
  (loss16, logits16), grads16 = results["bfloat16"]

  assert np.isfinite(float(loss16))
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads16))
  assert {str(g.dtype) for g in jax.tree.leaves(grads16)} == {"float32"}  # as the params

  err = float(jnp.max(jnp.abs(logits16.astype(jnp.float32) - logits32)))
  # Nonzero: the bf16 program really rounds (else this compares float32 with itself).
  assert 1e-4 < err < LOGITS_ATOL, err
  assert abs(float(loss16) - float(loss32)) < LOSS_ATOL
  diff = jnp.sqrt(
    sum(jnp.sum((a - b) ** 2) for a, b in zip(*map(jax.tree.leaves, (grads16, grads32))))
  )
  norm = jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree.leaves(grads32)))
  assert float(diff / norm) < GRAD_RTOL, float(diff / norm)
