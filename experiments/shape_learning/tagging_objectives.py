r"""Which tag list teaches the demo's vision tower object shape: a pooled-head comparison.

    python -m experiments.shape_learning.tagging_objectives          # demo ViT, 600 steps per arm
    python -m experiments.shape_learning.tagging_objectives --quick  # tiny model, a few steps

Every arm trains the same freshly initialised ViT of configs/pretrain.py:demo, with the
demo's optimizer settings, through the image tagging head and loss of pretraining
(jarl/models/tagging.py, jarl.losses.tag_cross_entropy) on the inventory caption of
`shapes` training scenes ("a red circle, two blue squares and a small green diamond").
Only the tag list differs:
  shapes          the four shape nouns (the demo's config.data.tags);
  shapes_colours  the shape nouns and the six colour words;
  all_words       every word the captions use (what a decoder's caption loss asks for).
Score: within-image shape ranking on validation scenes: over every (present shape,
absent shape) pair of a scene, the fraction where the present shape's logit is higher
(0.5 = chance, 1 = the ViT tells the scene's shapes apart). Prints each arm's score every
--eval_every steps and, as the last line, one JSON object with the final scores and
`shapes_over_all_words`.
"""

import argparse
import json
import re
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments.shape_learning import supervision_paths
from jarl import batch as batch_lib
from jarl import losses
from jarl.data import pipeline, shapes
from jarl.models import model as model_lib
from jarl.models import tagging


def caption_words(scenes: int = 2000) -> tuple:
  """Every word of the training inventory captions, plurals folded into their singular
  (tags_in matches "circles" to "circle"), sorted."""
  words = set()
  for i in range(scenes):
    words.update(re.findall(r"[a-z0-9]+", shapes.example("train", i)["captions"][0]))
  return tuple(sorted(w for w in words if not (w.endswith("s") and w[:-1] in words)))


def make_batch(config, tags: tuple, split: str, start: int, n: int) -> dict:
  size = config.data.image_size
  image, labels, present = [], [], []
  for i in range(start, start + n):
    ex = shapes.example(split, i, size)
    image.append(pipeline.preprocess_image(ex["image"], size, None)[0])
    labels.append(pipeline.tags_in(ex["captions"][0], tags))
    objs = shapes.sample_scene(split, i)
    present.append([any(o.shape == s for o in objs) for s in shapes.SHAPES])
  return dict(
    image=jnp.asarray(np.stack(image)),
    tags=jnp.asarray(np.stack(labels)),
    present=jnp.asarray(np.array(present)),
  )


def shape_ranking(shape_logits, present):
  """shape_logits [B, 4], present [B, 4] bool -> fraction of (present, absent) pairs of a
  scene ranked right."""
  pairs = present[:, :, None] & ~present[:, None, :]
  right = (shape_logits[:, :, None] > shape_logits[:, None, :]) & pairs
  return jnp.sum(right) / jnp.maximum(jnp.sum(pairs), 1)


def train_arm(name, tags, vision_params, model, config, args):
  head = tagging.TagHead(len(tags))
  width = model.config.vision.width
  params = dict(
    vision=vision_params,
    head=nn.unbox(head.init(jax.random.key(1), jnp.zeros((1, 1, width))))["params"],
  )
  shape_index = jnp.array([tags.index(s) for s in shapes.SHAPES])

  def logits(p, image):
    _, out = model.apply(
      {"params": {"vision": p["vision"]}}, image, method=lambda m, x: m.vision(x)
    )
    top = out[f"depth_{model.config.fusion.vision_taps[-1]}"]
    return head.apply({"params": p["head"]}, top)

  def loss(p, b):
    return losses.tag_cross_entropy(
      logits(p, b["image"]), b["tags"], jnp.ones(b["tags"].shape[:1], bool)
    )

  opt, step = supervision_paths.demo_optimizer_step(loss, config, args.steps)
  state = opt.init(params)
  score = jax.jit(lambda p, b: shape_ranking(logits(p, b["image"])[:, shape_index], b["present"]))
  val = make_batch(config, tags, "validation", 0, args.eval_scenes)
  start, result = time.time(), 0.0
  for s in range(args.steps):
    params, state, value = step(
      params, state, make_batch(config, tags, "train", s * args.batch_size, args.batch_size)
    )
    if (s + 1) % args.eval_every == 0 or s + 1 == args.steps:
      result = float(score(params, val))
      print(
        f"{name:15s} ({len(tags):2d} tags) step {s + 1:5d} loss {float(value):.3f} "
        f"shape ranking {result:.3f} ({time.time() - start:.0f} s)",
        flush=True,
      )
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  supervision_paths.add_run_flags(parser)
  args = parser.parse_args()
  config = supervision_paths.demo_config(parser, args)
  model = model_lib.build(config)
  # One initialisation for every arm: each starts from the same ViT.
  vision = nn.unbox(
    model.init(jax.random.key(config.seed), **batch_lib.dummy_batch(config))["params"]
  )["vision"]
  arms = {
    "shapes": tuple(shapes.SHAPES),
    "shapes_colours": tuple(shapes.SHAPES) + tuple(shapes.COLOURS),
    "all_words": caption_words(200 if args.quick else 2000),
  }
  results = {
    name: train_arm(name, tags, vision, model, config, args) for name, tags in arms.items()
  }
  print(
    json.dumps(
      dict(
        steps=args.steps,
        batch_size=args.batch_size,
        eval_scenes=args.eval_scenes,
        shape_ranking=results,
        num_tags={k: len(v) for k, v in arms.items()},
        shapes_over_all_words=results["shapes"] / max(results["all_words"], 1e-9),
      )
    )
  )


if __name__ == "__main__":
  main()
