r"""What configs/finetune_{vqa,caption,entailment}.py share: fine-tuning a pretrained JARL.

The model config is configs/pretrain.py's for the same scale (`demo` -> pretrain `demo`,
full-scale -> pretrain `base`), so the checkpoint named by `config.init_from` loads leaf
for leaf. `init_from` takes a pretraining workdir (its latest step is used) or one step
directory `<workdir>/checkpoints/<step>`; only parameters are loaded (the optimizer and
data state start fresh). Empty `init_from` trains from random initialisation.

Evaluation decodes answers with the model's greedy search (`beam_size` in each
`config.evals.<name>` for beam search) and writes `<eval name>/<metric>`; see
jarl/evaluation/generative.py. Demo variants report the `shapes` validation split and
the compositional `shapes:heldout` split (colour/shape pairs never seen in training)
separately, as `val/...` and `heldout/...`.
"""
import importlib.util
import os


def sibling(name: str):
  """configs/<name>.py as a module (configs/ is not a package; config_flags loads by path)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"jarl_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def make(task: str, variant: str, *, variants: tuple, demo: dict, full: dict):
  """The fine-tuning config of `task` at `variant`.

  demo / full: total_steps, learning_rate, warmup_steps, batch_size, eval_every, and for
  full: train (source spec) and evals ({eval name: source spec}).
  """
  if variant not in variants:
    raise ValueError(f"configs/finetune_{task}.py:{variant}: unknown variant; choose from "
                     f"{variants}")
  is_demo = variant == "demo"
  c = sibling("pretrain").get_config("demo" if is_demo else "base")
  c.variant = variant
  s = demo if is_demo else full
  c.data.sources = [dict(name=task, source="shapes:train" if is_demo else s["train"],
                         task=task, weight=1.0)]
  c.data.sampling.policy = "static"  # one source: nothing to adapt
  # Pretraining's tagging loss stays off: a task's target (an answer, a label) names only
  # part of what the image shows. The model keeps its tag head (config.model.num_tags),
  # so pretraining checkpoints load leaf for leaf; nothing trains or reads it.
  c.data.tags = ()
  c.losses.tag_weight = 0.0
  c.global_batch_size = s["batch_size"]
  c.total_steps = s["total_steps"]
  c.optimizer.learning_rate = s["learning_rate"]
  c.optimizer.warmup_steps = s["warmup_steps"]
  c.ckpt_every_steps = s["total_steps"] if is_demo else 1000
  c.keep_checkpoints = 1 if is_demo else 3
  c.log_every_steps = 50 if is_demo else 100
  c.init_from = ""  # pretraining workdir or step dir; see the module docstring
  eval_sources = ({"val": "shapes:validation", "heldout": "shapes:heldout"} if is_demo
                  else s["evals"])
  c.evals = {}
  for name, source in eval_sources.items():
    c.evals[name] = dict(
        type=task, task=task, source=source, every_steps=s["eval_every"],
        # demo: 1024 scenes (one question/hypothesis each); full: the whole split.
        num_examples=1024 if is_demo else 0, batch_size=64 if is_demo else 1024,
        beam_size=1, max_decode_len=s["max_decode_len"])
  return c
