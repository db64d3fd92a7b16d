"""Image tagging: tag labels from the target text, the head, the loss, the train step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import train_fixtures

from jarl import batch as batch_lib
from jarl import losses
from jarl.data import pipeline, tokenizer
from jarl.models import model as model_lib

SHAPE_TAGS = ("circle", "square", "triangle", "diamond")


def test_tags_match_whole_words_and_plurals_only():
  tags = ("circle", "square", "box", "diamond")
  np.testing.assert_array_equal(
    pipeline.tags_in("Two red circles, a Square and a box", tags), [1, 1, 1, 0]
  )
  np.testing.assert_array_equal(pipeline.tags_in("three boxes", ("box",)), [1])
  # Not inside other words, not by prefix.
  np.testing.assert_array_equal(
    pipeline.tags_in("squarely a circlet", ("square", "circle")), [0, 0]
  )


def test_tag_loss_by_hand():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(4, 5)).astype(np.float32)
  tags = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], np.float32)
  mask = np.array([True, True, True, False])  # the last row is batch padding
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  # Row 2 names no tag: no loss; row 3 is padding: no loss.
  by_hand = np.mean([-(log_p[0, 0] + log_p[0, 2]) / 2, -log_p[1, 3]])
  got = losses.tag_cross_entropy(jnp.asarray(logits), jnp.asarray(tags), jnp.asarray(mask))
  np.testing.assert_allclose(got, by_hand, rtol=1e-5)
  # Uniform logits: log T; all mass on the two present tags: log 2, its minimum.
  np.testing.assert_allclose(
    losses.tag_cross_entropy(jnp.zeros((1, 5)), jnp.asarray(tags[:1]), jnp.ones(1, bool)),
    np.log(5),
    rtol=1e-6,
  )
  sharp = jnp.asarray([[0.0, -1e4, 0.0, -1e4, -1e4]])
  np.testing.assert_allclose(
    losses.tag_cross_entropy(sharp, jnp.asarray(tags[:1]), jnp.ones(1, bool)), np.log(2), rtol=1e-6
  )


def test_training_batches_carry_the_tags_their_target_text_names():
  tok = tokenizer.load("shapes")
  d = ml_collections.ConfigDict(
    dict(
      image_size=16,
      tokenizer="shapes",
      text_len=12,
      target_len=24,
      shuffle_seed=0,
      num_workers=0,
      read_threads=0,
      augment=True,
      tags=SHAPE_TAGS,
      sources=[dict(name="cap", source="shapes:train", task="caption", weight=1.0)],
      sampling=dict(policy="static", update_every=2, tau=1.0, epsilon=0.05, smoothing=0.5),
    )
  )
  fields = {**batch_lib.data_spec(d), "tags": ((4,), np.float32)}
  td = pipeline.make_train_data(
    d, global_batch_size=16, seed=0, process_index=0, process_count=1, fields=fields
  )
  b = next(td)
  td.close()
  assert b["tags"].dtype == np.float32 and b["tags"].shape == (16, 4)
  for target, row in zip(b["target"], b["tags"]):
    np.testing.assert_array_equal(row, pipeline.tags_in(tok.decode(target), SHAPE_TAGS))
  assert 0 < b["tags"].sum() < b["tags"].size  # some tags, not all, on this batch
  for bad, message in ((("red circle",), "is not one word"), (("circle", "Circle"), "repeat")):
    d.tags = bad
    with pytest.raises(ValueError, match=rf"config.data.tags=.*{message}"):
      pipeline.make_train_data(
        d, global_batch_size=16, seed=0, process_index=0, process_count=1, fields=fields
      )


def _init(config, b):
  m = model_lib.build(config)
  params = m.init({"params": jax.random.key(0)}, b["image"], b["text"], b["target"])["params"]
  return m, nn.meta.unbox(params)


def test_head_reads_only_the_image_and_leaves_the_decoder_output_unchanged():
  plain_config = train_fixtures.tiny_config()
  config = train_fixtures.tiny_config(data__tags=SHAPE_TAGS)
  b = train_fixtures.batch(config, 4, 0)
  plain, plain_params = _init(plain_config, b)
  model, params = _init(config, b)
  assert set(params) - set(plain_params) == {"tag_head"}
  assert params["tag_head"]["logits"]["kernel"].shape == (32, 4)
  # Jitted: op-by-op dispatch of a whole model is slow on CPU.
  plain_logits, plain_out = jax.jit(plain.apply)(
    {"params": plain_params}, b["image"], b["text"], b["target"]
  )
  logits, out = jax.jit(model.apply)({"params": params}, b["image"], b["text"], b["target"])
  np.testing.assert_array_equal(logits, plain_logits)
  assert "aux/tag_logits" not in plain_out and out["aux/tag_logits"].shape == (4, 4)

  # With a non-zero head (it starts at zero) the loss's gradient reaches the ViT and no
  # other part of the model.
  params["tag_head"]["logits"]["kernel"] = jax.random.normal(jax.random.key(1), (32, 4))
  tags = jnp.asarray([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], jnp.float32)

  def loss(p):
    _, o = model.apply({"params": p}, b["image"], b["text"], b["target"])
    return losses.tag_cross_entropy(o["aux/tag_logits"], tags, jnp.ones(4, bool))

  grads = jax.jit(jax.grad(loss))(params)
  norm = lambda tree: float(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))
  assert norm(grads["vision"]) > 0 and norm(grads["tag_head"]) > 0
  for part in ("text", "fusion", "decoder"):
    assert norm(grads[part]) == 0.0, part


def test_train_step_adds_the_weighted_tag_loss_and_logs_it():
  config = train_fixtures.tiny_config(data__tags=SHAPE_TAGS, losses__tag_weight=0.5)
  assert losses.make_objective(config).terms == ("decoder", "tags")
  assert batch_lib.batch_spec(config)["tags"] == ((4,), np.float32)
  batch = train_fixtures.batch(config, 8, 0)
  batch["tags"] = (np.random.default_rng(0).uniform(size=(8, 4)) < 0.5).astype(np.float32)
  metrics, _ = train_fixtures.run_steps(
    config, [("data", -1), ("fsdp", 1), ("model", 1)], jax.devices()[:1], [batch]
  )
  m = metrics[0]
  np.testing.assert_allclose(m["loss"], m["loss_decoder"] + 0.5 * m["loss_tags"], rtol=1e-6)
  np.testing.assert_allclose(m["loss_tags"], np.log(4), rtol=1e-5)  # zero head: uniform


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(losses__tag_weight=1.0), r"config.losses.tag_weight=1.0 needs config.data.tags"),
    (dict(losses__tag_weight=-1.0, data__tags=SHAPE_TAGS), r"config.losses.tag_weight=-1.0"),
    (dict(losses__tag_wieght=1.0), r"config.losses.tag_wieght: unknown key"),
  ],
)
def test_tag_settings_that_cannot_work_name_the_keys(overrides, message):
  with pytest.raises(ValueError, match=message):
    losses.make_objective(train_fixtures.tiny_config(**overrides))


def test_tag_head_without_its_loss_adds_no_batch_field():
  """Fine-tuning keeps the head (checkpoints load) with the loss off: no `tags` field."""
  config = train_fixtures.tiny_config(data__tags=SHAPE_TAGS, losses__tag_weight=0.0)
  assert "tags" not in batch_lib.batch_spec(config)
  assert losses.make_objective(config).terms == ()
