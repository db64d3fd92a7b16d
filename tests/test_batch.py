"""jarl.batch: one declared layout, and every batch the project makes follows it."""

import jax
import numpy as np
import train_fixtures

from jarl import batch as batch_lib
from jarl import sharding, train
from jarl.data import pipeline, shapes

TAGS = ("circle", "square", "triangle", "diamond")


def _layout(batch):
  return {k: (tuple(v.shape[1:]), np.dtype(v.dtype)) for k, v in batch.items()}


def _spec(config):
  return {k: (shape, np.dtype(dtype)) for k, (shape, dtype) in batch_lib.batch_spec(config).items()}


def test_every_batch_follows_the_spec_with_the_tag_loss_on():
  config = train_fixtures.tiny_config(data__tags=TAGS, losses__tag_weight=1.0)
  spec = _spec(config)
  assert spec["tags"] == ((4,), np.float32) and spec["image"] == ((16, 16, 3), np.float32)
  data = pipeline.make_train_data(
    config.data,
    global_batch_size=4,
    seed=0,
    process_index=0,
    process_count=1,
    fields=batch_lib.batch_spec(config),
  )
  real = next(data)
  data.close()
  assert _layout(real) == spec
  assert _layout(batch_lib.synthetic_batch(config, 3)) == spec
  abstract = batch_lib.abstract_batch(config, 5)
  assert {k: (v.shape[1:], np.dtype(v.dtype)) for k, v in abstract.items()} == spec
  dummy = batch_lib.dummy_batch(config, 2)
  assert tuple(dummy) == batch_lib.MODEL_INPUTS
  assert {k: (tuple(v.shape[1:]), np.dtype(v.dtype)) for k, v in dummy.items()} == {
    k: spec[k] for k in batch_lib.MODEL_INPUTS
  }


def test_the_trainer_compiles_for_the_pipeline_batch():
  """The step is compiled ahead of time for the trainer's abstract batch and then fed the
  pipeline's batches: both must be the spec, field for field."""
  config = train_fixtures.tiny_config(data__tags=TAGS, losses__tag_weight=1.0)
  mesh = sharding.make_mesh([("data", 1), ("fsdp", 1), ("model", 1)], jax.devices()[:1])
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
  data = pipeline.make_train_data(
    config.data,
    global_batch_size=config.global_batch_size,
    seed=0,
    process_index=0,
    process_count=1,
    fields=batch_lib.batch_spec(config),
  )
  real = next(data)
  data.close()
  assert {k: (v.shape, v.dtype) for k, v in trainer.abstract_batch.items()} == {
    k: (v.shape, v.dtype) for k, v in real.items()
  }


def test_eval_batches_carry_the_data_fields_answers_and_kinds_only():
  config = train_fixtures.tiny_config(data__tags=TAGS, losses__tag_weight=1.0)
  data = pipeline.make_eval_data(
    config.data,
    dict(source="shapes:validation", task="vqa", num_examples=3),
    batch_size=4,
    process_index=0,
    process_count=1,
  )
  batch = next(iter(data))
  answers, kinds = batch.pop("answers"), batch.pop("kinds")
  assert _layout(batch) == {
    k: (s, np.dtype(d)) for k, (s, d) in batch_lib.data_spec(config.data).items()
  }
  assert list(batch["mask"]) == [True, True, True, False] and len(answers) == 4
  assert all(k in shapes.QUESTION_TYPES for k in kinds[:3]) and kinds[3] == ""
