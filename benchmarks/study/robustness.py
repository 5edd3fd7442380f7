"""Experiment 5: is AdaBound robust to final_lr and gamma, as the paper claims?

AdaBound (lr 1e-3) over ``final_lr`` from 0.01 to 3 and ``gamma`` from 1e-5
to 1, against the learning-rate sensitivity of SGD with momentum (PyTorch's
form and the dampened form AdaBound ends as) and of Adam, each over three
decades. Same model, data, schedule (lr / 10 at 75%) and seeds as the training
comparison; every point is the final test accuracy, mean of the seeds. The
whole grid of one method is one jitted, vmapped run.

Over a run of N steps, ``gamma`` well below 1/N never closes the bounds
(AdaBound stays Adam), and ``gamma`` near 1 closes them at once (AdaBound is
dampened SGDM at ``final_lr`` from the start).
"""

import pathlib
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from benchmarks._common import report
from benchmarks.study import _optimizers
from benchmarks.study import _train
from benchmarks.study import training
import optax_bound

ADABOUND_LR = 1e-3
BASELINES = ("SGDM", "SGDM dampened", "Adam")


class Settings(NamedTuple):
  setups: tuple[str, ...]  # Names from training.SETUPS.
  steps: int
  final_lrs: tuple[float, ...]
  gammas: tuple[float, ...]
  lr_points: int  # Learning rates per baseline, half-decades around its default.


QUICK = Settings(("digits MLP",), 600, (0.01, 0.1, 1.0), (1e-4, 1e-2, 1.0), 5)
FULL = Settings(("digits MLP", "digits MLP, badly scaled"), 1500,
                (0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
                (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), 7)


def sweep(setup: str, settings: Settings, seeds: int) -> dict:
  """Final test accuracy over AdaBound's grid and each baseline's lr grid."""
  load, model = training.SETUPS[setup]
  data = load()
  decay = _train.step_decay(settings.steps, training.DECAY_AT)
  n_evals = 10
  seed_range = np.arange(seeds)

  def adabound(h):
    return optax_bound.adabound(
        learning_rate=lambda count: ADABOUND_LR * decay(count),
        final_lr=h[0], gamma=h[1])

  pairs = np.array([(f, g) for f in settings.final_lrs for g in settings.gammas])
  jobs = [("AdaBound", adabound, pairs)]
  optimizers = _optimizers.comparison(gamma=1.0)
  for name in BASELINES:
    opt = optimizers[name]
    jobs.append((name, lambda lr, opt=opt: opt.make(lr, decay),
                 training.lr_grid(opt.lr, settings.lr_points)))
  result = {}
  for name, make, hparams in tqdm(jobs, desc=f"robustness, {setup}"):
    curves = _train.curves(model, make, data, hparams, seed_range,
                           settings.steps, n_evals)
    acc = curves.eval_acc[:, :, -1]
    result[name] = {"hparams": hparams.tolist(),
                    "test_acc": acc.mean(1).tolist(),
                    "test_acc_std": acc.std(1).tolist()}
  grid = np.asarray(result["AdaBound"]["test_acc"]).reshape(
      len(settings.final_lrs), len(settings.gammas))
  result["AdaBound"]["grid_final_lr_by_gamma"] = grid.tolist()
  return result


def _spread(values: np.ndarray) -> list:
  """Best, worst, and how many points of a sweep are within 1 point of its best."""
  best = np.nanmax(values)
  return [f"{100 * best:.1f}", f"{100 * np.nanmin(values):.1f}",
          f"{int(np.sum(values >= best - 0.01))}/{len(values)}"]


def table(result: dict, settings: Settings) -> str:
  rows = []
  for name in BASELINES:
    lrs = np.asarray(result[name]["hparams"])
    rows.append([name, f"lr {lrs[0]:.2g}..{lrs[-1]:.2g}",
                 *_spread(np.asarray(result[name]["test_acc"]))])
  grid = np.asarray(result["AdaBound"]["grid_final_lr_by_gamma"])
  for j, gamma in enumerate(settings.gammas):
    rows.append([f"AdaBound, gamma {gamma:g}",
                 f"final_lr {settings.final_lrs[0]:g}..{settings.final_lrs[-1]:g}",
                 *_spread(grid[:, j])])
  for i, final_lr in enumerate(settings.final_lrs):
    rows.append([f"AdaBound, final_lr {final_lr:g}",
                 f"gamma {settings.gammas[0]:g}..{settings.gammas[-1]:g}",
                 *_spread(grid[i])])
  rows.append(["AdaBound, whole grid", f"{grid.size} pairs",
               *_spread(grid.ravel())])
  return report.table(["method", "swept", "best acc %", "worst acc %",
                        "within 1 pt of best"], rows)


def plot(results: dict, settings: Settings, seeds: int, path: pathlib.Path) -> None:
  fig, axes = plt.subplots(len(results), 2, figsize=(14, 5.2 * len(results)),
                           squeeze=False)
  for (setup, result), (ax_map, ax_lines) in zip(results.items(), axes, strict=True):
    grid = 100 * np.asarray(result["AdaBound"]["grid_final_lr_by_gamma"])
    image = ax_map.imshow(grid, cmap="viridis", aspect="auto", origin="lower",
                          vmin=max(np.nanmin(grid), np.nanmax(grid) - 30),
                          vmax=np.nanmax(grid))
    for (i, j), acc in np.ndenumerate(grid):
      ax_map.text(j, i, f"{acc:.1f}", ha="center", va="center", fontsize=8,
                  color="white" if acc < np.nanmax(grid) - 10 else "black")
    ax_map.set(xticks=range(len(settings.gammas)),
               xticklabels=[f"{g:g}" for g in settings.gammas],
               yticks=range(len(settings.final_lrs)),
               yticklabels=[f"{f:g}" for f in settings.final_lrs],
               xlabel="gamma", ylabel="final_lr",
               title=f"{setup}: AdaBound (lr {ADABOUND_LR}) test accuracy %")
    fig.colorbar(image, ax=ax_map)

    for name in BASELINES:
      r = result[name]
      ax_lines.plot(r["hparams"], 100 * np.asarray(r["test_acc"]), marker="o",
                    **_optimizers.style(name))
    reds = plt.get_cmap("Reds")
    for j, gamma in enumerate(settings.gammas):
      ax_lines.plot(settings.final_lrs, grid[:, j], marker="s", ms=4, lw=1.5,
                    color=reds(0.3 + 0.7 * j / max(1, len(settings.gammas) - 1)),
                    label=f"AdaBound vs final_lr, gamma {gamma:g}")
    best = np.nanmax([np.nanmax(grid)] + [100 * np.nanmax(result[n]["test_acc"])
                                         for n in BASELINES])
    ax_lines.set(xscale="log", ylim=(best - 30, best + 2),
                 xlabel="learning rate (AdaBound: final_lr)",
                 ylabel="final test accuracy %",
                 title=f"{setup}: sensitivity, mean of {seeds} seeds")
    ax_lines.legend(fontsize=8, loc="lower center", ncol=2)
    ax_lines.grid(alpha=0.3)
  fig.suptitle(f"Robustness, {settings.steps} steps per run "
               "(accuracies more than 30 points below the best are off the "
               "line plots)", fontsize=11)
  report.save_figure(fig, path, dpi=110)


def run(settings: Settings, seeds: int, out: pathlib.Path) -> str:
  """Runs the sweeps; saves the figure and JSON; returns the tables."""
  results = {setup: sweep(setup, settings, seeds) for setup in settings.setups}
  plot(results, settings, seeds, out / "robustness.png")
  report.write_json(out / "robustness.json", {
      "settings": settings._asdict(), "seeds": seeds,
      "adabound_lr": ADABOUND_LR, "results": results})
  return "\n\n".join(
      f"Robustness: {setup}, {settings.steps} steps, final test accuracy "
      f"(mean of {seeds} seeds) over each sweep\n" + table(r, settings)
      for setup, r in results.items())
