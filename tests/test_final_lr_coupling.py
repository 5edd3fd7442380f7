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


def _band_after(tx, steps, params=None):
  """The (lower, upper) the state holds after ``steps`` steps of g = 1."""
  params = jnp.ones(3) if params is None else params
  state = tx.init(params)
  for _ in range(steps):
    _, state = tx.update(jnp.ones(3), state, params)
  bound = optax.tree.get(state, "lower"), optax.tree.get(state, "upper")
  return tuple(float(b) for b in bound)


@pytest.mark.parametrize("opt", select(public=True, bound="dynamic"))
def test_base_lr_makes_the_bounds_follow_lr_over_base_lr_through_a_warmup(opt):
  # A PyTorch LambdaLR warmup over lr = 1e-2: lr_t = 1e-2 * min(1, (t+1)/4).
  warmup = lambda count: 1e-2 * jnp.minimum(1.0, (count + 1) / 4)
  for steps in range(1, 7):
    tx = opt(learning_rate=warmup, final_lr=0.1, gamma=0.5, base_lr=1e-2)
    lower, upper = _band_after(tx, steps)
    final_lr_t = 0.1 * float(warmup(steps - 1)) / 1e-2
    expected = optax_bound.reference_bounds(
        jnp.float32(steps), final_lr_t, 0.5)
    if opt.paper_form:  # the band the step sizes were clipped into
      expected = [b / np.sqrt(steps) for b in expected]
    np.testing.assert_allclose([lower, upper], expected, rtol=1e-6)


def test_base_lr_equal_to_the_first_lr_is_the_default_coupling():
  schedule = optax.exponential_decay(1e-2, 3, 0.5)
  plain = optax_bound.adabound(learning_rate=schedule, gamma=0.3)
  with_base = optax_bound.adabound(learning_rate=schedule, gamma=0.3,
                                   base_lr=1e-2)
  assert _band_after(plain, 7) == _band_after(with_base, 7)


def test_the_state_keeps_the_first_lr_and_base_lr_overrides_it_on_resume():
  """Which wins on resume: the state's initial_lr, unless base_lr is given."""
  old = optax_bound.adabound(1e-3, final_lr=0.1, gamma=1.0)
  state = old.init(jnp.ones(3))
  _, state = old.update(jnp.ones(3), state)
  lower, upper = optax_bound.reference_bounds(jnp.float32(2), 0.1, 1.0)
  for new, final_lr_t in (
      (optax_bound.adabound(1e-2, final_lr=0.1, gamma=1.0), 1.0),
      (optax_bound.adabound(1e-2, final_lr=0.1, gamma=1.0, base_lr=1e-2), 0.1)):
    _, resumed = new.update(jnp.ones(3), state)
    np.testing.assert_allclose(
        [resumed[1].lower, resumed[1].upper],
        [final_lr_t * lower / 0.1, final_lr_t * upper / 0.1], rtol=1e-6)
    # The run's history is the state's, whatever the new arguments.
    assert float(resumed[1].initial_lr) == pytest.approx(1e-3)


def test_base_lr_can_be_injected_and_matches_the_plain_optimizer():
  warmup = lambda count: 1e-2 * jnp.minimum(1.0, (count + 1) / 4)
  plain = optax_bound.amsbound(learning_rate=warmup, gamma=0.5, base_lr=1e-2)
  injected = optax.inject_hyperparams(optax_bound.amsbound)(
      learning_rate=warmup, gamma=0.5, base_lr=1e-2)
  assert _band_after(plain, 5) == pytest.approx(_band_after(injected, 5),
                                                rel=1e-6)


@pytest.mark.parametrize("coupling", ["peak", "fixed"])
def test_base_lr_with_another_coupling_is_an_error(coupling):
  with pytest.raises(ValueError, match="base_lr"):
    optax_bound.adabound(base_lr=1e-3, final_lr_coupling=coupling)


@pytest.mark.parametrize("base_lr", [0.0, -1e-3, float("inf"), float("nan")])
def test_base_lr_must_be_finite_and_positive(base_lr):
  with pytest.raises(ValueError, match="`base_lr` must be finite and > 0"):
    optax_bound.clip_step_size_by_dynamic_bound(
        optax_bound.scale_by_adam(), base_lr=base_lr)
