r"""Generate docs/results.md from the records in docs/results/*.json (see record.py).

    python -m benchmarks.report            # rewrite docs/results.md and README's table
    python -m benchmarks.report --check    # exit 1 if either is not up to date

Each record becomes one section: its figures, the command, settings and config that made
them, the commit, date and machine. A record is marked *stale* when the code it depends on
(jarl/, configs/, the benchmark's own modules) changed between its commit and HEAD
(`git diff --quiet <commit> HEAD -- <depends>`; for a summary of many runs, from each
run's commit too), and *transcribed* when its figures were
copied from older docs rather than written by the benchmark. The README's headline table
(between its `results:begin` / `results:end` markers) is generated here too (HEADLINE).
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import subprocess
import sys
from typing import Any

from benchmarks import record as record_lib

ROOT = record_lib.ROOT
OUT = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# The README's headline table: (what, [(label, record, dotted key in its result)]).
# A `*_mean` key is shown as "mean ± std" when the matching `*_std` is there.
HEADLINE = (
  (
    "forward GFLOPs per example, `base`: JARL / concat (paper Table 3: 38.9 / 58.4)",
    [
      ("", "paper_tables", "cost.arms.jarl.forward_gflops"),
      ("", "paper_tables", "cost.arms.concat.forward_gflops"),
      ("ratio", "paper_tables", "cost.checks.jarl_over_concat_forward.value"),
    ],
  ),
  (
    "peak training memory, `base`, 16 examples per device: JARL / concat (paper: 9 / 15 GB)",
    [("ratio", "paper_tables", "cost.checks.jarl_over_concat_memory.value")],
  ),
  (
    "shapes VQA accuracy (val), Table 3 on accuracy (seeds in the record): JARL / concat (paper GQA: 79.1 / 78.9)",
    [
      ("", "paper_tables", "accuracy.arms.jarl.val_vqa_mean"),
      ("", "paper_tables", "accuracy.arms.concat.val_vqa_mean"),
    ],
  ),
  (
    "train-step examples/s, `demo` on 2 CPU cores: JARL / co-tokenization / concat",
    [
      ("", "step_throughput", "settings.jarl.examples_per_sec"),
      ("", "step_throughput", "settings.co_tokenization.examples_per_sec"),
      ("", "step_throughput", "settings.concat.examples_per_sec"),
    ],
  ),
  (
    "shapes VQA accuracy (val), `bench`, 3 seeds: JARL / concat / cross-attention",
    [
      ("", "fusion_quality", "methods.jarl.val_accuracy_mean"),
      ("", "fusion_quality", "methods.concat.val_accuracy_mean"),
      ("", "fusion_quality", "methods.cross_attention.val_accuracy_mean"),
    ],
  ),
  (
    "shapes VQA accuracy (val), `bench`, 3 seeds: JARL + ViCHA losses / JARL + ELIP",
    [
      ("", "method_comparison", "methods.jarl_vicha.val_accuracy_mean"),
      ("", "method_comparison", "methods.jarl_elip.val_accuracy_mean"),
    ],
  ),
  (
    "adaptive sampling on a noisy caption mixture, data-efficiency ratio vs static on the "
    "clean caption val loss (VQA: see the record's protocol check): excess_loss / "
    "learning_progress / loss",
    [
      ("", "data_efficiency", "policies.excess_loss.loss_ratio_mean"),
      ("", "data_efficiency", "policies.learning_progress.loss_ratio_mean"),
      ("", "data_efficiency", "policies.loss.loss_ratio_mean"),
    ],
  ),
  (
    "`demo` (the README's commands) fine-tuned: VQA accuracy val / heldout",
    [
      ("", "demo", "vqa_val_accuracy_final"),
      ("", "demo", "vqa_heldout_accuracy_final"),
    ],
  ),
  (
    "`demo` wall seconds on 2 CPU cores: pretraining / VQA fine-tuning",
    [("", "demo", "wall_seconds.pretrain"), ("", "demo", "wall_seconds.vqa")],
  ),
  (
    "`demo` fine-tuned: caption CIDEr-D val, entailment accuracy val",
    [("", "demo_finetune_caption", "val_cider"), ("", "demo_finetune_entailment", "val_accuracy")],
  ),
)


# Sections in this order (cost, speed, accuracy, the demo runs, planning); others follow A-Z.
ORDER = (
  "paper_tables",
  "flops_parts",
  "step_throughput",
  "input_pipeline_demo",
  "pipeline_workers",
  "scaling",
  "fusion_quality",
  "method_comparison",
  "data_efficiency",
  "demo",
  "demo_finetune_caption",
  "demo_finetune_entailment",
  "plan_pod",
)


def load(directory: pathlib.Path) -> list[dict[str, Any]]:
  records = []
  for path in sorted(directory.glob("*.json")):
    rec = json.loads(path.read_text())
    rec.setdefault("name", path.stem)
    records.append(rec)
  rank = {name: i for i, name in enumerate(ORDER)}
  return sorted(records, key=lambda r: (rank.get(r["name"], len(ORDER)), r["name"]))


def run_commits(rec: dict[str, Any]) -> list[str]:
  """The commits of the runs a many-run record summarises: every leaf under a `commits` key
  anywhere in its result (data_efficiency's {policy: {seed: commit}}, paper_tables'
  {arm: {seed: commit}}), sorted and without repeats. A summary written today over runs
  made on older code is only as current as its oldest run."""
  found = set()

  def leaves(x: Any) -> None:
    if isinstance(x, dict):
      for v in x.values():
        leaves(v)
    elif isinstance(x, list):
      for v in x:
        leaves(v)
    elif isinstance(x, str) and x:
      found.add(x)

  def walk(x: Any) -> None:
    if isinstance(x, dict):
      for k, v in x.items():
        (leaves if k == "commits" else walk)(v)
    elif isinstance(x, list):
      for v in x:
        walk(v)

  walk(rec.get("result", {}))
  return sorted(found)


def staleness(rec: dict[str, Any], root: pathlib.Path = ROOT) -> str:
  """'current', 'stale' or 'unknown commit': whether `depends` changed (git diff) between
  HEAD and the record's commit or any of its runs' commits (`run_commits`)."""
  commits = [rec.get("commit"), *run_commits(rec)]
  if not all(commits):
    return "unknown commit"
  paths = [p for p in rec.get("depends", []) if p]
  worst = "current"
  for commit in commits:
    try:
      rc = subprocess.run(
        ("git", "diff", "--quiet", commit, "HEAD", "--", *paths), cwd=root, capture_output=True
      ).returncode
    except OSError:
      return "unknown commit"
    if rc not in (0, 1):
      return "unknown commit"
    if rc == 1:
      worst = "stale"
  return worst


def title(rec: dict[str, Any]) -> str:
  """The record's title, else the first docstring line of the benchmark it is named after."""
  if rec.get("title"):
    return rec["title"]
  # The longest matching name: demo_finetune_caption is demo_finetune.py's, not demo.py's.
  paths = sorted(rec.get("depends", []), key=lambda p: -len(pathlib.PurePosixPath(p).stem))
  for path in paths:
    stem = pathlib.PurePosixPath(path).stem
    if path.endswith(".py") and rec["name"].startswith(stem) and (ROOT / path).exists():
      doc = ast.get_docstring(ast.parse((ROOT / path).read_text()))
      if doc:
        return doc.splitlines()[0]
  return ""


def fmt(value: Any) -> str:
  """A cell: floats to 4 significant digits (large ones with separators), lists joined."""
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, int):
    return f"{value:,}"
  if isinstance(value, float):
    return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.4g}"
  if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
    return ", ".join(fmt(v) for v in value)
  if isinstance(value, dict | list):
    return f"`{json.dumps(value, sort_keys=True)}`"
  return str(value).replace("|", "\\|")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def pair_std(row: dict[str, Any]) -> dict[str, Any]:
  """`x_mean` and `x_std` as one `x` cell, "mean ± std"."""
  out = {}
  for k, v in row.items():
    if k.endswith("_std") and f"{k[:-4]}_mean" in row:
      continue
    if k.endswith("_mean") and f"{k[:-5]}_std" in row:
      out[k[:-5]] = f"{fmt(v)} ± {fmt(row[k[:-5] + '_std'])}"
    else:
      out[k] = v
  return out


def table(header: list[str], rows: list[list[str]]) -> list[str]:
  return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
    "| " + " | ".join(r) + " |" for r in rows
  ]


def render_result(result: dict[str, Any]) -> list[str]:
  """Scalars as one figure/value table; each dict of dicts (per fusion, per policy...) as a
  table with a row per key; long per-run lists (`runs`, `points`) are left to the JSON. A
  part that renders itself (a `markdown` list of lines, e.g. paper_tables' accuracy) is
  shown as those lines under its key."""
  scalars, lines = {}, []
  for key, value in result.items():
    if isinstance(value, dict) and isinstance(value.get("markdown"), list):
      lines += ["", f"### {key}", "", *value["markdown"]]
    elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
      rows = {name: pair_std(flatten(v)) for name, v in value.items()}
      columns = list(dict.fromkeys(c for r in rows.values() for c in r))
      lines += ["", f"`{key}`:", ""]
      lines += table(
        [""] + columns, [[f"`{n}`"] + [fmt(r.get(c, "")) for c in columns] for n, r in rows.items()]
      )
    elif isinstance(value, list) and value and isinstance(value[0], dict):
      lines += ["", f"`{key}`: {len(value)} entries, in the JSON record."]
    elif isinstance(value, dict):
      scalars.update(flatten(value, f"{key}."))
    else:
      scalars[key] = value
  head = table(["figure", "value"], [[f"`{k}`", fmt(v)] for k, v in scalars.items()])
  return ([""] + head if scalars else []) + lines


def anchor(name: str) -> str:
  return name.lower()


def render(records: list[dict[str, Any]], status: dict[str, str]) -> str:
  """docs/results.md: an index, then each record's section; `status`: each record's
  `staleness`, by name."""
  lines = [
    "# Results",
    "",
    "<!-- Generated by `python -m benchmarks.report` from docs/results/*.json: do not edit. -->",
    "",
    "Every figure here is read from a record written by the command shown with it"
    " (`benchmarks/record.py`). **stale**: code the record depends on changed since its"
    " commit, or since the commit of one of the runs it summarises, so the figure may no"
    " longer hold until the command is run again."
    " **transcribed**: copied from the docs of the commit shown (measured on that commit's"
    " code) before records existed; re-running the command replaces it with a measured"
    " record.",
    "",
  ]
  index = []
  for r in records:
    marks = [status[r["name"]]] + (["transcribed"] if r.get("transcribed") else [])
    index.append(
      [
        f"[{r['name']}](#{anchor(r['name'])})",
        title(r),
        ", ".join(marks),
        f"`{(r.get('commit') or '?')[:7]}`",
        (r.get("date") or "?")[:10],
      ]
    )
  lines += table(["record", "what", "status", "commit", "date"], index)
  for r in records:
    lines += ["", f"## {r['name']}", ""]
    if title(r):
      lines += [title(r), ""]
    marks = []
    if status[r["name"]] == "stale":
      since, runs = f"`{(r.get('commit') or '?')[:7]}`", run_commits(r)
      if runs:
        since += " or one of its runs' commits (" + ", ".join(f"`{c[:7]}`" for c in runs) + ")"
      marks.append(f"**stale**: `{', '.join(r.get('depends', []))}` changed since {since}.")
    elif status[r["name"]] == "unknown commit":
      marks.append("**unknown commit**: its commit is not in this repository's history.")
    if r.get("transcribed"):
      t = r["transcribed"]
      marks.append(
        f"**transcribed** from {t.get('source', 'older docs')}"
        + (f"; {t['note']}" if t.get("note") else "")
        + "."
      )
    if r.get("dirty"):
      marks.append("Measured with uncommitted changes in the code it depends on.")
    lines += [" ".join(marks), ""] if marks else []
    lines += ["```", r.get("command", "?"), "```"]
    if r.get("rerun") and r["rerun"] != r.get("command"):
      lines += ["", f"Re-run today with `{r['rerun']}`."]
    m = r.get("machine") or {}
    machine = m.get("description") or ", ".join(f"{k} {v}" for k, v in m.items())
    lines += [
      "",
      f"Commit `{(r.get('commit') or '?')[:10]}`"
      + (" (dirty)" if r.get("dirty") else "")
      + f", {r.get('date', '?')}; {machine}.",
    ]
    if r.get("settings"):
      lines += ["", f"Settings: `{json.dumps(r['settings'], sort_keys=True)}`."]
    if r.get("config"):
      lines += ["", f"Config: in [`docs/results/{r['name']}.json`](results/{r['name']}.json)."]
    lines += render_result(r.get("result", {}))
    if r.get("notes"):
      lines += ["", r["notes"]]
    plots = list(r.get("plots", []))
    result = r.get("result", {})  # the benchmarks' own `plot` / `plots` keys
    for result_plot in [result.get("plot")] + list(result.get("plots", [])):
      if isinstance(result_plot, str) and result_plot.endswith(".png") and result_plot not in plots:
        plots.append(result_plot)
    for plot in plots:
      path = pathlib.PurePosixPath(plot)  # relative to the checkout; results.md is in docs/
      link = path.relative_to("docs") if plot.startswith("docs/") else f"../{plot}"
      lines += ["", f"![{path.stem}]({link})"]
  return "\n".join(lines) + "\n"


def lookup(result: dict[str, Any], key: str) -> str:
  """The value at a dotted `key` ("mean ± std" for a `_mean` with its `_std`), or "?"."""
  *path, leaf = key.split(".")
  node = result
  for part in path:
    node = node.get(part, {}) if isinstance(node, dict) else {}
  if leaf not in node:
    return "?"
  std = leaf[:-5] + "_std" if leaf.endswith("_mean") else None
  return fmt(node[leaf]) + (f" ± {fmt(node[std])}" if std and std in node else "")


def headline(records: list[dict[str, Any]], status: dict[str, str]) -> list[str]:
  """The README's results table, each value linked to its record in docs/results.md;
  `status`: each record's `staleness`, by name."""
  by_name = {r["name"]: r for r in records}
  rows = []
  for what, cells in HEADLINE:
    values, links = [], []
    for label, name, key in cells:
      r = by_name.get(name)
      value = lookup(r.get("result", {}), key) if r else "?"
      values.append(f"{label} {value}".strip())
      if name not in links:
        links.append(name)
    marks = []
    for name in links:
      r = by_name.get(name, {})
      flags = [
        f
        for f in (status.get(name, "missing"), "transcribed" if r.get("transcribed") else "")
        if f and f != "current"
      ]
      marks.append(
        f"[{name}](docs/results.md#{anchor(name)})" + (f" ({', '.join(flags)})" if flags else "")
      )
    rows.append([what, " / ".join(values), ", ".join(marks)])
  return (
    [BEGIN, "<!-- Generated by `python -m benchmarks.report`: do not edit. -->", ""]
    + table(["figure", "value", "record"], rows)
    + [END]
  )


def with_headline(readme: str, records: list[dict[str, Any]], status: dict[str, str]) -> str:
  """README text with the block between the markers regenerated (unchanged without them)."""
  if BEGIN not in readme or END not in readme:
    return readme
  head, rest = readme.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  return head + "\n".join(headline(records, status)) + tail


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results", default=str(record_lib.results_dir()))
  parser.add_argument("--out", default=str(OUT))
  parser.add_argument("--check", action="store_true", help="fail if --out is out of date")
  args = parser.parse_args(argv)
  records = load(pathlib.Path(args.results))
  status = {r["name"]: staleness(r) for r in records}  # git diffs: once per record
  outputs = {pathlib.Path(args.out): render(records, status)}
  if README.exists():
    outputs[README] = with_headline(README.read_text(), records, status)
  if args.check:
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    for path in stale:
      print(f"{path} is out of date: run python -m benchmarks.report", file=sys.stderr)
    return 1 if stale else 0
  for path, text in outputs.items():
    if not path.exists() or path.read_text() != text:
      path.write_text(text)
      print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
