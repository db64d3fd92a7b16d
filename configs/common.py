r"""What the configs share: the `get_config` argument parser and the fine-tuning recipe.

`--config=configs/<file>.py:<arg>` hands `<arg>` to that file's `get_config`; every config
here reads it as `<variant>[,<key>=<value>...]`, e.g. `configs/pretrain.py:large,fsdp=8`.

Your own data, one key each (every config here; `own_data`):
  source=arrayrecord:/data/*.arrayrecord   every training source and the validation set
           (shards of jarl.tools.convert; or tfds:<name>:<split>); switches the `shapes`-
           only image tagging off. A fine-tune trains and validates on it.
  tokenizer=/data/spm.model   its SentencePiece model (python -m jarl.tools.make_tokenizer);
           config.model.vocab_size is read from the file.
  text_len=N, target_len=M    the encoder text and decoder target lengths, data and model
           together (make_tokenizer prints the ones that hold 99% of your text).
  python -m jarl.main --workdir=/tmp/mine \
      --config=configs/pretrain.py:demo,source=arrayrecord:/data/*.arrayrecord,tokenizer=/data/spm.model,text_len=16,target_len=24

Sizes (the variants), smallest first:
  tiny   the tests' model: same code paths as demo, compiles in seconds (16 px, patch stem,
         no tagging loss, a few steps).
  bench  the accuracy benchmarks' runs (benchmarks/shapes_runs.py): the demo model with the
         paper's patch stem and no tagging loss, trained for fewer steps.
  demo   CPU-sized model on the built-in `shapes` world; trains in minutes on 2 cores.
  base   paper scale (ViT-B/16 at 224 px).
  large  ViT-L/14, L-sized text tower, fusion and decoder (pretraining only).
"""

import os

import ml_collections

from jarl.data import tokenizer

# Sizes built on the demo model and the `shapes` world (tiny and bench are demo overrides).
SHAPES_SIZES = ("tiny", "bench", "demo")
FINETUNE_VARIANTS = (*SHAPES_SIZES, "base")


def _convert(key: str, text: str, default):
  """`text` as the type of `default` (bool, int, float or str)."""
  if isinstance(default, bool):
    if text.lower() not in ("true", "false"):
      raise ValueError(f"{key}={text!r}: expected true or false")
    return text.lower() == "true"
  if isinstance(default, (int, float)):
    try:
      return type(default)(text)
    except ValueError:
      raise ValueError(f"{key}={text!r}: expected {type(default).__name__}") from None
  return text


# The one-key data switches every config takes (`own_data`); "" / 0 keep the config's own.
OWN_DATA = dict(source="", tokenizer="", text_len=0, target_len=0)

# Placeholder bucket of base/large's data paths; `bucket=gs://...` in the config arg sets it.
BUCKET = "gs://BUCKET"


def parse_arg(
  arg: str | None, *, variants: tuple[str, ...] = (), **defaults
) -> ml_collections.ConfigDict:
  """'large,fsdp=8' -> ConfigDict(variant='large', fsdp=8, <other defaults>).

  An item without '=' sets `variant` (which must then be in `defaults`, and in `variants`
  when given); every other item is `key=value` with `key` one of `defaults` and the value
  converted to the default's type. `arg` None or "" leaves every default.
  """
  out = ml_collections.ConfigDict(defaults)
  for item in (arg or "").split(","):
    if not item:
      continue
    key, eq, text = item.partition("=")
    if not eq:
      key, text = "variant", item
    if key not in defaults:
      raise ValueError(
        f"config argument {arg!r}: unknown key {key!r} in {item!r}; choose from {sorted(defaults)}"
      )
    try:
      out[key] = _convert(key, text, defaults[key])
    except ValueError as e:
      raise ValueError(f"config argument {arg!r}: {e}") from None
  if variants and out.get("variant") not in variants:
    raise ValueError(
      f"config argument {arg!r}: unknown variant {out.get('variant')!r}; choose from {variants}"
    )
  return out


def own_data(c: ml_collections.ConfigDict, arg: ml_collections.ConfigDict) -> None:
  """Applies `arg`'s data switches (OWN_DATA; the module docstring) to the config `c`.

  `c.data_arg` keeps them as given, for the command a run suggests next (jarl/train.py).
  """
  c.data_arg = ",".join(f"{k}={arg[k]}" for k in OWN_DATA if arg[k])
  if arg.source:
    for s in c.data.sources:
      s["source"] = arg.source
    for e in c.get("evals", {}).values():
      e["source"] = arg.source
    if not arg.source.startswith("shapes:"):
      # The tag words name the demo's shapes; a caption of a photo names none of them.
      c.data.tags = ()
      c.losses.tag_weight = 0.0
  if arg.tokenizer:
    c.data.tokenizer = arg.tokenizer
    path = tokenizer.BUILTIN.get(arg.tokenizer, arg.tokenizer)
    if "://" not in path:  # a remote file is read (and checked) by the trainer only
      if not os.path.isfile(path):
        raise ValueError(f"config argument tokenizer={arg.tokenizer}: no such file")
      c.model.vocab_size = tokenizer.load(arg.tokenizer).vocab_size
  if arg.text_len:
    c.data.text_len = c.model.text.max_len = arg.text_len
  if arg.target_len:
    c.data.target_len = c.model.decoder.max_len = arg.target_len


def finetune(arg: str | None, task: str, *, demo: dict, base: dict) -> ml_collections.ConfigDict:
  r"""The fine-tuning config of `task`, built on the pretraining config of the same size.

  `arg`: `<variant>[,bucket=...][,<OWN_DATA key>=...]`; with `source=` the task trains and
  validates (as `val/...`) on that source instead of the size's own data.

  The model config is pretraining's (configs/pretrain.py at `pre.variant`), so the
  checkpoint named by `config.init_from` loads leaf for leaf. `init_from` takes a
  pretraining workdir (its latest step is used) or one step directory
  `<workdir>/checkpoints/<step>`; only parameters are loaded (the optimizer and data state
  start fresh). `init_from` must be set: "none" trains from random initialisation.

  Evaluation decodes answers with the model's greedy search (`beam_size` in each
  `config.evals.<name>` for beam search) and writes `<eval name>/<metric>`; see
  jarl/evaluation/generative.py. The shapes sizes report the `shapes` validation split and
  the compositional `shapes:heldout` split (colour/shape pairs never seen in training)
  separately, as `val/...` and `heldout/...`.

  demo / base: total_steps, learning_rate, warmup_steps, batch_size, eval_every,
  max_decode_len, and for base: train (source spec) and evals ({eval name: source spec}).
  tiny and bench derive from demo (`_shapes_schedule`).
  """
  # Imported here: configs/pretrain.py imports this module.
  from configs import pretrain  # pylint: disable=import-outside-toplevel

  arg = parse_arg(arg, variants=FINETUNE_VARIANTS, variant="base", bucket=BUCKET, **OWN_DATA)
  # pretrain.py parses the same items (its own keys include every one of these).
  pre = pretrain.get_config(",".join(f"{k}={v}" for k, v in arg.items()))
  variant = pre.variant
  shapes_world = variant in SHAPES_SIZES
  s = _shapes_schedule(variant, demo, pre) if shapes_world else base
  c = pre
  c.stage = "finetune"
  train_source = arg.source or ("shapes:train" if shapes_world else s["train"])
  c.data.sources = [dict(name=task, source=train_source, task=task, weight=1.0)]
  c.data.sampling.policy = "static"  # one source: nothing to adapt
  # Pretraining's tagging loss stays off: a task's target (an answer, a label) names only
  # part of what the image shows. config.data.tags stays, so the model keeps its tag head
  # and pretraining checkpoints load leaf for leaf; nothing trains or reads it.
  c.losses.tag_weight = 0.0
  c.global_batch_size = s["batch_size"]
  c.total_steps = s["total_steps"]
  c.optimizer.learning_rate = s["learning_rate"]
  c.optimizer.warmup_steps = s["warmup_steps"]
  c.ckpt_every_steps = s["total_steps"] if shapes_world else 1000
  c.keep_checkpoints = 1 if shapes_world else 3
  c.log_every_steps = s.get("log_every", 50 if shapes_world else 100)
  # The pretraining workdir or step dir (see the docstring above), required: "none" trains
  # from random initialisation on purpose (jarl/config_checks.py, check_init_from).
  c.init_from = ""
  if arg.source:
    eval_sources = {"val": arg.source}
  elif shapes_world:
    eval_sources = {"val": "shapes:validation", "heldout": "shapes:heldout"}
  else:
    eval_sources = s["evals"]
  c.evals = {}
  for name, source in eval_sources.items():
    c.evals[name] = dict(
      type=task,
      task=task,
      source=source,
      every_steps=s["eval_every"],
      # shapes sizes: 1024 examples (shapes: scenes, one question/hypothesis each), also of
      # a `source=`; base: the whole split.
      num_examples=s.get("eval_examples", 1024) if shapes_world else 0,
      batch_size=s.get("eval_batch_size", 64) if shapes_world else 1024,
      beam_size=1,
      max_decode_len=s["max_decode_len"],
    )
  return c


def _shapes_schedule(variant: str, demo: dict, pre: ml_collections.ConfigDict) -> dict:
  """The fine-tuning schedule of a shapes size: demo's, shortened for bench and tiny."""
  if variant == "demo":
    return demo
  if variant == "bench":
    # 500 steps keep a benchmark's 9 pretrain + fine-tune runs within ~30 min on 2 cores.
    steps = 500
    return dict(
      demo, total_steps=steps, warmup_steps=min(demo["warmup_steps"], steps // 10), eval_every=steps
    )
  # tiny: the tests' few steps and examples, decoding no longer than the tiny decoder.
  return dict(
    demo,
    total_steps=pre.total_steps,
    learning_rate=pre.optimizer.learning_rate,
    warmup_steps=pre.optimizer.warmup_steps,
    batch_size=pre.global_batch_size,
    eval_every=pre.total_steps,
    eval_examples=16,
    eval_batch_size=8,
    log_every=pre.log_every_steps,
    max_decode_len=min(demo["max_decode_len"], pre.model.decoder.max_len),
  )
