"""Experiment 1: Adam's counterexample, where bounding the step size fixes Adam.

Reddi, Kale & Kumar (ICLR 2018) build online problems on x in [-1, 1] whose
gradient is a rare large +C and a frequent small -1: the regret-minimizing
point is x = -1, but Adam's step after the rare gradient is small (its second
moment is large then) and after the frequent ones large, so Adam drifts to the
worst point x = +1. AMSGrad's running max of the second moment fixes it; so does
AdaBound's bound, once the step sizes have closed on ``final_lr``.

* Theorem 1: ``f_t(x) = C x`` if ``t mod 3 == 1`` else ``-x``, C = 3,
  b1 = 0, b2 = 1 / (1 + C^2).
* Section 5: ``f_t(x) = 1010 x`` if ``t mod 101 == 1`` else ``-10 x``,
  b1 = 0.9, b2 = 0.99.

Every method uses the learning rate ``alpha / sqrt(t)``; x is projected back
onto [-1, 1] after every step. AdaBound's ``final_lr`` follows that schedule
(``final_lr * lr_t / lr_0``, the reference's coupling), so its SGD phase has the
``1 / sqrt(t)`` decay that online SGD needs.
"""

import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

from benchmarks._common import report
from benchmarks.study import _optimizers
import optax_bound


class Problem(NamedTuple):
  title: str
  big: float  # The rare gradient, every `period` steps from t = 1.
  small: float  # The frequent gradient.
  period: int
  b1: float
  b2: float


PROBLEMS = {
    "theorem1": Problem("Reddi et al. Theorem 1: 3x once in 3 steps, else -x",
                        3.0, -1.0, 3, 0.0, 1 / (1 + 3.0**2)),
    "section5": Problem("Reddi et al. Section 5: 1010x once in 101 steps, else -10x",
                        1010.0, -10.0, 101, 0.9, 0.99),
}
ALPHA = 0.5  # Learning rate alpha / sqrt(t) for every method.
FINAL_LR = 0.05  # AdaBound's final_lr at step 1; it decays with the lr.
GAMMA = 1e-3


class Settings(NamedTuple):
  steps: int


QUICK = FULL = Settings(steps=200_000)  # A scalar problem: cheap at any size.


def optimizers(b1: float, b2: float) -> dict[str, optax.GradientTransformation]:
  lr = lambda count: ALPHA / jnp.sqrt(count + 1.0)
  bounded = dict(learning_rate=lr, final_lr=FINAL_LR, b1=b1, b2=b2, gamma=GAMMA)
  return {
      "Adam": optax.adam(lr, b1=b1, b2=b2),
      "AMSGrad": optax.amsgrad(lr, b1=b1, b2=b2),
      "AdaBound": optax_bound.adabound(**bounded),
      "AMSBound": optax_bound.amsbound(**bounded),
  }


def trajectory(tx: optax.GradientTransformation, problem: Problem,
               steps: int) -> np.ndarray:
  """x_t for t = 1..steps from x_0 = 0, projected onto [-1, 1] after each step."""
  x0 = jnp.zeros([])

  def step(carry, t):
    x, state = carry
    grad = jnp.where(t % problem.period == 1, problem.big, problem.small)
    updates, state = tx.update(grad, state, x)
    x = jnp.clip(optax.apply_updates(x, updates), -1.0, 1.0)
    return (x, state), x

  run = jax.jit(lambda: jax.lax.scan(step, (x0, tx.init(x0)),
                                     jnp.arange(1, steps + 1))[1])
  return np.asarray(run())


def run(settings: Settings, seeds: int, out: pathlib.Path) -> str:
  """Runs both problems, saves the figure and JSON; returns the table."""
  del seeds  # Deterministic: no data, no initialization.
  xs = {}
  jobs = [(p, n) for p in PROBLEMS for n in optimizers(0.0, 0.0)]
  for problem_name, name in tqdm(jobs, desc="counterexample"):
    problem = PROBLEMS[problem_name]
    tx = optimizers(problem.b1, problem.b2)[name]
    xs[problem_name, name] = trajectory(tx, problem, settings.steps)

  fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(12, 4.2), sharey=True)
  t = np.arange(1, settings.steps + 1)
  for ax, (problem_name, problem) in zip(axes, PROBLEMS.items(), strict=True):
    for (p, name), x in xs.items():
      if p == problem_name:
        # Dashed: AMSBound lies on AdaBound in Section 5, where the bound
        # has closed before the max of v matters.
        ax.plot(t, x, ls="--" if name == "AMSBound" else "-",
                **_optimizers.style(name))
    ax.axhline(-1, color="k", ls=":", lw=1)
    ax.set(xscale="log", xlabel="step t", title=problem.title, ylim=(-1.08, 1.08))
    ax.title.set_fontsize(10)
  axes[0].set_ylabel("x_t  (optimum -1, worst point +1)")
  axes[-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
  fig.suptitle(f"Adam's counterexample: lr {ALPHA}/sqrt(t); AdaBound final_lr "
               f"{FINAL_LR}/sqrt(t), gamma {GAMMA} (AdaBound is Adam until "
               f"its bounds close, ~1/gamma steps)", fontsize=11)
  report.save_figure(fig, out / "counterexample.png", dpi=120)

  # x averaged over the last 10% of steps: the point each method settles at
  # (Section 5's x still jumps after every rare gradient).
  tail = settings.steps // 10
  settled = {k: float(x[-tail:].mean()) for k, x in xs.items()}
  rows = [[name, *(settled[p, name] for p in PROBLEMS)]
          for name in optimizers(0.0, 0.0)]
  report.write_json(out / "counterexample.json", {
      "settings": settings._asdict(), "alpha": ALPHA, "final_lr": FINAL_LR,
      "gamma": GAMMA, "problems": {k: p._asdict() for k, p in PROBLEMS.items()},
      "mean_x_last_10pct": {f"{p}/{n}": v for (p, n), v in settled.items()},
      "x_every_100_steps": {f"{p}/{n}": x[99::100].tolist()
                            for (p, n), x in xs.items()},
  })
  return ("Counterexample: mean x over the last 10% of "
          f"{settings.steps} steps (optimum -1)\n"
          + report.table(["optimizer", *PROBLEMS], rows))
