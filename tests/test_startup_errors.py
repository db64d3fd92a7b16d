"""`python -m jarl.main`: every start-up mistake is one line naming the flag or config key,
exit status 2, no traceback, before any model is built (`--debug` shows the traceback)."""

import subprocess
import sys

import pytest
import train_fixtures

from configs import finetune_caption
from jarl import config_checks

TINY = "--config=configs/pretrain.py:tiny"
CAPTION = "--config=configs/finetune_caption.py:tiny"


def _main(*args) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "jarl.main", *args],
    cwd=train_fixtures.repo_root(),  # the configs' relative paths
    env=train_fixtures.main_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )


def _one_line(proc) -> str:
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert lines[0].startswith("jarl.main: error: ")
  return lines[0]


MISTAKES = {
  "key_typo": (
    [TINY, "--config.modl.width=3"],
    ["--config.modl.width", "no key 'modl'", 'Did you mean "model"'],
  ),
  "nested_key_typo": (
    [TINY, "--config.model.vison.width=3"],
    ["--config.model.vison.width", 'Did you mean "vision"'],
  ),
  "bad_value": ([TINY, "--config.total_steps=many"], ["--config.total_steps=many"]),
  "config_arg_key": (
    ["--config=configs/pretrain.py:tiny,fdsp=2"],
    ["config argument", "unknown key 'fdsp'", "fsdp"],
  ),
  "config_file": (["--config=configs/pretrian.py:tiny"], ["--config", "configs/pretrian.py"]),
  "no_workdir": ([TINY], ["--workdir"]),
  "init_from_missing": (
    [CAPTION, "--config.init_from={tmp}/no_such_run"],
    ["config.init_from=", "no_such_run", "no such directory"],
  ),
  "init_from_empty_dir": (
    [CAPTION, "--config.init_from={tmp}"],
    ["config.init_from=", "no checkpoint there"],
  ),
  "finetune_without_init_from": (
    [CAPTION],
    ["config.init_from is empty", "--config.init_from=none"],
  ),
  "glob_matches_nothing": (
    [TINY + ",source=arrayrecord:{tmp}/nothing-*.arrayrecord"],
    ["config.data.sources[0].source=", "no files match"],
  ),
  "eval_glob_matches_nothing": (
    [TINY, "--config.evals.val.source=arrayrecord:{tmp}/val-*.arrayrecord"],
    ["config.evals.val.source=", "no files match"],
  ),
  "tokenizer_file": (
    [TINY, "--config.data.tokenizer={tmp}/spm.model"],
    ["config.data.tokenizer=", "spm.model", "no such file"],
  ),
  "excess_loss_reference_run_missing": (
    [
      TINY,
      "--config.data.sampling.policy=excess_loss",
      "--config.data.sampling.reference_run={tmp}/ref",
    ],
    ["config.data.sampling.reference_run=", "/ref", "no metrics.jsonl"],
  ),
  "vocab_mismatch": (
    [TINY, "--config.model.vocab_size=300"],
    ["config.data.tokenizer='shapes' has 256 pieces", "config.model.vocab_size=300"],
  ),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_is_one_line_naming_it_with_status_2(tmp_path, name):
  args, expected = MISTAKES[name]
  workdir = [] if name == "no_workdir" else [f"--workdir={tmp_path}/run"]
  line = _one_line(_main(*[a.format(tmp=tmp_path) for a in args], *workdir))
  for text in expected:
    assert text.format(tmp=tmp_path) in line, line


def test_workdir_that_is_a_file_or_cannot_be_made(tmp_path):
  (tmp_path / "file").write_text("")
  line = _one_line(_main(TINY, f"--workdir={tmp_path}/file"))
  assert f"--workdir={tmp_path}/file: is a file" in line
  line = _one_line(_main(TINY, f"--workdir={tmp_path}/file/run"))
  assert f"--workdir={tmp_path}/file/run: cannot make it" in line


def test_debug_shows_the_traceback(tmp_path):
  proc = _main(CAPTION, f"--workdir={tmp_path}/run", "--debug")
  assert proc.returncode != 0 and "Traceback" in proc.stderr
  assert "ConfigError: config.init_from is empty" in proc.stderr


def test_init_from_none_starts_a_fine_tune_from_random_weights_on_purpose(tmp_path):
  config = finetune_caption.get_config("tiny")
  with pytest.raises(ValueError, match="config.init_from is empty"):
    config_checks.check_init_from(config)
  config.init_from = config_checks.NO_INIT
  config_checks.check_init_from(config)
  assert config_checks.init_from(config) == ""
  # Public tower checkpoints (config.model_init) are a start as well.
  config.init_from, config.model_init = "", str(tmp_path / "vit.npz")
  config_checks.check_init_from(config)
