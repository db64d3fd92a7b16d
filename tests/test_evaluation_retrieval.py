"""Recall@k on score matrices whose ranks are worked out by hand."""

import numpy as np
import pytest

from jarl.evaluation import retrieval


def test_recall_on_constructed_matrix():
  # 3 images, 6 texts; text t describes image t // 2.
  text_image = np.array([0, 0, 1, 1, 2, 2])
  scores = np.array(
    [
      [0.9, 0.1, 0.8, 0.0, 0.0, 0.0],  # image 0: its text 0 ranks 1st -> hit at 1
      [0.0, 0.0, 0.1, 0.2, 0.9, 0.8],  # image 1: best positive (0.2) after 2 negatives -> rank 3
      [0.0, 0.0, 0.0, 0.0, 0.3, 0.1],  # image 2: text 4 ranks 1st
    ]
  )
  r = retrieval.retrieval_recall_at_k(scores, text_image, ks=(1, 3))
  assert r["i2t_r1"] == pytest.approx(2 / 3)
  assert r["i2t_r3"] == 1.0
  # Columns: t0 ->0 best (hit), t1 ->0: 0.1 vs 0.0/0.0 (hit), t2 ->1: 0.1 < 0.8 (rank 2),
  # t3 ->1: 0.2 best (hit), t4 ->2: 0.3 < 0.9 (rank 2), t5 ->2: 0.1 < 0.8 (rank 2)
  assert r["t2i_r1"] == pytest.approx(3 / 6)
  assert r["t2i_r3"] == 1.0


def test_bool_positives_and_ties_count_against():
  pos = np.eye(4, dtype=bool)
  r = retrieval.retrieval_recall_at_k(np.ones((4, 4)), pos, ks=(1, 4))
  assert r == {"i2t_r1": 0.0, "t2i_r1": 0.0, "i2t_r4": 1.0, "t2i_r4": 1.0}
  perfect = retrieval.retrieval_recall_at_k(np.eye(4), pos, ks=(1,))
  assert perfect == {"i2t_r1": 1.0, "t2i_r1": 1.0}


def test_errors():
  with pytest.raises(ValueError, match="query 1 has no positive"):
    retrieval.retrieval_recall_at_k(np.eye(2), np.array([[1, 1], [0, 0]], bool))
  with pytest.raises(ValueError, match="3 image indices but scores has 2 texts"):
    retrieval.retrieval_recall_at_k(np.eye(2), [0, 1, 1])
  with pytest.raises(ValueError, match=r"\[0, 2\)"):
    retrieval.retrieval_recall_at_k(np.eye(2), [0, 2])
