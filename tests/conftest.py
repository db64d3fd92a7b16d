"""Test set-up: 8 fake CPU devices so sharding tests run anywhere, XLA compiling for
compile time, one compilation cache for the whole test session, and the shared tiny config, batch and parameters
(configs/pretrain.py:tiny; helpers in train_fixtures.py)."""

import os
import shutil
import tempfile

# Must be set before JAX initialises its backends. Optimisation level 0: the tests compile
# many small programs and run each a few times, so compiling is most of their time, and
# level 0 compiles about twice as fast (the model, fusion, ELIP and FLOPs tests: 515 s ->
# 253 s on 2 cores). The semantics are the same; tests that compare numbers compare
# programs compiled alike, or within float tolerances.
os.environ.setdefault(
  "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")


# A persistent compilation cache for the session, shared by the xdist workers and the
# `python -m jarl.main` subprocesses (both inherit the controller's environment). Many tests
# compile the same tiny programs (the plain train step, init, decoding), and compiling is
# ~70% of such a test's time: each program now compiles once per session. A directory
# given in JAX_COMPILATION_CACHE_DIR is used as is (and left in place).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jarl-tests-jax-cache-")
  os.environ["JARL_TESTS_OWN_CACHE"] = "1"  # this session made it, so it removes it
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402


def pytest_unconfigure(config):
  # The controller (or a run without xdist) removes the cache it made; workers leave it.
  if os.environ.get("JARL_TESTS_OWN_CACHE") and not hasattr(config, "workerinput"):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


# train_fixtures (JAX, the trainer) is imported inside the fixtures: tests that need none
# of them start without it.


@pytest.fixture
def tiny_config():
  """A fresh configs/pretrain.py:tiny (tests may edit it)."""
  from configs import pretrain  # pylint: disable=import-outside-toplevel

  return pretrain.get_config("tiny")


@pytest.fixture
def tiny_batch(tiny_config):
  """A deterministic batch of 8 with the tiny config's shapes (train_fixtures.batch)."""
  import train_fixtures  # pylint: disable=import-outside-toplevel

  return train_fixtures.batch(tiny_config, 8, seed=0)


@pytest.fixture(scope="session")
def tiny_model_and_params():
  """(model, params) of configs/pretrain.py:tiny, initialised once per session with
  jax.random.key(0); params are unboxed and must not be mutated."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel

  from configs import pretrain  # pylint: disable=import-outside-toplevel
  from jarl import batch as batch_lib  # pylint: disable=import-outside-toplevel
  from jarl.models import model as model_lib  # pylint: disable=import-outside-toplevel

  config = pretrain.get_config("tiny")
  model = model_lib.build(config)
  params = nn.unbox(model.init(jax.random.key(0), **batch_lib.dummy_batch(config))["params"])
  return model, params
