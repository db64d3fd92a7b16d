r"""Looks at what the training pipeline feeds the model, and how fast.

    python -m jarl.data.inspect --config=configs/pretrain.py:demo --num_batches=20
    python -m jarl.data.inspect --config=configs/pretrain.py:demo --config.data.num_workers=2

Prints decoded examples (source, encoder text, target, image statistics), the mixture
and skip/truncation counters, and on its last line `examples_per_sec=<float>`: examples
per second over --num_batches batches, after one warm-up batch (worker start-up excluded).
"""

import time

from absl import app, flags
from ml_collections import config_flags

from jarl.data import pipeline, tokenizer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (file.py:variant).")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 20, "Batches to time.")
_NUM_EXAMPLES = flags.DEFINE_integer("show", 4, "Examples of the first batch to print.")


def describe(batch: dict, tok, names: list[str], num: int) -> list[str]:
  lines = []
  for r in range(min(num, len(batch["mask"]))):
    img = batch["image"][r]
    lines.append(
      f"[{r}] source={names[batch['dataset_id'][r]]} text={tok.decode(batch['text'][r])!r} "
      f"target={tok.decode(batch['target'][r])!r} image mean={img.mean():+.3f} "
      f"std={img.std():.3f} range=[{img.min():+.2f}, {img.max():+.2f}]"
    )
  return lines


def main(argv):
  del argv
  config = _CONFIG.value
  data = config.data
  names = [s["name"] for s in data.sources]
  tok = tokenizer.load(data.tokenizer)
  td = pipeline.make_train_data(
    data,
    global_batch_size=config.global_batch_size,
    seed=config.get("seed", 0),
    process_index=0,
    process_count=1,
  )
  try:
    first = next(td)
    print("batch: " + ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in first.items()))
    print(f"tokenizer: {data.tokenizer} vocab_size={tok.vocab_size}")
    print("\n".join(describe(first, tok, names, _NUM_EXAMPLES.value)))
    start = time.perf_counter()
    n = 0
    for _ in range(_NUM_BATCHES.value):
      n += len(next(td)["mask"])
    seconds = time.perf_counter() - start
    for key, value in sorted(td.stats().items()):
      print(f"{key}={value:g}")
  finally:
    td.close()
  print(f"batches={_NUM_BATCHES.value} batch_size={len(first['mask'])} seconds={seconds:.3f}")
  print(f"examples_per_sec={n / seconds:.1f}")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
