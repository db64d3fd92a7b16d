"""`python -m jarl.data.tfds.build` end to end, and reading the result in a fresh process
that never imports the builders (TFDS restores prepared data from its files)."""

import os
import subprocess
import sys

import pytest
import tfds_testing

from jarl.data.tfds import vqav2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
  return subprocess.run(
    [sys.executable, *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )


def test_build_cli_writes_array_record_readable_without_the_builders(tmp_path):
  out = _run(
    "-m",
    "jarl.data.tfds.build",
    "--dataset=jarl_snli_ve",
    f"--manual_dir={tfds_testing.MANUAL_DIR}",
    f"--data_dir={tmp_path}",
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert "jarl_snli_ve train: 3 examples" in out.stdout
  files = sorted(os.listdir(tmp_path / "jarl_snli_ve" / "1.0.0"))
  assert "jarl_snli_ve-train.array_record-00000-of-00001" in files
  read = _run(
    "-c",
    "import sys; from jarl.data import sources; "
    f"s = sources.make_source('tfds:jarl_snli_ve:validation', image_size=8, "
    f"where='t', tfds_data_dir={str(tmp_path)!r}); r = s[0]; "
    "assert 'jarl.data.tfds' not in sys.modules; "
    "print(r['hypotheses'], r['labels'])",
  )
  assert read.returncode == 0, read.stderr[-2000:]
  assert read.stdout.strip() == "['A child is present.'] ['entailment']"


def test_missing_download_names_the_file_and_the_instructions(tmp_path):
  (tmp_path / "manual" / "vqav2").mkdir(parents=True)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = vqav2.JarlVqav2(data_dir=str(tmp_path / "out"))
  with pytest.raises(
    FileNotFoundError,
    match=r"(?s)no v2_OpenEnded_mscoco_\*_questions.json "
    r"in .*manual/vqav2.*v2_mscoco_\{train2014,val2014\}_annotations.json",
  ):
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"))
    )
