"""Generation evaluators (vqa, caption, entailment) on the tiny model over 8 fake devices."""

import jax
import numpy as np
import pytest
import train_fixtures

from jarl import sharding, train
from jarl.data import shapes
from jarl.evaluation import accuracy, caption, generative, registry, vqa

NUM = 10  # not a multiple of the batch size: the last batch has padding rows


def _config(task, **evals):
  # Questions fit whole (the tiny config's 8 would cut them), so texts can be checked.
  config = train_fixtures.tiny_config(data__text_len=24, model__text__max_len=24)
  config.evals = {
    "val": {
      **dict(
        type=task,
        task=task,
        source="shapes:validation",
        every_steps=1,
        num_examples=NUM,
        batch_size=8,
        caption_tokenizer="python",
      ),
      **evals,
    }
  }
  return config


@pytest.fixture(scope="module")
def setup():
  """Mesh, model and trained-for-a-moment params (a few steps make outputs vary)."""
  config = _config("vqa")
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    state = train.initial_state(config, trainer)
  # Random, larger-than-init parameters so that the decoded text depends on the input.
  rng = np.random.default_rng(0)
  params = jax.tree.map(
    lambda x: jax.device_put(
      np.asarray(x) + rng.normal(0, 0.3, x.shape).astype(x.dtype), x.sharding
    ),
    state.params,
  )
  return mesh, trainer, params


def _evaluator(setup, task, **evals):
  mesh, trainer, _ = setup
  config = _config(task, **evals)
  with jax.set_mesh(mesh):
    (ev,) = registry.make_evaluators(
      config, model=trainer.model, mesh=mesh, param_shardings=trainer.state_sharding.params
    )
  return ev


def _run(setup, ev, fn):
  mesh, _, params = setup
  with jax.set_mesh(mesh):
    return getattr(ev, fn)(params)


def test_vqa_counts_each_example_once_and_matches_hand_computation(setup):
  ev = _evaluator(setup, "vqa")
  records = _run(setup, ev, "predictions")
  assert len(records) == NUM  # 2 batches of 8, 6 padding rows dropped
  # Example i's question is one of scene i's questions, its references that answer.
  for i, r in enumerate(records):
    scene = shapes.example("validation", i, image_size=16)
    question = r["text"].removeprefix("answer ")
    assert question in scene["questions"]
    assert r["references"] == [scene["answers"][scene["questions"].index(question)]]
    assert r["kind"] == scene["question_types"][scene["questions"].index(question)]
  metrics = _run(setup, ev, "run")
  preds = [r["prediction"] for r in records]
  refs = [r["references"] for r in records]
  assert metrics["val/examples"] == NUM
  assert metrics["val/accuracy"] == pytest.approx(vqa.vqa_accuracy(preds, refs, rules="auto"))
  assert metrics["val/exact_match"] == pytest.approx(accuracy.exact_match_accuracy(preds, refs))
  # Hand computation: single references, so both are the fraction of exact answers.
  hand = np.mean(
    [vqa.normalize_answer(p) == vqa.normalize_answer(r[0]) for p, r in zip(preds, refs)]
  )
  assert metrics["val/accuracy"] == pytest.approx(hand)
  # Per kind: the same score over that kind's records, for every kind present.
  for kind in {r["kind"] for r in records}:
    mine = [(p, r) for p, r, rec in zip(preds, refs, records) if rec["kind"] == kind]
    expected = vqa.vqa_accuracy([p for p, _ in mine], [r for _, r in mine], rules="auto")
    assert metrics[f"val/accuracy/{kind}"] == pytest.approx(expected), kind


def test_padding_and_batch_position_do_not_change_predictions(setup):
  by_eight = _run(setup, _evaluator(setup, "vqa"), "predictions")
  by_sixteen = _run(setup, _evaluator(setup, "vqa", batch_size=16), "predictions")
  assert by_eight == by_sixteen
  # The perturbed model does not answer everything alike: the check has teeth.
  assert len({r["prediction"] for r in by_eight}) > 1


def test_beam_search_evaluator_runs_and_scores_its_own_predictions(setup):
  ev = _evaluator(setup, "vqa", beam_size=3)
  records = _run(setup, ev, "predictions")
  assert len(records) == NUM
  assert ev.score(records)["accuracy"] == pytest.approx(
    vqa.vqa_accuracy(
      [r["prediction"] for r in records], [r["references"] for r in records], rules="auto"
    )
  )


def test_caption_references_are_every_caption_and_metrics_are_pycocoevalcap(setup):
  ev = _evaluator(setup, "caption")
  records = _run(setup, ev, "predictions")
  assert len(records) == NUM
  for i, r in enumerate(records):
    assert r["references"] == shapes.example("validation", i, image_size=16)["captions"]
  metrics = ev.score(records)
  expected = caption.caption_metrics(
    [r["prediction"] for r in records], [r["references"] for r in records], tokenizer="python"
  )
  assert metrics["cider"] == pytest.approx(expected["cider"])
  assert metrics["bleu4"] == pytest.approx(expected["bleu4"])


def test_entailment_accuracy_matches_hand_computation(setup):
  ev = _evaluator(setup, "entailment")
  metrics = _run(setup, ev, "run")
  records = _run(setup, ev, "predictions")
  assert metrics["val/examples"] == NUM
  assert all(r["references"][0] in ("yes", "no", "maybe") for r in records)
  hand = np.mean(
    [accuracy.entailment_label(r["prediction"]) == r["references"][0] for r in records]
  )
  assert metrics["val/accuracy"] == pytest.approx(hand)
  kinds = {r["kind"] for r in records}
  assert kinds <= set(shapes.HYPOTHESIS_TYPES)
  assert sorted(k for k in metrics if k.startswith("val/accuracy/")) == sorted(
    f"val/accuracy/{k}" for k in kinds
  )


def test_scorers_on_known_predictions():
  rec = lambda p, refs: dict(text="", prediction=p, references=refs)
  out = generative.score_vqa(
    [rec("Two.", ["2"]), rec("red", ["blue"]), rec("yes", ["yes"] * 2 + ["no"] * 8)], {}
  )
  # 1 + 0 + leave-one-out with 2 of 10 matching: (8 * 2/3 + 2 * 1/3) / 10 = 0.6.
  assert out["accuracy"] == pytest.approx((1 + 0 + 0.6) / 3)
  assert out["exact_match"] == pytest.approx(2 / 3)
  out = generative.score_entailment(
    [rec("Yes", ["yes"]), rec("maybe", ["no"]), rec("a dog", ["maybe"]), rec("no", ["no"])], {}
  )
  assert out["accuracy"] == 0.5
  assert not any("/" in k for k in out)  # records without a kind: no per-kind figures
  kinds = ["count", "count", "relation", "relation"]
  pairs = [("yes", "yes"), ("no", "yes"), ("no", "no"), ("no", "yes")]
  out = generative.score_entailment(
    [dict(rec(p, [gold]), kind=k) for (p, gold), k in zip(pairs, kinds)], {}
  )
  assert out == {"accuracy": 0.5, "accuracy/count": 0.5, "accuracy/relation": 0.5}
  out = generative.score_vqa([dict(rec("two", ["two"]), kind="count_colour")], {})
  assert out["accuracy/count_colour"] == 1.0
  caps = ["a red circle", "two shapes on a grey background", "a blue square above a circle"]
  right = generative.score_caption([rec(c, [c]) for c in caps], dict(caption_tokenizer="python"))
  wrong = generative.score_caption(
    [rec(c, [d]) for c, d in zip(caps, caps[1:] + caps[:1])], dict(caption_tokenizer="python")
  )
  assert right["bleu4"] == pytest.approx(1.0) and right["cider"] > 5 * max(wrong["cider"], 0.1)


def test_bad_eval_configs_name_the_key(setup):
  mesh, trainer, _ = setup
  for evals, message in [
    (dict(beam_size=0), "config.evals.val.beam_size=0"),
    (dict(max_decode_len=99), "config.evals.val.max_decode_len=99"),
    (dict(batch_size=12), "config.evals.val.batch_size=12"),
  ]:
    with pytest.raises(ValueError, match=message):
      with jax.set_mesh(mesh):
        registry.make_evaluators(
          _config("vqa", **evals),
          model=trainer.model,
          mesh=mesh,
          param_shardings=trainer.state_sharding.params,
        )


def test_gather_objects_concatenates_every_process_in_order(monkeypatch):
  """Two processes simulated: each allgather stacks this process's array with a second
  process's (longer) payload, so the byte padding and per-process lengths are exercised."""
  other = [dict(text="q", prediction="ünïcode", references=["a", "b"])] * 3
  mine = [dict(text="", prediction="two", references=["2"])]
  calls = []

  def allgather(x):
    calls.append(x)
    if len(calls) == 1:  # sizes
      other_size = len(generative.json.dumps(other).encode("utf-8"))
      return np.stack([x, np.array([other_size], np.int64)])
    payload = np.frombuffer(generative.json.dumps(other).encode("utf-8"), np.uint8)
    padded = np.zeros_like(x)
    padded[: payload.size] = payload
    return np.stack([x, padded])

  monkeypatch.setattr(generative.jax, "process_count", lambda: 2)
  monkeypatch.setattr(generative.multihost_utils, "process_allgather", allgather)
  assert generative._gather_objects(mine) == mine + other  # pylint: disable=protected-access
