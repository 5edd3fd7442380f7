"""One jitted training loop, vmapped over seeds and a grid of learning rates.

A run is a ``lax.scan`` over evaluation points of a ``lax.scan`` over
minibatch steps. The initial parameters and the minibatches (epochs of a
permutation of the training split) are drawn with NumPy from the seed alone,
so every optimizer and every learning rate of one seed starts from the same
point and sees the same batches in the same order: differences between them
are the optimizers', not the data's.
"""

from typing import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks._common import datasets
from benchmarks.study import _models


class Curves(NamedTuple):
  """Metrics at ``n_evals + 1`` points, step 0 first.

  Arrays are [hparams, seeds, points].
  """

  steps: np.ndarray  # [points]: the step count at each point.
  train_loss: np.ndarray  # Cross-entropy on the whole training split.
  eval_loss: np.ndarray  # Cross-entropy on the evaluation split.
  eval_acc: np.ndarray  # Accuracy on the evaluation split.
  # What `observe` returned at every step: [hparams, seeds, steps, ...].
  observed: object


def step_decay(steps: int, at: float = 0.75) -> Callable[[jax.Array], jax.Array]:
  """The paper's schedule: the learning rate divided by 10 at ``at * steps``."""
  boundary = int(at * steps)
  return lambda count: jnp.where(count < boundary, 1.0, 0.1)


def _loss(model, params, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(
      model.apply(params, x), y).mean()


def _accuracy(model, params, x, y):
  return jnp.mean(jnp.argmax(model.apply(params, x), -1) == y)


def curves(
    model: _models.Model,
    make_tx: Callable[[jax.Array], optax.GradientTransformation],
    data: datasets.Split,
    hparams: np.ndarray,
    seeds: np.ndarray,
    steps: int,
    n_evals: int,
    batch_size: int = 128,
    on_test: bool = True,
    observe: Callable[[optax.Updates, optax.OptState], object] | None = None,
) -> Curves:
  """Trains ``model`` with ``make_tx(hparam)`` for every hparam and seed, in one call.

  Args:
    model: The model.
    make_tx: The optimizer at one (traced) row of ``hparams``.
    data: The splits; training always uses ``x_train``.
    hparams: Hyperparameters, one run per row: learning rates, or e.g.
      ``(final_lr, gamma)`` pairs.
    seeds: The seeds (initialization and minibatch order), one run each.
    steps: Minibatch steps of each run; a multiple of ``n_evals``.
    n_evals: How many times to evaluate after step 0.
    batch_size: Examples per minibatch; each epoch is a new permutation.
    on_test: Evaluate on the test split (the final runs) or on the validation
      split (tuning).
    observe: ``observe(updates, new_state) -> tree`` of what to record at
      every step, e.g. the step sizes of :func:`optax_bound.effective_step_sizes`.

  Returns:
    The curves of every run.
  """
  if steps % n_evals:
    raise ValueError(f"steps ({steps}) must be a multiple of n_evals ({n_evals})")
  x_eval, y_eval = ((data.x_test, data.y_test) if on_test
                    else (data.x_val, data.y_val))
  loss = lambda p, xb, yb: _loss(model, p, xb, yb)

  # The data are arguments, not constants closed over: XLA would spend
  # seconds folding them into the program at every compilation.
  def run(hparam, params, batches, x, y, x_eval, y_eval):
    def metrics(params):
      return (loss(params, x, y), loss(params, x_eval, y_eval),
              _accuracy(model, params, x_eval, y_eval))

    tx = make_tx(hparam)

    def step(carry, batch):
      params, state = carry
      grads = jax.grad(loss)(params, x[batch], y[batch])
      updates, state = tx.update(grads, state, params)
      seen = None if observe is None else observe(updates, state)
      return (optax.apply_updates(params, updates), state), seen

    def chunk(carry, batches):
      carry, seen = jax.lax.scan(step, carry, batches)
      return carry, (metrics(carry[0]), seen)

    _, (later, seen) = jax.lax.scan(
        chunk, (params, tx.init(params)),
        batches.reshape(n_evals, steps // n_evals, batch_size))
    first = metrics(params)
    together = [jnp.concatenate([f[None], m])
                for f, m in zip(first, later, strict=True)]
    seen = jax.tree.map(lambda s: s.reshape(steps, *s.shape[2:]), seen)
    return (*together, seen)

  inits, schedules = [], []
  for seed in seeds:
    rng = np.random.default_rng(seed)
    inits.append(model.init(rng))
    epochs = -(-steps * batch_size // len(data.y_train))
    order = np.concatenate([rng.permutation(len(data.y_train))
                            for _ in range(epochs)])
    schedules.append(order[:steps * batch_size].reshape(steps, batch_size))
  over_seeds = jax.vmap(run, in_axes=(None, 0, 0, None, None, None, None))
  runs = jax.jit(jax.vmap(over_seeds,
                          in_axes=(0, None, None, None, None, None, None)))
  out = jax.device_get(runs(
      jnp.asarray(hparams, jnp.float32),
      jax.tree.map(lambda *p: np.stack(p), *inits), np.stack(schedules),
      data.x_train, data.y_train, x_eval, y_eval))
  points = np.arange(n_evals + 1) * (steps // n_evals)
  return Curves(points, *map(np.asarray, out[:3]), out[3])
