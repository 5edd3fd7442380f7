"""Digits and two small Flax models, in NNX and in Linen, trained by optax_bound.

Shared by ``nnx.py``, ``linen.py`` (in ``benchmarks/flax_training/``) and the
Flax tests, so that the tests train exactly what the scripts train. The data is
scikit-learn's bundled digits (1797 real 8x8 images, nothing is downloaded),
split as the study splits it (``benchmarks/_common/datasets.py``): the scripts
tune nothing, so they train on the study's training and validation images
(1437) and test on its 360 test images.

The NNX and Linen models are the same two architectures with the same
initializers (Flax's defaults), so their numbers can be read side by side:

* ``mlp``: 64 pixels -> 128 ReLU -> 10 logits;
* ``cnn``: 3x3 conv (16) -> ReLU -> 3x3 conv (32) -> ReLU -> 2x2 mean pool ->
  10 logits.

``fit_nnx`` and ``fit_linen`` are the canonical loops of each API:
``nnx.Optimizer(model, tx, wrt=nnx.Param)`` updated by ``nnx.jit``, and
``TrainState.create(..., tx=tx)`` updated by ``state.apply_gradients``.
With ``observe_bound=True`` they also watch the bound: the last step of each
epoch is taken by a twin of the step that returns the updates it applied, and
``optax_bound.bound_stats`` reads the band and the fractions at its edges
from those updates and the new state, outside the step. The other steps are
the canonical step itself, so watching costs them nothing.
``load_data`` is that split; ``optimizer`` names the optimizers the scripts
compare; ``parse_args`` and
``run`` are the scripts' shared arguments and their run, with its final table.
"""

import argparse
import pathlib
import time
from typing import Any
from typing import Callable
from typing import NamedTuple

from flax import linen
from flax import nnx
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from benchmarks._common import baselines
from benchmarks._common import datasets
from benchmarks._common import report
import optax_bound

MODELS = ("mlp", "cnn")
OPTIMIZERS = ("amsbound", "adabound", "adam", "sgdm")
BOUNDED = ("amsbound", "adabound")  # The optimizers whose bound is watched.
# The scripts' defaults, and the tests'. final_lr = 1.0 is the README's rule:
# SGD with momentum 0.9 trains these models well at 0.1, and 0.1 / (1 - b1)
# = 1.0. 1 / gamma = 100 steps (4.5 epochs) puts the switch from Adam-like
# to SGD-like early in a run of 10 epochs.
LEARNING_RATE, FINAL_LR, GAMMA = 1e-2, 1.0, 1e-2


class History(NamedTuple):
  """What one training run measured."""

  train_loss: list[float]  # The mean minibatch loss of each epoch.
  test_accuracy: float  # After the last epoch.
  seconds: float  # Wall time of the training loop, compilation included.
  # With observe_bound: after each epoch's last step, its step count and
  # optax_bound.bound_stats (lower, upper, fraction_at_lower,
  # fraction_at_upper, median_step_size). None without.
  bound: list[dict[str, float]] | None = None


# Outside the step: compiled once, called once an epoch.
_bound_stats = jax.jit(optax_bound.bound_stats)


def bound_summary(bound: dict[str, float]) -> str:
  """``band [lower, upper] at lower x% at upper y%``, for a progress bar."""
  return (f"band [{bound['lower']:.3g}, {bound['upper']:.3g}] at lower "
          f"{100 * bound['fraction_at_lower']:.0f}% at upper "
          f"{100 * bound['fraction_at_upper']:.0f}%")


def load_data() -> datasets.Split:
  """Digits as (N, 8, 8, 1) images in [0, 1]: 1437 to train on, 360 to test."""
  return datasets.digits("image", validation=False)


def batches(
    n: int, batch_size: int, epoch: int, seed: int
) -> list[np.ndarray]:
  """Index arrays of one shuffled epoch; the last partial batch is dropped."""
  order = np.random.default_rng([seed, epoch]).permutation(n)
  return [order[i:i + batch_size]
          for i in range(0, n - batch_size + 1, batch_size)]


def optimizer(
    name: str, learning_rate: float, final_lr: float, gamma: float
) -> optax.GradientTransformation:
  """The optimizers the scripts compare, by name.

  ``'sgdm'`` is the SGD with momentum that AdaBound ends as, at ``final_lr``.
  """
  bound = dict(learning_rate=learning_rate, final_lr=final_lr, gamma=gamma)
  return {
      "adabound": lambda: optax_bound.adabound(**bound),
      "amsbound": lambda: optax_bound.amsbound(**bound),
      "adam": lambda: optax.adam(learning_rate),
      "sgdm": lambda: baselines.dampened_sgdm(final_lr),
  }[name]()


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The mean-reduced loss: gradients do not grow with the batch size."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


OnEpoch = Callable[[int, float, dict[str, float] | None], None]


def _fit(
    step: Callable[[np.ndarray, np.ndarray], jax.Array],
    predict: Callable[[np.ndarray], jax.Array],
    data: datasets.Split,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: OnEpoch | None,
    observed_step: Callable[[np.ndarray, np.ndarray], tuple[jax.Array, Any]]
    | None = None,
) -> History:
  """The loop of both APIs: ``step(x, y) -> loss`` over shuffled epochs.

  ``observed_step(x, y) -> (loss, bound_stats)``, if given, takes the last
  step of each epoch in place of ``step``. ``predict(x) -> labels`` is called
  once, on the test split, after the last epoch.
  """
  start = time.perf_counter()
  losses, bounds = [], []
  taken = 0
  for epoch in range(epochs):
    *most, last = batches(len(data.y_train), batch_size, epoch, seed)
    epoch_losses = [step(data.x_train[i], data.y_train[i]) for i in most]
    if observed_step is None:
      epoch_losses.append(step(data.x_train[last], data.y_train[last]))
    else:
      loss, stats = observed_step(data.x_train[last], data.y_train[last])
      epoch_losses.append(loss)
      bounds.append({"step": taken + len(most) + 1, **{
          k: float(v) for k, v in jax.device_get(stats._asdict()).items()}})
    taken += len(most) + 1
    losses.append(float(np.mean(jax.device_get(epoch_losses))))
    if on_epoch is not None:
      on_epoch(epoch, losses[-1], bounds[-1] if bounds else None)
  accuracy = float(np.mean(np.asarray(predict(data.x_test)) == data.y_test))
  return History(losses, accuracy, time.perf_counter() - start,
                 bounds if observed_step is not None else None)


# Flax NNX.


class NnxMlp(nnx.Module):
  """64 -> 128 ReLU -> 10."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 128, rngs=rngs)
    self.out = nnx.Linear(128, 10, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    return self.out(nnx.relu(self.hidden(x)))


class NnxCnn(nnx.Module):
  """conv 16 -> conv 32 -> 2x2 mean pool -> 10."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(16, 32, (3, 3), rngs=rngs)
    self.out = nnx.Linear(4 * 4 * 32, 10, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.relu(self.conv1(x))
    x = nnx.relu(self.conv2(x))
    x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
    return self.out(x.reshape(x.shape[0], -1))


def nnx_model(name: str, seed: int) -> nnx.Module:
  """A fresh NNX model, ``'mlp'`` or ``'cnn'``."""
  model_class = {"mlp": NnxMlp, "cnn": NnxCnn}[name]
  return model_class(rngs=nnx.Rngs(seed))


def arrays(tree: Any) -> Any:
  """``tree`` with NNX's ``Variable`` wrappers replaced by their arrays.

  What ``nnx.as_pure`` does in recent Flax, and ``nnx.pure`` (deprecated
  there) in Flax 0.12.0, the oldest we support, which has neither
  ``as_pure`` nor ``Variable.get_value``.
  """
  def value(variable):
    if hasattr(variable, "get_value"):
      return variable.get_value()
    return variable.value

  return jax.tree.map(
      lambda x: value(x) if isinstance(x, nnx.Variable) else x,
      tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


def _nnx_step_and_updates(
    model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, Any]:
  loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(x), y))(model)
  # The updates optimizer.update applies (recent Flax returns them, 0.12.0
  # does not): the same call on the same arrays, which XLA computes once.
  updates, _ = optimizer.tx.update(
      arrays(grads), arrays(optimizer.opt_state),
      arrays(nnx.state(model, nnx.Param)))
  optimizer.update(model, grads)
  return loss, updates


@nnx.jit
def _nnx_train_step(
    model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
) -> jax.Array:
  return _nnx_step_and_updates(model, optimizer, x, y)[0]


# The same step, returning the updates it applied too: bound_stats reads them.
_nnx_observed_step = nnx.jit(_nnx_step_and_updates)


@nnx.jit
def _nnx_predict(model: nnx.Module, x: jax.Array) -> jax.Array:
  return jnp.argmax(model(x), axis=-1)


def fit_nnx(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    data: datasets.Split,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    on_epoch: OnEpoch | None = None,
    observe_bound: bool = False,
) -> tuple[nnx.Optimizer, History]:
  """Trains ``model`` in place with ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.

  ``on_epoch(epoch, mean_loss, bound)`` is called after each epoch (a
  progress bar); ``bound`` is that epoch's entry of ``History.bound``, which
  ``observe_bound=True`` records for an optimizer with a bound.
  """
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  def observed_step(x, y):
    loss, updates = _nnx_observed_step(model, optimizer, x, y)
    return loss, _bound_stats(updates, arrays(optimizer.opt_state))

  history = _fit(lambda x, y: _nnx_train_step(model, optimizer, x, y),
                 lambda x: _nnx_predict(model, x), data, epochs=epochs,
                 batch_size=batch_size, seed=seed, on_epoch=on_epoch,
                 observed_step=observed_step if observe_bound else None)
  return optimizer, history


# Flax Linen.


class LinenMlp(linen.Module):
  """64 -> 128 ReLU -> 10."""

  @linen.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    return linen.Dense(10)(linen.relu(linen.Dense(128)(x)))


class LinenCnn(linen.Module):
  """conv 16 -> conv 32 -> 2x2 mean pool -> 10."""

  @linen.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = linen.relu(linen.Conv(16, (3, 3))(x))
    x = linen.relu(linen.Conv(32, (3, 3))(x))
    x = linen.avg_pool(x, (2, 2), strides=(2, 2))
    return linen.Dense(10)(x.reshape(x.shape[0], -1))


def linen_model(name: str) -> linen.Module:
  """A Linen model, ``'mlp'`` or ``'cnn'``."""
  return {"mlp": LinenMlp, "cnn": LinenCnn}[name]()


def linen_state(
    model: linen.Module, tx: optax.GradientTransformation, seed: int
) -> train_state.TrainState:
  """``TrainState.create(..., tx=tx)`` around freshly initialized params."""
  params = model.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)))["params"]
  return train_state.TrainState.create(
      apply_fn=model.apply, params=params, tx=tx)


def _linen_loss_and_grads(
    state: train_state.TrainState, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, Any]:
  def loss_fn(params: Any) -> jax.Array:
    return cross_entropy(state.apply_fn({"params": params}, x), y)

  return jax.value_and_grad(loss_fn)(state.params)


@jax.jit
def linen_train_step(
    state: train_state.TrainState, x: jax.Array, y: jax.Array
) -> tuple[train_state.TrainState, jax.Array]:
  """One step of ``state.apply_gradients`` on the mean cross-entropy."""
  loss, grads = _linen_loss_and_grads(state, x, y)
  return state.apply_gradients(grads=grads), loss


@jax.jit
def _linen_observed_step(
    state: train_state.TrainState, x: jax.Array, y: jax.Array
) -> tuple[train_state.TrainState, jax.Array, Any]:
  """``linen_train_step``, and the updates ``apply_gradients`` applied.

  ``apply_gradients`` does not return them, so they are computed beside it
  from the same inputs: the same computation, which XLA shares.
  """
  loss, grads = _linen_loss_and_grads(state, x, y)
  updates, _ = state.tx.update(grads, state.opt_state, state.params)
  return state.apply_gradients(grads=grads), loss, updates


@jax.jit
def _linen_predict(state: train_state.TrainState, x: jax.Array) -> jax.Array:
  return jnp.argmax(state.apply_fn({"params": state.params}, x), axis=-1)


def fit_linen(
    state: train_state.TrainState,
    data: datasets.Split,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    on_epoch: OnEpoch | None = None,
    observe_bound: bool = False,
) -> tuple[train_state.TrainState, History]:
  """Trains a ``TrainState`` by ``apply_gradients``; returns the last state.

  ``on_epoch(epoch, mean_loss, bound)`` is called after each epoch (a
  progress bar); ``bound`` is that epoch's entry of ``History.bound``, which
  ``observe_bound=True`` records for an optimizer with a bound.
  """
  # A TrainState is a value: each step replaces the one the loop holds.
  latest = [state]

  def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
    latest[0], loss = linen_train_step(latest[0], x, y)
    return loss

  def observed_step(x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, Any]:
    latest[0], loss, updates = _linen_observed_step(latest[0], x, y)
    return loss, _bound_stats(updates, latest[0].opt_state)

  history = _fit(step, lambda x: _linen_predict(latest[0], x), data,
                 epochs=epochs, batch_size=batch_size, seed=seed,
                 on_epoch=on_epoch,
                 observed_step=observed_step if observe_bound else None)
  return latest[0], history


# What the two training scripts share: their arguments and their report.


def parse_args(script: str, argv: list[str] | None = None) -> argparse.Namespace:
  """The arguments of ``python -m benchmarks.flax_training.{nnx,linen}``."""
  parser = argparse.ArgumentParser(
      prog=f"python -m benchmarks.flax_training.{script}",
      description="Train an MLP and a CNN on digits with Flax and optax_bound.")
  parser.add_argument("--models", default=",".join(MODELS),
                      help="comma-separated, from: " + ", ".join(MODELS))
  parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                      help="comma-separated, from: " + ", ".join(OPTIMIZERS))
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
  parser.add_argument("--final-lr", type=float, default=FINAL_LR)
  parser.add_argument("--gamma", type=float, default=GAMMA,
                      help="the bounds are within 2x of final_lr after "
                      "1/gamma steps; an epoch is 22 steps")
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--out", type=pathlib.Path,
                      default=report.RESULTS / "flax_training" / f"{script}.json")
  args = parser.parse_args(argv)
  args.models = args.models.split(",")
  args.optimizers = args.optimizers.split(",")
  return args


def run(
    script: str,
    fit_one: Callable[..., tuple[Any, History]],
    argv: list[str] | None = None,
) -> str:
  """Parses ``script``'s arguments, trains every (model, optimizer, seed), reports.

  ``fit_one(model_name, tx, data, epochs=, batch_size=, seed=, on_epoch=,
  observe_bound=)`` is the one place where the NNX and Linen scripts differ.
  The progress bar shows each epoch's loss and, for AdaBound and AMSBound,
  the band and the fractions of step sizes at its edges after the epoch's
  last step.
  """
  args = parse_args(script, argv)
  data = load_data()
  runs = [(model, opt, seed) for model in args.models
          for opt in args.optimizers for seed in range(args.seeds)]
  results = []
  with tqdm.tqdm(total=len(runs) * args.epochs, unit="epoch") as bar:

    def on_epoch(epoch, loss, bound):
      del epoch
      bar.update()
      bar.set_postfix_str(f"loss {loss:.3f}" + (
          f", {bound_summary(bound)}" if bound else ""))

    for model_name, opt_name, seed in runs:
      bar.set_description(f"{model_name} {opt_name} seed {seed}")
      tx = optimizer(opt_name, args.learning_rate, args.final_lr, args.gamma)
      _, history = fit_one(
          model_name, tx, data, epochs=args.epochs, batch_size=args.batch_size,
          seed=seed, on_epoch=on_epoch, observe_bound=opt_name in BOUNDED)
      results.append({"model": model_name, "optimizer": opt_name,
                      "seed": seed, **history._asdict()})
  return _print_and_save(args, results)


def _print_and_save(args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
  """Prints the table of results and saves the raw numbers; returns the table."""
  rows = []
  for model_name in args.models:
    for opt_name in args.optimizers:
      runs = [r for r in results
              if r["model"] == model_name and r["optimizer"] == opt_name]
      accuracy = np.array([r["test_accuracy"] for r in runs])
      loss = np.array([r["train_loss"][-1] for r in runs])
      # The band is the same for every seed; the fractions are their mean.
      last = [r["bound"][-1] for r in runs if r["bound"]]
      bound = bound_summary({k: float(np.mean([b[k] for b in last]))
                             for k in last[0]}) if last else ""
      rows.append([model_name, opt_name,
                   f"{accuracy.mean():.4f} +- {accuracy.std():.4f}",
                   f"{loss.mean():.4f} +- {loss.std():.4f}", bound,
                   float(np.mean([r["seconds"] for r in runs]))])
  table = report.table(
      ["model", "optimizer", "test accuracy", "final train loss",
       "bound after the last step", "seconds / run"], rows)
  print(table)
  path = report.write_json(args.out, {
      "args": {k: v if isinstance(v, (int, float, list)) else str(v)
               for k, v in vars(args).items()},
      "table": table,
      "runs": results,
  })
  print(f"Raw numbers: {path}")
  return table
