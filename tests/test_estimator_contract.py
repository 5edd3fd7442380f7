"""The bounds around other estimators: what they accept, and the band they keep.

A bound reads the step size of its estimator as lr |d| / |m|, which is right
when the direction d is a positive multiple of the first moment m. Optax's
AdaBelief, Yogi, RAdam, AdaMax and AMSGrad keep that contract, and each step
size of the bounded method lies in the band (dynamic bound) or under the
average (momental bound); NAdam and Lion break it, and are rejected when the
bound is built.
"""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

KEEP_THE_CONTRACT = {
    "belief": optax.scale_by_belief,
    "yogi": optax.scale_by_yogi,
    "radam": optax.scale_by_radam,
    "adamax": optax.scale_by_adamax,
    "amsgrad": optax.scale_by_amsgrad,
    "reference_adam": optax_bound.scale_by_adam,
}
BREAK_THE_CONTRACT = {
    "nadam": lambda: optax.scale_by_adam(nesterov=True),
    "lion": optax.scale_by_lion,
}
BOUNDS = {
    "dynamic": optax_bound.clip_step_size_by_dynamic_bound,
    "momental": optax_bound.clip_step_size_by_momental_bound,
}
SETTINGS = dict(deadline=None, derandomize=True, database=None, max_examples=25)
STEPS = 12


@pytest.mark.parametrize("bound", list(BOUNDS))
@pytest.mark.parametrize("estimator", list(BREAK_THE_CONTRACT))
def test_an_estimator_whose_direction_points_against_mu_is_rejected(
    estimator, bound):
  with pytest.raises(ValueError, match="positive multiple of their first moment"):
    BOUNDS[bound](BREAK_THE_CONTRACT[estimator](), learning_rate=0.1)


@pytest.mark.parametrize("bound", list(BOUNDS))
def test_an_estimator_without_a_first_moment_is_rejected_naming_the_field(bound):
  with pytest.raises(ValueError, match="a field `mu`"):
    BOUNDS[bound](optax.scale_by_rms(), learning_rate=0.1)


def test_the_contract_is_left_to_update_where_hyperparameters_are_traced():
  params = jnp.ones(3)

  @jax.jit
  def one_step(b1):
    tx = optax_bound.clip_step_size_by_dynamic_bound(
        optax.scale_by_adam(b1=b1), learning_rate=0.1)
    return tx.update(params, tx.init(params))[0]

  np.testing.assert_allclose(one_step(0.9), -0.1, rtol=1e-5)


def _gradients(draw_floats):
  """A gradient sequence of 3 elements with scales from 1e-4 to 1e2 and signs."""
  return st.lists(
      st.lists(draw_floats, min_size=3, max_size=3), min_size=STEPS,
      max_size=STEPS)


_GRADIENTS = _gradients(
    st.floats(-4, 2).flatmap(
        lambda e: st.sampled_from([-(10.0**e), 10.0**e])))


def _steps(tx, gradients):
  state = tx.init(jnp.zeros(3))
  for g in gradients:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state)
    yield updates, state


@pytest.mark.slow  # 25 drawn runs per estimator
@pytest.mark.parametrize("estimator", list(KEEP_THE_CONTRACT))
@hypothesis.settings(**SETTINGS)
@hypothesis.given(gradients=_GRADIENTS, gamma=st.sampled_from([1e-2, 0.3, 3.0]))
def test_every_step_size_of_the_dynamic_bound_lies_in_its_band(
    estimator, gradients, gamma):
  tx = optax_bound.clip_step_size_by_dynamic_bound(
      KEEP_THE_CONTRACT[estimator](), learning_rate=0.05, final_lr=0.1,
      gamma=gamma)
  for t, (updates, state) in enumerate(_steps(tx, gradients), start=1):
    sizes = np.asarray(optax_bound.effective_step_sizes(updates, state))
    lower, upper = optax_bound.reference_bounds(jnp.float32(t), 0.1, gamma)
    stats = optax_bound.bound_stats(updates, state)
    np.testing.assert_allclose([stats.lower, stats.upper], [lower, upper],
                               rtol=1e-6)
    defined = ~np.isnan(sizes)
    assert np.all(sizes[defined] >= lower * (1 - 1e-5))
    assert np.all(sizes[defined] <= upper * (1 + 1e-5))
    # The update has the sign of mu: a step size, not a change of direction.
    mu = np.asarray(optax.tree.get(state, "mu"))
    assert np.all(np.asarray(updates) * mu <= 0)


@pytest.mark.slow  # 25 drawn runs per estimator
@pytest.mark.parametrize("estimator", list(KEEP_THE_CONTRACT))
@hypothesis.settings(**SETTINGS)
@hypothesis.given(gradients=_GRADIENTS, b3=st.sampled_from([0.5, 0.9, 0.999]))
def test_every_step_size_of_the_momental_bound_lies_under_its_average(
    estimator, gradients, b3):
  tx = optax_bound.clip_step_size_by_momental_bound(
      KEEP_THE_CONTRACT[estimator](), learning_rate=0.05, b3=b3)
  unbounded = optax_bound.clip_step_size_by_dynamic_bound(
      KEEP_THE_CONTRACT[estimator](), learning_rate=0.05, gamma=0.0)
  average = np.zeros(3)
  for (updates, state), (free, free_state) in zip(
      _steps(tx, gradients), _steps(unbounded, gradients), strict=True):
    sizes = np.asarray(optax_bound.effective_step_sizes(updates, state))
    free_sizes = np.asarray(optax_bound.effective_step_sizes(free, free_state))
    # The average of the estimator's own step sizes, here in float64.
    defined = ~np.isnan(free_sizes)
    average = np.where(defined, b3 * average + (1 - b3) * free_sizes, average)
    bound = np.asarray(state.step_size_average)
    np.testing.assert_allclose(bound, average, rtol=1e-4)
    np.testing.assert_allclose(
        sizes[defined], np.minimum(free_sizes, average)[defined], rtol=1e-4)
