"""Evaluators by name: `config.evals.<name>.type` picks the class here."""

from jarl.evaluation import generative, loss

EVALUATORS = {
  "loss": loss.LossEvaluator,
  # Decode with the model's greedy/beam search, then score (generative.py).
  "vqa": generative.evaluator_for("vqa"),
  "caption": generative.evaluator_for("caption"),
  "entailment": generative.evaluator_for("entailment"),
}

REQUIRED_KEYS = ("type", "every_steps", "batch_size")


def make_evaluators(config, *, model, mesh, param_shardings) -> list:
  """One evaluator per entry of `config.evals`; bad entries fail here, before compiling."""
  evaluators = []
  for name, eval_config in sorted(config.evals.items()):
    eval_config = dict(eval_config)
    for key in REQUIRED_KEYS:
      if key not in eval_config:
        raise ValueError(f"config.evals.{name}: missing key '{key}'")
    kind = eval_config["type"]
    if kind not in EVALUATORS:
      raise ValueError(
        f"config.evals.{name}.type={kind!r}: unknown; choose from {sorted(EVALUATORS)}"
      )
    if int(eval_config["every_steps"]) < 1:
      raise ValueError(
        f"config.evals.{name}.every_steps={eval_config['every_steps']}: must be >= 1"
      )
    evaluators.append(
      EVALUATORS[kind](
        name, eval_config, config=config, model=model, mesh=mesh, param_shardings=param_shardings
      )
    )
  return evaluators
