r"""Answer questions about, caption, or test hypotheses on image files with a trained checkpoint.

Command line (prints one `<image path>\t<text>` line per image; `<empty>` for no text):
  python -m jarl.predict --checkpoint=/tmp/jarl_vqa --image=a.png [--image=b.jpg ...] \
      --question="how many red shapes are there" [--beam=4]
  python -m jarl.predict --checkpoint=/tmp/jarl_caption --image=a.png --task=caption
  python -m jarl.predict --checkpoint=/tmp/jarl_entailment --image=a.png --task=entailment \
      --question="there are exactly two red shapes"
One --question applies to every image; else give one per image, in order.

Python:
  p = Predictor.from_checkpoint("/tmp/jarl_vqa")        # workdir or checkpoints/<step>
  p.answer("a.png", "what colour is the circle")          # -> "red"
  p.answer(["a.png", "b.webp"], ["how many ...", "is there ..."])  # -> ["two", "no"]
  p.caption(["a.png", pil_image, uint8_array])             # -> [str, str, str]

`--checkpoint` is a training workdir (its latest step is used) or one of its
`checkpoints/<step>` directories; the model is rebuilt from the `config.json` that
jarl.train writes into the workdir, so nothing else is needed. Images may be JPEG, PNG,
GIF (first frame), WebP, ... in any mode (RGBA, greyscale, palette, CMYK) and any size:
they go through the data pipeline's own decode (`pipeline.load_image`, to RGB) and eval
preprocessing (`pipeline.preprocess_image`, resize to config.data.image_size), and the
encoder text is built by the same task functions as in training, so a prediction here
equals the one the evaluators make for that image and question. A missing, empty or
undecodable image, or a checkpoint without a usable config, prints one line naming the
file and exits with status 2. A task the checkpoint was not trained for (a caption from a
VQA fine-tune) still runs, after a warning naming the tasks it was trained for.
"""

import argparse
import contextlib
import functools
import json
import logging
import os
import shlex
import sys

from etils import epath
import flax.linen as nn
import jax
import ml_collections
import numpy as np
from PIL import Image

from jarl import batch as batch_lib
from jarl import checkpoint
from jarl.data import images, pipeline, tasks
from jarl.data import tokenizer as tokenizer_lib
from jarl.models import decode
from jarl.models import model as model_lib

TASKS = ("vqa", "caption", "entailment")
# Written by jarl.train.save_config (same name there). Not imported from jarl.train: that
# pulls in clu and with it TensorFlow, which would double the start-up time here.
CONFIG_FILE = "config.json"


class PredictError(Exception):
  """A bad input (image file, checkpoint, question) the user must fix; one line, names it."""


def checkpoint_tasks(config) -> list[str]:
  """The tasks a run trained (config.data.sources[*].task) and evaluated (config.evals)."""
  sources = [s.get("task") for s in config.data.get("sources", [])]
  evals = [e.get("task") for e in config.get("evals", {}).values()]
  return sorted({t for t in sources + evals if t})


def task_warning(config, task: str) -> str | None:
  """Why `task` will likely give empty or meaningless text with this run's checkpoint."""
  trained = checkpoint_tasks(config)
  if task in trained or not trained:
    return None
  return (
    f"task {task!r}: this checkpoint was trained for {', '.join(trained)} (its config.json: "
    f"config.data.sources / config.evals), not {task}; expect empty or meaningless text. "
    f"Fine-tune it first: configs/finetune_{task}.py with --config.init_from=<its workdir>."
  )


def command(checkpoint: str, task: str) -> str:
  """A `python -m jarl.predict` command line for `task` on one image (for run summaries)."""
  extra = {
    "vqa": ["--question=what is in the picture"],
    "caption": ["--task=caption"],
    "entailment": ["--task=entailment", "--question=there is a dog"],
  }[task]
  args = ["python", "-m", "jarl.predict", f"--checkpoint={checkpoint}", "--image=IMAGE.jpg"]
  return shlex.join(args + extra)


def load_config(directory: str) -> tuple[ml_collections.ConfigDict, epath.Path]:
  """(config, config file) of a workdir or a `<workdir>/checkpoints/<step>` directory."""
  path = epath.Path(directory)
  if not path.exists():
    raise PredictError(f"{directory}: no such checkpoint directory")
  for folder in (path, path.parent, path.parent.parent):
    file = folder / CONFIG_FILE
    if file.exists():
      break
  else:
    raise PredictError(
      f"{directory}: no {CONFIG_FILE} in it or two levels up; "
      "give a workdir written by jarl.main (or its checkpoints/<step>)"
    )
  try:
    config = ml_collections.ConfigDict(json.loads(file.read_text()))
    model_lib.build(config)  # validates every model field
    for key in ("image_size", "text_len", "target_len"):
      int(config.data[key])
    tokenizer_lib.load(config.data.tokenizer)  # a path that only existed where it trained
  except Exception as e:  # pylint: disable=broad-except
    raise PredictError(
      f"{file}: not a usable JARL config ({type(e).__name__}: {' '.join(str(e).split())[:300]})"
    ) from None
  return config, file


def read_image(image, image_size: int) -> np.ndarray:
  """A path, encoded bytes, PIL image or uint8 array -> float32 [S, S, 3] in [-1, 1]."""
  name = "image"
  try:
    if isinstance(image, (str, os.PathLike)):
      name = str(image)
      if not os.path.isfile(name):
        raise PredictError(f"{name}: no such image file")
      with open(name, "rb") as f:
        image = f.read()
      if not image:
        raise PredictError(f"{name}: empty file, not an image")
    if isinstance(image, Image.Image):
      image = images.upright_rgb(image)  # as the pipeline decodes files: EXIF, alpha
      image = np.asarray(image)
    pixels = pipeline.load_image(image)
  except PredictError:
    raise
  except Image.UnidentifiedImageError:
    raise PredictError(f"{name}: not a decodable image (unknown or unsupported format)") from None
  except Exception as e:  # pylint: disable=broad-except  (truncated files: OSError, ...)
    raise PredictError(
      f"{name}: not a decodable image ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    ) from None
  return pipeline.preprocess_image(pixels, image_size, None)[0]


def encoder_text(task: str, prompt: str | None) -> str:
  """The encoder text the task functions build in training (prompt prefix, whitespace)."""
  raw = dict(questions=[prompt], answers=["-"], captions=["-"], hypotheses=[prompt], labels=["yes"])
  try:
    return tasks.get(task, "task")(raw, np.random.default_rng(0))["text"]
  except tasks.SkipExample:
    raise PredictError(
      f"--question={prompt!r}: empty; task {task!r} needs a question or hypothesis"
    ) from None


class Predictor:
  """Batched decoding with a fixed batch size (one compilation; the last batch is padded)."""

  def __init__(
    self, config, params, *, beam_size: int = 1, batch_size: int = 16, length_penalty: float = 0.6
  ):
    if beam_size < 1 or batch_size < 1:
      raise ValueError(f"beam_size={beam_size} and batch_size={batch_size} must be >= 1")
    self.config = config
    self.model = model_lib.build(config)
    self.tokenizer = tokenizer_lib.load(config.data.tokenizer)
    self.params = params
    self.batch_size = batch_size
    self._warned = set()  # tasks already warned about (task_warning)
    self._generate = jax.jit(
      functools.partial(
        decode.generate,
        self.model,
        max_len=int(config.data.target_len),
        eos_id=self.tokenizer.eos_id,
        beam_size=beam_size,
        length_penalty=length_penalty,
      )
    )

  @classmethod
  def from_checkpoint(cls, directory: str, **kwargs) -> "Predictor":
    """Loads the model config and the (latest, or given step's) parameters of a run."""
    config, config_file = load_config(directory)
    model = model_lib.build(config)
    dummy = batch_lib.dummy_batch(config, 1)
    abstract = nn.unbox(
      jax.eval_shape(lambda rng: model.init(rng, **dummy, train=False), jax.random.key(0))["params"]
    )
    ckpt = (
      directory if (epath.Path(directory) / checkpoint.STATE).exists() else str(config_file.parent)
    )
    try:
      loaded, report = checkpoint.load_params(ckpt, abstract)
    except Exception as e:  # pylint: disable=broad-except
      raise PredictError(
        f"{ckpt}: no loadable checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
      ) from None
    if report["missing"] or report["mismatched"]:
      raise PredictError(
        f"{ckpt}: checkpoint does not match the model of {config_file} "
        f"(missing {report['missing'][:3]}, mismatched "
        f"{report['mismatched'][:3]})"
      )
    params = jax.tree_util.tree_map_with_path(
      lambda p, _: loaded[jax.tree_util.keystr(p)], abstract
    )
    return cls(config, params, **kwargs)

  def predict(self, task: str, images, prompts) -> list[str]:
    """Texts for aligned lists `images` and `prompts` (prompts: None for captions)."""
    if task not in TASKS:
      raise ValueError(f"task={task!r}: choose from {TASKS}")
    if len(images) != len(prompts):
      raise ValueError(f"{len(images)} images but {len(prompts)} questions")
    warning = task_warning(self.config, task)
    if warning and task not in self._warned:
      logging.getLogger(__name__).warning("%s", warning)
      self._warned.add(task)
    size, text_len = int(self.config.data.image_size), int(self.config.data.text_len)
    pixels = [read_image(im, size) for im in images]  # all errors before any compute
    texts = [
      self.tokenizer.encode_fixed(encoder_text(task, p), text_len, add_eos=False)[0]
      for p in prompts
    ]
    out = []
    for start in range(0, len(pixels), self.batch_size):
      n = min(self.batch_size, len(pixels) - start)
      image = np.zeros([self.batch_size, size, size, 3], np.float32)
      text = np.zeros([self.batch_size, text_len], np.int32)
      image[:n] = pixels[start : start + n]
      text[:n] = texts[start : start + n]
      tokens, _ = self._generate(self.params, image, text)
      out += [self.tokenizer.decode(t) for t in np.asarray(tokens)[:n]]
    return out

  def _broadcast(self, task, images, prompts):
    single = not isinstance(images, (list, tuple))
    images = [images] if single else list(images)
    single_prompt = prompts is None or isinstance(prompts, str)
    prompts = [prompts] * len(images) if single_prompt else list(prompts)
    if len(images) == 1 and len(prompts) > 1:
      images, single = images * len(prompts), False
    result = self.predict(task, images, prompts)
    return result[0] if single and single_prompt else result

  def answer(self, images, questions):
    """VQA: one image or a list; one question for all or one per image. str or list[str]."""
    return self._broadcast("vqa", images, questions)

  def caption(self, images):
    """Captions of one image (-> str) or a list of images (-> list[str])."""
    return self._broadcast("caption", images, None)

  def entail(self, images, hypotheses):
    """Visual entailment: "yes" / "no" / "maybe" per (image, hypothesis)."""
    return self._broadcast("entailment", images, hypotheses)


class _CliWarnings(logging.Handler):
  """`jarl.predict: warning: ...` on stderr, like the error lines."""

  def emit(self, record):
    print(f"jarl.predict: warning: {record.getMessage()}", file=sys.stderr)


@contextlib.contextmanager
def _cli_warnings():
  """This module's warnings as `_CliWarnings` lines only (not also the root's format)."""
  log = logging.getLogger(__name__)
  handler, propagate = _CliWarnings(logging.WARNING), log.propagate
  log.addHandler(handler)
  log.propagate = False
  try:
    yield
  finally:
    log.removeHandler(handler)
    log.propagate = propagate


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m jarl.predict",
    description=__doc__.split("\n")[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--checkpoint", required=True, help="workdir or checkpoints/<step>")
  parser.add_argument("--image", action="append", required=True, help="image file (repeat)")
  parser.add_argument(
    "--question",
    action="append",
    default=None,
    help="question (vqa) or hypothesis (entailment): one, or one per image",
  )
  parser.add_argument(
    "--task", choices=TASKS, default=None, help="default: vqa with --question, else caption"
  )
  parser.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
  parser.add_argument("--batch_size", type=int, default=16)
  args = parser.parse_args(argv)
  task = args.task or ("vqa" if args.question else "caption")
  questions = args.question or [None]
  if task != "caption" and not args.question:
    parser.error(f"--task={task} needs --question")
  if task == "caption" and args.question:
    parser.error("--task=caption takes no --question")
  if len(questions) not in (1, len(args.image)):
    parser.error(
      f"{len(questions)} --question for {len(args.image)} --image: give one, or one per image"
    )
  if args.beam < 1 or args.batch_size < 1:
    parser.error("--beam and --batch_size must be >= 1")
  try:
    config, _ = load_config(args.checkpoint)
    for path in args.image:  # fail on a bad file before loading any weights
      read_image(path, int(config.data.image_size))
    predictor = Predictor.from_checkpoint(
      args.checkpoint, beam_size=args.beam, batch_size=args.batch_size
    )
    prompts = questions * len(args.image) if len(questions) == 1 else questions
    with _cli_warnings():
      results = predictor.predict(task, args.image, prompts)
  except PredictError as e:
    print(f"jarl.predict: error: {e}", file=sys.stderr)
    return 2
  for path, text in zip(args.image, results):
    print(f"{path}\t{text if text.strip() else '<empty>'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
