"""TokenLearner reducers: weights are proper pools and padding never leaks in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jarl.models import resample as reducers

B, N, D, M = 2, 10, 16, 4


def _inputs(seed=0):
  x = jax.random.normal(jax.random.key(seed), (B, N, D))
  mask = np.ones((B, N), bool)
  mask[0, 7:] = False  # three padded tokens in the first example
  mask[1, 4:] = False
  return x, jnp.asarray(mask)


def _apply(name, x, mask, grid=None):
  module = reducers.REDUCERS[name](M, 8)
  params = module.init(jax.random.key(1), x, mask, grid)
  return module.apply(params, x, mask, grid), params, module


def test_v11_weights_sum_to_one_over_valid_tokens_and_zero_on_padding():
  x, mask = _inputs()
  (tokens, w), _, _ = _apply("tokenlearner_v11", x, mask)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
  assert float(jnp.abs(jnp.where(mask[:, None], 0.0, w)).max()) == 0.0
  np.testing.assert_allclose(tokens, jnp.einsum("bmn,bnd->bmd", w, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["tokenlearner_v11", "tokenlearner_v1"])
def test_padding_content_and_order_do_not_change_output(name):
  x, mask = _inputs()
  (tokens, _), params, module = _apply(name, x, mask)
  # Permute the padded positions among themselves and fill them with new random values.
  perm = np.arange(N)
  perm[7:] = perm[7:][::-1]
  x2 = x.at[0].set(x[0, perm])
  noise = jax.random.normal(jax.random.key(5), (B, N, D)) * 100
  x2 = jnp.where(mask[..., None], x2, noise)
  tokens2, _ = module.apply(params, x2, mask)
  np.testing.assert_allclose(tokens, tokens2, rtol=1e-5, atol=1e-5)


def test_v1_sigmoid_weights_are_a_masked_mean():
  x, mask = _inputs()
  (tokens, w), _, _ = _apply("tokenlearner_v1", x, mask)
  valid = np.asarray(mask).sum(-1)
  # Each weight is sigmoid(.)/count: in (0, 1/count) on valid tokens, exactly 0 on padding.
  assert float(jnp.where(mask[:, None], 0.0, w).max()) == 0.0
  for b in range(B):
    wb = np.asarray(w[b][:, np.asarray(mask[b])])
    assert (wb > 0).all() and (wb < 1.0 / valid[b]).all()


def test_v1_uses_the_image_grid():
  # With a grid, a token's map depends on its spatial neighbours; without, it does not.
  x = jax.random.normal(jax.random.key(0), (1, 9, D))
  module = reducers.TokenLearnerV1(M, 8)
  params = module.init(jax.random.key(1), x, None, (3, 3))
  x2 = x.at[0, 1].set(jax.random.normal(jax.random.key(9), (D,)))  # a grid neighbour of token 0
  w_grid = module.apply(params, x, None, (3, 3))[1]
  w_grid2 = module.apply(params, x2, None, (3, 3))[1]
  w_set = module.apply(params, x, None, None)[1]
  w_set2 = module.apply(params, x2, None, None)[1]
  assert float(jnp.abs(w_grid[0, :, 0] - w_grid2[0, :, 0]).max()) > 1e-6
  np.testing.assert_allclose(w_set[0, :, 0], w_set2[0, :, 0], rtol=1e-6)
