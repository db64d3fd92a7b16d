"""jarl.losses: the objective is the decoder mean plus the weighted aux losses, by hand."""

import jax.numpy as jnp
import numpy as np
import pytest
import train_fixtures

from jarl import losses

TAGS = ("circle", "square", "triangle", "diamond")


def _np_xent(logits, target):
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, target[..., None], -1)[..., 0]
  weights = target != 0
  return (nll * weights).sum() / weights.sum()


def test_objective_is_decoder_token_mean_plus_weighted_tag_loss():
  config = train_fixtures.tiny_config(data__tags=TAGS, losses__tag_weight=0.25)
  objective = losses.make_objective(config)
  assert objective.terms == ("decoder", "tags")
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  target = np.array([[1, 2, 0, 0, 0], [3, 3, 3, 3, 0], [4, 0, 0, 0, 0]], np.int32)
  tag_logits = rng.normal(size=(3, 4)).astype(np.float32)
  tags = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], np.float32)
  batch = dict(target=jnp.asarray(target), mask=jnp.ones(3, bool), tags=jnp.asarray(tags))
  loss, parts = objective.mean(
    jnp.asarray(logits), {"aux/tag_logits": jnp.asarray(tag_logits)}, batch
  )
  decoder = _np_xent(logits, target)
  tag = float(
    losses.tag_cross_entropy(jnp.asarray(tag_logits), jnp.asarray(tags), jnp.ones(3, bool))
  )
  np.testing.assert_allclose(parts["loss_decoder"], decoder, rtol=1e-5)
  np.testing.assert_allclose(parts["loss_tags"], tag, rtol=1e-6)
  np.testing.assert_allclose(loss, decoder + 0.25 * tag, rtol=1e-5)


def test_plain_objective_has_no_parts_and_no_extra_rng_streams():
  config = train_fixtures.tiny_config()
  objective = losses.make_objective(config)
  assert objective.terms == () and objective.batch_fields() == {}
  assert set(objective.model_rngs(None)) == {"dropout"}


def test_every_registered_loss_declares_its_keys():
  for name, loss in losses.AUX_LOSSES.items():
    assert loss.name == name and loss.weight_key and loss.out_keys
    assert all(k.startswith("aux/") for k in loss.out_keys)


@pytest.mark.parametrize("key", ["contrastive_weight", "mim_weight", "tag_weight"])
def test_a_weight_without_its_model_head_names_both(key):
  config = train_fixtures.tiny_config(**{f"losses__{key}": 1.0})
  with pytest.raises(ValueError, match=rf"config.losses.{key}=1.0 needs config\.\w+"):
    losses.make_objective(config)
