r"""The demo's other fine-tunes: captioning and entailment from the demo's pretraining.

    python -m benchmarks.demo_finetune --workdir=/tmp/jarl_demo_runs   # ~4 + ~4 min, 2 cores

Runs the docs' commands (`python -m jarl.main` with configs/finetune_caption.py:demo and
configs/finetune_entailment.py:demo, `init_from` the pretraining workdir) in
`<workdir>/caption` and `<workdir>/entailment`, from `<workdir>/pretrain`: the workdir of
`python -m benchmarks.demo`, whose pretraining is the README's command (run here first if
it is not there; a finished stage is not retrained). Each task writes its own record,
`demo_finetune_caption` (CIDEr-D and BLEU-4 on shapes:validation and shapes:heldout) and
`demo_finetune_entailment` (accuracy on both), with its wall time. The last line is one
JSON object holding both.
"""

import argparse
import json
import os

from benchmarks import record
from benchmarks.demo import STAGES, by_step, run_stage

TASKS = {
  "caption": ("configs/finetune_caption.py:demo", ("cider", "bleu4")),
  "entailment": ("configs/finetune_entailment.py:demo", ("accuracy",)),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="holds pretrain/ and the tasks' dirs")
  parser.add_argument("--tasks", default="caption,entailment")
  args = parser.parse_args()
  pre_dir = os.path.join(args.workdir, "pretrain")
  pre_seconds = run_stage(pre_dir, STAGES[0][1], [])  # only start-up when it is finished
  results = {}
  for task in args.tasks.split(","):
    config, metrics = TASKS[task]
    workdir = os.path.join(args.workdir, task)
    seconds = run_stage(workdir, config, [f"--config.init_from={pre_dir}"])
    result = dict(wall_seconds=seconds, pretrain_wall_seconds=pre_seconds)
    for split in ("val", "heldout"):
      for metric in metrics:
        values = by_step(workdir, f"{split}/{metric}")
        result[f"{split}_{metric}"] = values[max(values)]
        result[f"{split}_{metric}_by_step"] = values
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))
    print(f"{task}: {shown}", flush=True)
    record.write(f"demo_finetune_{task}", result, args)
    results[task] = result
  print(json.dumps(results, sort_keys=True), flush=True)


if __name__ == "__main__":
  main()
