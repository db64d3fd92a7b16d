"""Image-text retrieval recall@k from a model's score matrix.

scores[i, t] is the model's similarity of image i and text t (higher = better match).
Image -> text: image i is a hit at k when one of its positive texts ranks in the top k of
row i. Text -> image: text t is a hit when one of its positive images ranks in the top k
of column t. Ties count against the query (a positive ranks after every negative with an
equal score), so a constant score matrix gets chance-level recall, not 1.0.
"""

from collections.abc import Sequence

import numpy as np


def _positive_matrix(positives, num_images: int, num_texts: int) -> np.ndarray:
  """[N_images, N_texts] bool from a bool matrix or the image index of each text."""
  pos = np.asarray(positives)
  if pos.ndim == 1:
    if pos.shape[0] != num_texts:
      raise ValueError(
        f"positives has {pos.shape[0]} image indices but scores has {num_texts} texts (columns)"
      )
    if pos.size and (pos.min() < 0 or pos.max() >= num_images):
      raise ValueError(
        f"positives: image indices must lie in [0, {num_images}), got [{pos.min()}, {pos.max()}]"
      )
    return np.arange(num_images)[:, None] == pos[None, :].astype(np.int64)
  if pos.shape != (num_images, num_texts):
    raise ValueError(f"positives shape {pos.shape} != scores shape {(num_images, num_texts)}")
  return pos.astype(bool)


def _ranks(scores: np.ndarray, pos: np.ndarray) -> np.ndarray:
  """0-based rank of the best positive per row: #negatives scoring >= it. [rows]"""
  if not pos.any(axis=1).all():
    bad = int(np.flatnonzero(~pos.any(axis=1))[0])
    raise ValueError(f"query {bad} has no positive: recall is undefined for it")
  best = np.where(pos, scores, -np.inf).max(axis=1, keepdims=True)
  return ((scores >= best) & ~pos).sum(axis=1)


def retrieval_recall_at_k(scores, positives, ks: Sequence[int] = (1, 5, 10)) -> dict:
  """{"i2t_r1": ..., "t2i_r1": ..., ...} recall in [0, 1] for each k.

  scores: [N_images, N_texts] float. positives: [N_images, N_texts] bool, or [N_texts] int
  giving the image index of each text (COCO/Flickr: 5 captions per image).
  """
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 2 or 0 in scores.shape:
    raise ValueError(f"scores must be a non-empty [N_images, N_texts] matrix, got {scores.shape}")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN")
  pos = _positive_matrix(positives, *scores.shape)
  i2t, t2i = _ranks(scores, pos), _ranks(scores.T, pos.T)
  out = {}
  for k in ks:
    if int(k) < 1:
      raise ValueError(f"ks contains {k}: recall@k needs k >= 1")
    out[f"i2t_r{k}"] = float((i2t < k).mean())
    out[f"t2i_r{k}"] = float((t2i < k).mean())
  return out
