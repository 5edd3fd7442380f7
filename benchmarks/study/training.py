"""Experiment 4: every optimizer of the comparison set, trained on real data.

Four setups, each a small model in plain JAX trained with minibatches of 128:

* digits MLP: scikit-learn's 8x8 digits, 64 standardized features;
* digits MLP, badly scaled: the same features each times a fixed
  ``10**U(-1.5, 1.5)``, where per-parameter step sizes should matter;
* digits CNN: the same digits as 8x8 images;
* MNIST-1D CNN: 40-sample signals generated offline by the `mnist1d` package.

Protocol, as in the paper at CPU scale: the learning rate is divided by 10 at
75% of the run; AdaBound's bounds close at ``gamma = 1 / (2% of the run)``
(``gamma = 1e-3`` is 1.3% of the paper's 78k-step CIFAR-10 runs). In ``--full``
each optimizer's learning rate is tuned on a 7-point grid (its default times
``10**-1.5 .. 10**1.5``, half-decades) by the final validation accuracy of one
seed; the chosen one is then run with every seed and judged on the test split.
``--quick`` skips the tuning and runs the defaults of six of the optimizers.
"""

import pathlib
from typing import Callable
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from benchmarks._common import datasets
from benchmarks._common import report
from benchmarks.study import _models
from benchmarks.study import _optimizers
from benchmarks.study import _train

SETUPS: dict[str, tuple[Callable[[], datasets.Split], _models.Model]] = {
    "digits MLP": (lambda: datasets.digits("flat"), _models.mlp(64, (128, 128))),
    "digits MLP, badly scaled": (lambda: datasets.digits("badly_scaled"),
                                 _models.mlp(64, (128, 128))),
    "digits CNN": (lambda: datasets.digits("image"),
                   _models.cnn((8, 8, 1), (8, 16), 3, (1, 2))),
    "MNIST-1D CNN": (datasets.mnist1d,
                     _models.cnn((40, 1), (25, 25, 25), 5, (2, 2, 2))),
}
BOUND_FRACTION = 0.02  # 1 / gamma as a fraction of the run.
DECAY_AT = 0.75  # The learning rate is divided by 10 there.


class Settings(NamedTuple):
  steps: dict[str, int]  # Setup name -> minibatch steps per run.
  optimizers: tuple[str, ...]
  grid: int  # Learning rates tried per optimizer on validation; 1: the default.
  n_evals: int  # Evaluations per run after step 0.


ALL = tuple(_optimizers.comparison(1.0))
# Quick: the bounded methods against what they interpolate between (Adam and
# AMSGrad early, SGD and the dampened SGDM they end as, late).
QUICK = Settings({"digits MLP": 600, "digits MLP, badly scaled": 600},
                 ("SGD", "SGDM dampened", "Adam", "AMSGrad", "AdaBound",
                  "AMSBound"), grid=1, n_evals=20)
FULL = Settings({"digits MLP": 1500, "digits MLP, badly scaled": 1500,
                 "digits CNN": 1200, "MNIST-1D CNN": 1500}, ALL,
                grid=7, n_evals=30)


def gamma_for(steps: int) -> float:
  """The gamma whose bounds are within 2x of final_lr after 2% of ``steps``."""
  return 1.0 / (BOUND_FRACTION * steps)


def lr_grid(default: float, points: int) -> np.ndarray:
  """``points`` learning rates, half-decades apart, centred on ``default``."""
  return default * 10.0 ** (0.5 * (np.arange(points) - (points - 1) / 2))


def best_index(curves: _train.Curves) -> int:
  """The run with the best final validation accuracy (then loss); never a NaN."""
  acc = curves.eval_acc[:, 0, -1]
  loss = curves.eval_loss[:, 0, -1]
  acc = np.where(np.isfinite(loss), acc, -1.0)
  loss = np.where(np.isfinite(loss), loss, np.inf)
  return int(np.lexsort((loss, -acc))[0])


def train_setup(setup: str, settings: Settings, seeds: int) -> dict:
  """Tunes (if asked) and trains every optimizer on one setup."""
  load, model = SETUPS[setup]
  data = load()
  steps = settings.steps[setup]
  optimizers = _optimizers.comparison(gamma_for(steps))
  decay = _train.step_decay(steps, DECAY_AT)
  results = {}
  for name in tqdm(settings.optimizers, desc=setup):
    opt = optimizers[name]
    make = lambda lr, opt=opt: opt.make(lr, decay)
    grid = lr_grid(opt.lr, settings.grid)
    tuning = None
    if len(grid) > 1:
      tuning = _train.curves(model, make, data, grid, np.arange(1), steps,
                             settings.n_evals, on_test=False)
      lr = float(grid[best_index(tuning)])
    else:
      lr = opt.lr
    final = _train.curves(model, make, data, np.array([lr]), np.arange(seeds),
                          steps, settings.n_evals)
    results[name] = {
        "lr": lr,
        "lr_at_grid_edge": bool(len(grid) > 1 and lr in (grid[0], grid[-1])),
        "grid": grid.tolist(),
        "val_acc_per_lr": None if tuning is None
        else tuning.eval_acc[:, 0, -1].tolist(),
        "steps": final.steps.tolist(),
        "train_loss": final.train_loss[0].tolist(),  # [seeds, points]
        "test_loss": final.eval_loss[0].tolist(),
        "test_acc": final.eval_acc[0].tolist(),
    }
  return {"model": model.name, "params": _models.n_params(model),
          "train_examples": len(data.y_train), "steps": steps,
          "gamma": gamma_for(steps), "decay_at": int(DECAY_AT * steps),
          "optimizers": results}


def _lr_text(name: str, lr: float) -> str:
  if name in _optimizers.BOUNDED:
    return f"{lr:.2g}, final {lr * _optimizers.FINAL_LR_PER_LR:.2g}"
  return f"{lr:.2g}"


def _mean_std(x: list) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(x)
  return x.mean(0), x.std(0)


def table(result: dict) -> str:
  """The final table of one setup."""
  rows = []
  steps = next(iter(result["optimizers"].values()))["steps"]
  early = len(steps) // 10
  for name, r in result["optimizers"].items():
    loss_early = np.asarray(r["train_loss"])[:, early].mean()
    loss, _ = _mean_std(r["train_loss"])
    acc, acc_std = _mean_std(r["test_acc"])
    rows.append([
        name, _lr_text(name, r["lr"]) + (" (edge)" if r["lr_at_grid_edge"] else ""),
        f"{loss_early:.3g}", f"{loss[-1]:.3g}",
        f"{100 * acc[-1]:.1f} ± {100 * acc_std[-1]:.1f}",
    ])
  early_step = steps[early]
  return report.table(
      ["optimizer", "lr", f"train loss @{early_step}", "final train loss",
       "test acc %"], rows)


def plot_curves(setup: str, result: dict, seeds: int, path: pathlib.Path) -> None:
  """Train loss and test accuracy along the run, mean and spread over seeds."""
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(14, 5.5))
  finals = []
  for name, r in result["optimizers"].items():
    steps = np.asarray(r["steps"])
    style = _optimizers.style(name)
    # Loss: mean and the range over seeds (mean - std would go below 0 on a
    # log axis); accuracy: mean and one std. A seed that diverged makes the
    # mean NaN from there on: the line stops.
    loss = np.asarray(r["train_loss"])
    ax_loss.plot(steps, loss.mean(0), **style)
    ax_loss.fill_between(steps, loss.min(0), loss.max(0), color=style["color"],
                         alpha=0.12, lw=0)
    acc, acc_std = _mean_std(r["test_acc"])
    ax_acc.plot(steps, acc, **style)
    ax_acc.fill_between(steps, acc - acc_std, acc + acc_std,
                        color=style["color"], alpha=0.12, lw=0)
    finals.append(_mean_std(r["test_acc"])[0][-1])
  finite = [f for f in finals if np.isfinite(f)]
  for ax in (ax_loss, ax_acc):
    ax.axvline(result["decay_at"], color="k", ls=":", lw=1)
    ax.axvline(1 / result["gamma"], color="k", ls="-.", lw=1)
    ax.set_xlabel("step")
  ax_loss.set(yscale="log", ylabel="train loss (whole training split)",
              title="train loss")
  ax_acc.set(ylabel="test accuracy", title="test accuracy",
             ylim=(max(0.0, np.median(finite) - 0.2), min(1.0, max(finite) + 0.02)))
  ax_acc.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
  fig.suptitle(
      f"{setup} ({result['model']}, {result['params']} params, "
      f"{result['train_examples']} training examples), {seeds} seeds: mean, "
      "and range (loss) or ±1 std (accuracy). Dotted: lr / 10; dash-dot: "
      "1/gamma", fontsize=11)
  report.save_figure(fig, path, dpi=110)


def plot_summary(results: dict, seeds: int, path: pathlib.Path) -> None:
  """Final test accuracy of every optimizer on every setup, one panel each."""
  fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 5.5),
                           sharey=True, squeeze=False)
  for ax, (setup, result) in zip(axes[0], results.items(), strict=True):
    names = list(result["optimizers"])
    for i, name in enumerate(names):
      acc = np.asarray(result["optimizers"][name]["test_acc"])[:, -1]
      style = _optimizers.style(name)
      ax.errorbar(100 * acc.mean(), i, xerr=100 * acc.std(), fmt="o",
                  color=style["color"], ms=7 if name in _optimizers.BOUNDED else 5,
                  capsize=3)
    accs = [100 * np.mean(np.asarray(r["test_acc"])[:, -1])
            for r in result["optimizers"].values()]
    best = np.nanmax(accs)
    ax.set(title=setup, xlabel="final test accuracy %",
           xlim=(best - 12, best + 3), yticks=range(len(names)))
    ax.set_yticklabels(names)
    ax.grid(axis="x", alpha=0.3)
    ax.title.set_fontsize(10)
  axes[0, 0].invert_yaxis()
  fig.suptitle(f"Final test accuracy, mean ± std of {seeds} seeds "
               "(points off the left edge: more than 12 points below the best)",
               fontsize=11)
  report.save_figure(fig, path, dpi=110)


def _slug(setup: str) -> str:
  return setup.lower().replace(", ", "_").replace(" ", "_").replace("-", "")


def run(settings: Settings, seeds: int, out: pathlib.Path) -> str:
  """Trains every setup; saves figures and JSON; returns the tables."""
  results = {setup: train_setup(setup, settings, seeds) for setup in settings.steps}
  for setup, result in results.items():
    plot_curves(setup, result, seeds, out / f"training_{_slug(setup)}.png")
  plot_summary(results, seeds, out / "training_summary.png")
  report.write_json(out / "training.json", {
      "settings": settings._asdict(), "seeds": seeds,
      "bound_fraction": BOUND_FRACTION, "results": results})
  tuned = ("lr tuned on validation" if settings.grid > 1
           else "default lr, not tuned")
  return "\n\n".join(
      f"Training: {setup}, {r['steps']} steps, gamma {r['gamma']:.3g}, "
      f"{tuned}, test accuracy at the end (mean ± std of {seeds} seeds)\n"
      + table(r) for setup, r in results.items())
