r"""Adaptive pretraining-data sampling on a clean + noisy caption mixture: downstream VQA.

    python -m benchmarks.data_efficiency          # bench size, seeds 0 1 2 (~25 min, 2 idle cores)
    python -m benchmarks.data_efficiency --quick  # smoke: tiny model, 1 seed, a few steps
    python -m benchmarks.data_efficiency --policies=static,loss --seeds=0 --plot=/tmp/w.png

Pretraining data: two captioning sources over the same `shapes` scenes, `clean`
(shapes:train) and `noisy` (shapes:train,noise=<--noise>: that fraction of scenes
carries another scene's captions, like web alt-text), config weights 1:1. Only
config.data.sampling.policy differs: static (fixed 1:1) | loss | learning_progress
(jarl/data/mixture.py; update_every, tau, epsilon, smoothing as configs/pretrain.py:demo
sets them). Every policy sees the same number of pretraining examples (same steps and
batch); then the same VQA fine-tuning (benchmarks.shapes_runs), and the VQA accuracy
on shapes:validation and the compositional shapes:heldout split measures what the
pretraining data bought.

prefix_lm is left out of the mixture on purpose: the policies weigh *sources*, and a
prefix-LM source (same images, an easier objective) would pull the weights along a task
axis too, hiding how each policy treats caption noise. With two sources the clean
weight alone says it: static stays at 0.5; `loss` chases the higher loss of the noisy
captions; `learning_progress` favours the source whose loss still falls.

Default size: shapes_runs' `bench`, 3 policies x 3 seeds = 9 runs of ~2.8 min, ~25 min on
2 idle CPU cores. Writes a PNG of the sampling weights (data/weight/<source> in each
pretraining run's metrics.jsonl) over pretraining steps per policy (--plot); the last
line is one JSON object with per-policy accuracy mean/std over seeds, the clean source's
final (and run-average) weight, and the plot path.
"""

import argparse
import os

from benchmarks import record, shapes_runs
from jarl import metrics_writer
from jarl.data import mixture

SOURCES = ("clean", "noisy")


def pretrain_on_mixture(policy: str, noise: float, quick: bool):
  """fn(config): the clean + noisy caption mixture under `policy`."""

  def edit(config):
    config.data.sources = [
      dict(name="clean", source="shapes:train", task="caption", weight=1.0),
      dict(name="noisy", source=f"shapes:train,noise={noise}", task="caption", weight=1.0),
    ]
    config.data.sampling.policy = policy
    if quick:  # a few steps: update and log the weights every other step
      config.data.sampling.update_every = 2
      config.log_every_steps = 1

  return edit


def weight_curves(pre_dir: str) -> dict[str, list[tuple[int, float]]]:
  """{source: [(step, weight), ...]} from a pretraining run's metrics.jsonl."""
  curves = {name: [] for name in SOURCES}
  for row in metrics_writer.read_jsonl(pre_dir):
    for name in SOURCES:
      if f"data/weight/{name}" in row:
        curves[name].append((row["step"], row[f"data/weight/{name}"]))
  for name, points in curves.items():
    if not points:
      raise RuntimeError(f"{pre_dir}/metrics.jsonl: no data/weight/{name} records")
  return curves


def plot_weights(curves: dict, path: str):
  """curves: {policy: [(seed, {source: [(step, weight)]})]} -> one panel per policy."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(
    1, len(curves), figsize=(4.5 * len(curves), 3.6), sharey=True, squeeze=False
  )
  for ax, (policy, per_seed) in zip(axes[0], curves.items()):
    for i, (seed, run) in enumerate(per_seed):
      for name, style in zip(SOURCES, ("-", "--")):
        steps, weights = zip(*run[name])
        ax.plot(steps, weights, style, color=f"C{i}", label=f"{name}, seed {seed}")
    ax.axhline(0.5, color="grey", linewidth=0.5)
    ax.set_title(policy)
    ax.set_xlabel("pretraining step")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel("sampling weight")
  fig.suptitle("pretraining sampling weights: clean (solid) vs noisy (dashed) captions")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--policies", default=",".join(mixture.POLICIES))
  parser.add_argument(
    "--noise",
    type=float,
    default=0.8,
    help="fraction of the noisy source's scenes with another scene's captions",
  )
  parser.add_argument("--plot", default="benchmarks/results/data_efficiency_weights.png")
  shapes_runs.add_flags(parser)
  args = parser.parse_args()
  policies = shapes_runs.choices(parser, "policies", args.policies, mixture.POLICIES)
  if not 0.0 < args.noise <= 1.0:
    parser.error(f"--noise={args.noise}: must be in (0, 1]")
  size, seeds, root = shapes_runs.from_args(args, "data_efficiency")

  runs, summary, curves = [], {}, {}
  for policy in policies:
    per_seed, curves[policy] = [], []
    for seed in seeds:
      result, _, _ = shapes_runs.run_one(
        policy,
        seed,
        size=size,
        root=root,
        model={},
        edit_pretrain=pretrain_on_mixture(policy, args.noise, size.quick),
      )
      run_curves = weight_curves(shapes_runs.run_dirs(root, policy, seed)[0])
      clean = [w for _, w in run_curves["clean"]]
      result.update(clean_weight_final=clean[-1], clean_weight_average=sum(clean) / len(clean))
      curves[policy].append((seed, run_curves))
      runs.append(dict(policy=policy, seed=seed, **result))
      per_seed.append(result)
      shapes_runs.print_run(policy, seed, result)
      print(
        f"{'':18s} clean weight final {clean[-1]:.3f}, average "
        f"{result['clean_weight_average']:.3f}",
        flush=True,
      )
    summary[policy] = shapes_runs.mean_std(
      per_seed, shapes_runs.RESULT_KEYS + ("clean_weight_final", "clean_weight_average")
    )
  plot_weights(curves, args.plot)

  print(
    f"\n{'policy':18s} {'val acc':>15s} {'heldout acc':>15s} {'clean weight':>13s} "
    f"{'(run average)':>13s}"
  )
  for policy, s in summary.items():
    print(
      f"{policy:18s} {s['val_accuracy_mean']:7.3f} ± {s['val_accuracy_std']:.3f} "
      f"{s['heldout_accuracy_mean']:7.3f} ± {s['heldout_accuracy_std']:.3f} "
      f"{s['clean_weight_final_mean']:13.3f} {s['clean_weight_average_mean']:13.3f}"
    )
  print(f"plot: {args.plot}")
  record.emit(
    "data_efficiency",
    dict(
      config=size.name,
      seeds=seeds,
      noise=args.noise,
      pretrain_steps=size.pretrain_steps,
      finetune_steps=size.finetune_steps,
      eval_examples=size.eval_examples,
      policies=summary,
      runs=runs,
      plot=args.plot,
      clean_weight_final={p: s["clean_weight_final_mean"] for p, s in summary.items()},
    ),
    args,
  )


if __name__ == "__main__":
  main()
