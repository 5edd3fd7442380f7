"""Experiment 2: the paths optimizers take on three 2-D functions.

* f(x, y) = x^2 + y^2 from (-75, -10), at the learning rates users try first:
  SGD and Momentum at 0.1, the adaptive methods at 1.
* Rosenbrock's valley from (-2, 2) and Beale's function from (1, 1.75), where
  no single learning rate suits every method: each method takes the learning
  rate of a grid (1e-5 to 30, half-decades) that ends lowest.

AdaBound and AMSBound are given no learning rate of their own: they start with
Adam's (``learning_rate``) and end with SGD's (``final_lr``), the pairing their
design promises. Their bounds close over the first 10% of the steps (``gamma =
10 / steps``): a wider share than in training, so that both phases show.
"""

import pathlib
from typing import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

from benchmarks._common import report
from benchmarks.study import _optimizers
import optax_bound


def quadratic(p):
  return p[0] ** 2 + p[1] ** 2


def rosenbrock(p):
  return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def beale(p):
  x, y = p[0], p[1]
  return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
          + (2.625 - x + x * y**3) ** 2)


class Function(NamedTuple):
  f: Callable[[jax.Array], jax.Array]
  start: tuple[float, float]
  minimum: tuple[float, float]
  box: tuple[float, float, float, float]  # x0, x1, y0, y1 of the plot.
  lrs: dict[str, float] | None  # Fixed learning rates, or None to tune.


FUNCTIONS = {
    "quadratic": Function(quadratic, (-75.0, -10.0), (0.0, 0.0),
                          (-80, 10, -15, 15),
                          {"SGD": 0.1, "Momentum": 0.1, "Adagrad": 1.0,
                           "RMSprop": 1.0, "Adadelta": 1.0, "Adam": 1.0,
                           "AdamW": 1.0}),
    "rosenbrock": Function(rosenbrock, (-2.0, 2.0), (1.0, 1.0),
                           (-2.5, 2.0, -1.0, 3.5), None),
    "beale": Function(beale, (1.0, 1.75), (3.0, 0.5), (-0.5, 4.0, -1.0, 2.5),
                      None),
}
GRID = 10.0 ** np.arange(-5.0, 1.6, 0.5)
OPTIMIZERS = {
    "SGD": optax.sgd,
    "Momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "Adagrad": optax.adagrad,
    "RMSprop": optax.rmsprop,
    "Adadelta": optax.adadelta,
    "Adam": optax.adam,
    "AdamW": optax.adamw,
}


class Settings(NamedTuple):
  steps: int


QUICK = FULL = Settings(steps=500)  # Two parameters: cheap at any size.


def paths(function: Function, make_tx, hparams: np.ndarray,
          steps: int) -> np.ndarray:
  """Positions [hparams, steps + 1, 2] of ``make_tx(h)`` from the start."""

  def path(h):
    tx = make_tx(h)
    start = jnp.array(function.start)

    def step(carry, _):
      p, state = carry
      updates, state = tx.update(jax.grad(function.f)(p), state, p)
      p = optax.apply_updates(p, updates)
      return (p, state), p

    _, ps = jax.lax.scan(step, (start, tx.init(start)), length=steps)
    return jnp.concatenate([start[None], ps])

  return np.asarray(jax.jit(jax.vmap(path))(jnp.asarray(hparams, jnp.float32)))


def _final_value(function: Function, ps: np.ndarray) -> np.ndarray:
  values = np.asarray(jax.vmap(function.f)(jnp.asarray(ps[:, -1])))
  return np.where(np.isfinite(values), values, np.inf)


def run(settings: Settings, seeds: int, out: pathlib.Path) -> str:
  """Runs every optimizer on every function; saves figures, JSON; returns a table."""
  del seeds  # Deterministic: a fixed start, full gradients.
  gamma = 10.0 / settings.steps
  results = {}
  jobs = [(f, o) for f in FUNCTIONS for o in OPTIMIZERS]
  for function_name, name in tqdm(jobs, desc="paths"):
    function = FUNCTIONS[function_name]
    grid = GRID if function.lrs is None else np.array([function.lrs[name]])
    ps = paths(function, OPTIMIZERS[name], grid, settings.steps)
    best = int(np.argmin(_final_value(function, ps)))
    results[function_name, name] = (float(grid[best]), ps[best])
  for function_name, function in FUNCTIONS.items():
    adam_lr = results[function_name, "Adam"][0]
    sgd_lr = results[function_name, "SGD"][0]
    for name, constructor in (("AdaBound", optax_bound.adabound),
                              ("AMSBound", optax_bound.amsbound)):
      make = lambda h, c=constructor, lr=adam_lr: c(
          learning_rate=lr, final_lr=h, gamma=gamma)
      ps = paths(function, make, np.array([sgd_lr]), settings.steps)
      results[function_name, name] = (adam_lr, ps[0])

  names = [*OPTIMIZERS, "AdaBound", "AMSBound"]
  finals = {k: float(FUNCTIONS[k[0]].f(jnp.asarray(ps[-1])))
            for k, (_, ps) in results.items()}
  report.write_json(out / "paths.json", {
      "settings": settings._asdict(), "gamma": gamma, "lr_grid": GRID.tolist(),
      "functions": {k: {"start": f.start, "minimum": f.minimum, "lrs": f.lrs}
                    for k, f in FUNCTIONS.items()},
      "runs": {f"{f}/{n}": {"lr": lr, "final_f": finals[f, n],
                            "final_xy": ps[-1].tolist(),
                            "path_every_5_steps": ps[::5].tolist()}
               for (f, n), (lr, ps) in results.items()},
  })
  lr_text = {}
  for (f, name), (lr, _) in results.items():
    lr_text[f, name] = (f"{lr:.3g}" if name not in ("AdaBound", "AMSBound")
                        else f"{lr:.3g}->{results[f, 'SGD'][0]:.3g}")
  rows = [[name, *(f"{finals[f, name]:.3g} (lr {lr_text[f, name]})"
                   for f in FUNCTIONS)] for name in names]
  for f, function in FUNCTIONS.items():
    _plot(f, function, {n: results[f, n][1] for n in names},
          {n: lr_text[f, n] for n in names}, {n: finals[f, n] for n in names},
          settings.steps, out / f"paths_{f}.png")
  return (f"Paths: f after {settings.steps} steps (learning rate)\n"
          + report.table(["optimizer", *FUNCTIONS], rows))


def _plot(name: str, function: Function, ps: dict[str, np.ndarray],
          lrs: dict[str, str], finals: dict[str, float], steps: int,
          path: pathlib.Path) -> None:
  """One panel per optimizer (nine paths on one contour plot hide each other)."""
  x0, x1, y0, y1 = function.box
  xx, yy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
  zz = np.asarray(function.f(jnp.stack([jnp.asarray(xx), jnp.asarray(yy)])))
  if name == "quadratic":
    contour = dict(levels=15)
  else:
    # These valleys span decades of f: only log-spaced levels show them.
    contour = dict(levels=np.logspace(np.log10(max(zz.min(), 1e-3)),
                                      np.log10(zz.max()), 20),
                   norm=matplotlib.colors.LogNorm())
  fig, axes = plt.subplots(3, 3, figsize=(13, 11), sharex=True, sharey=True)
  for ax, (opt, p) in zip(axes.flat, ps.items(), strict=True):
    ax.contour(xx, yy, zz, cmap="Greys", linewidths=0.5, **contour)
    if opt in ("AdaBound", "AMSBound"):
      # The two methods it should interpolate between, for comparison.
      for ref in ("Adam", "SGD"):
        ax.plot(ps[ref][:, 0], ps[ref][:, 1], ls="--", lw=1,
                color=_optimizers.style(ref)["color"], label=ref)
    style = _optimizers.style("SGDM" if opt == "Momentum" else opt)
    style["label"] = opt
    ax.plot(p[:, 0], p[:, 1], marker=".", markersize=3, **style)
    ax.plot(*function.start, "ko", markersize=6)
    ax.plot(*function.minimum, "k*", markersize=12)
    ax.set(xlim=(x0, x1), ylim=(y0, y1))
    ax.set_title(f"{opt} (lr {lrs[opt]}): f = {finals[opt]:.2g}", fontsize=10)
    if opt in ("AdaBound", "AMSBound"):
      ax.legend(fontsize=8, loc="upper right")
  for ax in axes[-1]:
    ax.set_xlabel("x")
  for ax in axes[:, 0]:
    ax.set_ylabel("y")
  how = ("lr 0.1 for SGD and Momentum, 1 for the rest" if function.lrs
         else "each method's best lr from a grid")
  fig.suptitle(f"{name} from {function.start} (dot) to the minimum (star), "
               f"{steps} steps; {how}; AdaBound: Adam's lr -> SGD's lr")
  report.save_figure(fig, path, dpi=100)
