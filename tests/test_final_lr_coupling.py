"""final_lr follows the learning rate: from a schedule, from inject_hyperparams, from 0.

The reference moves its bounds with a PyTorch scheduler as
final_lr * lr_t / lr_0; here lr_0 lives in the optimizer state, so the same
holds for Optax schedules and for learning rates injected at run time, and a
learning rate that starts at 0 is measured against its running peak instead
of dividing by zero.
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


def test_learning_rate_zero_never_moves_and_never_divides_by_zero():
  tx = optax_bound.amsbound(learning_rate=0.0)
  params = jnp.array([1.0, -2.0, 0.0])
  state = tx.init(params)
  for _ in range(5):
    updates, state = tx.update(jnp.array([1.0, -1.0, 0.0]), state, params)
    np.testing.assert_array_equal(updates, 0.0)
  assert np.all(np.isfinite(np.asarray(optax.tree.get(state, "mu"))))


def test_warmup_from_zero_is_measured_against_the_running_peak():
  peak, warmup, final_lr, gamma = 1e-2, 10, 0.1, 0.5
  schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, 40)
  tx = optax_bound.adabound(schedule, final_lr=final_lr, gamma=gamma)
  params = jnp.array([1.0, 1e-4, 1e3])

  def final_lr_at(t, state):
    del state
    lrs = [float(schedule(s)) for s in range(t)]
    return final_lr * lrs[-1] / max(max(lrs), 1e-300) if max(lrs) > 0 else 0.0

  for t, sizes, lower, upper in _sizes_and_bounds(
      tx, params, lambda t: params, 40, final_lr_at, gamma):
    if t == 1:  # lr_0 = 0: no step at all, and no 0 / 0
      np.testing.assert_array_equal(np.nan_to_num(sizes), 0.0)
    else:
      _assert_within(sizes, lower, upper)
  # Late in the decay, the bounds have followed it down from the peak.
  assert upper < final_lr * float(schedule(39)) / peak * 1.2
