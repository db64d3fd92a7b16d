"""Runs benchmark jobs as child processes, `jobs` at a time, each pinned to its share of
the cores: two one-core runs on 2 cores go ~1.3x faster together than one after the other
on both (small models do not use two cores well). Users: paper_accuracy, data_efficiency.
"""

import os
import shutil
import subprocess
import time


def run_parallel(todo: list, jobs: int, argv_for) -> None:
  """Runs `argv_for(item)` for every item of `todo`, in order, `jobs` at a time.

  Raises RuntimeError naming the items whose process failed, after all have ended.
  """
  cores = sorted(os.sched_getaffinity(0))
  share = max(len(cores) // jobs, 1)
  running: list[subprocess.Popen] = []
  queue = list(todo)
  failed = []
  while queue or running:
    while queue and len(running) < jobs:
      item = queue.pop(0)
      slot = min(set(range(jobs)) - {p.slot for p in running})
      mine = set(cores[(slot * share) % len(cores) :][:share])
      proc = subprocess.Popen(
        argv_for(item), preexec_fn=lambda mine=mine: os.sched_setaffinity(0, mine)
      )
      proc.slot, proc.item = slot, item
      running.append(proc)
    time.sleep(2)
    for proc in [p for p in running if p.poll() is not None]:
      running.remove(proc)
      if proc.returncode:
        failed.append(proc.item)
  if failed:
    raise RuntimeError(f"runs failed (see their output above): {failed}")


def clear_workdirs(root: str, prefix: str) -> None:
  """Removes `root`'s folders named `prefix`*: a run starts from nothing, for the trainer
  would resume a stopped run's checkpoint left there, made by whatever code that run had."""
  for name in os.listdir(root) if os.path.isdir(root) else ():
    if name.startswith(prefix):
      shutil.rmtree(os.path.join(root, name))
