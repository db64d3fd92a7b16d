"""TFDS builders for the downstream data the paper family uses and TFDS lacks.

    jarl_vqav2          VQA v2 (vqa task; jarl.evaluation.vqa)
    jarl_gqa            GQA balanced (vqa task; exact-match accuracy)
    jarl_snli_ve        SNLI-VE (entailment task)
    jarl_coco_karpathy  COCO captions, Karpathy splits (caption task; CIDEr-D, BLEU-4)
    jarl_img2dataset    CC3M / CC12M downloaded with img2dataset (caption / prefix_lm)

Importing this package registers them; `python -m jarl.data.tfds.build` builds one;
reading prepared data (`tfds:<name>:<split>` sources) does not need the import, since
TFDS restores a prepared data set from its files. Each builder's docstring says what to
download and where to put it; all write ArrayRecord (random access for Grain).
"""

# Imported for their side effect: each module registers its builder with TFDS.
from jarl.data.tfds import coco_karpathy, gqa, img2dataset, snli_ve, vqav2  # noqa: F401
