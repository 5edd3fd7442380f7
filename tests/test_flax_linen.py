"""Flax Linen: ``TrainState.create(..., tx=optax_bound.adabound(...))``.

The models, data and loop are those of ``python -m benchmarks.flax_training.linen``
(``benchmarks/flax_training/_digits.py``), at fewer epochs.
"""

import _bound_history
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.flax_training import _digits
import optax_bound

EPOCHS, BATCH_SIZE = 5, 64
STEPS = EPOCHS * (1437 // BATCH_SIZE)  # 110: one epoch is 22 full batches.
# Observed on seeds 0-4: 0.967-0.978 (MLP) and 0.967-0.986 (CNN).
MIN_TEST_ACCURACY = 0.95


@pytest.fixture(scope="module")
def digits():
  return _digits.load_data()


@pytest.mark.slow
@pytest.mark.parametrize("name", _digits.MODELS)
def test_train_state_with_adabound_trains_digits(name, digits):
  # The scripts' defaults: 1 / gamma = 100 steps, so the bounds close on
  # final_lr within the run.
  tx = optax_bound.adabound(learning_rate=_digits.LEARNING_RATE,
                         final_lr=_digits.FINAL_LR,
                         gamma=_digits.GAMMA)
  state = _digits.linen_state(_digits.linen_model(name), tx, seed=0)
  state, history = _digits.fit_linen(
      state, digits, epochs=EPOCHS, batch_size=BATCH_SIZE)

  assert history.test_accuracy >= MIN_TEST_ACCURACY, history
  # From ln(10) = 2.30 at the start to below 0.2 (observed 0.06-0.10).
  assert history.train_loss[-1] < 0.2, history.train_loss
  assert int(state.step) == STEPS
  assert int(optax.tree.get(state.opt_state, "count")) == STEPS
  for field in ("mu", "nu"):
    moment = optax.tree.get(state.opt_state, field)
    assert jax.tree.map(jnp.shape, moment) == jax.tree.map(
        jnp.shape, state.params)


@pytest.mark.slow
def test_watching_the_bound_records_each_epoch_and_leaves_training_unchanged(
    digits):
  tx = optax_bound.amsbound(learning_rate=_digits.LEARNING_RATE,
                            final_lr=_digits.FINAL_LR, gamma=_digits.GAMMA)
  model = _digits.linen_model("mlp")
  runs = [_digits.fit_linen(_digits.linen_state(model, tx, seed=0), digits,
                            epochs=2, batch_size=BATCH_SIZE,
                            observe_bound=observe_bound)
          for observe_bound in (False, True)]
  (plain, unwatched), (watched_state, watched) = runs
  # The twin step that returns the updates applies exactly the same step.
  jax.tree.map(np.testing.assert_array_equal,
               (plain.params, plain.opt_state),
               (watched_state.params, watched_state.opt_state))
  _bound_history.assert_watched_bound_history(unwatched, watched)


def test_train_state_step_with_donated_state_matches_the_plain_step(digits):
  tx = optax_bound.adabound(learning_rate=1e-2, final_lr=0.1, gamma=1e-2)
  model = _digits.linen_model("mlp")
  plain = _digits.linen_state(model, tx, seed=0)
  donated = _digits.linen_state(model, tx, seed=0)
  # Donation hands every buffer of the state to XLA to reuse for the new
  # state: a state holding one buffer twice would fail here.
  donating_step = jax.jit(_digits.linen_train_step.__wrapped__,
                          donate_argnums=0)
  for step in range(3):
    x = digits.x_train[64 * step:64 * (step + 1)]
    y = digits.y_train[64 * step:64 * (step + 1)]
    plain, _ = _digits.linen_train_step(plain, x, y)
    donated, _ = donating_step(donated, x, y)
  jax.tree.map(np.testing.assert_array_equal,
               (donated.params, donated.opt_state),
               (plain.params, plain.opt_state))
  assert int(donated.step) == 3
