"""Config checks that span two parts of the config (here: data sources and the objective)."""

import pytest

from configs import pretrain
from jarl import config_checks, losses


@pytest.mark.parametrize("name", ["decoder", "tags"])
def test_a_source_named_after_a_loss_term_is_refused(name):
  # train/loss_<source> and train/loss_<term> share one namespace (excess_loss reads the
  # former from its reference run), so the clash is an error at config build.
  config = pretrain.get_config("tiny")
  config.data.sources[0]["name"] = name
  with pytest.raises(ValueError, match=rf"config.data.sources\[0\].name='{name}'.*loss term"):
    config_checks.check(config, num_batch_shards=1)
  assert name in losses.TERM_NAMES


def test_the_shipped_configs_source_names_are_not_term_names():
  for variant in ("tiny", "demo", "base"):
    config = pretrain.get_config(variant)
    assert not {s["name"] for s in config.data.sources} & set(losses.TERM_NAMES), variant
