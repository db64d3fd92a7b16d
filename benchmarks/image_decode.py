r"""Decoding a phone-sized JPEG: full resolution against draft mode (jarl/data/images.py).

    python -m benchmarks.image_decode            # 4000x3000 (12 MP), sizes 64 and 224
    python -m benchmarks.image_decode --quick    # smoke: 1200x900, 3 repeats

A generated photo-like JPEG (smooth gradients plus noise, quality 90) is decoded to the
pipeline's pixels for each model image size, as the pipeline does it: `pipeline.load_image`
(decode), then `preprocess_image` (the evaluation resize), with and without the target size that enables draft decoding. Median of
`--repeats`, one process; `draft_speedup` = full / draft. The last line is one JSON object.
"""

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image

from benchmarks import record
from jarl.data import pipeline


def photo_jpeg(width: int, height: int, seed: int = 0) -> bytes:
  """A JPEG whose content compresses like a photo: gradients, blobs and sensor noise."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:height, :width] / max(width, height)
  base = np.stack([np.sin(6 * x + c) + np.cos(5 * y - c) for c in (0.0, 1.0, 2.0)], -1)
  pixels = 127 + 60 * base + rng.normal(0, 12, (height, width, 3))
  out = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
  return out.getvalue()


def median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--width", type=int, default=4000)
  parser.add_argument("--height", type=int, default=3000)
  parser.add_argument("--sizes", default="64,224")
  parser.add_argument("--repeats", type=int, default=9)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  if args.quick:
    args.width, args.height, args.repeats = 1200, 900, 3
  data = photo_jpeg(args.width, args.height)
  result = dict(width=args.width, height=args.height, jpeg_bytes=len(data), sizes={})
  for size in map(int, args.sizes.split(",")):
    full = median_seconds(
      lambda s=size: pipeline.preprocess_image(pipeline.load_image(data), s, None), args.repeats
    )
    draft = median_seconds(
      lambda s=size: pipeline.preprocess_image(pipeline.load_image(data, size=s), s, None),
      args.repeats,
    )
    result["sizes"][str(size)] = dict(
      full_ms=1e3 * full, draft_ms=1e3 * draft, draft_speedup=full / draft
    )
    print(
      f"size {size:4d}: full {1e3 * full:7.1f} ms, draft {1e3 * draft:7.1f} ms, {full / draft:.1f}x"
    )
  record.emit("image_decode", result, args)


if __name__ == "__main__":
  main()
