"""Does ``optax_bound.find_final_lr`` pick a ``final_lr`` that trains, and trains well?

    python -m benchmarks.study.final_lr            # quick: seconds on 2 cores
    python -m benchmarks.study.final_lr --full     # every setup, 5 seeds: 8 min

On every training setup of the study (``training.SETUPS``: digits MLP, the
same on badly scaled features, digits CNN, MNIST-1D CNN) and on a stiff
quadratic, AdaBound (lr 1e-3, the study's protocol: lr / 10 at 75% of the
run, gamma = 1 / (2% of the run)) is trained with

* every ``final_lr`` of a grid, 1e-4 to 3 in half-decades, over the seeds;
* the ``final_lr`` that ``find_final_lr`` suggests, from one call per seed
  (its five range tests, from that seed's parameters on that seed's
  minibatches); each suggestion is trained with every seed;
* two other rules read off the same range tests, for comparison: the
  steepest descent of the smoothed loss (the usual learning-rate finder's
  rule) and half the divergence point (a smaller margin than the sixth that
  ``find_final_lr`` keeps), both read off the median test.

The range tests start from their own draws of the initial parameters and of
the minibatch order (seeds 300 and up), not from those of the training runs:
the rule's constants were chosen on range tests of seeds 0 to 9, 100 to 104
and 200 to 204. What counts: no run at a suggested ``final_lr`` diverges (a final
training loss that is NaN, a network's test accuracy below twice chance's, a
quadratic's loss no lower than at the start), and the worst suggestion's test
accuracy, the mean of the training seeds, is within 1 point of the grid's
best (the quadratic: its final loss within 10 times the grid's best).

The stiff quadratic is ``0.5 x^T H x`` in 64 dimensions, the eigenvalues of
``H`` spread evenly in log from 1 to 2e4 (the curvature of a stiff
least-squares problem on which AdaBound's default ``final_lr=0.1`` goes to
NaN) in a fixed random basis, from ``x0 ~ N(0, I)``. There, dampened SGDM at
``b1 = 0.9`` is stable below ``38 / 2e4 = 1.9e-3``.
"""

import argparse
import itertools
import pathlib
import time
from typing import NamedTuple
import warnings

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

from benchmarks._common import datasets
from benchmarks._common import report
from benchmarks.study import _train
from benchmarks.study import training
import optax_bound

ADABOUND_LR = 1e-3  # Adam's phase, as in the robustness sweep.
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
# Call i of find_final_lr draws its parameters and batches from 300 + i: the
# rule's constants were chosen on range tests of seeds 0 to 9, 100 to 104 and
# 200 to 204.
RANGE_SEED = 300
QUADRATIC = "stiff quadratic"
QUADRATIC_DIM = 64
QUADRATIC_CURVATURES = (1.0, 2e4)
ACCURACY_MARGIN = 0.01  # Within 1 point of the grid's best accuracy ...
LOSS_MARGIN = 10.0  # ... or within 10 times its best loss (the quadratic).
BATCH_SIZE = 128  # As in training.
CHANCE_TWICE = 0.2  # Test accuracy of 10 classes: under it, a run failed.


class Settings(NamedTuple):
  steps: dict[str, int]  # Setup name (training.SETUPS or QUADRATIC) -> steps.
  grid: tuple[float, ...]
  n_evals: int  # Evaluations per training run after step 0.


QUICK = Settings({"digits MLP": 300, QUADRATIC: 300}, (1e-3, 1e-2, 0.1, 1.0, 3.0),
                 n_evals=5)
# The training comparison's run lengths.
FULL = Settings({**training.FULL.steps, QUADRATIC: 1500}, GRID, n_evals=10)


def _rules(test: optax_bound.FinalLrRangeTest) -> dict[str, float]:
  """The suggestion, and two other rules read off the same range test."""
  upto = len(test.lrs) - 1 if test.divergence_lr is not None else len(test.lrs)
  slope = np.gradient(np.log(test.smoothed_losses[:upto]),
                      np.log(test.lrs[:upto]))
  divergence = test.divergence_lr or float(test.lrs[-1])
  # At b1 = 0.9, find_final_lr's own rule is divergence / 6.
  return {"find_final_lr": test.final_lr,
          "steepest descent": float(test.lrs[int(np.argmin(slope))]),
          "divergence / 2": divergence / 2}


def _minibatches(data: datasets.Split, rng: np.random.Generator):
  """Minibatches of the training split, a new permutation each epoch."""
  n = len(data.y_train)
  while True:
    order = rng.permutation(n)
    for start in range(0, n - BATCH_SIZE + 1, BATCH_SIZE):
      index = order[start:start + BATCH_SIZE]
      yield data.x_train[index], data.y_train[index]


def _quadratic_hessian() -> np.ndarray:
  rng = np.random.default_rng(datasets.DATA_SEED)
  basis, _ = np.linalg.qr(rng.standard_normal((QUADRATIC_DIM, QUADRATIC_DIM)))
  low, high = np.log10(QUADRATIC_CURVATURES)
  curvatures = np.logspace(low, high, QUADRATIC_DIM)
  return ((basis * curvatures) @ basis.T).astype(np.float32)


def _quadratic_start(seed: int) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal(QUADRATIC_DIM).astype(
      np.float32)


def _adabound(steps: int):
  decay = _train.step_decay(steps, training.DECAY_AT)
  return lambda final_lr: optax_bound.adabound(
      learning_rate=lambda count: ADABOUND_LR * decay(count),
      final_lr=final_lr, gamma=training.gamma_for(steps))


def _quadratic_runs(final_lrs: np.ndarray, seeds: int, steps: int) -> dict:
  """Final and initial loss [final_lrs, seeds] of AdaBound on the quadratic."""
  hessian = jnp.asarray(_quadratic_hessian())
  loss = lambda x: 0.5 * x @ hessian @ x
  make = _adabound(steps)

  def run(final_lr, x):
    tx = make(final_lr)

    def step(carry, _):
      x, state = carry
      updates, state = tx.update(jax.grad(loss)(x), state, x)
      return (optax.apply_updates(x, updates), state), None

    (x_end, _), _ = jax.lax.scan(step, (x, tx.init(x)), length=steps)
    return loss(x_end)

  starts = jnp.asarray(np.stack([_quadratic_start(s) for s in range(seeds)]))
  runs = jax.jit(jax.vmap(jax.vmap(run, in_axes=(None, 0)), in_axes=(0, None)))
  final = np.asarray(runs(jnp.asarray(final_lrs, jnp.float32), starts))
  initial = np.asarray(jax.vmap(loss)(starts))
  return {"final": final, "initial": np.broadcast_to(initial, final.shape)}


def _network_runs(setup: str, data: datasets.Split, final_lrs: np.ndarray,
                  seeds: int, steps: int, n_evals: int) -> dict:
  """Final test accuracy and train losses [final_lrs, seeds] of AdaBound."""
  model = training.SETUPS[setup][1]
  curves = _train.curves(model, _adabound(steps), data, final_lrs,
                         np.arange(seeds), steps, n_evals)
  return {"acc": curves.eval_acc[:, :, -1], "final": curves.train_loss[:, :, -1],
          "lowest": np.fmin.reduce(curves.train_loss, axis=2)}


def _range_test(setup: str, data: datasets.Split | None,
                seed: int) -> tuple[optax_bound.FinalLrRangeTest, list[str]]:
  """find_final_lr from seed's own parameters and batches; its warnings."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if setup == QUADRATIC:
      hessian = jnp.asarray(_quadratic_hessian())
      test = optax_bound.find_final_lr(
          lambda x, _: 0.5 * x @ hessian @ x, _quadratic_start(seed),
          itertools.repeat(None))
    else:
      assert data is not None
      model = training.SETUPS[setup][1]
      rng = np.random.default_rng(seed)
      # The training runs' loss: the mean cross-entropy of a minibatch.
      test = optax_bound.find_final_lr(
          lambda params, batch: _train._loss(model, params, *batch),
          model.init(rng), _minibatches(data, rng))
  return test, [str(w.message) for w in caught]


def _scores(runs: dict, setup: str) -> tuple[np.ndarray, np.ndarray]:
  """The score of each run [final_lrs, seeds], and whether it diverged.

  A run diverged if its final training loss is NaN or infinite, or no lower
  than at the start (the quadratic), or more than twice the lowest it had at
  an evaluation (a network that collapsed: its cross-entropy can stay finite,
  near chance's). A run too slow to learn much has not diverged; one that
  collapsed before its first evaluation is not caught, so the tables also
  count the runs under 20% test accuracy (twice chance), whatever the cause.
  """
  if setup == QUADRATIC:
    diverged = ~(runs["final"] < runs["initial"])
    final = np.where(diverged, np.inf, runs["final"])
    return final, diverged
  return runs["acc"], ~(runs["final"] <= 2 * runs["lowest"])


def study_setup(setup: str, settings: Settings, seeds: int) -> dict:
  """The grid, the range tests and their suggestions on one setup."""
  steps = settings.steps[setup]
  data = None if setup == QUADRATIC else training.SETUPS[setup][0]()
  tests, caught = zip(*(_range_test(setup, data, RANGE_SEED + i)
                        for i in range(seeds)), strict=True)
  rules = [_rules(t) for t in tests]
  names = list(rules[0])
  suggested = np.array([[r[n] for r in rules] for n in names])  # [rule, test]
  grid = np.asarray(settings.grid)
  # One compiled run for the grid and every suggestion of every rule.
  final_lrs = np.concatenate([grid, suggested.ravel()])
  if setup == QUADRATIC:
    runs = _quadratic_runs(final_lrs, seeds, steps)
  else:
    assert data is not None
    runs = _network_runs(setup, data, final_lrs, seeds, steps, settings.n_evals)
  run_score, run_diverged = _scores(runs, setup)
  is_loss = setup == QUADRATIC
  run_below = (np.zeros_like(run_diverged) if is_loss
               else run_score < CHANCE_TWICE)
  score, diverged, below = (run_score.mean(1), run_diverged.sum(1),
                            run_below.sum(1))
  grid_score, grid_diverged = score[:len(grid)], diverged[:len(grid)]
  best = int(np.argmin(grid_score) if is_loss else np.argmax(grid_score))
  rule_score = score[len(grid):].reshape(suggested.shape)
  rule_diverged = diverged[len(grid):].reshape(suggested.shape)
  rule_below = below[len(grid):].reshape(suggested.shape)
  rule_runs = run_score[len(grid):].reshape(*suggested.shape, seeds)
  worst = rule_score.max(1) if is_loss else rule_score.min(1)

  def within(value):
    if is_loss:
      return bool(value <= LOSS_MARGIN * grid_score[best])
    return bool(value >= grid_score[best] - ACCURACY_MARGIN)

  # The median of the seeds' suggestions (the lower one of an even count) is
  # one of them: its runs are among those above.
  median = int(np.argsort(suggested[0])[(len(tests) - 1) // 2])
  return {
      "steps": steps, "gamma": training.gamma_for(steps),
      "score": "final loss" if is_loss else "test accuracy",
      "grid": {"final_lr": grid.tolist(), "score": grid_score.tolist(),
               "diverged": grid_diverged.tolist(),
               "under_20pct": below[:len(grid)].tolist(),
               "run_scores": run_score[:len(grid)].tolist(),
               "best_final_lr": float(grid[best]),
               "best_score": float(grid_score[best])},
      "range_tests": [{"seed": RANGE_SEED + i, "divergence_lr": t.divergence_lr,
                       "divergence_lrs": [c.divergence_lr for c in t.curves],
                       "warnings": w, "initial_loss": t.initial_loss,
                       "lrs": t.lrs.tolist(),
                       "losses": t.losses.tolist(),
                       "smoothed_losses": t.smoothed_losses.tolist()}
                      for i, (t, w) in enumerate(zip(tests, caught, strict=True))],
      "rules": {name: {"final_lr": suggested[k].tolist(),
                       "score": rule_score[k].tolist(),
                       "diverged": rule_diverged[k].tolist(),
                       "under_20pct": rule_below[k].tolist(),
                       "run_scores": rule_runs[k].tolist(),
                       "worst_score": float(worst[k]),
                       "diverged_runs": int(rule_diverged[k].sum()),
                       "runs": len(tests) * seeds,
                       "within_margin": within(worst[k]),
                       "never_diverged": bool(rule_diverged[k].sum() == 0)}
                for k, name in enumerate(names)},
      "median_test": {"seed": RANGE_SEED + median,
                      "final_lr": float(suggested[0, median]),
                      "score": float(rule_score[0, median]),
                      "diverged_runs": int(rule_diverged[0, median]),
                      "under_20pct": int(rule_below[0, median]),
                      "runs": seeds,
                      "within_margin": within(rule_score[0, median])},
  }


def _score_text(value: float, is_loss: bool) -> str:
  return f"{value:.3g}" if is_loss else f"{100 * value:.1f}"


def table(results: dict) -> str:
  """One row per setup and rule: the suggestions against the grid's best."""
  rows = []
  for setup, r in results.items():
    is_loss = r["score"] == "final loss"
    best = r["grid"]["best_score"]
    grid_text = (f"{_score_text(best, is_loss)} at {r['grid']['best_final_lr']:g}"
                 f" ({sum(r['grid']['diverged'])}, {sum(r['grid']['under_20pct'])})")
    for name, rule in r["rules"].items():
      lrs = rule["final_lr"]
      ok = rule["within_margin"] and rule["never_diverged"]
      rows.append([setup, name, f"{min(lrs):.3g}..{max(lrs):.3g}",
                   _score_text(rule["worst_score"], is_loss),
                   f"{rule['diverged_runs']}/{rule['runs']}",
                   f"{sum(rule['under_20pct'])}/{rule['runs']}", grid_text,
                   "yes" if ok else "no"])
    median = r["median_test"]
    ok = median["within_margin"] and not median["diverged_runs"]
    rows.append([setup, "find_final_lr, median test", f"{median['final_lr']:.3g}",
                 _score_text(median["score"], is_loss),
                 f"{median['diverged_runs']}/{median['runs']}",
                 f"{median['under_20pct']}/{median['runs']}", grid_text,
                 "yes" if ok else "no"])
  return report.table(
      ["setup", "rule", "final_lr suggested", "worst score", "diverged",
       "under 20%", "grid best (diverged, under 20%)",
       "within margin, none diverged"], rows)


def _panels(n: int) -> tuple:
  """A figure of ``n`` panels, three a row; the spare ones blank."""
  rows = -(-n // 3)
  fig, axes = plt.subplots(rows, min(n, 3), figsize=(5.2 * min(n, 3), 4.4 * rows),
                           squeeze=False)
  axes = list(axes.flat)
  for ax in axes[n:]:
    ax.axis("off")
  return fig, axes


def plot_range_tests(results: dict, path: pathlib.Path) -> None:
  """Each setup's first range test with its suggestion; the others faint."""
  fig, axes = _panels(len(results))
  for ax, (setup, r) in zip(axes, results.items(), strict=False):
    first, *others = r["range_tests"]
    for other in others:
      ax.plot(other["lrs"], other["smoothed_losses"], color="C0", lw=0.8,
              alpha=0.3)
    optax_bound.FinalLrRangeTest(
        final_lr=r["rules"]["find_final_lr"]["final_lr"][0],
        divergence_lr=first["divergence_lr"], lrs=np.asarray(first["lrs"]),
        losses=np.asarray(first["losses"]),
        smoothed_losses=np.asarray(first["smoothed_losses"]),
        initial_loss=first["initial_loss"]).plot(ax)
    ax.axvline(r["grid"]["best_final_lr"], color="0.5", lw=4, alpha=0.4,
               zorder=0, label="the grid's best final_lr")
    ax.legend(fontsize=8)
    ax.set_title(setup, fontsize=10)
  fig.suptitle("find_final_lr's range tests: dampened SGDM (b1 = 0.9), lr "
               "rising 25 steps a decade; faint: the other seeds' averages",
               fontsize=11)
  report.save_figure(fig, path, dpi=110)


_MARKERS = {"find_final_lr": ("*", "C3", 14), "steepest descent": ("v", "C1", 8),
            "divergence / 2": ("s", "C4", 7)}


def plot_grid(results: dict, seeds: int, path: pathlib.Path) -> None:
  """The grid's score against final_lr, and each rule's suggestions on it."""
  fig, axes = _panels(len(results))
  for ax, (setup, r) in zip(axes, results.items(), strict=False):
    is_loss = r["score"] == "final loss"
    scale = 1.0 if is_loss else 100.0
    grid = np.asarray(r["grid"]["final_lr"])
    score = scale * np.asarray(r["grid"]["score"])
    ax.plot(grid, score, "o-", color="0.3", label="grid")
    # Diverged runs can score inf: their marks sit at the top of the panel.
    bad = (np.asarray(r["grid"]["diverged"]) + np.asarray(r["grid"]["under_20pct"])) > 0
    ax.plot(grid[bad], np.full(bad.sum(), 0.96), "x", color="k", ms=9, mew=2,
            transform=ax.get_xaxis_transform(),
            label="grid: a seed diverged or ended under 20%")
    best = scale * r["grid"]["best_score"]
    edge = best * LOSS_MARGIN if is_loss else best - 100 * ACCURACY_MARGIN
    ax.axhline(edge, color="0.5", ls=":",
               label="target: 1 point below the best (10x its loss)")
    for name, rule in r["rules"].items():
      marker, color, size = _MARKERS[name]
      ax.plot(rule["final_lr"], scale * np.asarray(rule["score"]), marker,
              color=color, ms=size, ls="none", label=name, alpha=0.85)
    finite = score[np.isfinite(score)]
    if is_loss:
      ax.set(yscale="log", ylabel="final loss, mean of seeds")
    else:
      ax.set(ylim=(max(0.0, finite.max() - 25), finite.max() + 2),
             ylabel="test accuracy %, mean of seeds")
    ax.set(xscale="log", xlabel="final_lr", title=setup)
    ax.grid(alpha=0.3)
  handles, labels = axes[0].get_legend_handles_labels()
  if len(axes) > len(results):
    axes[len(results)].legend(handles, labels, loc="center", fontsize=10)
  else:
    axes[0].legend(fontsize=8, loc="best")
  fig.suptitle(f"AdaBound over a grid of final_lr against the rules' "
               f"suggestions ({seeds} calls of find_final_lr, each trained "
               f"with {seeds} seeds)", fontsize=11)
  report.save_figure(fig, path, dpi=110)


def run(settings: Settings, seeds: int, out: pathlib.Path) -> str:
  """Runs every setup; saves the figures and JSON; returns the table."""
  results = {}
  for setup in tqdm(settings.steps, desc="final_lr"):
    results[setup] = study_setup(setup, settings, seeds)
  plot_range_tests(results, out / "final_lr_range_test.png")
  plot_grid(results, seeds, out / "final_lr_grid.png")
  report.write_json(out / "final_lr.json", {
      "settings": settings._asdict(), "seeds": seeds,
      "adabound_lr": ADABOUND_LR, "range_seed": RANGE_SEED,
      "quadratic": {"dim": QUADRATIC_DIM, "curvatures": QUADRATIC_CURVATURES},
      "results": results})
  return (f"find_final_lr against a grid of final_lr ({seeds} seeds; score: "
          "test accuracy %, or the quadratic's final loss)\n" + table(results))


def main(argv=None) -> str:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.study.final_lr",
      description=__doc__.split("\n")[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", dest="full", action="store_false",
                    help="the digits MLP and the quadratic, short (the default)")
  mode.add_argument("--full", action="store_true",
                    help="every setup at the training comparison's lengths")
  parser.set_defaults(full=False)
  parser.add_argument("--seeds", type=int, default=None,
                      help="calls of find_final_lr and training seeds "
                      "(default: 2 quick, 5 full)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help="where figures and JSON go (default: "
                      "benchmarks/results/study with --full, "
                      "benchmarks/results/tmp/study otherwise)")
  args = parser.parse_args(argv)
  seeds = args.seeds or (5 if args.full else 2)
  out = args.out or (report.RESULTS / ("study" if args.full else "tmp/study"))
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  text = run(FULL if args.full else QUICK, seeds, out)
  print(f"\n{text}\n\n{time.perf_counter() - start:.0f} s; figures and JSON "
        f"in {out}")
  return text


if __name__ == "__main__":
  main()
