"""SentencePiece tokenizer: `load("shapes")` for the built-in model, or a path to a .model.

Id conventions the model relies on: pad = 0 (also the decoder's start token), eos ends
every decoder target. The built-in model (jarl/data/assets/shapes.model, 256 pieces) is
written by `python -m jarl.data.make_tokenizer`; `python -m jarl.tools.make_tokenizer`
trains one with the same ids on your own captions.
"""

import os

import numpy as np
import sentencepiece as spm

BUILTIN = {"shapes": os.path.join(os.path.dirname(__file__), "assets", "shapes.model")}


class Tokenizer:
  """Encodes text to ids and back; `encode_fixed` pads/truncates to a fixed length."""

  def __init__(self, processor: spm.SentencePieceProcessor, name: str):
    self._sp = processor
    self.name = name
    self.vocab_size = processor.get_piece_size()
    self.pad_id = processor.pad_id()
    self.eos_id = processor.eos_id()
    if self.pad_id != 0:
      raise ValueError(
        f"tokenizer {name}: pad id is {self.pad_id}, but JARL needs pad_id == 0 (batch "
        "padding and the decoder start token); retrain it with --pad_id=0 (and a valid "
        "--eos_id), e.g. with python -m jarl.tools.make_tokenizer"
      )
    if self.eos_id < 0:
      raise ValueError(f"tokenizer {name}: has no eos piece; retrain it with --eos_id set")

  def encode(self, text: str) -> list[int]:
    """Ids of `text`, without bos/eos."""
    return self._sp.encode(text)

  def decode(self, ids) -> str:
    """Text of `ids` up to the first eos; pad (0) ids are dropped."""
    out = []
    for i in np.asarray(ids).reshape(-1).tolist():
      if i == self.eos_id:
        break
      if i != self.pad_id:
        out.append(int(i))
    return self._sp.decode(out)

  def encode_fixed(self, text: str, length: int, *, add_eos: bool) -> tuple[np.ndarray, bool]:
    """Ids of `text` as int32 [length], 0-padded; returns (ids, truncated).

    With add_eos the last real id is eos, also when the text was truncated, so the decoder
    always learns to stop.
    """
    ids = self.encode(text)
    room = length - 1 if add_eos else length
    truncated = len(ids) > room
    ids = ids[:room] + ([self.eos_id] if add_eos else [])
    out = np.zeros([length], np.int32)
    out[: len(ids)] = ids
    return out, truncated


def load(spec: str) -> Tokenizer:
  """`spec`: "shapes" (the packaged model) or a path (local or gs://) to a SentencePiece .model."""
  path = BUILTIN.get(spec, spec)
  if path.startswith("gs://") or "://" in path:
    from etils import epath  # remote paths only; keeps local loading dependency-free

    data = epath.Path(path).read_bytes()
  else:
    if not os.path.exists(path):
      raise FileNotFoundError(
        f"config.data.tokenizer={spec!r}: no such file (use 'shapes' for the built-in model"
        " or a path to a SentencePiece .model)"
      )
    with open(path, "rb") as f:
      data = f.read()
  processor = spm.SentencePieceProcessor()
  try:
    processor.load_from_serialized_proto(data)
  except Exception as e:
    raise ValueError(
      f"config.data.tokenizer={spec!r}: {path} is not a SentencePiece model: {e}"
    ) from e
  return Tokenizer(processor, path)
