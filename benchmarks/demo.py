r"""The README's demo, end to end: pretraining, then VQA fine-tuning from it.

    python -m benchmarks.demo --workdir=/tmp/jarl_demo_runs   # ~7 + ~14 min, 2 idle cores

Runs the two README commands (`python -m jarl.main` with configs/pretrain.py:demo, then
configs/finetune_vqa.py:demo with `init_from` the pretraining workdir) in
`<workdir>/pretrain` and `<workdir>/vqa`, and reads their metrics. A finished stage is not
retrained (the trainer resumes at its last step), so a pretraining workdir made by the
README's set-up command can be copied to `<workdir>/pretrain` and only the fine-tuning
runs. The figures: `val/loss` (caption cross-entropy on `shapes:validation`) at each
evaluation of pretraining, VQA accuracy on `shapes:validation` and the compositional
`shapes:heldout` split at each evaluation of fine-tuning, and each stage's wall time (a
stage found finished takes only its start-up). The last line is one JSON object.
"""

import argparse
import os
import subprocess
import sys
import time

from benchmarks import record
from jarl import metrics_writer

STAGES = (
  ("pretrain", "configs/pretrain.py:demo", ()),
  ("vqa", "configs/finetune_vqa.py:demo", ("--config.init_from={pretrain}",)),
)


def run_stage(workdir: str, config: str, extra: list[str]) -> float:
  """Runs one `jarl.main` stage; its wall seconds."""
  start = time.time()
  cmd = [sys.executable, "-m", "jarl.main", f"--config={config}", f"--workdir={workdir}"]
  subprocess.run([*cmd, *extra], check=True)
  return time.time() - start


def by_step(workdir: str, key: str) -> dict[int, float]:
  """{step: value} of one metric a run wrote."""
  rows = metrics_writer.read_jsonl(workdir)
  return {int(row["step"]): float(row[key]) for row in rows if key in row}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="holds pretrain/ and vqa/")
  args = parser.parse_args()
  dirs = {name: os.path.join(args.workdir, name) for name, _, _ in STAGES}
  seconds = {}
  for name, config, extra in STAGES:
    seconds[name] = run_stage(dirs[name], config, [e.format(**dirs) for e in extra])
  loss = by_step(dirs["pretrain"], "val/loss")
  val, heldout = (by_step(dirs["vqa"], f"{split}/accuracy") for split in ("val", "heldout"))
  result = dict(
    pretrain_val_loss_by_step=loss,
    pretrain_val_loss_final=loss[max(loss)],
    vqa_val_accuracy_by_step=val,
    vqa_heldout_accuracy_by_step=heldout,
    vqa_val_accuracy_final=val[max(val)],
    vqa_heldout_accuracy_final=heldout[max(heldout)],
    wall_seconds=seconds,
  )
  print(
    f"pretraining val/loss {result['pretrain_val_loss_final']:.6f}; VQA accuracy val "
    f"{result['vqa_val_accuracy_final']:.4f} heldout {result['vqa_heldout_accuracy_final']:.4f}"
  )
  record.emit("demo", result, args)


if __name__ == "__main__":
  main()
