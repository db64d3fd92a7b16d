"""Encoded image bytes -> uint8 RGB pixels, as a user's own photos need them.

One decoder for every reader of image bytes (the pipeline, and through it prediction):
  - EXIF orientation applied: phones store pixels as the sensor saw them plus an
    Orientation tag, so a portrait photo would otherwise arrive sideways.
  - Transparency composited over BACKGROUND: `convert("RGB")` alone drops alpha and shows
    whatever colour the transparent pixels happen to hold (often black, sometimes noise).
  - JPEG draft decoding: given the size the caller will resize to, libjpeg decodes at 1/2,
    1/4 or 1/8 scale straight from the DCT coefficients, never below that size. Only for
    images at least DRAFT_MIN_RATIO times the size in both sides, so images already near
    the model's resolution decode exactly as before. Entropy decoding, which no scale
    skips, is what remains of the cost (benchmarks/image_decode.py measures the gain).
"""

import io

import numpy as np
from PIL import Image, ImageOps

# What transparent pixels become: white, the page behind most logos, icons and scans.
BACKGROUND = (255, 255, 255)
# Draft only when the image is this many times the target size in both sides: below that
# libjpeg could only halve it, for little saving, and small images keep exact decoding.
DRAFT_MIN_RATIO = 2


def to_rgb(img: Image.Image) -> Image.Image:
  """An RGB image, transparent parts composited over BACKGROUND."""
  if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
    rgba = img.convert("RGBA")
    out = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    out.alpha_composite(rgba)
    return out.convert("RGB")
  return img if img.mode == "RGB" else img.convert("RGB")


def upright_rgb(img: Image.Image) -> Image.Image:
  """`img` turned as its EXIF orientation says, in RGB over BACKGROUND (a new image)."""
  return to_rgb(ImageOps.exif_transpose(img))


def decode(data: bytes, size: int | None = None) -> np.ndarray:
  """Encoded image bytes -> uint8 [H, W, 3], upright, alpha on BACKGROUND.

  `size`: the side the caller resizes to (both sides), or None for full resolution. A JPEG
  at least DRAFT_MIN_RATIO * size in both sides is decoded at a reduced scale whose sides
  are still >= size. Raises what Pillow raises on undecodable bytes.
  """
  with Image.open(io.BytesIO(bytes(data))) as img:
    w, h = img.size
    if size and min(w, h) >= DRAFT_MIN_RATIO * size:
      # A no-op but for JPEG (and MPO, the multi-picture JPEG some phones write). The
      # target is square, so the EXIF rotation applied after cannot take a side below it.
      img.draft("RGB", (size, size))
    img.load()
    return np.asarray(upright_rgb(img))
