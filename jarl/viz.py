"""Pictures for the notebooks: live training curves, fusion maps, answer grids.

    records = train_live(config, workdir)          # trains, redrawing the loss curves
    p = Predictor.from_checkpoint(workdir)
    maps = fusion_maps(p, image, "how many red shapes are there")
    plot_fusion_maps(maps)                          # what the fusion's tokens read

`fusion_maps` returns what the model's fusion (config.model.fusion.type) computes:
  jarl             LatentMaps: the paper's fusion resamples each modality once into N
                   latent tokens; each image latent has a map over the image patches and
                   each text latent one over the encoder-text pieces (two separate sets of
                   tokens). plot_latents draws them.
  co_tokenization  JointTokenMaps: per iteration k, each of the M joint tokens Z_k has one
                   TokenLearner softmax over all Nv + Nt + M inputs (image patches,
                   encoder-text pieces, previous joint tokens), split here into the three
                   parts. plot_joint_tokens draws one iteration.
The other fusions have no maps. Matplotlib is imported lazily: the package does not
depend on it.
"""

import dataclasses
import functools
import json
import multiprocessing
import os

import jax
import numpy as np
from PIL import Image

from jarl import predict
from jarl.models import model as model_lib

METRICS_FILE = "metrics.jsonl"  # written by jarl.metrics_writer
LOG_FILE = "train.log"  # train_live's child process writes its log here
# plot_joint_tokens draws no heat map for a token with less weight than this on the image.
MIN_IMAGE_SHARE = 0.1


def read_metrics(workdir: str) -> list[dict]:
  """The records of `<workdir>/metrics.jsonl` written so far ([] before the first).

  Not jarl.metrics_writer.read_jsonl: that module imports clu and with it TensorFlow,
  seconds of start-up a notebook kernel that only plots does not need. A last line still
  being written is skipped.
  """
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break  # a partial line: the writer is mid-flush
  return records


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of the records that carry `key`, in write order."""
  pairs = [(r["step"], r[key]) for r in records if key in r]
  steps, values = zip(*pairs) if pairs else ((), ())
  return np.asarray(steps, np.int64), np.asarray(values, np.float64)


def plot_training(records: list[dict], title: str = ""):
  """Two panels: losses (train per source, and eval losses) and, beside them, the
  adaptive sampler's source weights when there are several sources, else eval
  accuracies. -> matplotlib Figure."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  keys = sorted({k for r in records for k in r})
  per_source = [k for k in keys if k.startswith("train/loss_")]
  losses = per_source or [k for k in keys if k == "train/loss"]
  evals = [k for k in keys if k.endswith("/loss") and not k.startswith("train/")]
  weights = [k for k in keys if k.startswith("data/weight/")]
  right = weights if len(weights) > 1 else [k for k in keys if k.endswith("/accuracy")]
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
  for k in losses:
    axes[0].plot(*series(records, k), label=k.removeprefix("train/"))
  for k in evals:
    axes[0].plot(*series(records, k), "o--", label=k)
  axes[0].set(xlabel="step", ylabel="token cross-entropy", yscale="log", title="loss")
  for k in right:
    axes[1].plot(
      *series(records, k), "-" if k in weights else "o-", label=k.removeprefix("data/weight/")
    )
  axes[1].set(
    xlabel="step",
    title="sampler weight per source" if right is weights else "accuracy",
    ylim=(0, 1),
  )
  for ax in axes:
    if ax.lines:
      ax.legend(fontsize=8)
  step = max((r["step"] for r in records), default=0)
  fig.suptitle(f"{title} step {step}".strip())
  fig.tight_layout()
  return fig


def _train_child(config, workdir: str):
  """Child-process body of train_live: the whole training run, its log in LOG_FILE."""
  os.makedirs(workdir, exist_ok=True)
  log = os.open(os.path.join(workdir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
  os.dup2(log, 1)  # absl, TensorFlow and XLA write to the file descriptors directly
  os.dup2(log, 2)
  from jarl import train  # pylint: disable=import-outside-toplevel  (clu, TensorFlow)

  train.train_and_evaluate(config, workdir)


def train_live(
  config, workdir: str, *, every_s: float = 5.0, title: str = "", show=None
) -> list[dict]:
  """Runs `jarl.train.train_and_evaluate(config, workdir)` and redraws `plot_training`
  every `every_s` seconds until it ends; returns the metric records.

  The run is a child process because train_and_evaluate installs a SIGTERM handler,
  which Python allows only in a main thread, and this one must keep drawing; the child
  also takes the run's memory with it when it ends. Its log goes to
  `<workdir>/train.log`; a failed run raises with the end of that log. Re-running with
  the same workdir resumes from its latest checkpoint (and with a larger
  `config.total_steps`, trains on). `show(fig)` replaces the notebook display.
  """
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  if show is None:
    from IPython import display  # pylint: disable=import-outside-toplevel

    def show(fig):
      display.clear_output(wait=True)
      display.display(fig)

  # spawn, not fork: the parent has JAX's thread pools running, which fork does not copy.
  child = multiprocessing.get_context("spawn").Process(
    target=_train_child, args=(config, workdir), daemon=True
  )
  child.start()
  drawn = -1
  try:
    while True:
      alive = child.is_alive()
      records = read_metrics(workdir)
      if records and (len(records) != drawn or not alive):
        fig = plot_training(records, title)
        show(fig)
        plt.close(fig)
        drawn = len(records)
      if not alive:
        break
      child.join(every_s)
  finally:
    if child.is_alive():  # the notebook was interrupted: stop the run, it can resume
      child.terminate()
      child.join()
  if child.exitcode != 0:
    with open(os.path.join(workdir, LOG_FILE), encoding="utf-8", errors="replace") as f:
      tail = f.read()[-3000:]
    raise RuntimeError(
      f"training in {workdir} failed (exit code {child.exitcode}); end of "
      f"{os.path.join(workdir, LOG_FILE)}:\n{tail}"
    )
  return read_metrics(workdir)


# config.model.fusion.type values whose model outputs maps fusion_maps can draw.
MAPPED_FUSIONS = ("jarl", "co_tokenization")


@dataclasses.dataclass
class LatentMaps:
  """The `jarl` fusion's resampling maps for one (image, text) example (gated_fusion.py).

  The fusion summarises the image into N image latents and the text into N text latents,
  once, before its K gated iterations; these are two different sets of tokens: image
  latent i and text latent i are unrelated (each set has its own learned queries).

  image: float32 [S, S, 3] in [-1, 1], what the model saw; pieces: the encoder text's
  pieces (padding dropped), list of Nw str; image_latents [N, gh, gw]: row i is image
  latent i's map over the patch grid; text_latents [N, Nw]: row i is text latent i's map
  over the pieces. Each row sums to 1. gates [K, 2]: each iteration's attention and MLP
  gate (tanh(alpha), tanh(beta); 1 for combine != 'gated'), the same for every input.
  """

  image: np.ndarray
  pieces: list
  image_latents: np.ndarray
  text_latents: np.ndarray
  gates: np.ndarray

  def spread(self) -> np.ndarray:
    """[N]: each image latent's effective number of patches, exp(entropy of its map):
    1 for a latent on one patch, gh * gw for a uniform one."""
    p = self.image_latents.reshape(len(self.image_latents), -1)
    return np.exp(-np.sum(p * np.log(np.maximum(p, 1e-30)), axis=1))


@dataclasses.dataclass
class JointTokenMaps:
  """`co_tokenization`: where each joint token looks, per fusion iteration, for one
  (image, text) example.

  image: float32 [S, S, 3] in [-1, 1], what the model saw; pieces: the encoder text's
  pieces (padding dropped), list of Nw str; for iteration k (lists of length K):
  vision[k] [M, gh, gw], text[k] [M, Nw], joint[k] [M, M] (weights on the previous joint
  tokens). Each token's weights over all three parts sum to 1 (the TokenLearner softmax).
  """

  image: np.ndarray
  pieces: list
  vision: list
  text: list
  joint: list

  def mass(self, iteration: int) -> np.ndarray:
    """[M, 3]: each token's total weight on image patches, text pieces, joint tokens."""
    return np.stack(
      [
        self.vision[iteration].sum((1, 2)),
        self.text[iteration].sum(1),
        self.joint[iteration].sum(1),
      ],
      axis=1,
    )


def split_weights(weights: np.ndarray, grid: tuple, text_mask: np.ndarray):
  """One example's co-tokenization reducer weights [M, Nv + Nt + M'] -> (vision
  [M, gh, gw], text [M, Nw] over the valid pieces only, joint [M, M']); the input order is
  the one co_tokenization.CoTokenization concatenates: vision, text, previous joint tokens."""
  gh, gw = grid
  nv, nt = gh * gw, text_mask.shape[0]
  if weights.shape[1] <= nv + nt:
    raise ValueError(
      f"reducer weights of shape {weights.shape} cannot hold {nv} patches "
      f"({gh}x{gw} grid) + {nt} text positions + the joint tokens"
    )
  vision = weights[:, :nv].reshape(-1, gh, gw)
  text = weights[:, nv : nv + nt][:, np.asarray(text_mask, bool)]
  return vision, text, weights[:, nv + nt :]


# id(model) -> (model, jitted Model.encode): one compilation per model, not per call
# (eager apply compiles op by op, ~4x slower on its first call). The model is kept in
# the value so that its id cannot be reused while the entry exists.
_ENCODERS = {}


def _encoder(model):
  if id(model) not in _ENCODERS:
    _ENCODERS[id(model)] = (
      model,
      jax.jit(functools.partial(model.apply, method=model_lib.Model.encode)),
    )
  return _ENCODERS[id(model)][1]


def text_pieces(tokenizer, ids) -> list[str]:
  """The text each id adds, with "\u2581" marking a word start (SentencePiece's own mark):
  decoding growing prefixes keeps the spaces that decoding one piece alone drops."""
  pieces, previous = [], ""
  for n in range(1, len(ids) + 1):
    text = tokenizer.decode(list(ids[:n]))
    piece = text[len(previous) :] if text.startswith(previous) else tokenizer.decode([ids[n - 1]])
    pieces.append("\u2581" + piece[1:] if piece.startswith(" ") else piece or "\u2581")
    previous = text
  return pieces


def fusion_maps(predictor, image, question: str, task: str = "vqa") -> LatentMaps | JointTokenMaps:
  """The fusion's maps for `image` (path, PIL image or uint8 array) and `question`, as the
  predictor's model computes them for `task`: LatentMaps for the `jarl` fusion,
  JointTokenMaps (every iteration) for `co_tokenization`."""
  config = predictor.config
  kind = config.model.fusion.type
  if kind not in MAPPED_FUSIONS:
    raise ValueError(
      f"config.model.fusion.type={kind!r} has no maps to draw; only "
      f"{' and '.join(repr(t) for t in MAPPED_FUSIONS)} do"
    )
  pixels = predict.read_image(image, int(config.data.image_size))
  ids, _ = predictor.tokenizer.encode_fixed(
    predict.encoder_text(task, question), int(config.data.text_len), add_eos=False
  )
  _, _, out = _encoder(predictor.model)({"params": predictor.params}, pixels[None], ids[None])
  if out["img/grid"] is None:
    raise ValueError(
      "config.model.vision.token_pruning='elip' pruned the patch grid: the "
      "image part of the maps has no grid to draw on"
    )
  grid = tuple(int(g) for g in out["img/grid"])
  mask = ids != 0
  pieces = text_pieces(predictor.tokenizer, ids[mask])
  out = {k: np.asarray(jax.device_get(v)) for k, v in out.items() if k.startswith("fusion/")}
  if kind == "jarl":
    return LatentMaps(
      pixels,
      pieces,
      out["fusion/image_weights"][0].reshape(-1, *grid),
      out["fusion/text_weights"][0][:, mask],
      out["fusion/gates"],
    )
  parts = [
    split_weights(out[f"fusion/weights_{k}"][0], grid, mask)
    for k in range(config.model.fusion.iterations)
  ]
  vision, text, joint = (list(p) for p in zip(*parts))
  return JointTokenMaps(pixels, pieces, vision, text, joint)


def upsample(grid_map: np.ndarray, size: int) -> np.ndarray:
  """[gh, gw] -> [size, size] float32, bilinear, for drawing a patch map over the image."""
  pil = Image.fromarray(np.asarray(grid_map, np.float32), mode="F")
  return np.asarray(pil.resize((size, size), Image.BILINEAR), np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
  """float [-1, 1] (the model's input range) -> uint8 for display."""
  return np.clip(np.round((np.asarray(image) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def plot_joint_tokens(maps: JointTokenMaps, iteration: int = -1, title: str = ""):
  """co_tokenization, one iteration: one column per joint token: its map over the image
  patches as a heat map on the image (scaled to its own maximum; none, and the image
  faded, when the token puts less than MIN_IMAGE_SHARE of its weight on the image; the
  title gives its share of weight on image / text / previous joint tokens), and below,
  its weights over the encoder-text pieces."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  vision, text = maps.vision[iteration], maps.text[iteration]
  mass = maps.mass(iteration)
  m = vision.shape[0]
  image = to_uint8(maps.image)
  size = image.shape[0]
  fig, axes = plt.subplots(
    2,
    m,
    figsize=(1.7 * m, 1.9 + 0.19 * len(maps.pieces)),
    gridspec_kw=dict(height_ratios=[1.7, 0.19 * len(maps.pieces)]),
    squeeze=False,
  )
  ymax = max(float(text.max()), 1e-6)
  for j in range(m):
    ax = axes[0, j]
    if mass[j, 0] >= MIN_IMAGE_SHARE:
      heat = upsample(vision[j], size)
      heat = heat / max(float(heat.max()), 1e-12)
      ax.imshow(image, interpolation="nearest")
      ax.imshow(heat, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    else:  # a map scaled to its maximum would make a token that ignores the image look bright
      ax.imshow(image, interpolation="nearest", alpha=0.25)
    ax.set_title(
      f"token {j}\nimg {mass[j, 0]:.0%} txt {mass[j, 1]:.0%}\njoint {mass[j, 2]:.0%}", fontsize=8
    )
    ax.axis("off")
    ax = axes[1, j]
    ax.barh(np.arange(len(maps.pieces)), text[j], color="tab:blue")
    ax.set_xlim(0, ymax)
    ax.set_yticks(np.arange(len(maps.pieces)))
    ax.set_yticklabels(maps.pieces if j == 0 else [], fontsize=8)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=6)
  k = iteration % len(maps.vision)
  fig.suptitle(f"{title} fusion iteration {k + 1} of {len(maps.vision)}".strip())
  fig.tight_layout()
  return fig


def plot_latents(maps: LatentMaps, title: str = "", ncols: int = 8):
  """The `jarl` fusion's two sets of latents, in two panels. Top: one image per image
  latent v_i, its map over the patches as a heat map on the image, on one colour scale
  for all of them (so a latent spread over the whole image stays dim), titled with its
  effective number of patches (LatentMaps.spread). Bottom: the text latents t_i as
  columns of one matrix over the encoder-text pieces (rows)."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  n, nw = len(maps.image_latents), len(maps.pieces)
  ncols = max(1, min(ncols, n))
  nrows = -(-n // ncols)
  fig = plt.figure(figsize=(1.6 * ncols, 1.8 * nrows + 1.2 + 0.22 * nw), layout="constrained")
  top, bottom = fig.subfigures(2, 1, height_ratios=[1.8 * nrows + 0.3, 0.9 + 0.22 * nw])
  _draw_image_latents(top, maps, ncols)
  _draw_text_latents(bottom, maps)
  if title:
    fig.suptitle(title)
  return fig


def _draw_image_latents(fig, maps: LatentMaps, ncols: int):
  """plot_latents' top panel: an image with its heat map per image latent."""
  n = len(maps.image_latents)
  image = to_uint8(maps.image)
  size = image.shape[0]
  heats = [upsample(m, size) for m in maps.image_latents]
  vmax = max(max(float(h.max()) for h in heats), 1e-12)
  spread = maps.spread()
  axes = fig.subplots(-(-n // ncols), ncols, squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for i, (ax, heat) in enumerate(zip(axes.flat, heats)):
    ax.imshow(image, interpolation="nearest")
    ax.imshow(heat, cmap="inferno", alpha=0.6, vmin=0, vmax=vmax)
    ax.set_title(f"v{i}: ~{spread[i]:.0f} patches", fontsize=8)
  gh, gw = maps.image_latents.shape[1:]
  fig.suptitle(f"{n} image latents: each one's map over the {gh}x{gw} patches", fontsize=10)


def _draw_text_latents(fig, maps: LatentMaps):
  """plot_latents' bottom panel: the text latents' maps as one [Nw, N] matrix."""
  n, nw = len(maps.text_latents), len(maps.pieces)
  ax = fig.subplots()
  shown = ax.imshow(maps.text_latents.T, cmap="Blues", vmin=0, aspect="auto")
  ax.set_xticks(np.arange(n), [f"t{i}" for i in range(n)], fontsize=8)
  ax.set_yticks(np.arange(nw), maps.pieces, fontsize=8)
  ax.set(xlabel="text latent", ylabel="encoder-text piece")
  fig.colorbar(shown, ax=ax, fraction=0.03)
  # t_i, not v_i: a column here has nothing to do with the image latent of the same index.
  fig.suptitle(
    f"{n} text latents, a separate set: each column is one's map over the text pieces",
    fontsize=10,
  )


def plot_fusion_maps(maps: LatentMaps | JointTokenMaps, title: str = "", iteration: int = -1):
  """Whichever picture `maps` has: plot_latents, or plot_joint_tokens at `iteration`."""
  if isinstance(maps, LatentMaps):
    return plot_latents(maps, title)
  return plot_joint_tokens(maps, iteration, title)


def plot_answers(
  images, questions, predictions, truths, *, captions=None, ncols: int = 4, title: str = ""
):
  """A grid of images titled question / predicted / truth, green when the prediction is
  right (exact match), red when wrong. images: uint8 [S, S, 3] or float in [-1, 1]."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  n = len(images)
  if not n == len(questions) == len(predictions) == len(truths):
    raise ValueError(
      f"{n} images, {len(questions)} questions, {len(predictions)} "
      f"predictions, {len(truths)} truths: need one of each per image"
    )
  ncols = max(1, min(ncols, n))
  nrows = -(-n // ncols)
  # Constrained layout: tight_layout lets a suptitle overlap the first row's titles.
  fig, axes = plt.subplots(
    nrows, ncols, figsize=(3.2 * ncols, 3.6 * nrows), squeeze=False, layout="constrained"
  )
  for ax in axes.flat:
    ax.axis("off")
  for i, ax in enumerate(axes.flat[:n]):
    image = images[i] if np.asarray(images[i]).dtype == np.uint8 else to_uint8(images[i])
    ax.imshow(image, interpolation="nearest")
    right = predictions[i].strip() == truths[i].strip()
    text = f"{questions[i]}\npredicted: {predictions[i]}\ntruth: {truths[i]}"
    if captions:
      text = f"{captions[i]}\n" + text
    ax.set_title(text, fontsize=8, color="darkgreen" if right else "firebrick")
  if title:
    fig.suptitle(title)
  return fig


def plot_scene_qa(image, questions, predictions, truths, *, caption=None, true_captions=()):
  """One scene: the image beside its questions with the model's answers (green when
  they match the truth, red with the truth when not), and optionally its caption."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  if not len(questions) == len(predictions) == len(truths):
    raise ValueError(
      f"{len(questions)} questions, {len(predictions)} predictions, "
      f"{len(truths)} truths: need one of each per question"
    )
  lines = len(questions) + (2 + len(true_captions) if caption is not None else 0)
  fig, (left, right) = plt.subplots(
    1, 2, figsize=(10, max(3.0, 0.27 * lines + 0.6)), gridspec_kw=dict(width_ratios=[1, 2.2])
  )
  image = image if np.asarray(image).dtype == np.uint8 else to_uint8(image)
  left.imshow(image, interpolation="nearest")
  left.axis("off")
  right.axis("off")
  y, step = 1.0, 1.0 / max(lines, 1)
  if caption is not None:
    right.text(0, y, f"caption: {caption}", fontsize=9, va="top", weight="bold")
    y -= step
    for c in true_captions:
      right.text(0.03, y, f"true: {c}", fontsize=8, va="top", color="dimgray")
      y -= step
    y -= step
  for q, p, t in zip(questions, predictions, truths):
    ok = p.strip() == t.strip()
    right.text(
      0,
      y,
      f"{q}?  {p}" + ("" if ok else f"   (truth: {t})"),
      fontsize=9,
      va="top",
      color="darkgreen" if ok else "firebrick",
    )
    y -= step
  fig.tight_layout()
  return fig
