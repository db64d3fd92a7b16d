"""Per-process Grain pipelines: training (mixed, adaptive, checkpointable) and evaluation.

Per training source:  MapDataset.source -> shard (process_index::process_count) ->
shuffle(seed) -> repeat -> random_map(decode, crop/flip, tokenize) -> to_iter_dataset ->
batch(CHUNK) -> mp_prefetch(num_workers).  The Mixer (main process) then picks the source
of every row of the batch and takes the next example from that source's chunk stream.
Mixing happens after prefetch, in the main process, because the weights depend on losses
the trainer reports step by step.

The order is a pure function of (config.data.shuffle_seed, seed, process_index,
process_count, config.data.num_workers): worker processes batch their own slices, so a
different worker count gives a different (equally deterministic) order, and a state must
be restored with the worker count it was saved with. Reader threads change nothing.

Bad records never raise inside the workers: the map emits a row with `skip` = reason code
and zero arrays (so chunks keep one structure); the main process drops and counts them, and
names the first LOG_BAD of each source in the log (index, key, reason).

Image bytes are decoded by jarl/data/images.py (EXIF orientation, alpha over a white
background, JPEG draft decoding at the size the image is then resized to).

Batches (per process, B = global_batch_size // process_count) hold the fields of the
layout they are given (jarl/batch.py declares it: `batch_spec(config)` for training, the
data fields alone by default and for evaluation), each [B, *shape]. Besides the model
inputs and dataset_id/mask, the pipeline knows how to fill:
    tags       1 where the target text names that word of config.data.tags (`tags_in`)
Eval batches also carry, on the host only:
    answers    object  [B]   list[str] references (vqa: the annotators' answers; caption:
                             every caption of the image; entailment: the label)
    kinds      object  [B]   str, the kind of question or hypothesis ("" if the record
                             names none; tasks.py)
"""

import math
import re

from absl import flags, logging
import grain
import numpy as np
from PIL import Image

from jarl import batch as batch_lib
from jarl.data import images, mixture, sources, tasks, tokenizer

SKIP_REASONS = ("bad_record", "bad_image", "missing_field", "empty_text")
# Fields of a batch that are not per-example outputs of `Prepare`.
_BATCH_ONLY = ("dataset_id", "mask")
# Optional per-example fields `Prepare` computes when the layout asks for them.
_EXTRA_FIELDS = ("tags",)
# Examples per worker->main transfer: amortises IPC, small enough that a rarely chosen
# source holds little memory. Part of the data order, so changing it changes the batches.
CHUNK = 16
MIN_CROP = 0.9  # training crops keep >= 90% of each side (shapes.MARGIN keeps objects whole)
# Unusable records named in the log per source (index, key, reason); the rest only counted.
LOG_BAD = 5
# A training source fails once this many distinct records came up unusable in a row, or its
# whole shard if smaller. The cap keeps a misconfigured huge source (every record lacking
# the task's field) from reading an epoch before it fails; a shard with even 0.1% usable
# records reaches it with chance (1 - 0.001) ** 10_000 < 1e-4 per run of bad rows.
MAX_BAD_IN_A_ROW = 10_000
_LEFT_RIGHT = re.compile(r"\b(left|right)\b")


def _seed(*parts: int) -> int:
  """A 32-bit seed from integers (Grain's shuffle/random_map need < 2**32)."""
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _swap_left_right(text: str) -> str:
  # A mirrored picture makes "left of" false; swapping keeps every text true.
  return _LEFT_RIGHT.sub(lambda m: "right" if m.group(1) == "left" else "left", text)


def load_image(image, size: int | None = None) -> np.ndarray:
  """Encoded bytes or an array as uint8 [H, W, 3]; raises on anything undecodable.

  `size`: the side it will be resized to; large JPEGs then decode faster (images.decode).
  """
  if isinstance(image, (bytes, bytearray, memoryview, np.bytes_)):
    return images.decode(bytes(image), size)
  arr = np.asarray(image)
  if arr.ndim == 2:
    arr = arr[..., None]
  if arr.ndim != 3 or arr.shape[-1] not in (1, 3) or arr.dtype != np.uint8 or 0 in arr.shape:
    raise ValueError(f"image array of shape {arr.shape} and dtype {arr.dtype}")
  return np.broadcast_to(arr, arr.shape[:2] + (3,))


def preprocess_image(image: np.ndarray, size: int, rng: np.random.Generator | None):
  """uint8 [H, W, 3] -> (float32 [size, size, 3] in [-1, 1], flipped).

  With `rng` (training augmentation): a random crop keeping >= MIN_CROP of each side and
  a horizontal flip with probability 1/2. Without: the whole image, resized.
  """
  flipped = False
  h, w, _ = image.shape
  if rng is not None:
    f = rng.uniform(MIN_CROP, 1.0)
    ch, cw = max(1, round(f * h)), max(1, round(f * w))
    y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    image = image[y : y + ch, x : x + cw]
    flipped = bool(rng.random() < 0.5)
  if image.shape[:2] != (size, size):
    image = np.asarray(
      Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR)
    )
  if flipped:
    image = image[:, ::-1]
  return image.astype(np.float32) * (2.0 / 255.0) - 1.0, flipped


class Prepare:
  """random_map transform: raw example -> fixed-structure model example.

  Picklable (mp_prefetch ships it to workers); the tokenizer loads lazily in each process.
  Output: image, text, target (as in the batch), `skip` int32 (0 = usable, else
  1 + index into SKIP_REASONS), `truncated` bool, `index` int64 (record position), and
  with keep_answers the reference strings `answers`.
  """

  def __init__(
    self,
    task: str,
    tokenizer_spec: str,
    *,
    image_size: int,
    text_len: int,
    target_len: int,
    augment: bool,
    keep_answers: bool = False,
    where: str = "task",
    visual_concepts: bool = False,
    tags: tuple = (),
  ):
    self.task, self.task_fn = task, tasks.get(task, where)
    self.tokenizer_spec, self.image_size = tokenizer_spec, image_size
    self.text_len, self.target_len = text_len, target_len
    self.augment, self.keep_answers = augment, keep_answers
    self.visual_concepts = visual_concepts
    self.tags = tuple(tags)
    # Training crops keep >= MIN_CROP of a side: decode that much larger so no crop of a
    # draft-decoded JPEG has to be upsampled.
    self._decode_size = math.ceil(image_size / MIN_CROP) if augment else image_size
    self._tok = None

  def __getstate__(self):
    return {**self.__dict__, "_tok": None}

  def _empty(self, reason: str, index: int) -> dict:
    s = self.image_size
    out = dict(
      image=np.zeros([s, s, 3], np.float32),
      text=np.zeros([self.text_len], np.int32),
      target=np.zeros([self.target_len], np.int32),
      skip=np.int32(1 + SKIP_REASONS.index(reason)),
      truncated=False,
      index=np.int64(index),
    )
    if self.tags:
      out["tags"] = np.zeros([len(self.tags)], np.float32)
    if self.keep_answers:
      out["answers"], out["kind"] = [], ""
    return out

  def __call__(self, raw: dict, rng: np.random.Generator) -> dict:
    if self._tok is None:
      self._tok = tokenizer.load(self.tokenizer_spec)
    index = int(raw.get("index", -1))
    if "_skip" in raw:
      return self._empty(raw["_skip"], index)
    try:
      ex = self.task_fn(raw, rng)
      if self.visual_concepts:
        ex = tasks.add_concepts(ex, raw)
    except tasks.SkipExample as e:
      return self._empty(e.reason, index)
    if raw.get("image") is None:
      return self._empty("missing_field", index)
    try:
      image, flipped = preprocess_image(
        load_image(raw["image"], self._decode_size),
        self.image_size,
        rng if self.augment else None,
      )
    except Exception:  # pylint: disable=broad-except
      return self._empty("bad_image", index)
    text, target = ex["text"], ex["target"]
    if flipped:
      text, target = _swap_left_right(text), _swap_left_right(target)
    text_ids, t1 = self._tok.encode_fixed(text, self.text_len, add_eos=False)
    target_ids, t2 = self._tok.encode_fixed(target, self.target_len, add_eos=True)
    out = dict(
      image=image,
      text=text_ids,
      target=target_ids,
      skip=np.int32(0),
      truncated=t1 or t2,
      index=np.int64(index),
    )
    if self.tags:
      out["tags"] = tags_in(target, self.tags)
    if self.keep_answers:
      refs = ex["answers"]
      if self.task == "caption":  # CIDEr/BLEU compare with every caption of the image
        refs = [c for c in (" ".join(str(c).split()) for c in raw["captions"]) if c]
      out["answers"] = [_swap_left_right(a) for a in refs] if flipped else refs
      out["kind"] = ex.get("kind", "")
    return out


def tags_in(text: str, tags: tuple) -> np.ndarray:
  """float32 [len(tags)]: 1 where `text` holds the tag word, alone or with a plural "s" /
  "es" ("two red circles" names "circle"), case-insensitive; else 0.

  Whole words only, so a tag never matches inside another word. This stands in for
  Tag2Text's parser: enough for a tag list of nouns over simple captions.
  """
  words = set(re.findall(r"[a-z0-9]+", text.lower()))
  return np.array([float(bool({t, t + "s", t + "es"} & words)) for t in tags], np.float32)


def _source_for(data_config, spec: str, where: str):
  return sources.make_source(
    spec,
    image_size=data_config.image_size,
    where=where,
    tfds_data_dir=data_config.get("tfds_data_dir", None) or None,
  )


def _prepare_for(data_config, task: str, *, train: bool, where: str, keep_answers=False, fields=()):
  return Prepare(
    task,
    data_config.tokenizer,
    image_size=data_config.image_size,
    text_len=data_config.text_len,
    target_len=data_config.target_len,
    augment=train and bool(data_config.get("augment", False)),
    keep_answers=keep_answers,
    where=where,
    visual_concepts=bool(data_config.get("visual_concepts", False)),
    tags=_tags(data_config) if "tags" in fields else (),
  )


def _tags(data_config) -> tuple:
  tags = tuple(str(t).strip().lower() for t in data_config.get("tags", ()))
  for t in tags:
    if not re.fullmatch(r"[a-z0-9]+", t):
      raise ValueError(
        f"config.data.tags={tags}: tag {t!r} is not one word of letters "
        f"and digits (tags match whole words of the target text)"
      )
  if len(set(tags)) != len(tags):
    raise ValueError(f"config.data.tags={tags}: tags repeat")
  return tags


def _read_options(data_config):
  return grain.ReadOptions(
    num_threads=int(data_config.get("read_threads", 0)), prefetch_buffer_size=4 * CHUNK
  )


def _prefetch(ds: grain.IterDataset, data_config) -> grain.IterDataset:
  workers = int(data_config.get("num_workers", 0))
  if workers > 0:
    # Grain reads absl flags when it starts workers; outside an absl app (notebooks,
    # tests) they are unparsed, so fall back to their defaults instead of failing.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return ds


def train_source_dataset(
  data_config, i: int, *, seed: int, process_index: int, process_count: int, fields=(), src=None
) -> tuple[grain.IterDataset, int]:
  """Infinite chunks (dicts of [CHUNK, ...] arrays) of config.data.sources[i] for this
  process, and the number of records in this process's shard. `fields`: the batch
  layout's field names (which optional per-example fields to compute); `src`: the source,
  if the caller already made it."""
  cfg = data_config.sources[i]
  where = f"config.data.sources[{i}]"
  if src is None:
    src = _source_for(data_config, cfg["source"], f"{where}.source")
  ds = grain.MapDataset.source(src)[process_index::process_count]
  if len(ds) == 0:
    raise ValueError(
      f"{where}.source={cfg['source']!r} ({src!r}) has {len(src)} records: "
      f"nothing for process {process_index} of {process_count}"
    )
  base = int(data_config.get("shuffle_seed", 0))
  shard_len = len(ds)
  ds = ds.shuffle(seed=_seed(base, seed, i, 0)).repeat()
  prepare = _prepare_for(data_config, cfg["task"], train=True, where=f"{where}.task", fields=fields)
  ds = ds.random_map(prepare, seed=_seed(base, seed, i, 1))
  ds = ds.to_iter_dataset(_read_options(data_config)).batch(CHUNK)
  return _prefetch(ds, data_config), shard_len


class _BadLog:
  """Names a source's first LOG_BAD unusable records in the log; the rest are only counted.

  Each record once (a repeated epoch meets it again). Its key (file name, webdataset key)
  is read back from the source here, in the main process, rather than carried through
  every chunk: only a handful are ever named.
  """

  def __init__(self, where: str, src):
    self.where, self._src, self._named = where, src, set()

  def __call__(self, index: int, reason: str):
    if len(self._named) >= LOG_BAD or index in self._named:
      return
    self._named.add(index)
    key = None
    if index >= 0:
      try:
        key = self._src[index].get("key")
      except Exception:  # pylint: disable=broad-except  (the record may be what is broken)
        pass
    logging.warning(
      "%s: skipped record %d%s: %s%s",
      self.where,
      index,
      f" (key {key!r})" if key else "",
      reason,
      "; further unusable records are only counted (data/skipped/*)"
      if len(self._named) == LOG_BAD
      else "",
    )


class _Stream:
  """One source's chunk iterator, read row by row; skips, counts and logs unusable rows.

  State = the Grain iterator state *before* the current chunk + the row position in it:
  restoring re-reads that chunk (Grain is deterministic) and resumes at the same row.
  """

  def __init__(self, name: str, where: str, dataset: grain.IterDataset, shard_len: int, src):
    self.name, self.where = name, where
    self._it = iter(dataset)
    self._state = self._it.get_state()
    self._chunk, self._pos, self._resume = None, 0, 0
    # Distinct records, not rows: the shuffle reorders every epoch, so a few bad records
    # can end one epoch and start the next (2 bad of 4 records: bad, bad | bad, bad) and
    # make more bad rows in a row than the shard holds while half of it is usable.
    self._shard_len = shard_len
    self._limit = max(1, min(shard_len, MAX_BAD_IN_A_ROW))
    self._log = _BadLog(f"{where} ({name})", src)
    self.skipped = dict.fromkeys(SKIP_REASONS, 0)
    self.truncated = 0
    self.examples = 0

  def next(self) -> tuple[dict, int]:
    """(chunk, row) of the next usable example."""
    bad, unnamed = set(), 0  # record indices unusable since the last usable row
    while True:
      # `while`: a state saved at a chunk's end restores to position == len(chunk), so the
      # re-read chunk is already used up and the next one is read at once.
      while self._chunk is None or self._pos >= len(self._chunk["skip"]):
        self._state = self._it.get_state()
        self._chunk, self._pos, self._resume = next(self._it), self._resume, 0
      row = self._pos
      self._pos += 1
      code = int(self._chunk["skip"][row])
      if code == 0:
        self.examples += 1
        self.truncated += int(self._chunk["truncated"][row])
        return self._chunk, row
      reason = SKIP_REASONS[code - 1]
      self.skipped[reason] += 1
      index = int(self._chunk["index"][row])
      self._log(index, reason)
      if index >= 0:
        bad.add(index)
      else:  # a source without record indices: every row counts as another record
        unnamed += 1
      if len(bad) + unnamed >= self._limit:
        what = (
          f"none of the {self._shard_len} records of this process's shard is usable"
          if self._limit == self._shard_len
          else f"{self._limit} records in a row were unusable"
        )
        raise RuntimeError(
          f"{self.where} ({self.name}): {what} (skipped so far: {self.skipped}); "
          "the log names the first few; check the source and task fields"
        )

  def get_state(self) -> dict:
    pos = self._resume if self._chunk is None else self._pos
    return dict(
      iterator=self._state,
      position=pos,
      skipped=dict(self.skipped),
      truncated=self.truncated,
      examples=self.examples,
    )

  def set_state(self, state: dict):
    self._it.set_state(state["iterator"])
    self._state = state["iterator"]
    self._chunk, self._pos, self._resume = None, 0, int(state["position"])
    self.skipped = {k: int(state["skipped"].get(k, 0)) for k in SKIP_REASONS}
    self.truncated, self.examples = int(state["truncated"]), int(state["examples"])

  def close(self):
    if hasattr(self._it, "close"):
      self._it.close()


class TrainData:
  """Infinite iterator of training batches of the layout `fields` ({field: (per-example
  shape, dtype)}, jarl.batch.batch_spec(config); default: the data fields alone)."""

  def __init__(
    self,
    data_config,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int,
    process_count: int,
    fields: dict | None = None,
  ):
    if global_batch_size % process_count:
      raise ValueError(
        f"config.global_batch_size={global_batch_size} is not divisible by "
        f"the process count {process_count}"
      )
    self.batch_size = global_batch_size // process_count
    self._cfg = data_config
    self._fields = dict(batch_lib.data_spec(data_config) if fields is None else fields)
    unknown = set(self._fields) - set(batch_lib.data_spec(data_config)) - set(_EXTRA_FIELDS)
    if unknown:
      raise ValueError(
        f"batch fields {sorted(unknown)}: the pipeline cannot fill them "
        f"(it fills the data fields and {sorted(_EXTRA_FIELDS)})"
      )
    tokenizer.load(data_config.tokenizer)  # fail here, naming the file, not in a worker
    srcs = list(data_config.sources)
    names = [s["name"] for s in srcs]
    if len(set(names)) != len(names):
      raise ValueError(f"config.data.sources names {names} are not unique")
    self._streams = []
    for i, s in enumerate(srcs):
      where = f"config.data.sources[{i}]"
      src = _source_for(data_config, s["source"], f"{where}.source")
      ds, n = train_source_dataset(
        data_config,
        i,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        fields=tuple(self._fields),
        src=src,
      )
      self._streams.append(_Stream(s["name"], f"{where}={s['source']!r}", ds, n, src))
    self.mixer = mixture.from_config(
      data_config,
      seed=_seed(data_config.get("shuffle_seed", 0), seed, 99),
      process_index=process_index,
    )

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    b = self.batch_size
    ids = self.mixer.choose(b)
    batch = {k: np.empty([b, *shape], dtype) for k, (shape, dtype) in self._fields.items()}
    batch["dataset_id"][:] = ids
    batch["mask"][:] = True
    keys = [k for k in self._fields if k not in _BATCH_ONLY]
    for r, i in enumerate(ids):
      chunk, row = self._streams[i].next()
      for key in keys:
        batch[key][r] = chunk[key][row]
    return batch

  def update(self, dataset_id: np.ndarray, loss: np.ndarray, step: int):
    """Reports per-example losses [B] (and their dataset ids [B]) of training step `step`.

    Pass the global arrays (all processes' rows) to keep every process's weights identical.
    """
    self.mixer.update(dataset_id, loss, step)

  def get_state(self) -> dict:
    return dict(
      mixer=self.mixer.get_state(), sources={st.name: st.get_state() for st in self._streams}
    )

  def set_state(self, state: dict):
    missing = [st.name for st in self._streams if st.name not in state["sources"]]
    if missing:
      raise ValueError(f"data state has no iterator for config.data.sources {missing}")
    self.mixer.set_state(state["mixer"])
    for st in self._streams:
      st.set_state(state["sources"][st.name])

  def stats(self) -> dict[str, float]:
    out = self.mixer.stats()
    for reason in SKIP_REASONS:
      out[f"data/skipped/{reason}"] = float(sum(st.skipped[reason] for st in self._streams))
    out["data/truncated"] = float(sum(st.truncated for st in self._streams))
    out["data/examples"] = float(sum(st.examples for st in self._streams))
    return out

  def close(self):
    for st in self._streams:
      st.close()


# The trainer's factory of training data (tests replace it to inject failures).
make_train_data = TrainData


class EvalData:
  """Re-iterable padded eval batches: every example once across processes, mask False on padding.

  All processes yield the same number of batches (collectives stay in step).
  """

  def __init__(
    self,
    data_config,
    eval_config,
    *,
    batch_size: int,
    process_index: int,
    process_count: int,
    name: str = "eval",
  ):
    where = f"config.evals.{name}"
    if batch_size % process_count:
      raise ValueError(
        f"{where}.batch_size={batch_size} is not divisible by the process count {process_count}"
      )
    self.batch_size = batch_size // process_count
    self._cfg = data_config
    self.task = eval_config["task"]
    src = _source_for(data_config, eval_config["source"], f"{where}.source")
    num = int(eval_config.get("num_examples", len(src)) or len(src))
    if num < 0 or not len(src):
      raise ValueError(
        f"{where}.num_examples={num}: the source {eval_config['source']!r} has {len(src)} records"
      )
    if num > len(src):  # a size's default count over a small own dataset: all of it
      logging.warning(
        "%s.num_examples=%d but %s.source=%r has %d records: evaluating on all of them.",
        where,
        num,
        where,
        eval_config["source"],
        len(src),
      )
      num = len(src)
    self.num_examples = num
    per_process = -(-num // process_count)
    self.num_batches = -(-per_process // self.batch_size)
    ds = grain.MapDataset.source(src)[:num][process_index::process_count]
    prepare = _prepare_for(
      data_config, self.task, train=False, where=f"{where}.task", keep_answers=True
    )
    ds = ds.random_map(prepare, seed=_seed(data_config.get("shuffle_seed", 0), 7))
    self._dataset = _prefetch(ds.to_iter_dataset(_read_options(data_config)), data_config)
    self.skipped = dict.fromkeys(SKIP_REASONS, 0)
    self._log = _BadLog(f"{where}.source={eval_config['source']!r}", src)  # once, not per pass

  def __len__(self):
    return self.num_batches

  def __iter__(self):
    b = self.batch_size
    it = iter(self._dataset)
    self.skipped = dict.fromkeys(SKIP_REASONS, 0)
    fields = batch_lib.data_spec(self._cfg)
    try:
      for _ in range(self.num_batches):
        batch = {k: np.zeros([b, *shape], dtype) for k, (shape, dtype) in fields.items()}
        answers = np.empty([b], object)
        answers[:] = [[] for _ in range(b)]
        kinds = np.full([b], "", object)
        r = 0
        while r < b:
          ex = next(it, None)
          if ex is None:
            break
          if int(ex["skip"]):
            reason = SKIP_REASONS[int(ex["skip"]) - 1]
            self.skipped[reason] += 1
            self._log(int(ex["index"]), reason)
            continue
          for key in ("image", "text", "target"):
            batch[key][r] = ex[key]
          batch["mask"][r] = True
          answers[r] = list(ex["answers"])
          kinds[r] = str(ex["kind"])
          r += 1
        batch["answers"], batch["kinds"] = answers, kinds
        yield batch
    finally:
      if hasattr(it, "close"):
        it.close()


def make_eval_data(
  data_config, eval_config, *, batch_size: int, process_index: int, process_count: int
) -> EvalData:
  """Padded eval batches for `eval_config` (a dict like configs/pretrain.py c.evals.val).

  `batch_size` is global, like config.global_batch_size: each process yields
  batch_size // process_count rows per batch.
  """
  return EvalData(
    data_config,
    eval_config,
    batch_size=batch_size,
    process_index=process_index,
    process_count=process_count,
  )
