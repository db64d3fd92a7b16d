"""configs/: the shared `<variant>,<key>=<value>` argument and the sizes built on the demo."""

import pytest

from configs import common, pretrain


def test_parse_arg_reads_variant_and_typed_keys():
  arg = common.parse_arg(
    "large,fsdp=8,note=x,lr=0.5,on=true", variant="base", fsdp=1, note="", lr=1.0, on=False
  )
  assert arg.to_dict() == dict(variant="large", fsdp=8, note="x", lr=0.5, on=True)
  assert common.parse_arg(None, variant="base", fsdp=1).to_dict() == dict(variant="base", fsdp=1)
  assert common.parse_arg("fsdp=2", variant="base", fsdp=1).variant == "base"


@pytest.mark.parametrize(
  "arg, match",
  [
    ("huge", "unknown variant 'huge'"),
    ("demo,pipe=2", "unknown key 'pipe'"),
    ("demo,fsdp=x", "fsdp='x': expected int"),
    ("demo,on=yes", "on='yes': expected true or false"),
  ],
)
def test_parse_arg_errors_name_the_item(arg, match):
  with pytest.raises(ValueError, match=match):
    common.parse_arg(arg, variants=("demo",), variant="demo", fsdp=1, on=False)


def test_tiny_and_bench_are_the_demo_with_their_overrides_only():
  demo, tiny, bench = (pretrain.get_config(v) for v in ("demo", "tiny", "bench"))
  assert demo.model.vision.stem == "conv" and demo.losses.tag_weight > 0 and demo.data.tags
  for small in (tiny, bench):
    assert small.model.vision.stem == "patch"
    assert small.data.tags == () and small.losses.tag_weight == 0.0
    assert small.data.sources == demo.data.sources and small.model.vocab_size == 256
  assert tiny.model.vision.image_size == tiny.data.image_size == 16
  assert tiny.total_steps == 6 and tiny.global_batch_size == 8
  # bench trains the demo's architecture (only the stem differs), for fewer steps.
  bench.model.vision.stem = demo.model.vision.stem
  assert bench.model.to_dict() == demo.model.to_dict()
  assert (bench.total_steps, bench.optimizer.warmup_steps) == (400, 40)
  assert not bench.evals
