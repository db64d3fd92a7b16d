"""What `python -m jarl.main` prints: JARL's own lines only (third-party INFO with --verbose),
metric lines that lead with step, loss and examples/s, one truncation warning, and a
closing summary with the checkpoint and the command to run next."""

import re
import subprocess

import pytest
import train_fixtures

from configs import finetune_vqa
from jarl import metrics_writer, train

# absl's prefix: `I1201 10:56:11.190580 139864912132992 train.py:237] message`.
LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.]+):\d+\] (.*)$")


def _run(workdir, *flags, **overrides) -> list[str]:
  """The run's stdout and stderr, interleaved as a terminal shows them, as lines."""
  result = subprocess.run(
    train_fixtures.main_command(workdir, **overrides) + list(flags),
    cwd=train_fixtures.repo_root(),
    env=train_fixtures.main_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stdout[-3000:]
  return result.stdout.splitlines()


def test_format_scalars_leads_with_step_loss_and_examples_per_second():
  line = metrics_writer.format_scalars(
    6, {"train/grad_norm": 2.5, "perf/examples_per_s": 312.44, "train/loss": 4.90851}
  )
  assert line == "step 6 | loss 4.9085 | 312.4 examples/s | train/grad_norm=2.5"
  assert metrics_writer.format_scalars(3, {"val/loss": 5.1}) == "step 3 | val/loss=5.1"


def test_truncation_warning_only_above_five_percent():
  config = train_fixtures.tiny_config()
  assert train._truncation_warning(config, 5, 100) is None
  assert train._truncation_warning(config, 0, 0) is None
  message = train._truncation_warning(config, 6, 100)
  for key in ("config.data.text_len=8", "config.model.decoder.max_len=8", "make_tokenizer"):
    assert key in message


def test_summary_of_a_fine_tune_names_the_predict_command_and_a_preempted_run_resumes():
  config = finetune_vqa.get_config("tiny")
  last = {"train/loss": (6, 1.5), "val/accuracy": (6, 0.25), "heldout/accuracy": (3, 0.5)}
  done = train._summary(config, "/w", config.total_steps, last, "/w/checkpoints/6", 12.3)
  assert done.splitlines() == [
    f"Finished at step {config.total_steps} of {config.total_steps}; 12 s wall time.",
    "  train/loss 1.5000 (step 6)",
    "  heldout (step 3): accuracy 0.5",  # config.evals in name order
    "  val (step 6): accuracy 0.25",
    "  checkpoint: /w/checkpoints/6",
    "  next: vqa on your own images:",
    "    python -m jarl.predict --checkpoint=/w --image=IMAGE.jpg '--question=what is in the picture'",
  ]
  stopped = train._summary(config, "/w", 2, {}, None, 1.0).splitlines()
  assert stopped[0].startswith("Stopped (preempted) at step 2")
  assert stopped[1:] == [
    "  checkpoint: none written",
    "  the same command resumes from the checkpoint.",
  ]


def test_a_run_prints_its_own_lines_and_ends_on_the_summary(tmp_path):
  # The tiny config cuts nearly every text (text_len 8): the truncation warning shows.
  lines = _run(tmp_path / "quiet")
  logged = [LOG_LINE.match(line) for line in lines]
  sources = {m[2] for m in logged if m and m[1] == "I"}
  assert sources <= {"main.py", "train.py", "metrics_writer.py"}, sources
  # TensorFlow's C++ start-up lines and Orbax's INFO lines (its warnings may show: a slow
  # save under load says "Waiting for previous save to complete took ...").
  for noise in ("oneDNN", "absl::InitializeLog", "_NonBlockingMetadataStore", "orbax-checkpoint"):
    assert not any(noise in line for line in lines), noise
  (step6,) = [m[3] for m in logged if m and m[3].startswith("step 6 | loss")]
  assert re.match(r"step 6 \| loss \d+\.\d{4} \| \d+\.\d examples/s \| ", step6), step6
  truncation = [m[3] for m in logged if m and m[1] == "W" and "cut to fit" in m[3]]
  assert len(truncation) == 1, truncation  # once per run, not every log step

  workdir = tmp_path / "quiet"
  (end,) = [i for i, line in enumerate(lines) if "] Finished at step 6 of 6;" in line]
  assert lines[end + 1].startswith("  train/loss ")
  assert lines[end + 2].startswith("  val (step 6): examples 16, loss ")
  assert lines[end + 3 :] == [
    f"  checkpoint: {workdir}/checkpoints/6",
    "  next: fine-tune it for VQA (configs/finetune_caption.py and finetune_entailment.py alike):",
    "    python -m jarl.main --config=configs/finetune_vqa.py:tiny "
    f"--workdir={workdir}_vqa --config.init_from={workdir}",
  ]


@pytest.mark.slow  # a second tiny run (~40 s) for a flag; the quiet default is the CI check
def test_verbose_brings_the_libraries_info_lines_back(tmp_path):
  # Orbax's checkpoint manager, say.
  verbose = _run(tmp_path / "verbose", "--verbose", total_steps=2)
  sources = {m[2] for m in map(LOG_LINE.match, verbose) if m and m[1] == "I"}
  assert "checkpoint_manager.py" in sources, sources
  assert "Finished at step 2 of 2;" in "\n".join(verbose[-6:])
