"""Long horizons: the step count saturates, the bounds stay finite and ordered.

Runs of 2^31 steps do not fit in a test; a state whose count is set near the
int32 limit does, and a 1e6-step ``lax.scan`` checks that nothing drifts to
Inf or NaN on the way.
"""

from _optimizers import UNDER_TEST
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

INT32_MAX = np.iinfo(np.int32).max


def _counts(state):
  return [int(v) for _, v in optax.tree.get_all_with_path(state, "count")]


def _with_counts(state, count):
  """``state`` with every field named ``count`` (Optax wrappers' too) set."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.asarray(count, jnp.int32)
      if getattr(path[-1], "name", None) == "count" else x,
      state)


# Injected: inject_hyperparams keeps a count of its own, which must saturate too.
@pytest.mark.parametrize("injected", [
    pytest.param(False, id="plain"),
    pytest.param(True, id="injected", marks=pytest.mark.slow)])
@pytest.mark.parametrize("opt", UNDER_TEST)
def test_step_count_saturates_at_the_int32_limit(opt, injected):
  final_lr, gamma = 0.1, 1e-3
  schedule = optax.cosine_decay_schedule(1e-2, 1000, alpha=1e-3)
  hyperparams = dict(learning_rate=schedule)
  if opt.accepts("final_lr", "gamma"):
    hyperparams.update(final_lr=final_lr, gamma=gamma)
  make = opt.injected if injected else opt
  tx = make(**hyperparams)
  params = jnp.array([1.0, -2.0, 1e-4, 1e4])
  # Every count of the state (the optimizer's, and Optax wrappers' own) is set
  # three steps short of the limit.
  state = _with_counts(tx.init(params), INT32_MAX - 3)
  step = jax.jit(tx.update)
  for k in range(1, 7):
    updates, state = step(params, state, params)
    counts = _counts(state)
    assert all(c == min(INT32_MAX - 3 + k, INT32_MAX) for c in counts), counts
    assert all(v.dtype == jnp.int32
               for _, v in optax.tree.get_all_with_path(state, "count"))
    assert np.all(np.isfinite(updates)), (k, updates)
    if opt.within_reference_bounds:
      # final_lr has followed the schedule down to alpha: lr_t / lr_0 = 1e-3.
      lower, upper = optax_bound.reference_bounds(
          jnp.float32(INT32_MAX), final_lr * 1e-3, gamma)
      sizes = np.asarray(optax_bound.effective_step_sizes(updates, state))
      assert np.all(sizes >= float(lower) * (1 - 1e-6))
      assert np.all(sizes <= float(upper) * (1 + 1e-6))


def test_bounds_stay_finite_and_ordered_up_to_2_31_in_float32():
  t = np.unique(np.concatenate([
      np.geomspace(1, 2.0**31, 4000).astype(np.int64),
      np.arange(1, 100), [2**24, 2**24 + 1, INT32_MAX - 1, INT32_MAX, 2**31]]))
  t = jnp.asarray(t, jnp.float32)
  for final_lr in (1e-6, 0.1, 10.0):
    for gamma in (1e-8, 1e-5, 1e-3, 1.0, 1e3):
      lower, upper = optax_bound.reference_bounds(t, jnp.float32(final_lr),
                                                  gamma)
      assert lower.dtype == upper.dtype == jnp.float32
      lower, upper = np.asarray(lower), np.asarray(upper)
      assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))
      fl = np.float32(final_lr)
      assert np.all((lower >= 0) & (lower <= fl) & (fl <= upper)), (
          final_lr, gamma)
      # The band only narrows as t grows...
      assert np.all(np.diff(lower) >= 0) and np.all(np.diff(upper) <= 0)
      # ...and at 2^31 it is as narrow as gamma t allows (to float32 rounding).
      gamma_t = gamma * 2.0**31
      np.testing.assert_allclose(upper[-1], final_lr * (1 + 1 / gamma_t),
                                 rtol=1e-6)
      np.testing.assert_allclose(lower[-1], final_lr * (1 - 1 / (gamma_t + 1)),
                                 rtol=1e-6, atol=2.5e-7 * final_lr)


def test_step_size_correction_stays_finite_up_to_2_31_in_float32():
  t = jnp.asarray([1, 2, 10, 1e4, 1e6, 2**24, INT32_MAX], jnp.float32)
  for b1, b2 in ((0.9, 0.999), (0.0, 0.0), (0.9999, 0.99999)):
    correction = np.asarray(optax_bound.reference_step_size_correction(
        b1, b2, t))
    assert np.all(np.isfinite(correction)) and np.all(correction > 0)
    # float32 holds 0.99999 to 6e-8: 1 - b2 to 1e-3 relative at worst.
    np.testing.assert_allclose(correction[0], np.sqrt(1 - b2) / (1 - b1),
                               rtol=1e-3)
    np.testing.assert_allclose(correction[-1], 1.0, rtol=1e-6)


@pytest.mark.slow
def test_a_million_steps_of_lax_scan_stay_finite():
  final_lr, gamma, steps = 0.1, 1e-3, 1_000_000
  txs = (optax_bound.adabound(1e-2, final_lr=final_lr, gamma=gamma,
                              weight_decay=1e-5),
         optax_bound.amsbound(1e-2, final_lr=final_lr, gamma=gamma))
  target = jnp.linspace(-1.0, 1.0, 4)

  def grad(params, t):
    # A quadratic pulled around by a slow drift of amplitude 0.1.
    drift = jnp.sin(1e-3 * t.astype(jnp.float32) * jnp.arange(1.0, 5.0))
    return params - target + 0.1 * drift

  @jax.jit
  def run(params):
    def step(carry, t):
      all_params, states, finite = carry
      new_params, new_states, last = [], [], []
      for tx, p, s in zip(txs, all_params, states, strict=True):
        updates, s = tx.update(grad(p, t), s, p)
        finite &= jnp.all(jnp.isfinite(updates))
        new_params.append(optax.apply_updates(p, updates))
        new_states.append(s)
        last.append(updates)
      return (tuple(new_params), tuple(new_states), finite), None

    init = (tuple(params for _ in txs), tuple(tx.init(params) for tx in txs),
            jnp.array(True))
    carry, _ = jax.lax.scan(step, init, jnp.arange(steps), unroll=4)
    return carry

  all_params, states, finite = run(jnp.zeros(4))
  assert bool(finite)  # every one of the 2e6 updates
  for params, state in zip(all_params, states, strict=True):
    # The estimator's count, and the weight decay's where there is one.
    assert set(_counts(state)) == {steps}
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))
    # The equilibrium is the target minus the drift: within 0.1 of it.
    assert float(jnp.max(jnp.abs(params - target))) < 0.15
  # After 1e6 steps the band is final_lr * (1 +- 1e-3): SGD at final_lr.
  for tx, params, state in zip(txs, all_params, states, strict=True):
    updates, state = tx.update(grad(params, jnp.int32(steps)), state, params)
    sizes = np.asarray(optax_bound.effective_step_sizes(updates, state))
    np.testing.assert_allclose(sizes, final_lr, rtol=1.01e-3)
