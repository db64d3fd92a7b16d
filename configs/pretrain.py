r"""Pretraining JARL on captioning + prefix-LM mixtures.

Variants (select with `configs/pretrain.py:<variant>`; configs/common.py describes sizes):
  tiny  the tests' model: demo's code paths at 16 px, patch stem, no tagging loss, 6 steps.
        python -m jarl.main --config=configs/pretrain.py:tiny --workdir=/tmp/jarl_tiny
  bench the accuracy benchmarks' pretraining (benchmarks/shapes_runs.py): the demo model
        with the paper's patch stem and no tagging loss, 400 steps, no evaluation.
        python -m jarl.main --config=configs/pretrain.py:bench --workdir=/tmp/jarl_bench
  demo  CPU-sized model on the built-in `shapes` world; trains in minutes on 2 cores.
        python -m jarl.main --config=configs/pretrain.py:demo --workdir=/tmp/jarl_demo
  base  paper-scale: ViT-B/16 at 224 px, 12-layer text encoder, the paper's fusion (N = 64,
        K = 4, 16 fusion layers), ~450M parameters.
        python -m jarl.main --config=configs/pretrain.py:base --workdir=gs://BUCKET/jarl_base
        Towers from public checkpoints (`config.model_init`, big_vision's convention;
        jarl/models/model_init.py): the AugReg ViT-B/16 into the vision tower,
        --config.model_init=gs://vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz
        or SigLIP B/16 into both towers (then data.tokenizer must be its c4_en model,
        gs://t5-data/vocabs/cc_en.32000/sentencepiece.model; vocab_size 32000 fits it):
        --config.model_init=gs://big_vision/siglip/webli_en_b16_224_63724782.npz
  large ViT-L/14 at 224 px, L-sized (24-layer, 1024-wide) text encoder, fusion and decoder
        at width 1024: too big for data parallelism alone on 32 GiB chips; use fsdp.
        python -m jarl.tools.plan --config=configs/pretrain.py:large,fsdp=8 --devices=256 \
            --hbm_gib=32

Mesh sizes ride on the variant: `configs/pretrain.py:large,fsdp=8` (also `data=`, `model=`;
an axis not given is 1, `data` takes the remaining devices unless set). `bucket=gs://b`
sets where base/large read their tokenizer and shards (`<bucket>/spm/c4_en_32k.model`,
`<bucket>/cc12m/*.arrayrecord`); launch/tpu_vm.sh passes its `--bucket`.

Your own images and captions (configs/common.py, `own_data`): shards of
jarl.tools.convert and a tokenizer of jarl.tools.make_tokenizer, one key each:
  python -m jarl.main --workdir=/tmp/mine --config=configs/pretrain.py:demo,\
source=arrayrecord:/data/*.arrayrecord,tokenizer=/data/spm.model,text_len=16,target_len=24

More commands:
  python -m jarl.tools.flops --config=configs/pretrain.py:base --config.model.fusion.type=concat
"""

import ml_collections

from configs import common

VARIANTS = (*common.SHAPES_SIZES, "base", "large")
MESH_AXES = ("data", "fsdp", "model")


# Fields both towers share. Width/depth/heads/mlp come from the variant string unless set.
_TOWER = dict(
  width=None, depth=None, mlp_dim=None, num_heads=None, scan=False, remat_policy="none", dropout=0.0
)


def _model(variant):
  m = ml_collections.ConfigDict()
  # Width/depth/heads/mlp of each tower come from the variant string unless set here.
  m.vision = ml_collections.ConfigDict(
    dict(
      variant="B/16",
      image_size=224,
      posemb="learn",
      **_TOWER,
      # patch: the paper's linear patch embedding (loads big_vision checkpoints); conv:
      # log2(patch) 3x3 stride-2 convolutions to the same grid (jarl/models/vit.py).
      stem="patch",
      # Vision-token pruning inside the ViT: none | elip (text-guided pruning + merging,
      # Guo et al. 2309.16738). After block elip_layers[i], keep the top elip_keep[i] of
      # the tokens entering that stage and merge the rest into one. Defaults follow ELIP's
      # ALBEF schedule (after blocks 2, 4, 10 keep 90%, 65%, 40% of the patches):
      # 196 -> 177 -> 128 -> 80 tokens, ~29% fewer per layer on average.
      token_pruning="none",
      elip_layers=(2, 4, 10),
      elip_keep=(0.9, 0.72, 0.62),
    )
  )
  m.text = ml_collections.ConfigDict(
    dict(
      variant="B",
      max_len=32,
      **_TOWER,
    )
  )
  m.fusion = ml_collections.ConfigDict(
    dict(
      # jarl (the paper's, Sec. 2) | co_tokenization | perceiver | concat | cross_attention
      type="jarl",
      width=768,
      num_heads=12,
      mlp_dim=3072,
      num_tokens=64,  # N: latent tokens per modality (jarl), joint tokens, latents
      iterations=4,  # K: fusion iterations (concat: K x layers_per_iteration blocks)
      # n transformer layers after each iteration. 4 x 4 = 16 fusion layers, the smaller of
      # the two depths in the paper's Table 4 (16, 32): with our B-sized towers and decoder
      # 32 would put base at ~560M parameters against the paper's ~350M; 16 gives ~450M.
      layers_per_iteration=4,
      # Depth d = output of encoder block d (1-based); towers are built up to their last tap.
      # jarl, perceiver, concat, cross_attention read the last tap only; co_tokenization
      # reads one tap per iteration (len(taps) == iterations).
      vision_taps=(3, 6, 9, 12),
      text_taps=(3, 6, 9, 12),
      # jarl's switches (paper Table 4; jarl/models/gated_fusion.py):
      resample="latent",  # latent (Eq. 2, learned queries) | spatial (TokenLearner v1.1)
      combine="gated",  # gated (Eq. 3 tanh gates) | residual (no gates) | none (no carry)
      gate_init=1.0,  # alpha, beta at init: open gates, every part trains from scratch
      memory="fused",  # the decoder reads: fused (t, N tokens) | fused_and_image ([t; f_N])
      # co_tokenization's reducer; reducer_hidden also sizes jarl's spatial resampler.
      reducer="tokenlearner_v11",  # tokenlearner_v11 | tokenlearner_v1
      reducer_hidden=64,
      dropout=0.0,
    )
  )
  m.decoder = ml_collections.ConfigDict(
    dict(width=768, depth=6, num_heads=12, mlp_dim=3072, max_len=32, dropout=0.0)
  )
  # ViCHA's auxiliary-loss heads (Shukor et al. 2208.13628; jarl/models/vicha.py), all
  # off by default. contrastive_depths: (vision_depth, text_depth) pairs, e.g.
  # ((6, 6), (9, 9), (12, 12)), each an InfoNCE between the pooled, projected (embed_dim)
  # features of the ViT at vision_depth and of the text tower at text_depth run over the
  # decoder target (the caption); weights in config.losses. mim_ratio > 0: that fraction
  # of patches is masked (learned token) in a second ViT pass and their normalised
  # pixels regressed from its top features (one more vision forward/backward per step).
  m.vicha = ml_collections.ConfigDict(
    dict(contrastive_depths=(), embed_dim=256, temperature_init=0.07, mim_ratio=0.0)
  )
  m.vocab_size = 32_000
  # Compute dtype: auto | bfloat16 | float32; parameters stay float32. auto = bfloat16 on
  # TPU/GPU, float32 on CPU (jarl/models/config.py), for every variant: the CPU-sized ones
  # (demo, bench, tiny) keep the float32 their recorded figures and tests were measured in.
  m.dtype = "auto"

  if variant == "demo":
    # Conv stem (our decision for the demo, not the paper's): with the linear patch
    # embedding the demo did not learn to tell shapes apart in multi-object scenes
    # (experiments/shape_learning/README.md; docs/downstream.md has the accuracies).
    m.vision.update(
      variant="Ti/8",
      image_size=64,
      width=96,
      depth=4,
      mlp_dim=256,
      num_heads=4,
      elip_layers=(1, 2, 3),
      stem="conv",
    )
    m.text.update(variant="Ti", max_len=24, width=96, depth=2, mlp_dim=256, num_heads=4)
    # The paper's fusion at the demo's size (docs/design.md, "The demo"): N = 16 tokens per
    # modality, K = 2 iterations. Two of the paper's own switches make it learn the demo's
    # scenes: spatial resampling (TokenLearner v1.1 maps keep where a shape is; latent
    # queries reached 68.8% VQA at 2000 steps, spatial 76.7%) and the decoder reading
    # [t; f_N] (memory=fused_and_image; the fused tokens alone: 59.5%). 90.0% after the
    # 4000-step fine-tune; co-tokenization, the demo's fusion before, 91.9%.
    m.fusion.update(
      type="jarl",
      width=96,
      num_heads=4,
      mlp_dim=256,
      num_tokens=16,
      iterations=2,
      layers_per_iteration=1,
      resample="spatial",
      memory="fused_and_image",
      vision_taps=(2, 4),
      text_taps=(1, 2),
    )
    m.decoder.update(width=96, depth=2, num_heads=4, mlp_dim=256, max_len=24)
    m.vicha.embed_dim = 64
    m.vocab_size = 256
  if variant == "large":
    # ViT-L/14 (24 x 1024, 16 heads) -> 16x16 = 256 patches at 224 px; text L; taps every
    # 6 blocks so the towers are built to the top, as in base.
    m.vision.update(variant="L/14")
    m.text.update(variant="L")
    m.fusion.update(
      width=1024, num_heads=16, mlp_dim=4096, vision_taps=(6, 12, 18, 24), text_taps=(6, 12, 18, 24)
    )
    m.decoder.update(width=1024, num_heads=16, mlp_dim=4096)
  return m


def _data(variant, bucket):
  """bucket: where base/large's tokenizer and cc12m shards live (`bucket=` in the arg)."""
  d = ml_collections.ConfigDict()
  if variant == "demo":
    d.image_size = 64
    d.tokenizer = "shapes"  # the built-in SentencePiece model; else a path to a .model
    d.sources = [
      dict(name="caption", source="shapes:train", task="caption", weight=1.0),
      dict(name="prefix_lm", source="shapes:train", task="prefix_lm", weight=1.0),
    ]
  else:
    d.image_size = 224
    d.tokenizer = f"{bucket}/spm/c4_en_32k.model"
    d.sources = [
      dict(
        name="cc12m_caption",
        source=f"arrayrecord:{bucket}/cc12m/*.arrayrecord",
        task="caption",
        weight=1.0,
      ),
      dict(
        name="cc12m_prefix_lm",
        source=f"arrayrecord:{bucket}/cc12m/*.arrayrecord",
        task="prefix_lm",
        weight=1.0,
      ),
    ]
  d.text_len = 24 if variant == "demo" else 32
  d.target_len = 24 if variant == "demo" else 32
  d.shuffle_seed = 0
  d.num_workers = 0 if variant == "demo" else 8  # Grain mp_prefetch worker processes
  # Reader threads per process: 0 for in-memory `shapes` (no GIL contention), more for
  # remote ArrayRecord/TFDS files. They never change the data order.
  d.read_threads = 0 if variant == "demo" else 16
  d.tfds_data_dir = ""  # TFDS data_dir for tfds: sources; "" = TFDS's default
  # ViCHA visual concepts: append the example's image-level keywords (the source's
  # `concepts` field: shapes' object words, or keywords attached by jarl.tools.convert
  # --concepts_field) to the encoder text after " ; ". Records without the field are
  # skipped as missing_field.
  d.visual_concepts = False
  # Tag words: the model gets an image tagging head with one logit per word
  # (jarl/models/tagging.py) and, with config.losses.tag_weight > 0, each training example
  # is labelled with the ones its target text names (whole words, plural "s"/"es" too).
  # demo: the four shape nouns. A ViT trained from scratch on whole captions learns
  # colours and not shapes in the demo's budget; tagging the shape nouns teaches it
  # shape (experiments/shape_learning/README.md). base/large: none; a
  # noun list of the data (e.g. COCO's 80 object names) is the thing to try.
  d.tags = ("circle", "square", "triangle", "diamond") if variant == "demo" else ()
  d.augment = True  # random crop (>= 90% per side) + mirror with left/right swapped in text
  # Sampling policy: static | loss | excess_loss | learning_progress (jarl/data/mixture.py).
  # static by default: no adaptive policy has beaten it beyond seed noise on a noisy
  # caption mixture (benchmarks/data_efficiency.py, docs/data.md), and `loss` leans to
  # noisy data by construction.
  d.sampling = ml_collections.ConfigDict(
    dict(
      policy="static",
      update_every=50,  # T: steps between weight updates
      tau=1.0,
      epsilon=0.05,
      smoothing=0.9,  # EMA of each source's loss per update
      progress_smoothing=0.9,  # learning_progress: EMA of the relative fall per update
      # excess_loss's reference loss per source: the last train/loss_<name> of the finished
      # run in this workdir (e.g. a short `static` run over the same sources) ...
      reference_run="",
      # ... and/or given here, name -> loss (these win over reference_run's).
      reference_losses={},
    )
  )
  return d


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(
    arg,
    variants=VARIANTS,
    variant="base",
    data=-1,
    fsdp=1,
    model=1,
    bucket=common.BUCKET,
    **common.OWN_DATA,
  )
  variant = arg.variant
  # tiny and bench are the demo with the overrides at the end (_tiny, _bench).
  scale = "demo" if variant in common.SHAPES_SIZES else variant
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.stage = "pretrain"  # or "finetune" (configs/common.py, finetune)
  c.seed = 0
  c.model = _model(scale)
  c.data = _data(scale, arg.bucket)

  demo = scale == "demo"
  c.global_batch_size = 32 if demo else 4096
  c.total_steps = 2000 if demo else 100_000
  c.log_every_steps = 25 if demo else 100
  c.ckpt_every_steps = 250 if demo else 2000
  c.keep_checkpoints = 3
  c.init_from = ""  # workdir or step dir of another run: load its params only
  # Public checkpoints into the towers (jarl/models/model_init.py): "vit.npz",
  # "siglip.npz" (both towers), "file.npz:img", or {"vision": ..., "text": ...}. Typed
  # `object` so that a config may set the dict form. Applied on a fresh start only.
  c.model_init = ml_collections.FieldReference("", field_type=object)
  # Regexes over our parameter names that may keep their random init, e.g. "vision/stem/.*".
  c.model_load = ml_collections.ConfigDict(dict(dont_load=()))
  c.skip_nonfinite = False  # True: drop non-finite updates; False: stop with an error
  c.profile_steps = 0  # > 0: trace this many steps into the workdir (TensorBoard)

  # Auxiliary losses added to the decoder's token cross-entropy (0 = off); each needs its
  # head in config.model.vicha. contrastive_depth_weights: one weight per
  # contrastive_depths pair, () = all 1. Logged as train/loss_decoder, train/loss_<aux>.
  c.losses = ml_collections.ConfigDict(
    dict(
      contrastive_weight=0.0,
      contrastive_depth_weights=(),
      mim_weight=0.0,
      tag_weight=1.0 if demo else 0.0,
    )
  )

  c.optimizer = ml_collections.ConfigDict(
    dict(
      learning_rate=1e-3,
      warmup_steps=100 if demo else 10_000,
      weight_decay=1e-4,
      b1=0.9,
      b2=0.999,
      clip_norm=1.0,
      grad_accum_steps=1,
      label_smoothing=0.0,
    )
  )

  # ('axis', size): -1 takes the remaining devices.
  c.mesh = [(axis, arg[axis]) for axis in MESH_AXES]
  # Logical axis name -> mesh axes (flax logical partitioning rules). Examples split over
  # data x fsdp; under FSDP every weight's `embed` dimension is split over fsdp and gathered
  # layer by layer when used, so parameters, gradients and Adam moments shrink by the fsdp
  # size; `model` splits heads and MLP hidden units (tensor parallelism, Megatron-style).
  c.logical_axis_rules = [
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("vocab", "model"),
    ("length", None),
    ("joint", None),
  ]

  c.evals = ml_collections.ConfigDict()
  c.evals.val = dict(
    type="loss",
    source="shapes:validation" if demo else c.data.sources[0]["source"],
    task="caption",
    every_steps=250 if demo else 5000,
    num_examples=512 if demo else 10_000,
    batch_size=64 if demo else 1024,
  )
  if variant == "tiny":
    _tiny(c)
  elif variant == "bench":
    _bench(c)
  common.own_data(c, arg)
  return c


def _tiny(c: ml_collections.ConfigDict):
  """The demo shrunk for the tests: same code paths, compiles in seconds."""
  # The paper's patch stem: a 16 px image leaves the demo's conv stem a 2x2 grid whose
  # first steps are too noisy for the tests' "loss falls within a few steps" checks.
  c.model.vision.update(stem="patch", image_size=16, width=32, depth=2, mlp_dim=64, num_heads=2)
  # No image tagging loss: the trainer tests check the plain decoder loss (tagging has its
  # own tests, which turn it on).
  c.data.tags = ()
  c.losses.tag_weight = 0.0
  c.model.text.update(max_len=8, width=32, depth=1, mlp_dim=64, num_heads=2)
  c.model.fusion.update(type="jarl", width=32, num_heads=2, mlp_dim=64, num_tokens=4)
  c.model.fusion.update(iterations=1, vision_taps=(2,), text_taps=(1,))  # one tap each
  c.model.decoder.update(width=32, depth=1, num_heads=2, mlp_dim=64, max_len=8)
  c.data.update(image_size=16, text_len=8, target_len=8)
  c.data.sampling.update_every = 2
  c.update(global_batch_size=8, total_steps=6, log_every_steps=1, ckpt_every_steps=3)
  c.optimizer.update(warmup_steps=1, learning_rate=3e-3)
  c.evals.val.update(num_examples=16, batch_size=8, every_steps=3)


def _bench(c: ml_collections.ConfigDict):
  """The demo as the accuracy benchmarks pretrain it (benchmarks/shapes_runs.py)."""
  # The paper's linear patch embedding and no tagging loss: the settings the benchmarks'
  # recorded results were measured with (docs "Results").
  c.model.vision.stem = "patch"
  c.data.tags = ()
  c.losses.tag_weight = 0.0
  # 400 steps (with 500 fine-tuning steps) keep a benchmark's 9 runs within ~30 min on 2
  # cores; warmup is a tenth of them.
  c.total_steps = 400
  c.optimizer.warmup_steps = 40
  c.ckpt_every_steps = 400
  c.evals = {}  # the fine-tuned accuracy is the measure
