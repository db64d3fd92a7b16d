"""jarl.data.images: photos come out upright, transparency on the background, drafts faithful."""

import io

import numpy as np
from PIL import Image
import pytest

from jarl.data import images, pipeline

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
  buf = io.BytesIO()
  img.save(buf, format=fmt, **kw)
  return buf.getvalue()


def _upright() -> np.ndarray:
  """uint8 [20, 30, 3]: red top half, blue bottom half (which way is up is visible)."""
  pixels = np.empty([20, 30, 3], np.uint8)
  pixels[:10], pixels[10:] = RED, BLUE
  return pixels


def test_exif_orientation_6_comes_out_upright():
  # Orientation 6: the viewer rotates the stored pixels 90 degrees clockwise, so a phone
  # held upright stores the scene turned 90 degrees counter-clockwise.
  stored = Image.fromarray(_upright()).transpose(Image.Transpose.ROTATE_90)
  exif = Image.Exif()
  exif[0x0112] = 6
  data = _encode(stored, "JPEG", quality=95, exif=exif.tobytes())
  with Image.open(io.BytesIO(data)) as raw:
    assert raw.size == (20, 30)  # stored sideways
  out = images.decode(data)
  assert out.shape == (20, 30, 3)
  np.testing.assert_allclose(out[:8].mean((0, 1)), RED, atol=8)
  np.testing.assert_allclose(out[12:].mean((0, 1)), BLUE, atol=8)
  np.testing.assert_array_equal(pipeline.load_image(data), out)  # the pipeline's decoder


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_transparent_pixels_take_the_background_colour(fmt):
  rgba = np.zeros([16, 16, 4], np.uint8)
  rgba[:, :8] = (0, 255, 0, 0)  # transparent, holding green that must not show
  rgba[:, 8:] = (*RED, 255)
  rgba[:4, 8:] = (0, 0, 255, 128)  # half-transparent blue over white
  out = images.decode(_encode(Image.fromarray(rgba, "RGBA"), fmt, lossless=True))
  assert out.shape == (16, 16, 3)
  assert np.all(out[:, :8] == images.BACKGROUND)
  assert np.all(out[4:, 8:] == RED)
  np.testing.assert_allclose(out[:4, 8:].reshape(-1, 3), [[127, 127, 255]] * 32, atol=1)


def test_palette_and_grey_alpha_images_take_the_background_colour():
  pal = Image.new("P", (8, 8), 1)
  pal.putpalette([0, 0, 0] + list(RED) + [0, 0, 0] * 254)
  pal.paste(0, (0, 0, 4, 8))  # index 0 (black) is the transparent one
  out = images.decode(_encode(pal, "PNG", transparency=0))
  assert np.all(out[:, :4] == images.BACKGROUND) and np.all(out[:, 4:] == RED)
  la = np.zeros([8, 8, 2], np.uint8)
  la[:, 4:] = (90, 255)
  out = images.decode(_encode(Image.fromarray(la, "LA"), "PNG"))
  assert np.all(out[:, :4] == images.BACKGROUND) and np.all(out[:, 4:] == 90)


def test_ordinary_images_decode_as_plain_rgb_conversion():
  rng = np.random.default_rng(0)
  for mode, shape in (("RGB", [40, 50, 3]), ("L", [40, 50])):
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    for fmt in ("PNG", "JPEG"):
      data = _encode(img, fmt)
      with Image.open(io.BytesIO(data)) as ref:
        expected = np.asarray(ref.convert("RGB"))
      # 40x50 is under twice the size 32: no draft, the exact pixels of before.
      np.testing.assert_array_equal(images.decode(data, 32), expected)
      np.testing.assert_array_equal(pipeline.load_image(data, 32), expected)


def test_draft_decodes_large_jpegs_smaller_but_never_below_the_size_and_faithfully():
  y, x = np.mgrid[0:1200, 0:1600]
  smooth = np.stack([x * 255 // 1600, y * 255 // 1200, 128 + 100 * np.sin(x / 90.0)], -1)
  data = _encode(Image.fromarray(smooth.astype(np.uint8)), "JPEG", quality=90)
  full = images.decode(data)
  assert full.shape == (1200, 1600, 3)
  for size in (64, 150, 224, 600):
    small = images.decode(data, size)
    assert min(small.shape[:2]) >= size and small.shape[:2] < full.shape[:2]
    a = pipeline.preprocess_image(small, size, None)[0]
    b = pipeline.preprocess_image(full, size, None)[0]
    assert np.abs(a - b).mean() < 0.02, size  # in [-1, 1]: under 2.6 of 255 per pixel
  assert images.decode(data, 601).shape == full.shape  # under twice the size: no draft


def test_draft_and_exif_rotation_together_give_an_upright_image_of_at_least_the_size():
  big = np.repeat(np.repeat(_upright(), 40, 0), 40, 1)  # [800, 1200, 3]
  exif = Image.Exif()
  exif[0x0112] = 6
  stored = Image.fromarray(big).transpose(Image.Transpose.ROTATE_90)
  out = images.decode(_encode(stored, "JPEG", quality=90, exif=exif.tobytes()), 96)
  assert out.shape == (100, 150, 3)  # 1/8 scale (800 // 96 = 8): upright, sides >= 96
  np.testing.assert_allclose(out[:45].mean((0, 1)), RED, atol=8)
  np.testing.assert_allclose(out[55:].mean((0, 1)), BLUE, atol=8)


def test_undecodable_bytes_raise():
  with pytest.raises(Exception):  # noqa: B017  (Pillow's own error; the pipeline counts it)
    images.decode(b"\xff\xd8\xff not a jpeg")
