"""Write a benchmark's result as a stamped record: `docs/results/<name>.json`.

Every measured figure in the docs comes from such a record (`python -m benchmarks.report`
renders them into docs/results.md); none is typed by hand. A benchmark calls, last thing
in its `main`:

    record.emit("step_throughput", result, args)   # prints the JSON last line, then writes

(`record.write` alone writes without printing.)

A record holds the result dict and what is needed to trust and reproduce it:

    name          the record's name (the file's stem)
    command       the command line that produced it (`python -m benchmarks.step_throughput ...`)
    settings      the benchmark's flags (`vars(args)`), i.e. its config overrides
    config        optional: the run config (a ConfigDict or dict), when there is one
    commit, dirty the git commit of the tree it ran on, and whether `depends` had
                  uncommitted changes then
    depends       the paths whose changes make it stale: jarl/, configs/ and the
                  benchmark's own modules (found among the loaded modules)
    date, machine when and where (platform, CPU, core count, memory, jax and its devices)
    transcribed   absent for a measured record; for a figure copied from older docs, a
                  dict saying from where (the report marks it)
    result        the benchmark's figures, as it printed them. A summary of many runs
                  (data_efficiency, paper_tables) lists their commits under a `commits`
                  key; the report judges it stale if any of them is

Smoke runs (`args.quick`) and runs with JARL_RECORD=0 (tests) write nothing. JARL_RESULTS_DIR
redirects the records (default: docs/results in the checkout).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "docs" / "results"
# Code every benchmark runs on; a change in any of them may change a figure.
CORE_DEPENDS = ("jarl", "configs")
# The record machinery itself does not change figures.
_NOT_DEPENDS = ("benchmarks/record.py", "benchmarks/report.py", "benchmarks/__init__.py")


def git(*args: str) -> str | None:
  """Output of `git <args>` in the checkout, or None outside a git checkout."""
  try:
    return subprocess.run(
      ("git", *args), cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def results_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("JARL_RESULTS_DIR", RESULTS_DIR))


def command_line(argv: list[str] | None = None) -> str:
  """How this process was started: `python -m benchmarks.x ...` when run as a module."""
  argv = sys.argv if argv is None else argv
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  if spec is not None and spec.name:
    head = ["python", "-m", spec.name]
  else:
    head = ["python", os.path.relpath(argv[0], ROOT) if argv else "?"]
  return shlex.join(head + list(argv[1:]))


def local_modules() -> list[str]:
  """Repo files of the loaded modules outside jarl/ and configs/ (the benchmark's own)."""
  found = set()
  for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if not path:
      continue
    path = pathlib.Path(path).resolve()
    if ROOT not in path.parents:
      continue
    rel = path.relative_to(ROOT).as_posix()
    if rel.split("/")[0] in ("benchmarks", "experiments") and rel not in _NOT_DEPENDS:
      found.add(rel)
  return sorted(found)


def machine() -> dict[str, Any]:
  """Where the figures were measured: CPU, cores, memory, and jax's devices if loaded."""
  info: dict[str, Any] = dict(
    platform=platform.platform(), python=platform.python_version(), cpus=os.cpu_count()
  )
  try:
    with open("/proc/cpuinfo") as f:
      models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    if models:
      info["cpu"] = models[0]
  except OSError:
    info["cpu"] = platform.processor() or None
  try:
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    info["memory_gib"] = round(pages * page_size / 2**30, 1)
  except (ValueError, OSError, AttributeError):
    pass
  jax = sys.modules.get("jax")  # only if the benchmark loaded it: never start a backend here
  if jax is not None:
    devices = jax.devices()
    info["jax"] = jax.__version__
    info["devices"] = f"{len(devices)} x {devices[0].device_kind}" if devices else "none"
  return info


def _jsonable(value: Any) -> Any:
  """Numbers, strings, lists and dicts as JSON; numpy/jax scalars and arrays as lists."""
  if hasattr(value, "to_dict"):  # ml_collections.ConfigDict
    value = value.to_dict()
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_jsonable(v) for v in value]
  if hasattr(value, "tolist"):
    return value.tolist()
  if isinstance(value, str | int | float | bool) or value is None:
    return value
  return str(value)


def make(
  name: str,
  result: dict[str, Any],
  args: argparse.Namespace | dict | None = None,
  *,
  config: Any = None,
  depends: list[str] | None = None,
) -> dict[str, Any]:
  """The record dict for `result` (see the module docstring), stamped now."""
  depends = list(CORE_DEPENDS) + (depends if depends is not None else local_modules())
  commit = git("rev-parse", "HEAD")
  dirty = None
  if commit is not None:
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", *depends))
  settings = vars(args) if isinstance(args, argparse.Namespace) else args
  record = dict(
    name=name,
    command=command_line(),
    settings=_jsonable(settings),
    commit=commit,
    dirty=dirty,
    depends=depends,
    date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    machine=machine(),
    result=_jsonable(result),
  )
  if config is not None:
    record["config"] = _jsonable(config)
  return record


def write(
  name: str,
  result: dict[str, Any],
  args: argparse.Namespace | dict | None = None,
  *,
  config: Any = None,
  depends: list[str] | None = None,
) -> pathlib.Path | None:
  """Writes `results_dir()/<name>.json`; returns its path, or None for a smoke run."""
  quick = args.get("quick") if isinstance(args, dict) else getattr(args, "quick", False)
  if quick or os.environ.get("JARL_RECORD", "1") == "0":
    return None
  record = make(name, result, args, config=config, depends=depends)
  path = results_dir() / f"{name}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
  print(f"record: {path.relative_to(ROOT) if ROOT in path.parents else path}", file=sys.stderr)
  return path


def emit(
  name: str,
  result: dict[str, Any],
  args: argparse.Namespace | dict | None = None,
  *,
  save: bool = True,
  **kwargs: Any,
) -> pathlib.Path | None:
  """Prints `result` as the benchmark's JSON last line (sorted keys), then `write`s it
  (unless `save` is False: a run whose figures are not the record's, e.g. on CPU)."""
  print(json.dumps(_jsonable(result), sort_keys=True), flush=True)
  return write(name, result, args, **kwargs) if save else None


def read_run(path: pathlib.Path, **settings: Any) -> dict[str, Any] | None:
  """The run file at `path` (see `write_run`) if it exists and was made with `settings`
  (each compared as JSON with the file's settings of that name); else None."""
  if not path.exists():
    return None
  rec = json.loads(path.read_text())
  made = rec.get("settings", {})
  same = all(made.get(k) == _jsonable(v) for k, v in settings.items())
  return rec if same else None


def write_run(
  path: pathlib.Path,
  name: str,
  result: dict[str, Any],
  settings: dict[str, Any],
  *,
  command: str,
  start: dict[str, Any] | None = None,
) -> None:
  """Writes one finished run of a many-run benchmark (paper_accuracy, data_efficiency) as
  its own record at `path`, whose `command` repeats just that run. `start`: a `make` stamp
  from when the run began: its commit and dirty flag are the code's (a commit made during
  a run an hour long is not what it ran)."""
  rec = make(name, result, settings)
  if start is not None:
    rec.update(commit=start["commit"], dirty=start["dirty"])
  rec["command"] = command
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(rec, indent=2) + "\n")
  print(f"recorded {path}", flush=True)
