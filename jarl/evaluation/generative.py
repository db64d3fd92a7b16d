"""Evaluators `vqa`, `caption`, `entailment`: decode answers with the model, then score them.

config.evals.<name> = dict(type="vqa" | "caption" | "entailment", source=..., every_steps=N,
                           num_examples=E (0 = the whole split), batch_size=B,
                           task=<defaults to type>, beam_size=1, max_decode_len=<target_len>,
                           length_penalty=0.6, caption_tokenizer="auto")
Writes (all in [0, 1] except CIDEr, which is on the COCO scale):
  vqa:        <name>/accuracy (VQA v2 leave-one-out score), <name>/exact_match
              (normalised prediction equals one of the references)
  caption:    <name>/cider (CIDEr-D), <name>/bleu1 .. <name>/bleu4
  entailment: <name>/accuracy
and <name>/examples (the number of examples scored: padding rows never count). vqa and
entailment also write <name>/accuracy/<kind> for each kind of question or hypothesis the
split's records name (`shapes`: count_colour, ..., relation; jarl/data/shapes.py), as the
official VQA evaluator reports accuracy per question and answer type.

Decoding is the model's own greedy or beam search (jarl.models.decode.generate) under
jax.jit on the trainer's mesh, the batch sharded like training batches; each process
detokenises its own rows, and the (prediction, references) pairs of all processes are
gathered on every host so all of them write the same numbers. `predictions(params)`
returns those pairs (with the encoder text) for inspection; `score` is a pure function of
them.
"""

import functools
import json

import jax
from jax.experimental import multihost_utils
import numpy as np

from jarl import sharding
from jarl.data import pipeline
from jarl.data import tokenizer as tokenizer_lib
from jarl.evaluation import accuracy, caption, vqa
from jarl.models import decode

KEYS = ("image", "text")


def _gather_objects(items: list) -> list:
  """Concatenates every process's JSON-able list, in process order (identity on one host)."""
  if jax.process_count() == 1:
    return list(items)
  data = np.frombuffer(json.dumps(items).encode("utf-8"), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
  padded = np.zeros([int(sizes.max())], np.uint8)
  padded[: data.size] = data
  everything = np.asarray(multihost_utils.process_allgather(padded))  # [processes, max]
  out = []
  for p in range(everything.shape[0]):
    out += json.loads(bytes(everything[p, : int(sizes[p, 0])]).decode("utf-8"))
  return out


class GenerativeEvaluator:
  """Decodes every example of the split exactly once and scores the texts with `scorer`
  (one of SCORERS: records, eval_config -> {metric: value})."""

  def __init__(
    self, name: str, eval_config: dict, *, config, model, mesh, param_shardings, kind: str
  ):
    self.name, self.kind = name, kind
    eval_config = dict(eval_config)
    eval_config.setdefault("task", kind)
    self.every_steps = int(eval_config["every_steps"])
    self.eval_config = eval_config
    batch_size = int(eval_config["batch_size"])
    shards = sharding.batch_shards(mesh, config.logical_axis_rules)
    if batch_size % shards or batch_size % jax.process_count():
      raise ValueError(
        f"config.evals.{name}.batch_size={batch_size}: must divide by the "
        f"{shards} batch shards of config.mesh and by the "
        f"{jax.process_count()} processes"
      )
    self.beam_size = int(eval_config.get("beam_size", 1))
    self.max_len = int(eval_config.get("max_decode_len", 0) or config.data.target_len)
    if not 1 <= self.max_len <= config.model.decoder.max_len:
      raise ValueError(
        f"config.evals.{name}.max_decode_len={self.max_len}: must be in "
        f"[1, config.model.decoder.max_len={config.model.decoder.max_len}]"
      )
    if self.beam_size < 1:
      raise ValueError(f"config.evals.{name}.beam_size={self.beam_size}: must be >= 1")
    length_penalty = float(eval_config.get("length_penalty", 0.6))
    self.tokenizer = tokenizer_lib.load(config.data.tokenizer)
    self._data = pipeline.make_eval_data(
      config.data,
      eval_config,
      batch_size=batch_size,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    self._batch_sharding = sharding.batch_sharding(mesh, config.logical_axis_rules)

    def generate(params, batch):
      tokens, _ = decode.generate(
        model,
        params,
        batch["image"],
        batch["text"],
        max_len=self.max_len,
        eos_id=self.tokenizer.eos_id,
        beam_size=self.beam_size,
        length_penalty=length_penalty,
      )
      return tokens

    self._decode = jax.jit(
      generate,
      in_shardings=(param_shardings, self._batch_sharding),
      out_shardings=self._batch_sharding,
    )

  def predictions(self, params) -> list[dict]:
    """[{"text": encoder text, "prediction": str, "references": list[str], "kind": str}]
    in split order (process by process), one per real example."""
    local = []
    for batch in self._data:
      tokens = self._decode(
        params, sharding.global_batch({k: batch[k] for k in KEYS}, self._batch_sharding)
      )
      rows = sharding.local_rows(tokens)
      for r in np.flatnonzero(batch["mask"]):
        local.append(
          dict(
            text=self.tokenizer.decode(batch["text"][r]),
            prediction=self.tokenizer.decode(rows[r]),
            references=[str(a) for a in batch["answers"][r]],
            kind=str(batch["kinds"][r]),
          )
        )
    return _gather_objects(local)

  def score(self, records: list[dict]) -> dict[str, float]:
    """Metric name (without the evaluator's prefix) -> value, from `predictions` records."""
    return SCORERS[self.kind](records, self.eval_config)

  def run(self, params) -> dict[str, float]:
    records = self.predictions(params)
    if not records:
      raise ValueError(
        f"config.evals.{self.name}: no usable example in "
        f"{self.eval_config['source']!r} (skipped: {self._data.skipped})"
      )
    out = {f"{self.name}/{k}": float(v) for k, v in self.score(records).items()}
    out[f"{self.name}/examples"] = float(len(records))
    return out


def by_kind(records: list[dict], accuracy_fn) -> dict[str, float]:
  """{"accuracy/<kind>": accuracy_fn(records of that kind)} for every named kind."""
  groups = {}
  for r in records:
    if r.get("kind"):
      groups.setdefault(r["kind"], []).append(r)
  return {f"accuracy/{kind}": accuracy_fn(rs) for kind, rs in sorted(groups.items())}


def _vqa_accuracy(records: list[dict]) -> float:
  # "auto": the official rules on VQA v2's 10 answers; shapes/GQA have one reference,
  # which the official threshold always scores 0 (see jarl.evaluation.vqa).
  return vqa.vqa_accuracy(
    [r["prediction"] for r in records], [r["references"] for r in records], rules="auto"
  )


def score_vqa(records: list[dict], eval_config: dict) -> dict[str, float]:
  del eval_config  # no options
  preds = [r["prediction"] for r in records]
  refs = [r["references"] for r in records]
  return dict(
    accuracy=_vqa_accuracy(records),
    exact_match=accuracy.exact_match_accuracy(preds, refs),
    **by_kind(records, _vqa_accuracy),
  )


def score_caption(records: list[dict], eval_config: dict) -> dict[str, float]:
  metrics = caption.caption_metrics(
    [r["prediction"] for r in records],
    [r["references"] for r in records],
    tokenizer=eval_config.get("caption_tokenizer", "auto"),
  )
  return {k: metrics[k] for k in ("cider", "bleu1", "bleu2", "bleu3", "bleu4")}


def _entailment_accuracy(records: list[dict]) -> float:
  # One gold label per example: tasks.entailment's references are [label].
  return accuracy.entailment_accuracy(
    [r["prediction"] for r in records], [r["references"][0] for r in records]
  )


def score_entailment(records: list[dict], eval_config: dict) -> dict[str, float]:
  del eval_config  # no options
  return dict(accuracy=_entailment_accuracy(records), **by_kind(records, _entailment_accuracy))


SCORERS = {"vqa": score_vqa, "caption": score_caption, "entailment": score_entailment}


def evaluator_for(kind: str):
  """The registry entry for `kind`: an evaluator class with its scorer bound."""
  return functools.partial(GenerativeEvaluator, kind=kind)
