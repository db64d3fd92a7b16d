"""`config.model_init`: public checkpoints into the towers, as big_vision loads them.

`config.model_init` names `.npz` files, with big_vision's `file:subtree` syntax:
  "vit.npz"           a ViT checkpoint (big_vision or vision_transformer) -> the vision tower
  "siglip.npz"        a SigLIP two-tower checkpoint (sub-trees `img`, `txt`) -> both towers
  "siglip.npz:img"    one sub-tree -> the vision tower (":txt" -> the text tower)
  {"vision": "vit.npz", "text": "siglip.npz:txt"}   a file per tower ("img"/"txt" also work)
`config.model_load.dont_load`: regexes (full match) over our parameter names, e.g.
"vision/stem/.*", that may keep their random initialisation. Only the towers load; fusion,
decoder and heads always start fresh.

What loads, as big_vision's `utils.load_params` and `vit.load` accept it:
  * keys at the top level, under `params/`, or under `opt/target/`;
  * bfloat16 arrays that numpy stored as 2-byte void;
  * big_vision names and the original vision_transformer ones (`MultiHeadDotProductAttention_1`,
    `LayerNorm_2`, `MlpBlock_3`, `Transformer/posembed_input`); loop (`encoderblock_{i}`) or
    scan (`encoderblock`, stacked) blocks, converted to the model's layout;
  * `[cls]`-token checkpoints (pool_type='tok'): our towers pool nothing, so `cls` is unused,
    and a position embedding with the [cls] row (h*w + 1 rows) loses that row;
  * a vision position embedding for another grid is resized bilinearly to ours (big_vision's
    `resample_posemb`, for checkpoints trained at another resolution).
SigLIP's text tower maps `Embed_0` -> `embedding`, `Encoder_0` -> `Transformer` and keeps the
first `text.max_len` position embeddings. What does not map: its `head` (the contrastive
projection) stays unused; it attends to padding where ours masks it; and its vocabulary is
SigLIP's SentencePiece model, so `vocab_size` and the tokenizer must be SigLIP's (else the
embedding is a shape error). Checkpoint keys we have no use for (classifier `head`, MAP head,
blocks above a tower's depth, `cls`) are reported as unused.

A key of ours missing from the file and not in `dont_load`, or a shape that does not fit, is
an error naming the key, the file and both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
import contextlib
import dataclasses
import re
import zipfile

from etils import epath
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

TOWERS = {"vision": "vision", "img": "vision", "image": "vision", "text": "text", "txt": "text"}
# Our tower -> the sub-tree of a two-tower (SigLIP) checkpoint that holds it.
TWO_TOWER_KEYS = {"vision": "img", "text": "txt"}

# vision_transformer's pre-linen block names -> big_vision's (= ours).
_OLD_BLOCK_NAMES = {
  "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
  "LayerNorm_2": "LayerNorm_1",
  "MlpBlock_3": "MlpBlock_0",
}
# big_vision's text_transformer names -> ours.
_TEXT_NAMES = {"Embed_0": "embedding", "Encoder_0": "Transformer"}


@dataclasses.dataclass
class Report:
  """What one tower took from its file."""

  tower: str
  source: str
  loaded: int = 0
  resized: list[str] = dataclasses.field(default_factory=list)
  unused: list[str] = dataclasses.field(default_factory=list)  # checkpoint keys
  kept_random: list[str] = dataclasses.field(default_factory=list)  # ours, by dont_load

  def __str__(self):
    parts = [f"{self.tower} <- {self.source}: loaded {self.loaded} arrays"]
    if self.resized:
      parts.append(f"resized {self.resized}")
    if self.kept_random:
      parts.append(f"kept random (dont_load) {_short(self.kept_random)}")
    if self.unused:
      parts.append(f"unused in the file {_short(self.unused)}")
    return "; ".join(parts)


def _short(keys, n=8):
  return str(keys) if len(keys) <= n else f"{keys[:n]} and {len(keys) - n} more"


def sources(model_init) -> dict[str, str]:
  """config.model_init -> {tower: "file[:subtree]"}; raises ValueError naming the key."""
  if not model_init:
    return {}
  if isinstance(model_init, str):
    path, _, key = model_init.partition(":")
    if key in TOWERS:
      return {TOWERS[key]: model_init}
    if key:  # another sub-tree: a ViT inside a larger checkpoint
      return {"vision": model_init}
    return {"vision": path, "text": path} if _file_is_two_tower(path) else {"vision": path}
  if isinstance(model_init, Mapping):
    out = {}
    for k, v in model_init.items():
      if k not in TOWERS:
        raise ValueError(
          f"config.model_init[{k!r}]: unknown tower; use 'vision' ('img') or 'text' ('txt')"
        )
      if v:
        out[TOWERS[k]] = str(v)
    return out
  raise ValueError(
    f"config.model_init={model_init!r}: must be a path ('file.npz[:subtree]') or a dict "
    "{'vision': ..., 'text': ...}"
  )


def check(model_init, dont_load) -> None:
  """Config-build check: every file exists, the spec parses, every regex compiles."""
  specs = model_init.values() if isinstance(model_init, Mapping) else [model_init]
  for spec in specs:
    path = str(spec).split(":")[0]
    if spec and not epath.Path(path).is_file():
      raise ValueError(f"config.model_init: file {path!r} does not exist")
  sources(model_init)
  for pattern in dont_load:
    try:
      re.compile(pattern)
    except re.error as e:
      raise ValueError(f"config.model_load.dont_load: bad regex {pattern!r}: {e}") from None


def read_npz(path) -> dict[str, np.ndarray]:
  """A checkpoint's '/'-keyed parameter arrays (`_unwrapped` keys), bfloat16 stored as
  2-byte void restored."""
  with _open_npz(path) as npz:
    return {k: _recover_dtype(npz[stored]) for k, stored in _unwrapped(npz.files).items()}


def _unwrapped(keys) -> dict[str, str]:
  """{parameter name: stored key}: the parameters of a file whose keys sit at the top
  level, under `params/` or under `opt/target/` (the rest, e.g. optimizer state, left)."""
  prefix = next((p for p in ("params/", "opt/target/") if any(k.startswith(p) for k in keys)), "")
  return {k[len(prefix) :]: k for k in keys if k.startswith(prefix)}


@contextlib.contextmanager
def _open_npz(path):
  """np.load of a .npz (lazy: arrays are read when indexed); a bad file is one ValueError."""
  try:
    with epath.Path(path).open("rb") as f, np.load(f, allow_pickle=False) as npz:
      yield npz
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"config.model_init: {str(path)!r} is not a readable .npz ({e})") from None


def _recover_dtype(a):
  if a.dtype.kind == "V" and a.dtype.itemsize == 2:
    return a.view(jnp.bfloat16)
  return a


def _is_two_tower(names) -> bool:
  """Whether parameter names (`_unwrapped`) hold `img/` and `txt/` sub-trees."""
  return {"img", "txt"} <= {k.split("/")[0] for k in names}


def _file_is_two_tower(path) -> bool:
  """_is_two_tower of a file; reads its key list only."""
  with _open_npz(path) as npz:
    return _is_two_tower(_unwrapped(npz.files))


def _subtree(flat, key, spec):
  if not key:
    return flat
  out = {k[len(key) + 1 :]: v for k, v in flat.items() if k.startswith(key + "/")}
  if not out:
    tops = sorted({k.split("/")[0] for k in flat})
    raise ValueError(f"config.model_init: {spec!r} has no sub-tree {key!r} (it has {tops})")
  return out


def vision_names(flat: dict) -> dict:
  """vision_transformer / old big_vision names -> ours; the [cls] posemb row dropped."""
  out = {}
  for k, v in flat.items():
    parts = k.split("/")
    if len(parts) > 2 and parts[1].startswith("encoderblock"):
      parts[2] = _OLD_BLOCK_NAMES.get(parts[2], parts[2])
    k = "/".join(parts)
    if k in ("Transformer/posembed_input/pos_embedding", "Transformer/pos_embedding"):
      k = "pos_embedding"
    out[k] = v
  pe = out.get("pos_embedding")
  if pe is not None and pe.ndim == 3 and _is_square(pe.shape[1] - 1):
    out["pos_embedding"] = pe[:, 1:]  # the [cls] row; our towers have no [cls] token
  return out


def text_names(flat: dict) -> dict:
  """big_vision text_transformer names -> ours."""
  out = {}
  for k, v in flat.items():
    head, _, rest = k.partition("/")
    out["/".join(filter(None, [_TEXT_NAMES.get(head, head), rest]))] = v
  return out


def _is_square(n):
  return n > 0 and int(np.sqrt(n)) ** 2 == n


def to_layout(ckpt: dict, scan: bool) -> dict:
  """Converts '/'-keyed arrays between loop (`encoderblock_{i}`) and scan layouts."""
  ckpt = dict(ckpt)
  if scan:
    groups = {}  # (prefix, suffix) -> {layer: array}
    for k in [k for k in ckpt if "/encoderblock_" in k]:
      prefix, rest = k.split("/encoderblock_")
      layer, suffix = rest.split("/", 1)
      groups.setdefault((prefix, suffix), {})[int(layer)] = ckpt.pop(k)
    for (prefix, suffix), layers in groups.items():
      ckpt[f"{prefix}/encoderblock/{suffix}"] = np.stack([layers[i] for i in sorted(layers)])
  else:
    for k in [k for k in ckpt if "/encoderblock/" in k]:
      prefix, suffix = k.split("/encoderblock/")
      for i, layer in enumerate(ckpt.pop(k)):
        ckpt[f"{prefix}/encoderblock_{i}/{suffix}"] = layer
  return ckpt


def _fit_depth(ckpt: dict, ours: dict) -> dict:
  """Scan layout: a checkpoint deeper than the tower keeps its first blocks (the fusion
  replaces the upper ones, DESIGN.md); the rest are reported unused by key."""
  out = {}
  for k, v in ckpt.items():
    if "/encoderblock/" in k and k in ours and v.shape[1:] == ours[k].shape[1:]:
      depth = ours[k].shape[0]
      out[k] = v[:depth]
      for i in range(depth, v.shape[0]):
        out[k.replace("/encoderblock/", f"/encoderblock_{i}/")] = v[i]
    else:
      out[k] = v
  return out


def resample_posemb(posemb: np.ndarray, length: int) -> np.ndarray:
  """[1, h*w, D] -> [1, length, D] (both squares): bilinear with the corners kept, the
  mapping of big_vision's `resample_posemb` (scipy.ndimage.zoom, order=1)."""
  old, new = int(np.sqrt(posemb.shape[1])), int(np.sqrt(length))
  grid = np.asarray(posemb[0], np.float32).reshape(old, old, -1)
  for axis in (0, 1):
    x = np.linspace(0, old - 1, new)  # output i reads input i * (old - 1) / (new - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, old - 1)
    w = np.expand_dims(x - lo, tuple(a for a in range(3) if a != axis))
    grid = (1 - w) * np.take(grid, lo, axis) + w * np.take(grid, hi, axis)
  return grid.reshape(1, new * new, -1)


def _fit_posemb(tower, ckpt, ours, report):
  key = "pos_embedding"
  if key not in ckpt or key not in ours or ckpt[key].shape == ours[key].shape:
    return
  have, want = ckpt[key].shape, ours[key].shape
  if have[0] != want[0] or have[2] != want[2]:
    return  # a width mismatch: the shape error below names it
  if tower == "vision" and _is_square(have[1]) and _is_square(want[1]):
    ckpt[key] = resample_posemb(ckpt[key], want[1])
    report.resized.append(f"vision/{key} {have} -> {want}")
  elif tower == "text" and have[1] >= want[1]:
    ckpt[key] = ckpt[key][:, : want[1]]  # positions beyond text.max_len are never used
    report.resized.append(f"text/{key} {have} -> {want} (first {want[1]} positions)")


def load(model_init, dont_load, params):
  """Loads the towers named by `model_init` into `params` (the model's tree).

  params: the model's parameters (arrays, boxed or not, or ShapeDtypeStructs). Returns
  (params, reports): loaded leaves are host numpy arrays in the leaf's dtype, the others
  are the given leaves; one Report per tower loaded.
  """
  plain = nn.meta.unbox(params)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(plain), sep="/")
  patterns = [re.compile(p) for p in dont_load]
  new, reports, cache = dict(flat), [], {}
  for tower, spec in sources(model_init).items():
    path, _, key = spec.partition(":")
    if path not in cache:
      cache[path] = read_npz(path)
    if not key and tower in TWO_TOWER_KEYS and _is_two_tower(cache[path]):
      key = TWO_TOWER_KEYS[tower]
    ckpt = _subtree(cache[path], key, spec)
    ckpt = vision_names(ckpt) if tower == "vision" else text_names(ckpt)
    ours = {k[len(tower) + 1 :]: v for k, v in flat.items() if k.startswith(tower + "/")}
    scan = any("/encoderblock/" in k for k in ours)
    ckpt = _fit_depth(to_layout(ckpt, scan), ours)
    report = Report(tower, spec)
    _fit_posemb(tower, ckpt, ours, report)
    missing = []
    for k, target in ours.items():
      name = f"{tower}/{k}"
      if any(p.fullmatch(name) for p in patterns):
        report.kept_random.append(name)
        continue
      if k not in ckpt:
        missing.append(name)
        continue
      if tuple(ckpt[k].shape) != tuple(target.shape):
        raise ValueError(
          f"config.model_init: {spec!r} key {k!r} has shape {tuple(ckpt[k].shape)}; the "
          f"model's {name} has shape {tuple(target.shape)}"
        )
      new[name] = np.asarray(ckpt[k]).astype(target.dtype)
      report.loaded += 1
    if missing:
      raise ValueError(
        f"config.model_init: {spec!r} lacks {_short(missing, 4)} (shapes "
        f"{[tuple(flat[m].shape) for m in missing[:4]]}); add what may stay random to "
        "config.model_load.dont_load"
      )
    report.unused = sorted(set(ckpt) - set(ours))
    reports.append(report)
  loaded = flax.traverse_util.unflatten_dict(new, sep="/")
  return _rebox(params, loaded), reports


def _rebox(boxed, plain):
  """`plain`'s values in `boxed`'s metadata boxes (flax LogicallyPartitioned), if any."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  return jax.tree.map(
    lambda b, p: b.replace_boxed(p) if is_box(b) else p, boxed, plain, is_leaf=is_box
  )


def save_npz(path, params):
  """Writes params (ours or big_vision's) as a big_vision-style `.npz` of '/'-joined keys."""
  params = nn.meta.unbox(params)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  with open(path, "wb") as f:
    np.savez(f, **{k: np.asarray(v) for k, v in flat.items()})
