"""The built-in `shapes` world: procedural image-text data, deterministic by (split, index).

A scene holds 1-6 coloured shapes, one per cell of a 3x3 grid (so objects never overlap
and spatial relations are unambiguous), drawn without anti-aliasing on a grey background
(so every object pixel has exactly its palette colour and can be counted from the image).
Each scene comes with captions, VQA question/answer pairs and entailment hypotheses
generated from the same object list, so every text is true of the picture it describes.

Splits: `train`, `validation`, `test` never contain the colour/shape pairs in `HELDOUT`;
every `heldout` scene contains at least one of them (compositional generalisation).
"""

import dataclasses

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
  "red": (220, 40, 40),
  "green": (40, 170, 60),
  "blue": (40, 80, 220),
  "yellow": (235, 200, 30),
  "purple": (140, 60, 180),
  "orange": (240, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = ("small", "large")
# One held-out colour per shape, so every colour and every shape is still seen in train.
HELDOUT = frozenset(
  {("red", "triangle"), ("blue", "circle"), ("yellow", "square"), ("purple", "diamond")}
)
SPLITS = {
  "train": (0, 1 << 24),
  "validation": (1, 10_000),
  "test": (2, 10_000),
  "heldout": (3, 10_000),
}  # name -> (seed stream id, number of scenes)
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six")
GRID = 3
# Shapes stay this far (fraction of the side) from the border, so a training crop that
# keeps >= 90% of the side never cuts an object and counts stay true.
MARGIN = 0.08
MAYBE_PREDICATES = ("is made of wood", "is made of metal", "is heavier than", "is older than")


@dataclasses.dataclass(frozen=True)
class Obj:
  colour: str
  shape: str
  size: str
  row: int
  col: int


def sample_scene(split: str, index: int) -> list[Obj]:
  """The objects of scene `index` of `split` (pure function of its arguments)."""
  stream, length = SPLITS[split]
  if not 0 <= index < length:
    raise IndexError(f"shapes:{split} has {length} scenes; index {index} is out of range")
  rng = np.random.default_rng([stream, index])
  n = int(rng.integers(1, 7))
  cells = rng.choice(GRID * GRID, size=n, replace=False)
  allowed = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELDOUT]
  held = sorted(HELDOUT)
  objs = []
  for k, cell in enumerate(cells):
    pool = held if (split == "heldout" and k == 0) else allowed
    colour, shape = pool[int(rng.integers(len(pool)))]
    size = SIZES[int(rng.integers(2))]
    objs.append(Obj(colour, shape, size, int(cell) // GRID, int(cell) % GRID))
  return objs


def render(objs: list[Obj], image_size: int, rng: np.random.Generator) -> np.ndarray:
  """Draws the scene: uint8 [image_size, image_size, 3]."""
  grey = int(rng.integers(200, 246))
  img = Image.new("RGB", (image_size, image_size), (grey, grey, grey))
  draw = ImageDraw.Draw(img)
  margin = MARGIN * image_size
  cell = (image_size - 2 * margin) / GRID
  for o in objs:
    radius = cell * (0.42 if o.size == "large" else 0.25)
    slack = cell / 2 - radius  # jitter that keeps the object inside its cell
    cx = margin + (o.col + 0.5) * cell + rng.uniform(-0.6, 0.6) * slack
    cy = margin + (o.row + 0.5) * cell + rng.uniform(-0.6, 0.6) * slack
    colour = COLOURS[o.colour]
    if o.shape == "circle":
      draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    elif o.shape == "square":
      r = radius * 0.85
      draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif o.shape == "triangle":
      draw.polygon(
        [(cx, cy - radius), (cx + radius, cy + radius * 0.8), (cx - radius, cy + radius * 0.8)],
        fill=colour,
      )
    else:  # diamond
      draw.polygon(
        [(cx, cy - radius), (cx + radius * 0.8, cy), (cx, cy + radius), (cx - radius * 0.8, cy)],
        fill=colour,
      )
  return np.asarray(img)


def _a(phrase: str) -> str:
  return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _count(n: int) -> str:
  return NUMBERS[n]


def _plural(shape: str, n: int) -> str:
  return shape if n == 1 else shape + "s"


def _name(o: Obj, objs: list[Obj]) -> str | None:
  """Shortest unique noun phrase for `o` (without article), or None if not referable."""
  same = [p for p in objs if (p.colour, p.shape) == (o.colour, o.shape)]
  if len(same) == 1:
    return f"{o.colour} {o.shape}"
  if sum(p.size == o.size for p in same) == 1:
    return f"{o.size} {o.colour} {o.shape}"
  return None


def _relations(a: Obj, b: Obj) -> list[str]:
  """Relations that hold between a and b (cells, so they are unambiguous in the image)."""
  rel = []
  if a.col < b.col:
    rel.append("left of")
  if a.col > b.col:
    rel.append("right of")
  if a.row < b.row:
    rel.append("above")
  if a.row > b.row:
    rel.append("below")
  return rel


OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _inventory(objs: list[Obj]) -> str:
  groups: dict[tuple[str, str], list[Obj]] = {}
  for o in objs:
    groups.setdefault((o.colour, o.shape), []).append(o)
  parts = []
  # Sizes only for short lists, so the longest caption stays within ~24 pieces.
  sized = len(groups) <= 3
  for (colour, shape), members in groups.items():
    if len(members) == 1:
      parts.append(_a(f"{members[0].size} {colour} {shape}" if sized else f"{colour} {shape}"))
    else:
      parts.append(f"{_count(len(members))} {colour} {_plural(shape, len(members))}")
  if len(parts) == 1:
    return parts[0]
  return ", ".join(parts[:-1]) + " and " + parts[-1]


def _referable_pairs(objs):
  names = [_name(o, objs) for o in objs]
  return [
    (a, b, names[i], names[j])
    for i, a in enumerate(objs)
    for j, b in enumerate(objs)
    if i != j and names[i] and names[j]
  ]


def captions(objs: list[Obj], rng: np.random.Generator) -> list[str]:
  """Several true descriptions: inventory, object count, and a spatial relation."""
  n = len(objs)
  caps = [_inventory(objs), f"{_count(n)} {_plural('shape', n)} on a grey background"]
  pairs = _referable_pairs(objs)
  if pairs:
    a, b, na, nb = pairs[int(rng.integers(len(pairs)))]
    rels = _relations(a, b)
    caps.append(f"{_a(na)} {rels[int(rng.integers(len(rels)))]} {_a(nb)}")
  elif n == 1:
    caps.append(f"a single {objs[0].size} {objs[0].colour} {objs[0].shape}")
  return caps


# The kind of each generated question and hypothesis (`example`'s question_types and
# hypothesis_types): what a per-kind accuracy groups by. A relation needs both objects'
# places in the picture; the others, one object's or a colour's count.
QUESTION_TYPES = ("count_colour", "count_shape", "colour", "shape", "size", "exists", "relation")
HYPOTHESIS_TYPES = ("count", "unknowable", "relation")


def questions(objs: list[Obj], rng: np.random.Generator) -> list[tuple[str, str, str]]:
  """VQA triples (question, short answer, kind in QUESTION_TYPES)."""
  qa = []
  colours = [o.colour for o in objs]
  shapes = [o.shape for o in objs]
  for c in COLOURS:
    if c in colours or rng.random() < 0.15:  # some absent colours, so "zero" is seen
      qa.append((f"how many {c} shapes are there", _count(colours.count(c)), "count_colour"))
  for s in sorted(set(shapes)):
    qa.append((f"how many {s}s are there", _count(shapes.count(s)), "count_shape"))
  for s in sorted(set(shapes)):
    if shapes.count(s) == 1:
      qa.append((f"what colour is the {s}", objs[shapes.index(s)].colour, "colour"))
  for c in sorted(set(colours)):
    if colours.count(c) == 1:
      qa.append((f"what shape is the {c} object", objs[colours.index(c)].shape, "shape"))
  for o in objs:
    name = _name(o, objs)
    if name and name.count(" ") == 1:
      qa.append((f"what size is the {name}", o.size, "size"))
  present = sorted({(o.colour, o.shape) for o in objs})
  c, s = present[int(rng.integers(len(present)))]
  qa.append((f"is there {_a(c)} {s}", "yes", "exists"))
  absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
  c, s = absent[int(rng.integers(len(absent)))]
  qa.append((f"is there {_a(c)} {s}", "no", "exists"))
  pairs = _referable_pairs(objs)
  if pairs:
    a, b, na, nb = pairs[int(rng.integers(len(pairs)))]
    rel = list(OPPOSITE)[int(rng.integers(4))]
    answer = "yes" if rel in _relations(a, b) else "no"
    qa.append((f"is the {na} {rel} the {nb}", answer, "relation"))
  return qa


def hypotheses(objs: list[Obj], rng: np.random.Generator) -> list[tuple[str, str, str]]:
  """Entailment triples (hypothesis, label in yes/no/maybe, kind in HYPOTHESIS_TYPES)."""
  out = []
  colours = [o.colour for o in objs]
  c = colours[int(rng.integers(len(colours)))]
  k = colours.count(c)
  out.append((f"there are exactly {_count(k)} {c} shapes", "yes", "count"))
  wrong = [m for m in range(1, 7) if m != k]
  wrong_count = _count(wrong[int(rng.integers(len(wrong)))])
  out.append((f"there are exactly {wrong_count} {c} shapes", "no", "count"))
  o = objs[int(rng.integers(len(objs)))]
  name = _name(o, objs) or f"{o.colour} {o.shape}"
  # Material and weight are not visible, so these can be neither confirmed nor denied.
  material, comparison = (
    MAYBE_PREDICATES[int(rng.integers(2))],
    MAYBE_PREDICATES[2 + int(rng.integers(2))],
  )
  out.append(
    (
      f"the {name} {material}" if rng.random() < 0.5 else f"the {name} {comparison} the others",
      "maybe",
      "unknowable",
    )
  )
  pairs = _referable_pairs(objs)
  if pairs:
    a, b, na, nb = pairs[int(rng.integers(len(pairs)))]
    rels = _relations(a, b)
    rel = rels[int(rng.integers(len(rels)))]
    out.append((f"the {na} is {rel} the {nb}", "yes", "relation"))
    out.append((f"the {na} is {OPPOSITE[rel]} the {nb}", "no", "relation"))
  return out


def concepts(objs: list[Obj]) -> list[str]:
  """Image-level keywords (ViCHA's visual concepts): each distinct "colour shape" of the
  scene once, in object order. Taken from the objects, never from the (maybe noisy)
  captions, like keywords a CLIP tagger would read off the picture."""
  return list(dict.fromkeys(f"{o.colour} {o.shape}" for o in objs))


def example(split: str, index: int, image_size: int = 64, caption_noise: float = 0.0) -> dict:
  """Scene `index` of `split` as a raw example.

  Returns: image uint8 [image_size, image_size, 3], captions list[str], questions list[str],
  answers list[str] (answers[i] answers questions[i]), question_types list[str] (each in
  QUESTION_TYPES), hypotheses list[str], labels list[str], hypothesis_types list[str]
  (HYPOTHESIS_TYPES), concepts list[str] (see `concepts`), index int. With `caption_noise`
  > 0 that fraction of scenes carries the captions of another scene (web-like noisy pairs;
  questions stay correct).
  """
  objs = sample_scene(split, index)
  stream, length = SPLITS[split]
  rng = np.random.default_rng([stream, index, 1])
  image = render(objs, image_size, rng)
  caps = captions(objs, rng)
  qa = questions(objs, rng)
  ent = hypotheses(objs, rng)
  if caption_noise > 0 and rng.random() < caption_noise:
    other = int(rng.integers(length))
    caps = captions(sample_scene(split, other), np.random.default_rng([stream, other, 1]))
  return dict(
    image=image,
    captions=caps,
    questions=[q for q, _, _ in qa],
    answers=[a for _, a, _ in qa],
    question_types=[k for _, _, k in qa],
    hypotheses=[h for h, _, _ in ent],
    labels=[lab for _, lab, _ in ent],
    hypothesis_types=[k for _, _, k in ent],
    concepts=concepts(objs),
    index=index,
  )


def num_examples(split: str) -> int:
  if split not in SPLITS:
    raise ValueError(f"shapes split {split!r} unknown; choose from {sorted(SPLITS)}")
  return SPLITS[split][1]
