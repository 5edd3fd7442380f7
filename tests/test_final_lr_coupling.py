"""final_lr follows the learning rate: from a schedule, from inject_hyperparams.

The reference moves its bounds with a PyTorch scheduler as
final_lr * lr_t / lr_0; here lr_0 lives in the optimizer state, so the same
holds for Optax schedules and for learning rates injected at run time. A
learning rate of 0, and a warmup from 0 (measured against the running peak
instead of dividing by zero), are in ``tests/test_faults.py``: the reference
fails on both.
"""

from _optimizers import select
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound


def _sizes_and_bounds(tx, params, grads_fn, steps, final_lr_at, gamma):
  """Runs ``steps``; yields (t, step sizes, lower, upper) per step."""
  state = tx.init(params)
  for t in range(1, steps + 1):
    updates, state = tx.update(grads_fn(t), state, params)
    params = optax.apply_updates(params, updates)
    lower, upper = optax_bound.reference_bounds(
        jnp.float32(t), final_lr_at(t, state), gamma)
    yield t, np.asarray(optax_bound.effective_step_sizes(updates, state)), \
        float(lower), float(upper)


def _assert_within(sizes, lower, upper):
  assert np.all(sizes >= lower * (1 - 1e-5)), (sizes.min(), lower)
  assert np.all(sizes <= upper * (1 + 1e-5)), (sizes.max(), upper)


@pytest.mark.parametrize("coupling,expected", [
    ("initial", [0.1, 0.4, 0.02]),   # the reference: lr_t / lr_0, both ways
    ("peak", [0.1, 0.1, 0.005]),     # lr_t / max lr so far: never above final_lr
    ("fixed", [0.1, 0.1, 0.1]),
])
def test_coupled_final_lr_per_coupling(coupling, expected):
  initial, final_lr = jnp.float32(1e-3), 0.1
  got, peak = [], initial
  for lr in (1e-3, 4e-3, 2e-4):
    peak = jnp.maximum(peak, lr)
    got.append(float(optax_bound.coupled_final_lr(
        final_lr, jnp.float32(lr), initial, peak, coupling)))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_bounds_follow_an_lr_schedule():
  schedule = optax.piecewise_constant_schedule(1e-2, {10: 0.1, 20: 0.1})
  final_lr, gamma = 0.1, 2.0
  tx = optax_bound.adabound(schedule, final_lr=final_lr, gamma=gamma)
  params = jnp.array([1.0, 1e-4, 1e3])
  runs = _sizes_and_bounds(
      tx, params, lambda t: params, 30,
      final_lr_at=lambda t, _: final_lr * schedule(t - 1) / 1e-2, gamma=gamma)
  for t, sizes, lower, upper in runs:
    _assert_within(sizes, lower, upper)
    if t in (9, 19, 29):  # the bounds are within 6% of final_lr * lr_t / lr_0
      np.testing.assert_allclose(sizes, final_lr * schedule(t - 1) / 1e-2,
                                 rtol=0.06)


@pytest.mark.parametrize("opt", select(within_reference_bounds=True))
def test_bounds_follow_learning_rate_and_final_lr_injected_mid_run(opt):
  gamma = 0.5
  tx = opt.injected(learning_rate=1e-2, final_lr=0.1, gamma=gamma)
  params = jnp.array([1.0, 1e-4, 1e3])
  state = tx.init(params)
  step = jax.jit(tx.update)
  for t in range(1, 31):
    if t == 11:
      state.hyperparams["learning_rate"] = jnp.asarray(1e-3)
    if t == 21:
      state.hyperparams["final_lr"] = jnp.asarray(0.3)
    updates, state = step(params, state, params)
    # final_lr * lr_t / lr_0, with lr_0 = 1e-2 kept in the state.
    final_lr = {True: 0.1, False: 0.3}[t <= 20] * (1.0 if t <= 10 else 0.1)
    lower, upper = optax_bound.reference_bounds(jnp.float32(t), final_lr, gamma)
    _assert_within(np.asarray(optax_bound.effective_step_sizes(updates, state)),
                   float(lower), float(upper))
  assert float(optax.tree.get(state, "initial_lr")) == pytest.approx(1e-2)



@pytest.mark.parametrize("coupling", ["initial", "fixed"])
def test_a_final_lr_schedule_moves_the_bounds_and_couples_like_a_number(coupling):
  """final_lr may follow the step count itself, read where the lr is read
  (the count before the increment), and is then coupled to the lr as a
  number would be."""
  final_lr = optax.linear_schedule(0.2, 0.05, transition_steps=6)
  lr = optax.linear_schedule(1e-2, 5e-3, transition_steps=6)
  gamma = 0.5
  tx = optax_bound.adabound(learning_rate=lr, final_lr=final_lr, gamma=gamma,
                            final_lr_coupling=coupling)
  params, state = jnp.ones(5), tx.init(jnp.ones(5))
  for t in range(1, 9):
    grads = jnp.array([1e-4, 3e-3, 0.5, -2.0, 40.0]) * t
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    coupled = float(final_lr(t - 1)) * (
        float(lr(t - 1)) / 1e-2 if coupling == "initial" else 1.0)
    lower, upper = optax_bound.reference_bounds(jnp.float32(t), coupled, gamma)
    _assert_within(np.asarray(optax_bound.effective_step_sizes(updates, state)),
                   float(lower), float(upper))
    stats = optax_bound.bound_stats(updates, state)
    np.testing.assert_allclose([stats.lower, stats.upper], [lower, upper],
                               rtol=1e-5)
