"""Image tagging head: which tag words the caption names, read off the image alone.

Tag2Text (Huang et al., arXiv 2303.05657) trains an image tagger next to its
vision-language losses, on tags parsed from each image's own text, so the vision tower
gets an explicit signal for every named object. Ours is the simplest form of it: a fixed
tag list (config.data.tags, the word matching in jarl/data/pipeline.py), the ViT's top
tokens mean-pooled, one linear layer to a logit per tag. The loss (jarl/losses/tags.py,
`tag_cross_entropy`) spreads the target mass evenly over the tags present.

Why JARL has it (our decision, not the paper's): through the fusion and the decoder, a
word's gradient reaches the image features only once the model has learnt where to look,
and words that pixels give away (colours) are learnt first and crowd out the rest. In the
demo, a ViT trained on whole captions did not learn to tell shapes apart in 1000 steps;
one tagged with the four shape nouns did (README "Downstream"). The head reads only the
image, costs one [B, D] x [D, T] matmul, and is not used at inference.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jarl.models import layers


class TagHead(nn.Module):
  """vision tokens [B, N, D] -> tag logits [B, T] float32."""

  num_tags: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens):
    pooled = jnp.mean(tokens.astype(jnp.float32), axis=1)
    pooled = layers.layer_norm("norm", self.dtype)(pooled)
    logits = nn.Dense(
      self.num_tags,
      dtype=self.dtype,
      name="logits",
      # Zero-initialised like big_vision's classifier heads: no random
      # gradient reaches the ViT before the head has seen a label.
      kernel_init=layers.zeros_kernel_init(("embed", None)),
      bias_init=layers.bias_init((None,)),
    )(pooled)
    return logits.astype(jnp.float32)
