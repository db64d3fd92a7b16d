r"""Does the demo train faster with Grain worker processes? Training throughput by worker count.

    python -m benchmarks.pipeline_workers            # demo, 0 and 2 workers, 2 data kinds
    python -m benchmarks.pipeline_workers --quick    # smoke: tiny, few steps

The demo trains (`train.train_and_evaluate`, evaluation off) with `config.data.num_workers`
set to each of `--workers`, on two kinds of data:
  shapes  the built-in world, rendered in the pipeline (the README's demo);
  photos  ArrayRecord shards (jarl.tools.convert's layout) of photo-sized JPEGs (default
          640x480, quality 90) carrying shapes captions: decoding each image is what a
          user's own data costs (jarl/data/images.py decodes in draft mode).
`examples_per_sec` is the median of the logged `perf/examples_per_s` past the first
`--skip` steps (compilation and start-up); `speedup` = with workers / without. Workers pay
where it is clearly above 1. The last line is one JSON object.
"""

import argparse
import io
import os
import statistics
import tempfile

from PIL import Image

from benchmarks import record
from benchmarks.image_decode import photo_jpeg
from configs import pretrain
from jarl import metrics_writer, train
from jarl.data import shapes, sources


def write_photo_shards(folder: str, n: int, width: int, height: int) -> str:
  """n records of a photo-sized JPEG (a shapes scene over photo-like texture) and the
  scene's captions; returns their source spec."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  path = os.path.join(folder, "photos-00000-of-00001.arrayrecord")
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  texture = Image.open(io.BytesIO(photo_jpeg(width, height)))
  for i in range(n):
    scene = shapes.example("train", i, image_size=min(width, height))
    image = texture.copy()
    image.paste(Image.fromarray(scene["image"]), ((width - height) // 2, 0))
    data = io.BytesIO()
    image.save(data, "JPEG", quality=90)
    fields = {"captions": list(scene["captions"]), "key": f"scene{i}"}
    writer.write(sources.encode_record(fields, data.getvalue()))
  writer.close()
  return f"arrayrecord:{path}"


def examples_per_sec(config, workdir: str, skip: int) -> float:
  train.train_and_evaluate(config, workdir)
  rates = [
    r["perf/examples_per_s"]
    for r in metrics_writer.read_jsonl(workdir)
    if "perf/examples_per_s" in r and r["step"] > skip
  ]
  return statistics.median(rates)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="demo", choices=pretrain.VARIANTS)
  parser.add_argument("--workers", default="0,2", help="comma-separated worker counts")
  parser.add_argument("--steps", type=int, default=80)
  parser.add_argument("--skip", type=int, default=20, help="start-up steps left out")
  parser.add_argument("--photos", type=int, default=512, help="records of the photos data")
  parser.add_argument("--photo_size", default="640x480")
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  if args.quick:
    args.variant, args.steps, args.skip, args.photos, args.photo_size = "tiny", 6, 2, 16, "96x64"
  workers = [int(w) for w in args.workers.split(",")]
  width, height = (int(v) for v in args.photo_size.split("x"))
  result = {"variant": args.variant, "cpu_count": os.cpu_count(), "data": {}}
  with tempfile.TemporaryDirectory() as tmp:
    kinds = {"shapes": "", "photos": write_photo_shards(tmp, args.photos, width, height)}
    for kind, source in kinds.items():
      rates = {}
      for w in workers:
        config = pretrain.get_config(f"{args.variant},source={source}")
        config.data.num_workers = w
        config.update(total_steps=args.steps, ckpt_every_steps=args.steps, log_every_steps=1)
        config.evals = {}
        rates[w] = examples_per_sec(config, os.path.join(tmp, f"{kind}_{w}"), args.skip)
        print(f"{kind:<7} {w} workers: {rates[w]:8.1f} examples/s", flush=True)
      result["data"][kind] = {
        "examples_per_sec": {str(w): r for w, r in rates.items()},
        "speedup": {str(w): r / rates[workers[0]] for w, r in rates.items()},
      }
  record.emit("pipeline_workers", result, args)


if __name__ == "__main__":
  main()
