"""Experiment 3: the bound at work, "Adam early, SGD late", as it happens.

Trains the digits MLP of the training comparison (default learning rate, lr/10
at 75% of the run) and records, at every step, the step size each parameter
element actually took: ``optax_bound.effective_step_sizes`` reads it from the
updates and the new state (|update| / |m|). Three runs share seed and batches:

* Adam: ``adabound`` with ``gamma = 0``, whose bound is [0, inf): the
  reference's Adam, to show the step sizes AdaBound starts from;
* AdaBound and AMSBound with ``gamma = 1 / (2% of the run)``.

The figure shows the quantiles of the step sizes over all elements against
the band ``[lower(t), upper(t)]``, and the share of elements held at each
bound. The band and the shares are ``optax_bound.bound_stats`` of every step:
read from the state the step returns (it stores the band it clipped into), not
recomputed from ``final_lr`` and ``gamma`` here, so the figure shows the bound
the optimizer applied. The shares are over the elements whose step size is
defined (first moment not 0: the weights of the digits' blank border pixels
never get a gradient).
"""

import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from benchmarks._common import datasets
from benchmarks._common import report
from benchmarks.study import _optimizers
from benchmarks.study import _train
from benchmarks.study import training
import optax_bound

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
LR = 1e-3
FINAL_LR = _optimizers.FINAL_LR_PER_LR * LR


class Settings(NamedTuple):
  steps: int


QUICK = Settings(steps=600)
FULL = Settings(steps=1500)


def observe_step_sizes(updates, state):
  """What to record at every step: step-size quantiles, the band, the shares.

  Inside the study's jitted loop, where recording is the point: a training
  loop would call ``bound_stats`` outside its step, as the Flax scripts do.
  """
  sizes = jnp.concatenate([jnp.ravel(s) for s in jax.tree.leaves(
      optax_bound.effective_step_sizes(updates, state))])
  stats = optax_bound.bound_stats(updates, state)
  return {
      "quantiles": jnp.nanquantile(sizes, jnp.array(QUANTILES)),
      "lower": stats.lower,
      "upper": stats.upper,
      "at_lower": stats.fraction_at_lower,
      "at_upper": stats.fraction_at_upper,
  }


def run(settings: Settings, seeds: int, out: pathlib.Path) -> str:
  """Runs the three optimizers; saves the figure and JSON; returns the table."""
  del seeds  # One seed: the picture is of one run's step sizes.
  data = datasets.digits("flat")
  model = training.SETUPS["digits MLP"][1]
  steps = settings.steps
  gamma = training.gamma_for(steps)
  decay = _train.step_decay(steps, training.DECAY_AT)
  runs = {"Adam (gamma = 0)": (optax_bound.adabound, 0.0),
          "AdaBound": (optax_bound.adabound, gamma),
          "AMSBound": (optax_bound.amsbound, gamma)}
  observed, accuracy = {}, {}
  for name, (constructor, g) in tqdm(runs.items(), desc="bounds"):
    make = lambda lr, c=constructor, g=g: c(
        learning_rate=lambda count: lr * decay(count), final_lr=FINAL_LR, gamma=g)
    curves = _train.curves(model, make, data, np.array([LR]), np.arange(1),
                           steps, n_evals=10, observe=observe_step_sizes)
    observed[name] = jax.tree.map(lambda a: np.asarray(a)[0, 0], curves.observed)
    accuracy[name] = float(curves.eval_acc[0, 0, -1])

  t = np.arange(1, steps + 1)
  # AdaBound's band, as its state stored it: AMSBound's is the same (same
  # schedule, final_lr and gamma), Adam's (gamma = 0) is [0, inf), and its
  # panel shows AdaBound's.
  lower, upper = observed["AdaBound"]["lower"], observed["AdaBound"]["upper"]
  _plot(observed, t, lower, upper, gamma, model.name, out / "bounds.png")

  report.write_json(out / "bounds.json", {
      "settings": settings._asdict(), "lr": LR, "final_lr": FINAL_LR,
      "gamma": gamma, "quantiles": QUANTILES, "test_acc": accuracy,
      "lower": lower.tolist(), "upper": upper.tolist(),
      # Each run's shares and quantiles; the band is the top level's.
      "runs": {k: {f: v.tolist() for f, v in o.items()
                   if f not in ("lower", "upper")}
               for k, o in observed.items()},
  })
  checkpoints = sorted({1, 10, int(1 / gamma), steps // 2, steps})
  rows = []
  for name, o in observed.items():
    for s in checkpoints:
      q = o["quantiles"][s - 1]
      rows.append([name, s, f"{lower[s - 1]:.3g}", f"{upper[s - 1]:.3g}",
                   f"{q[0]:.3g}", f"{q[2]:.3g}", f"{q[4]:.3g}",
                   f"{100 * o['at_lower'][s - 1]:.0f}",
                   f"{100 * o['at_upper'][s - 1]:.0f}"])
  return (f"Bounds: step sizes |u|/|m| of every element, digits MLP, lr {LR}, "
          f"final_lr {FINAL_LR}, gamma {gamma:.3g} (test acc "
          + ", ".join(f"{k} {100 * v:.1f}%" for k, v in accuracy.items()) + ")\n"
          + report.table(["run", "step", "lower", "upper", "q05", "median",
                           "q95", "% at lower", "% at upper"], rows))


def _plot(observed, t, lower, upper, gamma, model_name, path) -> None:
  fig, axes = plt.subplots(2, len(observed), figsize=(15, 7.5), sharex=True,
                           sharey="row", height_ratios=(3, 1.3))
  for (name, o), ax, ax_share in zip(observed.items(), axes[0], axes[1], strict=True):
    q = o["quantiles"]
    color = _optimizers.style(name.split()[0])["color"]
    ax.fill_between(t, q[:, 0], q[:, 4], color=color, alpha=0.2, lw=0,
                    label="5-95% of elements")
    ax.fill_between(t, q[:, 1], q[:, 3], color=color, alpha=0.4, lw=0,
                    label="25-75%")
    ax.plot(t, q[:, 2], color=color, lw=1.5, label="median")
    ax.plot(t, lower, "k--", lw=1.2, label="lower(t), upper(t)")
    ax.plot(t, upper, "k--", lw=1.2)
    ax.axvline(1 / gamma, color="k", ls="-.", lw=0.8)
    ax.set(xscale="log", yscale="log")
    ax.set_title(name + (": no bound; dashed, AdaBound's band"
                         if name.startswith("Adam ") else ""), fontsize=10)
    ax_share.plot(t, 100 * o["at_upper"], color="tab:red", label="at upper")
    ax_share.plot(t, 100 * o["at_lower"], color="tab:blue", label="at lower")
    ax_share.set(xscale="log", xlabel="step t", ylim=(-3, 103))
  axes[0, 0].set_ylabel("step size |u| / |m| per element")
  axes[1, 0].set_ylabel("% of elements (m != 0)")
  axes[0, 0].legend(loc="lower left", fontsize=9)
  axes[1, 0].legend(loc="center left", fontsize=9)
  fig.suptitle(f"The bound at work on the {model_name} (digits): step sizes "
               f"against [lower(t), upper(t)], lr {LR}, final_lr {FINAL_LR}, "
               f"gamma {gamma:.3g} (dash-dot: 1/gamma); lr / 10 at 75%",
               fontsize=11)
  report.save_figure(fig, path, dpi=110)
