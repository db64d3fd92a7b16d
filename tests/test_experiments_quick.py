"""The experiments' --quick runs (`python -m experiments.<topic>.<name> --quick`): exit 0,
and the last stdout line is their JSON summary. Slow-only (not ci)."""

import pytest
from test_benchmarks_quick import run_quick


@pytest.mark.slow  # four small models compiled and trained, ~1 min idle
def test_shape_learning_supervision_paths_quick():
  result = run_quick("experiments.shape_learning.supervision_paths", "--fusions=jarl,concat")
  assert result["steps"] == 4 and set(result["accuracy"]) == {"pooled", "jarl", "concat"}
  for name, acc in result["accuracy"].items():
    # The fraction of (scene, shape) counts right: a whole number of the 4 per scene.
    counts = acc * 4 * result["eval_scenes"]
    assert counts == pytest.approx(round(counts)), (name, acc)
  if result["accuracy"]["pooled"] > 0:
    assert result["jarl_over_pooled"] == pytest.approx(
      result["accuracy"]["jarl"] / result["accuracy"]["pooled"]
    )


@pytest.mark.slow  # three small ViTs compiled and trained, ~1 min idle
def test_shape_learning_tagging_objectives_quick():
  result = run_quick("experiments.shape_learning.tagging_objectives")
  assert result["steps"] == 4
  assert set(result["shape_ranking"]) == {"shapes", "shapes_colours", "all_words"}
  assert result["num_tags"]["shapes"] == 4 and result["num_tags"]["shapes_colours"] == 10
  assert result["num_tags"]["all_words"] > 10  # every caption word: colours, counts, ...
  assert result["shapes_over_all_words"] == pytest.approx(
    result["shape_ranking"]["shapes"] / result["shape_ranking"]["all_words"]
  )
