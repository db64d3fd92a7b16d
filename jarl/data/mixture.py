"""Mixing sources with weights that adapt to the training signal (our design).

The paper says pre-training data sampling is adaptive but gives no formula. Ours: the
trainer reports per-example losses with their dataset id; every `update_every` steps the
mixer turns the window's mean loss per source into a smoothed loss s_i (EMA with
`smoothing`) and sets

    static             p_i ∝ w_i                          (config weights)
    loss               p_i ∝ w_i * s_i ** tau             (spend more on what is hard)
    excess_loss        p_i ∝ w_i * max(s_i - r_i, 0)      (r_i: the source's loss in a
                                                           reference run; spend on what is
                                                           still above what it can reach)
    learning_progress  p_i ∝ w_i * max(g_i, 0)            (g_i: EMA, `progress_smoothing`,
                                                           of the relative fall per update
                                                           1 - s_i / s_i'; spend where the
                                                           loss still falls)
    weights = epsilon + (1 - n * epsilon) * p             (floor: no source starves)

`loss` leans toward noisy data by construction: a source whose captions do not match its
images keeps a high loss that no training removes. The other two adaptive rules read what
training can still change. `excess_loss` is DoReMi's signal (Xie et al. 2023: the proxy's
loss minus a reference model's, clipped at 0); a noisy source's reference loss is high too,
so its excess goes to 0 once the learnable part (the captions' grammar) is learnt. We take
the reference from a finished run over the same sources (its last logged training loss
per source, `reference_run`) or from numbers the config gives (`reference_losses`), and
weigh it like the other rules rather than by DoReMi's exponentiated-gradient step: one
formula for all.
`learning_progress` reads the loss's relative fall, so that sources of different loss levels
compare (an absolute fall is larger for a high-loss source at the same pace), averaged over
updates by its own EMA: one window's fall is mostly noise (with s_i over ~1000 examples per
source, single updates put 90% of the weight on whichever source's window came out low),
and averaging the fall, not the level, adds no lag to s_i.

Sources are drawn per example with a counter-based RNG, key (seed, process, draw count),
so the whole state is a handful of numbers and a restored mixer repeats its draws exactly.
"""

import json
import os

import numpy as np

POLICIES = ("static", "loss", "excess_loss", "learning_progress")


def policy_weights(
  policy: str,
  base: np.ndarray,
  smoothed: np.ndarray,
  progress: np.ndarray,
  *,
  tau: float,
  epsilon: float,
  reference: np.ndarray | None = None,
) -> np.ndarray:
  """Mixture weights [n] from config weights `base` [n] and smoothed losses [n]
  (`progress` [n]: smoothed relative fall, for learning_progress; `reference` [n]:
  reference losses, for excess_loss).

  NaN in `smoothed`/`progress` marks "not known yet": such sources get the mean of the
  known scores, so they are neither favoured nor starved before their first report.
  """
  n = len(base)
  if policy == "static":
    score = np.ones(n)
  elif policy == "loss":
    score = np.power(np.maximum(smoothed, 0.0), tau)
  elif policy == "excess_loss":
    score = np.maximum(smoothed - reference, 0.0)
  elif policy == "learning_progress":
    score = np.maximum(progress, 0.0)
  else:
    raise ValueError(f"config.data.sampling.policy={policy!r}: choose from {POLICIES}")
  known = np.isfinite(score)
  if not known.any():
    score = np.ones(n)
  else:
    score = np.where(known, score, score[known].mean())
  p = base * score
  if p.sum() <= 0:  # e.g. no source made progress: fall back to the config weights
    p = base.astype(np.float64)
  p = p / p.sum()
  return epsilon + (1.0 - n * epsilon) * p


class Mixer:
  """Chooses the source of each example; adapts its weights from reported losses."""

  def __init__(
    self,
    names: list[str],
    weights: list[float],
    *,
    policy: str = "static",
    update_every: int = 50,
    tau: float = 1.0,
    epsilon: float = 0.0,
    smoothing: float = 0.9,
    progress_smoothing: float = 0.9,
    seed: int = 0,
    process_index: int = 0,
    reference: dict[str, float] | None = None,
  ):
    n = len(names)
    base = np.asarray(weights, np.float64)
    if n == 0:
      raise ValueError("config.data.sources is empty")
    if (base < 0).any() or base.sum() <= 0:
      raise ValueError(
        f"config.data.sources weights={list(weights)}: need >= 0 with a positive sum"
      )
    if policy not in POLICIES:
      raise ValueError(f"config.data.sampling.policy={policy!r}: choose from {POLICIES}")
    if not 0 <= epsilon * n <= 1:
      raise ValueError(
        f"config.data.sampling.epsilon={epsilon}: needs 0 <= epsilon <= 1/{n} for {n} sources"
      )
    for key, value in (("smoothing", smoothing), ("progress_smoothing", progress_smoothing)):
      if not 0 <= value < 1:
        raise ValueError(f"config.data.sampling.{key}={value}: needs 0 <= {key} < 1")
    if update_every < 1:
      raise ValueError(f"config.data.sampling.update_every={update_every}: must be >= 1")
    self.reference = _reference_array(policy, list(names), reference)
    self.names, self.base = list(names), base / base.sum()
    self.policy, self.update_every, self.tau = policy, int(update_every), float(tau)
    self.epsilon, self.smoothing = float(epsilon), float(smoothing)
    self.progress_smoothing = float(progress_smoothing)
    self.seed, self.process_index = int(seed), int(process_index)
    self.weights = policy_weights(
      "static", self.base, self.base, self.base, tau=1.0, epsilon=self.epsilon
    )
    self.smoothed = np.full(n, np.nan)
    self.previous = np.full(n, np.nan)
    self.progress = np.full(n, np.nan)
    self._sum = np.zeros(n)
    self._count = np.zeros(n)
    self.last_update_step = 0
    self.num_updates = 0
    self.draws = 0

  def choose(self, num: int) -> np.ndarray:
    """Source ids int32 [num] for the next `num` examples."""
    rng = np.random.default_rng([self.seed, self.process_index, self.draws])
    self.draws += 1
    cdf = np.cumsum(self.weights)
    ids = np.searchsorted(cdf / cdf[-1], rng.random(num), side="right")
    return np.minimum(ids, len(self.names) - 1).astype(np.int32)

  def update(self, dataset_id: np.ndarray, loss: np.ndarray, step: int) -> bool:
    """Adds per-example losses [B] of `step`; recomputes weights every update_every steps.

    Returns True when the weights changed. Non-finite losses and ids outside the source
    list (e.g. 0-masked padding with id -1) are ignored.
    """
    ids = np.asarray(dataset_id).reshape(-1).astype(np.int64)
    loss = np.asarray(loss, np.float64).reshape(-1)
    ok = (ids >= 0) & (ids < len(self.names)) & np.isfinite(loss)
    np.add.at(self._sum, ids[ok], loss[ok])
    np.add.at(self._count, ids[ok], 1)
    if step - self.last_update_step < self.update_every:
      return False
    seen = self._count > 0
    mean = np.where(seen, self._sum / np.maximum(self._count, 1), np.nan)
    self.previous = self.smoothed.copy()
    first = seen & ~np.isfinite(self.smoothed)
    blend = self.smoothing * self.smoothed + (1 - self.smoothing) * mean
    self.smoothed = np.where(first, mean, np.where(seen, blend, self.smoothed))
    with np.errstate(divide="ignore", invalid="ignore"):
      fall = 1.0 - self.smoothed / self.previous  # NaN until a source has two updates
    ps = self.progress_smoothing
    fresh = np.isfinite(fall) & ~np.isfinite(self.progress)
    self.progress = np.where(
      fresh, fall, np.where(np.isfinite(fall), ps * self.progress + (1 - ps) * fall, self.progress)
    )
    self.weights = policy_weights(
      self.policy,
      self.base,
      self.smoothed,
      self.progress,
      tau=self.tau,
      epsilon=self.epsilon,
      reference=self.reference,
    )
    self._sum[:] = 0
    self._count[:] = 0
    self.last_update_step = int(step)
    self.num_updates += 1
    return True

  def stats(self) -> dict[str, float]:
    out = {}
    for i, name in enumerate(self.names):
      out[f"data/weight/{name}"] = float(self.weights[i])
      if self.reference is not None:
        out[f"data/reference_loss/{name}"] = float(self.reference[i])
      if np.isfinite(self.smoothed[i]):
        out[f"data/smoothed_loss/{name}"] = float(self.smoothed[i])
      if self.policy == "learning_progress" and np.isfinite(self.progress[i]):
        out[f"data/progress/{name}"] = float(self.progress[i])
    return out

  def get_state(self) -> dict:
    """JSON-serialisable; NaN ("not seen yet") is stored as None."""
    floats = lambda a: [None if not np.isfinite(v) else float(v) for v in a]  # pylint: disable=unnecessary-lambda-assignment
    return dict(
      names=self.names,
      weights=floats(self.weights),
      smoothed=floats(self.smoothed),
      previous=floats(self.previous),
      progress=floats(self.progress),
      window_sum=floats(self._sum),
      window_count=floats(self._count),
      last_update_step=self.last_update_step,
      num_updates=self.num_updates,
      draws=self.draws,
      reference=None if self.reference is None else floats(self.reference),
    )

  def set_state(self, state: dict):
    if list(state["names"]) != self.names:
      raise ValueError(
        f"mixer state is for sources {state['names']}, but "
        f"config.data.sources names are {self.names}"
      )
    arr = lambda a: np.array([np.nan if v is None else v for v in a], np.float64)  # pylint: disable=unnecessary-lambda-assignment
    self.weights, self.smoothed = arr(state["weights"]), arr(state["smoothed"])
    self.previous = arr(state["previous"])
    self.progress = (
      arr(state["progress"]) if "progress" in state else np.full(len(self.names), np.nan)
    )
    self._sum, self._count = arr(state["window_sum"]), arr(state["window_count"])
    self.last_update_step = int(state["last_update_step"])
    self.num_updates, self.draws = int(state["num_updates"]), int(state["draws"])
    # The run goes on with the reference it started with, even if the reference run's
    # metrics have grown since (a resumed run repeats the uninterrupted one).
    if state.get("reference") is not None:
      self.reference = arr(state["reference"])


def _reference_array(policy: str, names: list[str], reference) -> np.ndarray | None:
  """Reference losses [n] in source order; None where the policy reads none."""
  if policy != "excess_loss":
    return None
  where = "config.data.sampling.reference_losses / reference_run"
  reference = dict(reference or {})
  missing = [n for n in names if n not in reference]
  if missing:
    raise ValueError(
      f"{where}: policy excess_loss needs a reference loss for every source; none for {missing}"
    )
  unknown = sorted(set(reference) - set(names))
  if unknown:
    raise ValueError(f"{where}: {unknown} are not config.data.sources names {names}")
  out = np.array([float(reference[n]) for n in names], np.float64)
  if not np.all(np.isfinite(out) & (out >= 0)):
    raise ValueError(f"{where}={reference}: losses must be finite and >= 0")
  return out


def reference_losses(data_config) -> dict[str, float]:
  """The reference loss per source name for excess_loss: the last `train/loss_<name>` (the
  mean per-example loss of the source over a log interval) that the run in
  `sampling.reference_run` (a workdir) logged, then `sampling.reference_losses`
  (name -> loss) on top. Empty when neither is set.

  Not the mixer's smoothed loss: its moving average trails a falling loss (at the demo's
  smoothing 0.9 per 50-step update it was still 1.0 nats when the training loss was 0.6).
  """
  sampling, out = data_config.sampling, {}
  run = sampling.get("reference_run", "")
  if run:
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
      raise ValueError(
        f"config.data.sampling.reference_run={run!r}: no metrics.jsonl there "
        "(a finished run's workdir over the same sources)"
      )
    keys = {f"train/loss_{s['name']}": s["name"] for s in data_config.sources}
    # Read here, not through jarl.metrics_writer: that pulls in TensorFlow (clu), whose
    # start-up logging would bury config_checks' one-line errors.
    with open(path, encoding="utf-8") as f:
      for row in (json.loads(line) for line in f if line.strip()):
        out.update({keys[k]: v for k, v in row.items() if k in keys})
    if not out:
      raise ValueError(
        f"config.data.sampling.reference_run={run!r}: its metrics.jsonl has no "
        f"train/loss_<source> records for the sources {sorted(keys.values())}"
      )
  out.update({k: float(v) for k, v in dict(sampling.get("reference_losses", {})).items()})
  return out


def from_config(data_config, *, seed: int = 0, process_index: int = 0) -> Mixer:
  """The mixer `config.data` describes (sources, their weights, `sampling`)."""
  sp, srcs = data_config.sampling, list(data_config.sources)
  return Mixer(
    [s["name"] for s in srcs],
    [float(s.get("weight", 1.0)) for s in srcs],
    policy=sp.policy,
    update_every=sp.update_every,
    tau=sp.tau,
    epsilon=sp.epsilon,
    smoothing=sp.smoothing,
    progress_smoothing=sp.get("progress_smoothing", 0.9),
    seed=seed,
    process_index=process_index,
    reference=reference_losses(data_config) if sp.policy == "excess_loss" else None,
  )
