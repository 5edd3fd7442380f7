"""Time to first step: what a training step costs before it has run once.

    python -m benchmarks.speed --only first_step          # 3 trees, 5 rounds
    python -m benchmarks.speed --only first_step --tiny   # seconds (smoke test)

Before its first step a training run builds the optimizer and its state, JAX
traces the step and lowers it to StableHLO, and XLA compiles it; all of that
grows with the number of leaves and with what each optimizer traces per leaf,
and a short job, a notebook or a test suite pays it every time. Each
measurement, of one optimizer on one tree, starts from ``jax.clear_caches()``
and times five phases of the donated step of ``step_time.donated_train_step``:

* ``build``: calling the optimizer's constructor (ours check their
  hyperparameters and probe the moment estimator there, in eager operations
  that compile on their first call);
* ``init``: ``tx.init(params)`` (its eager ``zeros_like`` compile too);
* ``lower``: ``jitted.lower(params, state, grads)``, the trace and lowering;
* ``compile``: ``lowered.compile()``;
* ``first_step``: ``compiled(params, state, grads)``, until its results are
  ready.

``total`` is their sum: the wait before the first step is done. The trees are
ResNet-34 (110 leaves), the deep stack (1000 leaves) and GPT-2 small (148
leaves) of ``_workloads``, in float32. The optimizers take turns in rounds, in
an order that rotates from round to round, as in ``step_time``: each ratio,
ours / Optax's counterpart (adabound / adam, amsbound / amsgrad, adaboundw /
adamw, adamod / adam), is the median over rounds of two measurements taken
seconds apart.

The eager step: ``tx.update`` called without ``jax.jit`` (while debugging,
or a loop that forgot to jit) on the ResNet-34 tree, the median of
``EAGER_CALLS`` calls after two warm-up calls, each round with a fresh state.

Writes ``first_step.json`` and ``first_step.png`` next to ``speed.json``.
"""

import gc
import math
import pathlib
import time
from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax

from benchmarks._common import report
from benchmarks.speed import _workloads
from benchmarks.speed import step_time

PHASES = ("build", "init", "lower", "compile", "first_step")
# Ours and their Optax counterparts: the optimizers whose first step we race.
OPTIMIZERS = ("adabound", "amsbound", "adaboundw", "adamod", "optax.adam",
              "optax.amsgrad", "optax.adamw")
EAGER_WARMUP, EAGER_CALLS = 2, 5


def measure_first_step(make: Callable[[], optax.GradientTransformation],
                       params: Any, grads: Any) -> dict[str, float]:
  """Seconds of each phase from empty caches to the first step's results."""
  params = jax.tree.map(jnp.copy, params)  # A copy to donate.
  jax.block_until_ready(params)
  gc.collect()
  jax.clear_caches()
  marks = [time.perf_counter()]
  tx = make()
  marks.append(time.perf_counter())
  state = tx.init(params)
  jax.block_until_ready(state)
  marks.append(time.perf_counter())
  lowered = step_time.donated_train_step(tx).lower(params, state, grads)
  marks.append(time.perf_counter())
  compiled = lowered.compile()
  marks.append(time.perf_counter())
  jax.block_until_ready(compiled(params, state, grads))
  marks.append(time.perf_counter())
  seconds = dict(zip(PHASES, np.diff(marks).tolist(), strict=True))
  return {**seconds, "total": marks[-1] - marks[0]}


def measure_eager(make: Callable[[], optax.GradientTransformation],
                  params: Any, grads: Any) -> list[float]:
  """Seconds of ``EAGER_CALLS`` un-jitted ``tx.update`` calls, after warm-ups."""
  tx = make()
  state = tx.init(params)
  times = []
  for call in range(EAGER_WARMUP + EAGER_CALLS):
    start = time.perf_counter()
    updates, state = tx.update(grads, state, params)
    jax.block_until_ready((updates, state))
    if call >= EAGER_WARMUP:
      times.append(time.perf_counter() - start)
  return times


def _rotations(names: list[str], rounds: int):
  """(round, name) in rounds whose order rotates, as ``step_time`` runs them."""
  for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      yield r, name


def _median_ratios(runs: dict[str, Any], field: str) -> list[dict[str, Any]]:
  """ours / Optax's counterpart of ``field``, per round; median over rounds."""
  out = []
  for ours, optax_name in step_time.OPTAX_COUNTERPART.items():
    r = step_time.ratio(
        {name: {"rounds": run["rounds"], "times": [[x] for x in run[field]]}
         for name, run in runs.items()}, ours, optax_name)
    if r is not None:
      out.append({"numerator": ours, "denominator": optax_name,
                  "phase": field, **r})
  return out


def run(settings: step_time.Settings, optimizers: list[str], progress, *,
        draw: Callable[[_workloads.Shapes, str], tuple[Any, Any]] = (
            _workloads.params_and_grads),
        deadline: float = math.inf) -> dict[str, Any]:
  """Every optimizer's first step on every tree, and the eager step.

  ``draw`` makes the parameters and gradients. No measurement starts after
  ``deadline`` (a ``time.perf_counter()`` value): what ran is kept.
  """
  names = [n for n in OPTIMIZERS if n in optimizers]
  trees = [w for w in step_time.workloads(settings._replace(
      workloads=settings.first_step_workloads)) if w.key != "buffer"]
  records = []
  eager = None
  for workload in trees:
    if time.perf_counter() >= deadline:
      break
    progress.set_postfix_str(f"first step, {workload.label}")
    params, grads = draw(workload.shapes, "float32")
    runs = {name: {"rounds": [], **{f: [] for f in (*PHASES, "total")}}
            for name in names}
    for r, name in _rotations(names, settings.first_step_rounds):
      if time.perf_counter() >= deadline:
        break
      seconds = measure_first_step(step_time.JAX_OPTIMIZERS[name], params,
                                   grads)
      runs[name]["rounds"].append(r)
      for field, value in seconds.items():
        runs[name][field].append(value)
      progress.update()
    runs = {name: timing for name, timing in runs.items() if timing["rounds"]}
    for timing in runs.values():
      timing["median_s"] = {f: float(np.median(timing[f]))
                          for f in (*PHASES, "total")}
    records.append({
        "workload": workload.key, "label": workload.label,
        "leaves": len(_workloads.leaf_shapes(workload.shapes)),
        "params": _workloads.num_params(workload.shapes), "runs": runs,
        "ratios": [x for f in (*PHASES, "total")
                   for x in _median_ratios(runs, f)],
    })
    if workload.key == "resnet34":
      progress.set_postfix_str(f"eager update, {workload.label}")
      eager_runs = {name: {"rounds": [], "times": []} for name in names}
      for r, name in _rotations(names, settings.first_step_rounds):
        if time.perf_counter() >= deadline:
          break
        eager_runs[name]["rounds"].append(r)
        eager_runs[name]["times"].append(
            measure_eager(step_time.JAX_OPTIMIZERS[name], params, grads))
        progress.update()
      eager_runs = {name: timing for name, timing in eager_runs.items()
                    if timing["rounds"]}
      for timing in eager_runs.values():
        timing["median_ms"] = 1e3 * float(np.median(timing["times"]))
      eager = {"workload": workload.key, "label": workload.label,
               "runs": eager_runs, "ratios": [
                   {"numerator": ours, "denominator": theirs, **r}
                   for ours, theirs in step_time.OPTAX_COUNTERPART.items()
                   if (r := step_time.ratio(eager_runs, ours, theirs))]}
    del params, grads
    gc.collect()
  return {"rounds": settings.first_step_rounds, "trees": records,
          "eager": eager}


def progress_steps(settings: step_time.Settings, optimizers: list[str]) -> int:
  """How many measurements ``run`` takes: the length of its progress bar."""
  names = [n for n in OPTIMIZERS if n in optimizers]
  trees = [w for w in settings.first_step_workloads if w != "sweep"]
  return (len(trees) + ("resnet34" in trees)) * len(names) * (
      settings.first_step_rounds)


def table(result: dict[str, Any]) -> str:
  """Median seconds per phase, and ours / Optax's counterpart."""
  tables = []
  for record in result["trees"]:
    totals = {(t["numerator"], t["phase"]): t for t in record["ratios"]}
    rows = []
    for name, timing in record["runs"].items():
      m = timing["median_s"]
      total = totals.get((name, "total"))
      versus = (f"{total['median']:.2f} x {total['denominator']} (lower "
                f"{totals[name, 'lower']['median']:.2f} x, compile "
                f"{totals[name, 'compile']['median']:.2f} x)" if total else "")
      rows.append([name, *(f"{m[f]:.3f}" for f in (*PHASES, "total")),
                   versus])
    tables.append(
        f"Time to first step, {record['label']} ({record['leaves']} leaves, "
        f"{record['params']:,} parameters), float32, median of "
        f"{result['rounds']} rounds, seconds\n" + report.table(
            ["optimizer", *PHASES, "total",
             "total vs (median over rounds)"], rows))
  if result["eager"]:
    eager = result["eager"]
    ratios = {t["numerator"]: t for t in eager["ratios"]}
    tables.append(
        f"Eager tx.update (no jit), {eager['label']}: median of "
        f"{EAGER_CALLS} calls after {EAGER_WARMUP} warm-ups, per round\n"
        + report.table(["optimizer", "median ms", "vs"], [
            [name, f"{timing['median_ms']:.1f}",
             f"{ratios[name]['median']:.2f} x {ratios[name]['denominator']}"
             if name in ratios else ""]
            for name, timing in eager["runs"].items()]))
  return "\n\n".join(tables)


def plot(result: dict[str, Any], path: pathlib.Path) -> None:
  """Phases per optimizer and tree; ours / Optax; the eager step."""
  fig, axes = plt.subplots(1, 3, figsize=(17, 5.5),
                           width_ratios=(1.4, 1, 0.8))
  labels, lefts = [], []
  colors = dict(zip(PHASES, ("C4", "C7", "C0", "C1", "C2"), strict=True))
  for record in result["trees"]:
    for name, timing in record["runs"].items():
      labels.append(f"{record['label']}: {name}")
      lefts.append(timing["median_s"])
  y = np.arange(len(labels))
  left = np.zeros(len(labels))
  for phase in PHASES:
    widths = np.array([m[phase] for m in lefts])
    axes[0].barh(y, widths, left=left, color=colors[phase], label=phase)
    left += widths
  axes[0].set_yticks(y, labels, fontsize=7)
  axes[0].invert_yaxis()
  axes[0].set_xlabel("seconds, from empty caches (median over rounds)")
  axes[0].set_title("Time to first step, float32")
  axes[0].legend(fontsize=8, loc="lower right")
  axes[0].grid(alpha=0.3, axis="x")

  pairs = [(ours, theirs) for ours, theirs in step_time.OPTAX_COUNTERPART.items()
           if any(t["numerator"] == ours for r in result["trees"]
                  for t in r["ratios"])]
  width = 0.8 / max(len(result["trees"]), 1)
  for i, record in enumerate(result["trees"]):
    totals = {t["numerator"]: t for t in record["ratios"]
              if t["phase"] == "total"}
    xs = [k for k, (ours, _) in enumerate(pairs) if ours in totals]
    values = [totals[pairs[k][0]]["median"] for k in xs]
    axes[1].bar(np.array(xs) + (i - (len(result["trees"]) - 1) / 2) * width,
                values, width, label=record["label"])
  axes[1].axhline(1.0, color="k", lw=0.8)
  axes[1].set_xticks(range(len(pairs)), [f"{a}\n/ {b}" for a, b in pairs],
                     fontsize=8)
  axes[1].set_ylabel("time to first step, ours / Optax's")
  axes[1].set_title("Ours against Optax (median over rounds)")
  axes[1].legend(fontsize=8)
  axes[1].grid(alpha=0.3, axis="y")

  eager = result["eager"]
  if eager:
    names = list(eager["runs"])
    axes[2].barh(range(len(names)),
                 [eager["runs"][n]["median_ms"] for n in names],
                 color=["C0" if n in step_time.OPTAX_COUNTERPART else "C7"
                        for n in names])
    axes[2].set_yticks(range(len(names)), names, fontsize=8)
    axes[2].invert_yaxis()
    axes[2].set_xlabel("ms per call (median)")
    axes[2].set_title(f"Eager tx.update, {eager['label']}\n"
                      "(blue: ours, grey: Optax)")
    axes[2].grid(alpha=0.3, axis="x")
  else:
    axes[2].set_axis_off()
  report.save_figure(fig, path, dpi=120)
