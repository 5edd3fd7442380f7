"""Watching the bound: `bound_stats` and `effective_step_sizes`, through every wrapper.

Both read the state the step returns, wherever the bound sits in it, and must
give what the bare optimizer gives on the same step: through ``optax.chain``,
``inject_hyperparams``, ``MultiSteps``, ``apply_if_finite``, ``masked`` and
``multi_transform`` (two bounded groups and a frozen one).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

PARAMS = {"w": jnp.array([2.0, -10.0, 100.0]), "b": jnp.array([0.5, -0.25])}
GRADS = {"w": jnp.array([2.0, -10.0, 100.0]), "b": jnp.array([0.4, -0.25])}


def _bare():
  return optax_bound.adabound(learning_rate=0.1, final_lr=0.1, gamma=1.0)


WRAPPED = {
    "chain": lambda: optax.chain(optax.clip_by_global_norm(1e6), _bare()),
    "inject_hyperparams": lambda: optax.inject_hyperparams(
        optax_bound.adabound)(learning_rate=0.1, final_lr=0.1, gamma=1.0),
    "multi_steps": lambda: optax.MultiSteps(_bare(), every_k_schedule=1),
    "apply_if_finite": lambda: optax.apply_if_finite(_bare(), 3),
    "masked_all": lambda: optax.masked(_bare(), {"w": True, "b": True}),
}


def _one_step(tx, grads=GRADS, params=PARAMS):
  return tx.update(grads, tx.init(params), params)


def test_bound_stats_counts_the_elements_at_each_bound():
  # Adam's first step sizes are 1 / |g|: 0.5, 0.1, 0.01, 2.5, 4. At t = 1 with
  # gamma = 1 the band is [0.05, 0.2]: 1 raised to the lower bound, 3 cut to
  # the upper one, 1 inside.
  updates, state = _one_step(_bare())
  stats = optax_bound.bound_stats(updates, state)
  np.testing.assert_allclose(
      [stats.lower, stats.upper], optax_bound.reference_bounds(1.0, 0.1, 1.0),
      rtol=1e-6)
  np.testing.assert_allclose(stats.fraction_at_lower, 1 / 5)
  np.testing.assert_allclose(stats.fraction_at_upper, 3 / 5)
  np.testing.assert_allclose(stats.median_step_size, 0.2, rtol=1e-5)


def test_bound_stats_band_follows_the_schedule_without_being_told_it():
  schedule = optax.piecewise_constant_schedule(0.1, {2: 0.1})
  tx = optax_bound.amsbound(learning_rate=schedule, final_lr=0.3, gamma=0.5)
  state = tx.init(PARAMS)
  for t in range(1, 5):
    updates, state = tx.update(GRADS, state)
    stats = optax_bound.bound_stats(updates, state)
    final_lr = 0.3 * float(schedule(t - 1)) / 0.1
    np.testing.assert_allclose(
        [stats.lower, stats.upper],
        optax_bound.reference_bounds(float(t), final_lr, 0.5), rtol=1e-6)


@pytest.mark.parametrize("wrapper", list(WRAPPED))
def test_bound_stats_and_step_sizes_are_found_through_every_wrapper(wrapper):
  expected_updates, expected_state = _one_step(_bare())
  expected = optax_bound.bound_stats(expected_updates, expected_state)
  updates, state = _one_step(WRAPPED[wrapper]())
  # inject_hyperparams computes 1 - b1 from a float32 b1: 1e-5 of rounding.
  np.testing.assert_allclose(
      optax_bound.bound_stats(updates, state), expected, rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
      optax_bound.effective_step_sizes(updates, state),
      optax_bound.effective_step_sizes(expected_updates, expected_state))


def test_multi_transform_with_two_bounds_and_a_frozen_group():
  params = {**PARAMS, "frozen": jnp.ones(4)}
  grads = {**GRADS, "frozen": jnp.ones(4)}
  labels = {"w": "fast", "b": "slow", "frozen": "frozen"}
  slow = lambda: optax_bound.amsbound(learning_rate=0.01, final_lr=0.1, gamma=1.0)
  tx = optax.multi_transform(
      {"fast": _bare(), "slow": slow(), "frozen": optax.set_to_zero()}, labels)
  updates, state = _one_step(tx, grads, params)
  sizes = optax_bound.effective_step_sizes(updates, state)
  # Each group's step sizes are those of its optimizer alone.
  alone_w = optax_bound.effective_step_sizes(*_one_step(_bare(), GRADS["w"],
                                                        PARAMS["w"]))
  alone_b = optax_bound.effective_step_sizes(*_one_step(slow(), GRADS["b"],
                                                        PARAMS["b"]))
  np.testing.assert_allclose(sizes["w"], alone_w, rtol=1e-6)
  np.testing.assert_allclose(sizes["b"], alone_b, rtol=1e-6)
  assert np.all(np.isnan(sizes["frozen"]))
  stats = optax_bound.bound_stats(updates, state)
  # Over both bounded groups, 5 elements, each against its group's band
  # [0.05, 0.2]: w's Adam step sizes lr / |m| are 0.5, 0.1 and 0.01 (one at
  # each bound, one inside), b's 0.25 and 0.4 (both at the upper bound).
  np.testing.assert_allclose(stats.fraction_at_lower, 1 / 5)
  np.testing.assert_allclose(stats.fraction_at_upper, 3 / 5)


def test_a_state_without_a_bound_is_a_clear_error():
  tx = optax.adam(1e-3)
  updates, state = _one_step(tx)
  with pytest.raises(ValueError, match="holds no bound"):
    optax_bound.bound_stats(updates, state)


def test_momental_bound_stats_count_the_elements_it_capped():
  tx = optax_bound.adamod(learning_rate=0.1, b3=0.9)
  state = tx.init(PARAMS)
  for _ in range(3):
    updates, state = tx.update(GRADS, state, PARAMS)
  stats = optax_bound.bound_stats(updates, state)
  average = optax.tree.get(state, "step_size_average")
  # On a constant gradient Adam's step sizes shrink as m grows, while the
  # average, from 0, is still below them after 3 steps: every element capped.
  np.testing.assert_allclose(stats.fraction_at_upper, 1.0)
  np.testing.assert_allclose(stats.fraction_at_lower, 0.0)
  np.testing.assert_allclose(
      stats.upper, np.median(np.concatenate(
          [np.ravel(x) for x in jax.tree.leaves(average)])), rtol=1e-6)


def test_the_step_stores_two_scalars_for_the_band_and_nothing_param_sized():
  state = _bare().init(PARAMS)
  bound_state = state[1]
  assert jnp.shape(bound_state.lower) == () and jnp.shape(bound_state.upper) == ()
  # lower, upper, initial_lr, peak_lr and the count: no param-sized field
  # beyond Adam's moments.
  assert len(jax.tree.leaves(state)) == 5 + 2 * len(jax.tree.leaves(PARAMS))


def _paper_counts(grads, steps, lr, final_lr, gamma, b2=0.999, eps=1e-8):
  """Elements at each bound on the last step of the paper's Algorithm 2.

  Its step size lr / (sqrt(v) + eps) (no bias correction) is clipped into
  reference_bounds(t), then divided by sqrt(t): counted before the division.
  """
  v = np.zeros_like(grads)
  for _ in range(steps):
    v = b2 * v + (1 - b2) * grads**2
  size = lr / (np.sqrt(v) + eps)
  lower, upper = (float(b) for b in optax_bound.reference_bounds(
      float(steps), final_lr, gamma))
  return np.mean(size <= lower), np.mean(size >= upper)


def test_bound_stats_is_true_in_the_paper_form():
  grads = np.array([2.0, -10.0, 100.0, 0.5])
  tx = optax_bound.adabound(learning_rate=0.1, final_lr=0.1, gamma=1.0,
                            form="paper")
  params = jnp.asarray(grads, jnp.float32)
  state = tx.init(params)
  for _ in range(4):
    updates, state = tx.update(jnp.asarray(grads, jnp.float32), state)
  stats = optax_bound.bound_stats(updates, state)
  at_lower, at_upper = _paper_counts(grads, 4, 0.1, 0.1, 1.0)
  assert (at_lower, at_upper) == (0.25, 0.75)
  np.testing.assert_allclose(
      [stats.fraction_at_lower, stats.fraction_at_upper], [at_lower, at_upper])
  # The band it reports is the one |u| / |m| was clipped into: /sqrt(t).
  np.testing.assert_allclose(
      [stats.lower, stats.upper],
      np.array(optax_bound.reference_bounds(4.0, 0.1, 1.0)) / 2, rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_bound_stats_counts_only_step_sizes_at_a_bound_in_low_precision(dtype):
  # Adam's first step sizes are 1 / |g| (lr 0.1, b1 0.9) = 0.053, 0.1, 0.19
  # and 0.05 here, in the band [0.05, 0.2] (t = 1, gamma = 1): one at the
  # lower bound, none at the upper one, however the updates are rounded.
  grads = jnp.asarray(1 / np.array([0.053, 0.1, 0.19, 0.05]), dtype)
  tx = optax_bound.adabound(learning_rate=0.1, final_lr=0.1, gamma=1.0)
  updates, state = tx.update(grads, tx.init(grads))
  assert updates.dtype == dtype
  stats = optax_bound.bound_stats(updates, state)
  assert float(stats.fraction_at_lower) == 0.25
  assert float(stats.fraction_at_upper) == 0.0


def test_bound_stats_counts_low_precision_step_sizes_clipped_to_a_bound():
  # Step sizes 1 / |g| = 0.01 and 1000 are clipped; 0.05 and 0.2 are at a
  # bound already.
  grads = jnp.asarray([100.0, 1e-3, 20.0, 5.0], jnp.bfloat16)
  tx = optax_bound.adabound(learning_rate=0.1, final_lr=0.1, gamma=1.0)
  updates, state = tx.update(grads, tx.init(grads))
  stats = optax_bound.bound_stats(updates, state)
  np.testing.assert_allclose(
      [stats.fraction_at_lower, stats.fraction_at_upper], [0.5, 0.5])


def test_bound_stats_refuses_two_bounds_owning_one_parameter():
  tx = optax.chain(optax_bound.adabound(), optax_bound.adabound())
  updates, state = _one_step(tx)
  for watch in (optax_bound.bound_stats, optax_bound.effective_step_sizes):
    with pytest.raises(ValueError, match="Two bounds in the state"):
      watch(updates, state)
