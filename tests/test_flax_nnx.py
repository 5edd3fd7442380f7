"""Flax NNX: ``nnx.Optimizer(model, optax_bound.amsbound(...), wrt=nnx.Param)``.

The models, data and loop are those of ``python -m benchmarks.flax_training.nnx``
(``benchmarks/flax_training/_digits.py``), at fewer epochs.
"""

import _bound_history
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.flax_training import _digits
import optax_bound

EPOCHS, BATCH_SIZE = 5, 64
STEPS = EPOCHS * (1437 // BATCH_SIZE)  # 110: one epoch is 22 full batches.
# Observed on seeds 0-4: 0.964-0.975 (MLP) and 0.975-0.983 (CNN).
MIN_TEST_ACCURACY = 0.95


def _opt_state(optimizer):
  """The optax state inside an nnx.Optimizer, as plain arrays."""
  return nnx.to_pure_dict(nnx.state(optimizer))["opt_state"]


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def digits():
  return _digits.load_data()


@pytest.mark.slow
@pytest.mark.parametrize("name", _digits.MODELS)
def test_nnx_optimizer_with_amsbound_trains_digits(name, digits):
  model = _digits.nnx_model(name, seed=0)
  # The scripts' defaults: 1 / gamma = 100 steps, so the bounds close on
  # final_lr within the run.
  tx = optax_bound.amsbound(learning_rate=_digits.LEARNING_RATE,
                         final_lr=_digits.FINAL_LR,
                         gamma=_digits.GAMMA)
  optimizer, history = _digits.fit_nnx(
      model, tx, digits, epochs=EPOCHS, batch_size=BATCH_SIZE)

  assert history.test_accuracy >= MIN_TEST_ACCURACY, history
  # From ln(10) = 2.30 at the start to below 0.2 (observed 0.05-0.10).
  assert history.train_loss[-1] < 0.2, history.train_loss
  assert int(optimizer.step[...]) == STEPS
  # The optimizer state is amsbound's, over the model's Params.
  state = _opt_state(optimizer)
  assert int(optax.tree.get(state, "count")) == STEPS
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  for field in ("mu", "nu", "nu_max"):
    moment = optax.tree.get(state, field)
    assert jax.tree.structure(moment) == jax.tree.structure(params)
    assert jax.tree.map(jnp.shape, moment) == jax.tree.map(jnp.shape, params)


@pytest.mark.slow
def test_watching_the_bound_records_each_epoch_and_leaves_training_unchanged(
    digits):
  make = lambda: optax_bound.adabound(learning_rate=_digits.LEARNING_RATE,
                                      final_lr=_digits.FINAL_LR,
                                      gamma=_digits.GAMMA)
  runs = []
  for observe_bound in (False, True):
    model = _digits.nnx_model("mlp", seed=0)
    _, history = _digits.fit_nnx(model, make(), digits, epochs=2,
                                 batch_size=BATCH_SIZE,
                                 observe_bound=observe_bound)
    runs.append((nnx.to_pure_dict(nnx.state(model, nnx.Param)), history))
  (plain, unwatched), (watched_params, watched) = runs
  # The twin step that returns the updates applies exactly the same step.
  _assert_trees_equal(plain, watched_params)
  _bound_history.assert_watched_bound_history(unwatched, watched)


class _MlpWithBatchNorm(nnx.Module):
  """Params and BatchStat variables: only the Params are optimized."""

  def __init__(self, *, rngs: nnx.Rngs):
    # No bias before the norm: its gradient would be round-off noise, which
    # adaptive methods turn into steps of full size.
    self.hidden = nnx.Linear(64, 32, use_bias=False, rngs=rngs)
    self.norm = nnx.BatchNorm(32, rngs=rngs)
    self.out = nnx.Linear(32, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.norm(self.hidden(x.reshape(len(x), -1)))))


def test_nnx_optimizer_update_is_bitwise_optax_update_on_the_params(digits):
  model = _MlpWithBatchNorm(rngs=nnx.Rngs(0))
  tx = optax_bound.amsbound(learning_rate=1e-2, final_lr=0.1, gamma=1e-2,
                            weight_decay=1e-3)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  # The same model again (same seed), as a pure pytree for plain Optax.
  graphdef, params, rest = nnx.split(
      _MlpWithBatchNorm(rngs=nnx.Rngs(0)), nnx.Param, ...)
  opt_state = tx.init(params)

  @nnx.jit
  def nnx_step(model, optimizer, x, y):
    grads = nnx.grad(
        lambda m: _digits.cross_entropy(m(x), y))(model)
    optimizer.update(model, grads)

  @jax.jit
  def optax_step(params, rest, opt_state, x, y):
    def loss(params):
      model = nnx.merge(graphdef, params, rest, copy=True)
      loss = _digits.cross_entropy(model(x), y)
      return loss, nnx.state(model, nnx.BatchStat)
    grads, rest = jax.grad(loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state

  for step in range(3):
    x = digits.x_train[64 * step:64 * (step + 1)]
    y = digits.y_train[64 * step:64 * (step + 1)]
    nnx_step(model, optimizer, x, y)
    params, rest, opt_state = optax_step(params, rest, opt_state, x, y)

  _assert_trees_equal(nnx.to_pure_dict(nnx.state(model, nnx.Param)),
                      nnx.to_pure_dict(params))
  nnx_state = _opt_state(optimizer)
  _assert_trees_equal(optax.tree.get(nnx_state, "nu_max"),
                      nnx.to_pure_dict(optax.tree.get(opt_state, "nu_max")))
  # The estimator's step count and the weight decay's.
  counts = optax.tree.get_all_with_path(nnx_state, "count")
  assert [int(count) for _, count in counts] == [3, 3]
  # The batch statistics moved with the data, the same in both, and not
  # with the optimizer: it has moments for the 5 Params, none for the 2
  # BatchStats.
  batch_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
  _assert_trees_equal(batch_stats, nnx.to_pure_dict(rest))
  assert float(np.abs(batch_stats["norm"]["mean"]).max()) > 1e-3
  assert len(jax.tree.leaves(batch_stats)) == 2
  assert len(jax.tree.leaves(optax.tree.get(nnx_state, "mu"))) == 5
