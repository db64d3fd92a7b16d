"""The verdicts of benchmarks/paper_accuracy.py's runs: tables and the paper's claims.

Each claim of the paper's Tables 2-4 (PAPER.md) becomes a comparison of two arms' mean
val VQA accuracy over seeds: *holds* when the difference exceeds one pooled standard
deviation of the two arms, *contradicted* when it is below minus one, *within noise*
between; *too few seeds* while an arm has a single seed (no spread is known yet).
"""

from __future__ import annotations

import numpy as np

from benchmarks import shapes_runs
from benchmarks.paper_accuracy import ARMS, BAR_VAL_VQA, METRICS

# The paper's entailment (SNLI-VE) figures exist for Table 3 only.
PAPER_ENTAILMENT = {"concat": 77.4, "jarl": 77.9}
# Rows in the paper's order; the reference `jarl` stands where the demo's setting falls
# (N = 16 is the paper's smallest N, K = 2 its second K, spatial its second resampler).
TABLE3 = ("concat", "jarl")
TABLE2 = ("perceiver", "co_tokenization", "jarl")
TABLE4 = {
  "iterations": ("iterations_1", "jarl", "iterations_4", "iterations_8"),
  "tokens": ("jarl", "tokens_32", "tokens_64", "tokens_128"),
  "resample": ("resample_latent", "jarl"),
  "combine": ("jarl", "combine_residual", "combine_none"),
}
# The paper's GQA figure where a Table 4 row puts the reference at another setting.
TABLE4_PAPER = {
  ("iterations", "jarl"): 78.8,
  ("tokens", "jarl"): 76.5,
  ("resample", "jarl"): 78.9,
  ("combine", "jarl"): 79.1,
}


def summarise(runs: dict[str, list[dict]]) -> dict:
  """Per arm: seeds, `<metric>_mean` / `_std` (sample std; 0 for one seed), the paper's."""
  arms = {}
  for name, results in runs.items():
    if not results:
      continue
    a = {"seeds": [r["seed"] for r in results]}
    a.update(shapes_runs.mean_std(results, METRICS + ("pretrain_loss_first", "pretrain_loss_last")))
    a["paper_gqa"] = ARMS[name][1]
    a["paper_snli_ve"] = PAPER_ENTAILMENT.get(name)
    for task in ("vqa", "entailment"):
      # Validation accuracy per kind, mean over the seeds; runs recorded before the
      # evaluators had kinds lack it, and then the arm has none.
      kinds = [r.get(f"{task}_by_kind", {}).get("val") for r in results]
      if all(kinds):
        a[f"{task}_val_by_kind"] = {
          k: float(np.mean([by[k] for by in kinds]))
          for k in sorted(set.intersection(*map(set, kinds)))
        }
    arms[name] = a
  return arms


def by_kind_table(arms: dict, task: str) -> list[str]:
  """Markdown rows: arm x kind of question (hypothesis), val accuracy in %; [] if none."""
  key = f"{task}_val_by_kind"
  names = [n for n in ARMS if key in arms.get(n, {})]
  kinds = sorted({k for n in names for k in arms[n][key]})
  if not kinds:
    return []
  out = ["| arm | " + " | ".join(kinds) + " |", "|" + "---|" * (len(kinds) + 1)]
  for n in names:
    cells = [f"{100 * arms[n][key][k]:.1f}" if k in arms[n][key] else "-" for k in kinds]
    out.append(f"| `{n}` | " + " | ".join(cells) + " |")
  return out


def compare(arms: dict, better: str, worse: str, metric: str = "val_vqa") -> dict:
  """The claim "`better` beats `worse` on `metric`": holds when the mean difference exceeds
  one pooled standard deviation of the two arms, contradicted when it is below minus one,
  within noise between; too few seeds while either arm has a single seed (no spread)."""
  if better not in arms or worse not in arms:
    return dict(verdict="not measured", arms=[better, worse])
  a, b = arms[better], arms[worse]
  diff = a[f"{metric}_mean"] - b[f"{metric}_mean"]
  noise = float(np.sqrt((a[f"{metric}_std"] ** 2 + b[f"{metric}_std"] ** 2) / 2))
  if min(len(a["seeds"]), len(b["seeds"])) < 2:
    verdict = "too few seeds"  # one seed: no spread to compare with
  elif diff > noise:
    verdict = "holds"
  elif diff < -noise:
    verdict = "contradicted"
  else:
    verdict = "within noise"
  return dict(
    verdict=verdict,
    arms=[better, worse],
    metric=metric,
    difference=diff,
    pooled_std=noise,
    values=[a[f"{metric}_mean"], b[f"{metric}_mean"]],
  )


def diminishing(arms: dict, row: tuple[str, ...], metric: str = "val_vqa") -> dict:
  """ "Gains shrink along `row`": the first step's gain beats the last step's beyond noise."""
  if not all(n in arms for n in row):
    return dict(verdict="not measured", arms=list(row))
  v = [arms[n][f"{metric}_mean"] for n in row]
  first, last = v[1] - v[0], v[-1] - v[-2]
  noise = float(np.sqrt(np.mean([arms[n][f"{metric}_std"] ** 2 for n in row])))
  if min(len(arms[n]["seeds"]) for n in row) < 2:
    verdict = "too few seeds"
  elif abs(first - last) <= noise:
    verdict = "within noise"
  else:
    verdict = "holds" if first > last else "contradicted"
  return dict(
    verdict=verdict,
    arms=list(row),
    metric=metric,
    first_gain=first,
    last_gain=last,
    pooled_std=noise,
    values=v,
  )


def protocol_check(arms: dict, runs: dict[str, list[dict]]) -> dict:
  """Whether the protocol converges: its best arm's mean val VQA against BAR_VAL_VQA, and
  the last step of each arm's mean VQA curve (still rising = not converged)."""
  if not arms:
    return dict(verdict="not measured")
  best = max(arms, key=lambda n: arms[n]["val_vqa_mean"])
  last_gain = {}
  for name, results in runs.items():
    curves = [r["vqa_curve"] for r in results if len(r.get("vqa_curve", [])) >= 2]
    if curves:
      last_gain[name] = float(np.mean([c[-1][1] - c[-2][1] for c in curves]))
  value = arms[best]["val_vqa_mean"]
  return dict(
    verdict="holds" if value >= BAR_VAL_VQA else "not met",
    best_arm=best,
    best_val_vqa=value,
    bar=BAR_VAL_VQA,
    last_curve_gain=last_gain,
  )


def verdicts(arms: dict) -> dict:
  """Each of the paper's accuracy claims (PAPER.md, Tables 2-4) on val VQA."""
  return {
    "jarl_ge_concat": compare(arms, "jarl", "concat"),
    "jarl_ge_concat_entailment": compare(arms, "jarl", "concat", "val_entailment"),
    "jarl_gt_perceiver": compare(arms, "jarl", "perceiver"),
    "jarl_gt_co_tokenization": compare(arms, "jarl", "co_tokenization"),
    "more_iterations_help": compare(arms, "iterations_8", "iterations_1"),
    "iterations_diminishing_returns": diminishing(arms, TABLE4["iterations"]),
    "more_tokens_help": compare(arms, "tokens_128", "jarl"),
    "tokens_diminishing_returns": diminishing(arms, TABLE4["tokens"]),
    "latent_gt_spatial": compare(arms, "resample_latent", "jarl"),
    "gated_gt_residual": compare(arms, "jarl", "combine_residual"),
    "residual_gt_none": compare(arms, "combine_residual", "combine_none"),
  }


def _cell(a: dict, metric: str) -> str:
  return f"{100 * a[f'{metric}_mean']:.1f} ± {100 * a[f'{metric}_std']:.1f}"


def markdown(result: dict) -> list[str]:
  """The three tables and the verdict lines, as rendered in docs/results.md."""
  arms = result["arms"]
  command = "python -m benchmarks.paper_tables --part=accuracy"
  lines = [
    "Accuracy (%, mean ± std over seeds; VQA is the GQA analogue, entailment the SNLI-VE "
    f"one). Reproduce: `{command}` (skips recorded runs; one run: "
    "`--arms=<arm> --seeds=<k> --rerun`).",
  ]
  header = (
    "| arm | seeds | VQA val | VQA heldout | entailment val | entailment heldout "
    "| GFLOPs (run) | GFLOPs (base) | paper GQA |"
  )

  def rows(names, paper_for=lambda n: ARMS[n][1]):
    out = ["", header, "|" + "---|" * 9]
    for n in names:
      if n not in arms:
        out.append(f"| `{n}` | not run | | | | | | | {paper_for(n)} |")
        continue
      a = arms[n]
      g = lambda k, a=a: f"{a[k]:.4g}" if a.get(k) is not None else "-"  # noqa: E731
      out.append(
        f"| `{n}` | {len(a['seeds'])} | {_cell(a, 'val_vqa')} | {_cell(a, 'heldout_vqa')} "
        f"| {_cell(a, 'val_entailment')} | {_cell(a, 'heldout_entailment')} "
        f"| {g('gflops_demo')} | {g('gflops_base')} | {paper_for(n)} |"
      )
    return out

  lines += ["", "Table 3 (concat vs JARL):"] + rows(TABLE3)
  lines += ["", "Table 2 (other fusions):"] + rows(TABLE2)
  for title, names in TABLE4.items():
    paper = lambda n, t=title: TABLE4_PAPER.get((t, n), ARMS[n][1])  # noqa: E731
    lines += ["", f"Table 4, {title}:"] + rows(names, paper)
  check = result["protocol_check"]
  if check["verdict"] != "not measured":
    gains = ", ".join(f"{n} {100 * g:+.1f}" for n, g in check["last_curve_gain"].items())
    lines += [
      "",
      f"Protocol check: best arm `{check['best_arm']}` at {100 * check['best_val_vqa']:.1f}% "
      f"val VQA against the bar of {100 * check['bar']:.0f}%: **{check['verdict']}**"
      + ("" if check["verdict"] == "holds" else " (the verdicts below are provisional)")
      + f". Gain over the last quarter of the VQA fine-tune (points): {gains or '-'}.",
    ]
  for task, title in (("vqa", "VQA"), ("entailment", "Entailment")):
    table = by_kind_table(arms, task)
    if table:
      lines += ["", f"{title} val accuracy by kind (%, mean over seeds; jarl/data/shapes.py):"]
      lines += [""] + table
  lines += ["", "Verdicts (val; one pooled std is the noise band):", ""]
  for claim, v in result["verdicts"].items():
    detail = ""
    if "difference" in v:
      detail = (
        f": {v['arms'][0]} {100 * v['values'][0]:.1f} vs {v['arms'][1]} "
        f"{100 * v['values'][1]:.1f} (difference {100 * v['difference']:+.1f}, "
        f"std {100 * v['pooled_std']:.1f}; {v['metric']})"
      )
    elif "first_gain" in v:
      detail = (
        f": gains {100 * v['first_gain']:+.1f} first vs {100 * v['last_gain']:+.1f} last "
        f"(std {100 * v['pooled_std']:.1f}; {v['metric']})"
      )
    lines.append(f"- `{claim}`: **{v['verdict']}**{detail}")
  return lines
