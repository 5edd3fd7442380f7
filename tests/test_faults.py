"""Faults: zero, huge, subnormal and non-finite gradients; learning rates of 0.

What the state does on a NaN or Inf gradient, as these tests pin it: the step
is taken like any other. The count advances; ``initial_lr`` and ``peak_lr`` do
not depend on gradients and are untouched. Only the elements whose gradient is
not finite are hit, and they never recover, since every later moment is a
decayed copy of the bad one: a NaN gradient makes their ``mu``, ``nu`` (and
``nu_max``) and update NaN; an Inf one makes their ``mu`` and update infinite,
while ``nu`` saturates at the dtype's largest value (as it does for any gradient
whose square overflows). Every other element
is bitwise what it would have been. Wrapped in ``optax.apply_if_finite``, the
bad step is skipped instead: zero updates, the inner state bitwise unchanged,
and the run goes on bitwise as if the step had never been taken.

Each test runs a few steps eagerly (cheaper than compiling them); the property
tests run the same code under ``jax.jit``.
"""

from _optimizers import UNDER_TEST
from _optimizers import select
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

# The update is a function of the gradients alone (no weight decay), and every
# hyperparameter can be set by keyword.
GRADIENT_ONLY = select(public=True, weight_decay=None)
# The reference AdaBound and AMSBound: one entry per moment estimator.
REFERENCE = select(public=True, weight_decay=None, paper_form=False)
# One tree per precision setting: float64 needs x64, the others are checked
# side by side in one tree.
PRECISIONS = {"f32_bf16": (jnp.float32, jnp.bfloat16), "f64": (jnp.float64,)}


def _tree(precision, values):
  """``values`` as one leaf per dtype of ``precision``."""
  return {jnp.dtype(d).name: jnp.asarray(values, d)
          for d in PRECISIONS[precision]}


def _run(tx, params, grads):
  """Steps through ``grads``; returns (params, updates, state) of every step."""
  state, records = tx.init(params), []
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    records.append((params, updates, state))
  return records


def _finite(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def _as_f64(x):
  return np.asarray(x, np.float64)


def _moments(state):
  return {k: optax.tree.get(state, k) for k in ("mu", "nu", "nu_max")
          if optax.tree.get(state, k) is not None}


# -- Zero, huge and subnormal gradients.


@pytest.mark.parametrize("eps", [1e-8, 0.0])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("opt", GRADIENT_ONLY)
def test_zero_gradients_give_zero_updates_and_a_finite_state(
    opt, precision, eps):
  with jax.enable_x64(precision == "f64"):
    tx = opt(learning_rate=0.1, eps=eps)
    params = _tree(precision, [1.0, -2.0, 0.0, 4.0])
    zeros = jax.tree.map(jnp.zeros_like, params)
    ones = jax.tree.map(jnp.ones_like, params)
    records = _run(tx, params, [zeros] * 3 + [ones] + [zeros] * 2)
  for t, (new_params, updates, state) in enumerate(records, start=1):
    assert _finite(updates) and _finite(state) and _finite(new_params)
    for leaf in jax.tree.leaves(updates):
      if t <= 3:  # nothing seen yet: no move at all, and no 0 / 0
        np.testing.assert_array_equal(leaf, 0.0)
      else:  # zeros after a gradient: the momentum keeps moving them
        assert np.all(_as_f64(leaf) < 0)
    if t <= 3:
      for moment in jax.tree.leaves(_moments(state)):
        np.testing.assert_array_equal(moment, 0.0)


HUGE = 1e30


@pytest.mark.parametrize("b2", [0.999, 0.0])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("opt", GRADIENT_ONLY)
def test_huge_gradients_give_finite_updates(opt, precision, b2):
  """Gradients of 1e30, then ordinary ones: every update stays finite."""
  with jax.enable_x64(precision == "f64"):
    tx = opt(learning_rate=1e-3, b2=b2)
    params = _tree(precision, [1.0, -1.0, 0.5, 2.0])
    grads = [_tree(precision, [HUGE, -HUGE, 1.0, -HUGE])] * 2 + [
        _tree(precision, [1.0, 1.0, 1.0, 1.0])] * 3
    records = _run(tx, params, grads)
  for new_params, updates, state in records:
    assert _finite(updates) and _finite(new_params)
    assert _finite(optax.tree.get(state, "mu"))
  for leaf in jax.tree.leaves(records[0][1]):
    first = np.abs(_as_f64(leaf)[[0, 1, 3]])
    if opt.bound == "dynamic":
      # The clipped step size times |m| (the lower bound is 1e-4 at t = 1):
      # large, never zero, never NaN.
      assert np.all(first > 1e20)
    else:
      # The momental bound caps Adam's step at (1 - b3) of it: finite, and
      # never zero (its size depends on whether the second moment saturated).
      assert np.all(first > 0)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("opt", REFERENCE)
def test_huge_gradients_keep_the_state_finite(opt, precision):
  """|g|^2 = 1e60 does not fit in float32: the second moment must not overflow.

  An infinite ``nu`` pins its elements to the lower bound for ever, and turns
  NaN as soon as ``b2 * nu`` is ``0 * inf``.
  """
  with jax.enable_x64(precision == "f64"):
    tx = opt(learning_rate=1e-3)
    params = _tree(precision, [1.0, -1.0, 0.5, 2.0])
    grads = [_tree(precision, [HUGE, -HUGE, 1.0, 1e20])] + [
        _tree(precision, [1.0, 1.0, 1.0, 1.0])] * 2
    records = _run(tx, params, grads)
  for _, _, state in records:
    for field, moment in _moments(state).items():
      assert _finite(moment), (field, moment)


@pytest.mark.parametrize("opt", REFERENCE)
def test_bfloat16_moments_saturate_under_float32_hyperparameters(opt):
  """Injected float32 hyperparameters compute bfloat16's moments in float32.

  float32's largest value rounds to inf in bfloat16, so the moment must
  saturate after it is cast back to the state's dtype; otherwise ``b2 = 0``
  turns ``0 * inf`` into a NaN update on the next step (found by
  ``test_every_effective_step_size_lies_within_the_bounds``).
  """
  tx = opt.injected(hyperparam_dtype=jnp.float32, learning_rate=1.0, b1=0.0,
                    b2=0.0, eps=0.1)
  params = jnp.asarray([1.0, -1.0], jnp.bfloat16)
  grads = [jnp.asarray(g, jnp.bfloat16)
           for g in ([-7e19, 1.0], [9e19, -1.0], [0.0, 0.0])]
  records = _run(tx, params, grads)
  for new_params, updates, state in records:
    assert _finite(updates) and _finite(new_params)
    for field, moment in _moments(state).items():
      assert moment.dtype == jnp.bfloat16
      assert _finite(moment), (field, moment)
  np.testing.assert_array_equal(
      optax.tree.get(records[1][2], "nu")[0], jnp.finfo(jnp.bfloat16).max)


TINY = {
    # Subnormal (flushed to 0 by XLA on CPU), and normal but with a square that
    # underflows: Adam's denominator is then eps alone, or 0 where eps = 0.
    "f32_bf16": [1e-40, -1e-45, 1e-20, 0.0],
    "f64": [1e-310, -5e-324, 1e-160, 0.0],
}


# With eps = 0 a gradient whose square underflows has an infinite Adam step
# size. The dynamic bound clips it; the momental bound, like Adam and the
# authors' AdaMod, has no finite value to cap it with (not run here).
@pytest.mark.parametrize("opt,eps", [
    (opt, eps) for opt in GRADIENT_ONLY for eps in (1e-8, 0.0)
    if eps > 0 or opt.bound == "dynamic"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_subnormal_and_tiny_gradients_stay_finite(opt, precision, eps):
  with jax.enable_x64(precision == "f64"):
    tx = opt(learning_rate=1e-3, eps=eps)
    params = _tree(precision, [1.0, -1.0, 0.5, 2.0])
    tiny = _tree(precision, TINY[precision])
    records = _run(tx, params, [tiny] * 3)
  for new_params, updates, state in records:
    assert _finite(updates) and _finite(new_params) and _finite(state)
    # Never more than the upper bound allows: final_lr (1 + 1 / (gamma t)) |m|
    # <= 0.1 * 1001 * |g| at the defaults (the momental bound's steps, capped
    # by their average, are below that too).
    for leaf, g in zip(jax.tree.leaves(updates), jax.tree.leaves(tiny),
                       strict=True):
      assert np.all(np.abs(_as_f64(leaf)) <= 101 * np.abs(_as_f64(g)))


# -- Non-finite gradients, with and without optax.apply_if_finite.


@pytest.mark.parametrize("opt", GRADIENT_ONLY)
def test_a_non_finite_gradient_poisons_only_its_own_elements(opt):
  tx = opt(learning_rate=1e-2)
  params = {"w": jnp.array([1.0, -2.0, 3.0, -4.0]), "b": jnp.array([0.5])}
  good = {"w": jnp.array([0.3, -0.2, 0.1, 0.4]), "b": jnp.array([1.0])}
  # Element 0 gets a NaN, 1 an Inf and 2 a -Inf; element 3 stays clean.
  spiked = {"w": jnp.array([np.nan, np.inf, -np.inf, 0.4]), "b": good["b"]}
  clean = _run(tx, params, [good] * 4)
  poisoned = _run(tx, params, [good, spiked, good, good])
  for (_, u_clean, s_clean), (_, u_bad, s_bad) in zip(
      clean[1:], poisoned[1:], strict=True):
    # The hit elements never recover. A NaN gradient makes the update and
    # every moment NaN; an Inf one makes mu infinite, and the second moments
    # saturate at the largest float32. The dynamic bound's update is then
    # infinite; the momental bound's is NaN: its step size is inf / inf.
    assert np.isnan(u_bad["w"][0])
    if opt.bound == "dynamic":
      assert np.all(np.isinf(u_bad["w"][1:3]))
    else:
      assert np.all(np.isnan(u_bad["w"][1:3]))
    for field, moment in _moments(s_bad).items():
      assert np.isnan(moment["w"][0]), field
      if field == "mu":
        np.testing.assert_array_equal(moment["w"][1:3], [np.inf, -np.inf])
      else:  # saturated at the largest float32, then decaying from there
        assert np.all(np.isfinite(moment["w"][1:3])), field
        assert np.all(moment["w"][1:3] > 1e38), field
    # Every other element, leaf and scalar is bitwise the clean run's.
    np.testing.assert_array_equal(u_bad["w"][3], u_clean["w"][3])
    np.testing.assert_array_equal(u_bad["b"], u_clean["b"])
    for field, moment in _moments(s_bad).items():
      np.testing.assert_array_equal(
          moment["b"], _moments(s_clean)[field]["b"])
    for field in ("count", "initial_lr", "peak_lr"):
      np.testing.assert_array_equal(
          [v for _, v in optax.tree.get_all_with_path(s_bad, field)],
          [v for _, v in optax.tree.get_all_with_path(s_clean, field)])


def _scan(tx):
  """A jitted run of ``tx``: (params, updates, state) after every step."""

  @jax.jit
  def run(params, grads):
    def step(carry, g):
      params, state = carry
      updates, state = tx.update(g, state, params)
      params = optax.apply_updates(params, updates)
      return (params, state), (params, updates, state)
    return jax.lax.scan(step, (params, tx.init(params)), grads)[1]

  return run


@pytest.mark.parametrize("opt", [
    # A scan of 40 steps each: one entry in the fast loop, all in the full run.
    pytest.param(opt, marks=[] if opt.name == "adabound" else pytest.mark.slow)
    for opt in UNDER_TEST])
def test_apply_if_finite_skips_the_bad_step_and_training_continues(opt):
  bare = opt(learning_rate=1e-2)
  tx = optax.apply_if_finite(bare, max_consecutive_errors=5)
  run = _scan(tx)

  params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5])}
  good = [{"w": jnp.array([0.3, -0.2, 0.1]) * (i + 1), "b": jnp.array([1.0 - i])}
          for i in range(5)]
  bad = [  # a NaN in one element, a leaf of Infs, then both in a row
      {"w": good[0]["w"].at[0].set(np.nan), "b": good[0]["b"]},
      {"w": jnp.full(3, np.inf), "b": good[0]["b"]},
      {"w": good[0]["w"], "b": jnp.array([-np.inf])},
  ]
  sequence = [good[0], bad[0], good[1], good[2], bad[1], good[3], bad[0],
              bad[2], good[4]]
  skipped = [1, 4, 6, 7]
  stacked = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
  faulty = run(params, stacked(sequence))
  # The clean run, with the same compiled steps: the good gradients, then
  # repeats of the last one to fill the sequence.
  clean = run(params, stacked(good + [good[4]] * len(skipped)))
  index = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
  p_faulty, u_faulty, s_faulty = faulty
  for i in skipped:
    # The bad step: zero updates, parameters and inner state bitwise unchanged.
    for leaf in jax.tree.leaves(index(u_faulty, i)):
      np.testing.assert_array_equal(leaf, 0.0)
    jax.tree.map(np.testing.assert_array_equal, index(p_faulty, i),
                 index(p_faulty, i - 1))
    jax.tree.map(np.testing.assert_array_equal,
                 index(s_faulty.inner_state, i),
                 index(s_faulty.inner_state, i - 1))
    assert not bool(s_faulty.last_finite[i])
  np.testing.assert_array_equal(s_faulty.notfinite_count,
                                [0, 1, 0, 0, 1, 0, 1, 2, 0])
  np.testing.assert_array_equal(s_faulty.total_notfinite,
                                [0, 1, 1, 1, 2, 2, 3, 4, 4])
  # The good steps: bitwise the run that never saw the bad ones, and the
  # optimizer's own run, unwrapped, on the good gradients alone.
  kept = [i for i in range(len(sequence)) if i not in skipped]
  unwrapped = _scan(bare)(params, stacked(good))
  bitwise = np.testing.assert_array_equal
  # The unwrapped optimizer is another compiled program: XLA 0.8 rounds
  # AdaMod's quotient |step| / |mu| in it one ulp apart (0.10 does not). The
  # same program, the clean run, is bitwise for every optimizer.
  within_an_ulp = lambda a, b: np.testing.assert_array_max_ulp(a, b, 1)
  for k, i in enumerate(kept):
    for p_clean, s_clean, same in (
        (clean[0], clean[2].inner_state, bitwise),
        (unwrapped[0], unwrapped[2],
         within_an_ulp if opt.bound == "momental" else bitwise)):
      jax.tree.map(same, index(p_faulty, i), index(p_clean, k))
      jax.tree.map(same, index(s_faulty.inner_state, i), index(s_clean, k))
  # The skipped steps counted nothing, and stored nothing that is not finite.
  counts = optax.tree.get_all_with_path(index(s_faulty.inner_state, -1),
                                        "count")
  assert counts and all(int(count) == len(kept) for _, count in counts)
  assert _finite(s_faulty.inner_state)


# -- Learning rates of 0: constant, injected, and schedules that start at 0.


@pytest.mark.parametrize("eps", [1e-8, 0.0])
@pytest.mark.parametrize("injected", [False, True])
@pytest.mark.parametrize("opt", GRADIENT_ONLY)
def test_learning_rate_zero_never_moves_and_stays_finite(opt, injected, eps):
  """lr = 0: zero updates, whatever the gradient; never 0 * inf.

  With ``eps=0``, a gradient whose square underflows (1e-20 in float32) makes
  Adam's direction infinite; the bounds are 0, and so must the step be.
  """
  make = opt.injected if injected else opt
  tx = make(learning_rate=0.0, eps=eps)
  params = jnp.array([1.0, -2.0, 0.0, 3.0])
  grads = [jnp.array([1.0, -3.0, 0.0, 1e-20]) * (i + 1) for i in range(5)]
  for new_params, updates, state in _run(tx, params, grads):
    np.testing.assert_array_equal(updates, 0.0)
    np.testing.assert_array_equal(new_params, params)
    assert _finite(state)


@pytest.mark.parametrize("opt", select(weight_decay=None))
def test_a_learning_rate_below_zero_never_moves_a_parameter(opt):
  """A hand-written linear decay that overshoots below 0.

  A learning rate below 0 is a learning rate of 0. Taken as given, it would
  scale the bounds below 0 and step *up* the gradient by the bound's size.
  """
  schedule = lambda count: 1e-2 - 4e-3 * count  # 1e-2, 6e-3, 2e-3, -2e-3, ...
  tx = opt(learning_rate=schedule)
  params = jnp.array([1.0, -2.0, 3.0])
  grads = [jnp.array([0.5, -1.0, 2.0])] * 6
  for step, (new_params, updates, state) in enumerate(_run(tx, params, grads)):
    assert _finite(updates) and _finite(state)
    if schedule(step) < 0:
      np.testing.assert_array_equal(updates, 0.0)
    else:  # a descent step: against the gradient
      assert np.all(np.asarray(updates) * np.asarray(grads[0]) < 0)
    params = new_params


@pytest.mark.parametrize("opt", UNDER_TEST)
def test_integer_gradients_on_float_parameters_give_the_float_updates(opt):
  """A gradient of integers (a count, a hand-made test) is a gradient: the
  update is the one its float values give, in the parameters' dtype."""
  params = jnp.array([1.0, -2.0, 3.0])
  integers = jnp.array([1, -2, 0], jnp.int32)
  tx = opt(learning_rate=0.1)
  from_integers, _ = tx.update(integers, tx.init(params), params)
  from_floats, _ = tx.update(
      integers.astype(jnp.float32), tx.init(params), params)
  assert from_integers.dtype == jnp.float32
  np.testing.assert_array_equal(from_integers, from_floats)
  assert np.any(np.asarray(from_integers) != 0)


def test_decoupled_decay_is_not_scaled_by_a_zero_learning_rate():
  """adaboundw's decay is the authors' p <- p - wd * p, whatever the lr."""
  params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.5])
  tx = optax_bound.adaboundw(learning_rate=0.0, weight_decay=0.1)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates, -0.1 * params, rtol=1e-7)
  tx = optax_bound.adaboundw(learning_rate=0.0, weight_decay=0.1,
                             lr_scaled_decay=True)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates, 0.0)


@pytest.mark.parametrize("opt", select(
    weight_decay=None, paper_form=False, accepts=("final_lr_coupling",)))
def test_fixed_coupling_moves_at_the_lower_bound_even_at_learning_rate_zero(
    opt):
  """'fixed' keeps final_lr whatever the lr, so lr = 0 steps at the lower bound.

  The documented exception of ``coupled_final_lr``: the bound is on the step
  size, and with a fixed final_lr its lower end is above 0.
  """
  final_lr, gamma = 0.1, 0.5
  tx = opt(
      learning_rate=0.0, final_lr=final_lr, gamma=gamma,
      final_lr_coupling="fixed")
  params = jnp.array([1.0, -2.0])
  for t, (_, updates, state) in enumerate(
      _run(tx, params, [jnp.array([0.5, -0.25])] * 3), start=1):
    lower, _ = optax_bound.reference_bounds(jnp.float32(t), final_lr, gamma)
    np.testing.assert_allclose(
        updates, -float(lower) * np.asarray(optax.tree.get(state, "mu")),
        rtol=1e-6)


def test_coupled_final_lr_is_zero_while_every_learning_rate_was_zero():
  zero = jnp.float32(0.0)
  for coupling in ("initial", "peak"):
    assert float(optax_bound.coupled_final_lr(
        0.1, zero, zero, zero, coupling)) == 0.0
  # After a warmup from 0, the running peak stands in for lr_0.
  got = optax_bound.coupled_final_lr(
      0.1, jnp.float32(2e-4), zero, jnp.float32(1e-3), "initial")
  np.testing.assert_allclose(float(got), 0.1 * 2e-4 / 1e-3, rtol=1e-6)


@pytest.mark.parametrize("eps", [1e-8, 0.0])
@pytest.mark.parametrize("opt", select(
    public=True, weight_decay=None, accepts=("final_lr", "gamma")))
def test_warmup_from_zero_stays_finite_and_its_first_step_is_zero(opt, eps):
  """lr_0 = 0: the bounds are measured against the running peak instead.

  The first step is zero, with no 0 / 0; then the bounds follow the warmup up
  and the decay down.
  """
  peak, final_lr, gamma, steps = 1e-2, 0.1, 0.5, 12
  schedule = optax.warmup_cosine_decay_schedule(0.0, peak, 4, steps)
  tx = opt(learning_rate=schedule, final_lr=final_lr, eps=eps, gamma=gamma)
  params = jnp.array([1.0, -2.0, 1e-3, 3.0])
  # A tiny gradient too: with eps = 0 its direction is infinite at lr = 0.
  grads = [jnp.array([0.5, -1e3, 1e-20, 2.0]) / (i + 1) for i in range(steps)]
  records = _run(tx, params, grads)
  np.testing.assert_array_equal(records[0][1], 0.0)
  lrs = [float(schedule(s)) for s in range(steps)]
  for t, (new_params, updates, state) in enumerate(records, start=1):
    assert _finite(updates) and _finite(new_params) and _finite(state)
    if t > 1 and opt.within_reference_bounds:
      # final_lr * lr_t / peak_t, since lr_0 = 0 (lr_t = schedule(t - 1)).
      lower, upper = optax_bound.reference_bounds(
          jnp.float32(t), final_lr * lrs[t - 1] / max(lrs[:t]), gamma)
      sizes = np.asarray(optax_bound.effective_step_sizes(updates, state))
      assert np.all(sizes >= float(lower) * (1 - 1e-5))
      assert np.all(sizes <= float(upper) * (1 + 1e-5))
  if opt.within_reference_bounds:
    # Late in the decay, the bounds have followed it down from the peak.
    assert upper < final_lr * lrs[-1] / peak * 1.2
