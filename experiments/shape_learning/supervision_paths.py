r"""How fast the demo's vision tower learns to tell shapes apart, by supervision path.

    python -m experiments.shape_learning.supervision_paths          # demo model, 600 steps
    python -m experiments.shape_learning.supervision_paths --fusions=jarl,concat,cross_attention
    python -m experiments.shape_learning.supervision_paths --quick  # tiny model, a few steps

The task: count each shape of a `shapes` scene (circles, squares, triangles, diamonds;
0-6 each). It needs shape identity and nothing else (no binding, no relations), the skill
the fine-tuned demo lacked (README.md here). Both arms start from the same freshly
initialised ViT of configs/pretrain.py:demo and train with the demo's optimizer settings
on the same images:
  pooled    ViT -> mean over the patch tokens -> one linear 7-way head per shape;
  <fusion>  the whole JARL model (towers, that fusion, decoder): the encoder text asks
            "how many circles squares triangles diamonds", the target is the four count
            words ("one zero two zero"), trained on jarl.losses' objective with the
            auxiliary losses off (the decoder's token cross-entropy alone).
Accuracy: the fraction of (validation scene, shape) counts exactly right (the decoder
arms: every piece of the count word right under teacher forcing).

Prints the accuracies every --eval_every steps and, as the last line, one JSON object
with the final accuracies and `<fusion>_over_pooled`, each arm's accuracy / pooled's.
"""

import argparse
import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import pretrain
from jarl import batch as batch_lib
from jarl import losses, optim
from jarl.data import pipeline, shapes, tokenizer
from jarl.models import fusion as fusion_lib
from jarl.models import model as model_lib

QUESTION = "how many " + " ".join(s + "s" for s in shapes.SHAPES)
MAX_COUNT = len(shapes.NUMBERS)  # 0..6
FUSION_TYPES = tuple(fusion_lib.FUSIONS)
QUICK_MODEL = dict(
  vision=dict(width=32, depth=2, mlp_dim=64, num_heads=2),
  text=dict(width=32, depth=1, mlp_dim=64, num_heads=2),
  fusion=dict(
    width=32, num_heads=2, mlp_dim=64, num_tokens=4, vision_taps=(1, 2), text_taps=(1, 1)
  ),
  decoder=dict(width=32, depth=1, num_heads=2, mlp_dim=64),
)


def scene_counts(split: str, index: int) -> np.ndarray:
  """[4] int: how many of each shape (SHAPES order) scene `index` holds."""
  objs = shapes.sample_scene(split, index)
  return np.array([sum(o.shape == s for o in objs) for s in shapes.SHAPES], np.int32)


def make_batch(tok, config, split: str, start: int, n: int) -> dict:
  """Images, counts, tokenised text and count-word masks of scenes [start, start + n)."""
  size, text_len, target_len = (
    config.data.image_size,
    config.model.text.max_len,
    config.model.decoder.max_len,
  )
  image = np.stack(
    [
      pipeline.preprocess_image(shapes.example(split, i, size)["image"], size, None)[0]
      for i in range(start, start + n)
    ]
  )
  counts = np.stack([scene_counts(split, i) for i in range(start, start + n)])
  text = np.tile(tok.encode_fixed(QUESTION, text_len, add_eos=False)[0], (n, 1))
  target = np.stack(
    [
      tok.encode_fixed(" ".join(shapes.NUMBERS[c] for c in row), target_len, add_eos=True)[0]
      for row in counts
    ]
  )
  # [n, 4, target_len] bool: which target positions hold each shape's count word.
  word_mask = np.zeros(counts.shape + (target_len,), bool)
  for k, row in enumerate(counts):
    pos = 0
    for j, c in enumerate(row):
      width = len(tok.encode(shapes.NUMBERS[c]))
      word_mask[k, j, pos : pos + width] = True
      pos += width
    if target[k, pos] != tok.eos_id:  # the words' pieces must tile the target
      raise ValueError(
        f"tokenizer {config.data.tokenizer}: the count words of {row} do "
        f"not encode to their pieces one after another"
      )
  return {
    name: jnp.asarray(v)
    for name, v in dict(
      image=image, counts=counts, text=text, target=target, word_mask=word_mask
    ).items()
  }


def demo_optimizer_step(loss_fn, config, steps: int):
  """(opt, step) with the demo's own optimizer over `steps` (warmup + cosine, AdamW on
  kernels only, gradient clipping) and a jitted step(params, opt_state, batch) ->
  (params, opt_state, loss) of loss_fn(params, batch)."""
  opt = optim.make_optimizer(
    config.optimizer, optim.learning_rate_schedule(config.optimizer, steps)
  )

  @jax.jit
  def step(params, state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  return opt, step


def train_arm(name, params, loss_fn, correct_fn, args, tok, config, val):
  """Trains `params` on fresh train scenes; returns the validation accuracy at the end."""
  opt, step = demo_optimizer_step(loss_fn, config, args.steps)
  state = opt.init(params)
  accuracy = jax.jit(correct_fn)
  start, acc = time.time(), 0.0
  for s in range(args.steps):
    batch = make_batch(tok, config, "train", s * args.batch_size, args.batch_size)
    params, state, loss = step(params, state, batch)
    if (s + 1) % args.eval_every == 0 or s + 1 == args.steps:
      acc = float(accuracy(params, val))
      print(
        f"{name:16s} step {s + 1:5d} loss {float(loss):.3f} count accuracy {acc:.3f} "
        f"({time.time() - start:.0f} s)",
        flush=True,
      )
  return acc


def pooled_arm(model, init_params):
  """ViT -> mean of the top tokens -> [4, 7] logits; returns (params, loss, correct)."""
  head = nn.Dense(len(shapes.SHAPES) * MAX_COUNT)
  width = model.config.vision.width
  params = dict(
    vision=init_params["vision"], head=head.init(jax.random.key(1), jnp.zeros((1, width)))["params"]
  )

  def logits(p, image):
    top, _ = model.apply(
      {"params": {"vision": p["vision"]}}, image, method=lambda m, x: m.vision(x)
    )
    return head.apply({"params": p["head"]}, top.mean(1)).reshape(-1, len(shapes.SHAPES), MAX_COUNT)

  def loss(p, b):
    return optax.softmax_cross_entropy_with_integer_labels(
      logits(p, b["image"]), b["counts"]
    ).mean()

  def correct(p, b):
    return (logits(p, b["image"]).argmax(-1) == b["counts"]).mean()

  return params, loss, correct


def decoder_arm(model, params, config):
  """The whole model, teacher-forced on the count words; returns (params, loss, correct).

  The loss is jarl.losses' objective of `config` with every auxiliary weight at 0: the
  arm asks what the decoder's signal alone teaches the ViT (the batches carry no tags).
  """
  objective = losses.make_objective(config)
  if objective.aux:
    raise ValueError(
      f"decoder arms train the decoder loss alone; config.losses turns on {list(objective.aux)}"
    )

  def apply(p, b):
    return model.apply({"params": p}, b["image"], b["text"], b["target"])

  def loss(p, b):
    return objective.mean(
      *apply(p, b), dict(target=b["target"], mask=jnp.ones(b["target"].shape[:1], bool))
    )[0]

  def logits(p, b):
    return apply(p, b)[0]

  def correct(p, b):
    right = logits(p, b).argmax(-1) == b["target"]  # [n, L]
    # A count word is right when all its pieces are: no wrong piece inside its mask.
    return (~(b["word_mask"] & ~right[:, None, :]).any(-1)).mean()

  return params, loss, correct


def add_run_flags(parser):
  """--steps, --batch_size, --eval_every, --eval_scenes, --quick (shared with
  experiments/shape_learning/tagging_objectives.py)."""
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--eval_every", type=int, default=100)
  parser.add_argument("--eval_scenes", type=int, default=256)
  parser.add_argument("--quick", action="store_true", help="tiny model, 4 steps")


def demo_config(parser, args):
  """configs/pretrain.py:demo (QUICK_MODEL under --quick) after checking the flags of
  `add_run_flags`; --quick also shortens the run to 4 steps of batch 8."""
  if min(args.steps, args.eval_every, args.eval_scenes, args.batch_size) < 1:
    parser.error("--steps, --eval_every, --eval_scenes and --batch_size must be >= 1")
  config = pretrain.get_config("demo")
  # The arms train on their own targets (counts, tags), never on the demo's caption tags.
  config.losses.tag_weight = 0.0
  if args.quick:
    args.steps, args.eval_every, args.eval_scenes, args.batch_size = 4, 2, 16, 8
    for part, values in QUICK_MODEL.items():
      config.model[part].update(values)
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--fusions",
    default="jarl",
    help=f"comma-separated fusion types for the decoder arms, from {FUSION_TYPES}",
  )
  parser.add_argument("--stem", default=None, help="vision stem (default: the demo's)")
  add_run_flags(parser)
  args = parser.parse_args()
  fusions = [f for f in args.fusions.split(",") if f]
  for f in fusions:
    if f not in FUSION_TYPES:
      parser.error(f"--fusions: unknown fusion {f!r}; choose from {FUSION_TYPES}")
  config = demo_config(parser, args)
  if args.stem:
    config.model.vision.stem = args.stem
  tok = tokenizer.load(config.data.tokenizer)
  val = make_batch(tok, config, "validation", 0, args.eval_scenes)
  results = {}
  for name in ["pooled"] + fusions:
    config.model.fusion.type = "jarl" if name == "pooled" else name
    model = model_lib.build(config)
    # Same seed for every arm: the pooled arm's ViT starts where the others' do.
    params = nn.unbox(
      model.init(jax.random.key(config.seed), **batch_lib.dummy_batch(config))["params"]
    )
    arm = pooled_arm(model, params) if name == "pooled" else decoder_arm(model, params, config)
    results[name] = train_arm(name, *arm, args, tok, config, val)
  summary = dict(
    steps=args.steps,
    batch_size=args.batch_size,
    eval_scenes=args.eval_scenes,
    stem=config.model.vision.stem,
    accuracy=results,
  )
  summary.update({f"{f}_over_pooled": results[f] / max(results["pooled"], 1e-9) for f in fusions})
  print(json.dumps(summary))


if __name__ == "__main__":
  main()
