"""find_final_lr: below the stability limit it reads, one compile, clear errors.

On a quadratic of largest curvature L, SGD with momentum dampened by b1 (the
method AdaBound ends as) is stable iff lr * L < 2 (1 + b1) / (1 - b1): the
test of the formula comes first, then find_final_lr against it.
"""

import itertools
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound


def _limit(curvature, b1):
  return 2 * (1 + b1) / ((1 - b1) * curvature)


def _quadratic(largest, dim=16):
  """0.5 sum(c_i p_i^2), curvatures log-spaced from largest / 100 to largest."""
  curvatures = jnp.logspace(np.log10(largest) - 2, np.log10(largest), dim)
  return lambda p, batch: 0.5 * jnp.sum(curvatures * p**2)


def _dampened_sgdm_distance(lr, curvature, b1, steps):
  """|p| after ``steps`` of dampened SGDM on 0.5 * curvature * p^2 from p = 1."""
  p, m = jnp.float32(1.0), jnp.float32(0.0)

  def step(carry, _):
    p, m = carry
    m = b1 * m + (1 - b1) * curvature * p
    return (p - lr * m, m), None

  (p, _), _ = jax.lax.scan(step, (p, m), length=steps)
  return float(jnp.abs(p))


@pytest.mark.parametrize("b1", [0.0, 0.5, 0.9])
def test_dampened_sgdm_on_a_quadratic_is_stable_just_below_the_limit_only(b1):
  limit = _limit(100.0, b1)
  # 1% on either side of the limit: from p = 1 to 0, or past 1e3 (or inf).
  assert _dampened_sgdm_distance(0.99 * limit, 100.0, b1, 3000) < 1e-3
  assert not _dampened_sgdm_distance(1.01 * limit, 100.0, b1, 3000) < 1e3


@pytest.mark.parametrize("b1", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("largest", [1.0, 1e2, 1e4])
def test_suggestion_is_below_the_stability_limit_of_a_quadratic(largest, b1):
  test = optax_bound.find_final_lr(
      _quadratic(largest), jnp.ones(16), itertools.repeat(None), b1=b1)
  # The test runs at b1 = 0.9 and reads that limit: it sees the loss rise
  # within a few steps of it (measured: 0.99 to 1.4 times) ...
  probe_limit = _limit(largest, 0.9)
  assert 0.9 * probe_limit < test.divergence_lr < 1.5 * probe_limit
  # ... carries it to b1 by the quadratic's limit, and keeps a sixth.
  scale = (1 + b1) / (1 - b1) / 19
  assert test.final_lr == pytest.approx(test.divergence_lr * scale / 6)
  limit = _limit(largest, b1)
  assert limit / 10 < test.final_lr < limit / 3
  # The curve it read: the loss went down before it went up.
  assert len(test.lrs) == len(test.losses) == len(test.smoothed_losses)
  assert np.all(np.diff(test.lrs) > 0)
  assert test.smoothed_losses.min() < test.initial_loss / 10


def test_suggested_final_lr_trains_adabound_where_the_default_diverges():
  # Curvatures up to 1e3: dampened SGDM is stable below 0.038, so AdaBound's
  # default final_lr of 0.1 diverges once its band closes.
  loss = _quadratic(1e3)
  start = jnp.ones(16)
  test = optax_bound.find_final_lr(loss, start, itertools.repeat(None))

  def final_loss(final_lr):
    tx = optax_bound.adabound(learning_rate=1e-2, final_lr=final_lr, gamma=0.1)

    def step(carry, _):
      p, state = carry
      updates, state = tx.update(jax.grad(loss)(p, None), state, p)
      return (optax.apply_updates(p, updates), state), None

    (p, _), _ = jax.lax.scan(step, (start, tx.init(start)), length=1000)
    return float(loss(p, None))

  assert not final_loss(0.1) < loss(start, None)  # inf or NaN
  assert final_loss(test.final_lr) < 1e-6 * loss(start, None)


def test_callers_params_are_neither_changed_nor_donated():
  params = {"w": jnp.arange(4.0) + 1, "b": np.ones(3, np.float32)}
  kept = jax.tree.map(np.array, params)

  def loss(p, batch):
    return jnp.sum(p["w"] ** 2) + jnp.sum((p["b"] - batch) ** 2)

  optax_bound.find_final_lr(loss, params, itertools.repeat(jnp.zeros(3)))
  assert not params["w"].is_deleted()
  chex.assert_trees_all_equal(params, kept)


def test_loss_fn_is_traced_once_whatever_the_number_of_steps():
  traces = []

  @chex.assert_max_traces(n=1)
  def loss(p, batch):
    traces.append(1)
    return jnp.sum(batch * p**2)

  # 201 passes, in chunks of 16: the last chunk is padded, not recompiled.
  test = optax_bound.find_final_lr(loss, jnp.ones(3), itertools.repeat(
      jnp.array([1.0, 2.0, 4.0])), min_lr=1e-4, max_lr=10.0, num_steps=200)
  assert len(traces) == 1
  assert test.divergence_lr is not None


def _noisy_batches(seed):
  """Distinct batches: a per-step scale of the loss, 2 ** U(-0.2, 0.2)."""
  rng = np.random.default_rng(seed)
  while True:
    yield jnp.float32(2.0 ** rng.uniform(-0.2, 0.2))


def _scaled_quadratic(dim):
  """0.5 scale sum(c_i p_i^2), curvatures 1 to 100, scale from the batch."""
  curvatures = jnp.logspace(0.0, 2.0, dim)
  return lambda p, scale: 0.5 * scale * jnp.sum(curvatures * p**2)


def test_the_suggestion_is_read_from_the_median_of_the_tests():
  loss = _scaled_quadratic(16)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    test = optax_bound.find_final_lr(loss, jnp.ones(16), _noisy_batches(0),
                                     num_tests=5)
  assert len(test.curves) == 5
  readings = [curve.divergence_lr for curve in test.curves]
  # Each test read its own batches: the noise moved where they diverged.
  assert len(set(readings)) > 1
  assert test.divergence_lr == sorted(readings)[2]
  assert test.final_lr == pytest.approx(test.divergence_lr / 6)
  median = next(c for c in test.curves
                if c.divergence_lr == test.divergence_lr)
  np.testing.assert_array_equal(test.lrs, median.lrs)
  np.testing.assert_array_equal(test.losses, median.losses)
  # Of an even count, the lower median: the smaller final_lr.
  even = optax_bound.find_final_lr(loss, jnp.ones(16), _noisy_batches(0),
                                   num_tests=4)
  assert even.divergence_lr == sorted(
      c.divergence_lr for c in even.curves)[1]


def test_a_full_batch_loss_runs_one_test_and_minibatches_run_each():
  taken = []

  def same_batch():
    batch = jnp.ones(3)
    while True:
      taken.append(1)
      yield batch

  test = optax_bound.find_final_lr(_quadratic(1e2, dim=3), jnp.ones(3),
                                   same_batch())
  # The other four tests would repeat this one step for step.
  assert len(test.curves) == 1 and len(taken) <= 226
  many = optax_bound.find_final_lr(_quadratic(1e2, dim=3), jnp.ones(3),
                                   (jnp.ones(3) for _ in itertools.count()))
  assert len(many.curves) == 5
  # Equal batches, so equal curves: the tests differ by their batches only.
  for curve in many.curves:
    np.testing.assert_array_equal(curve.losses, test.losses)


def test_every_test_runs_in_one_compiled_program():
  traces = []

  @chex.assert_max_traces(n=1)
  def loss(p, scale):
    traces.append(1)
    return 0.5 * scale * jnp.sum(p**2 * jnp.array([1.0, 10.0, 100.0]))

  test = optax_bound.find_final_lr(loss, jnp.ones(3), _noisy_batches(1),
                                   num_tests=3)
  assert len(test.curves) == 3 and len(traces) == 1


def test_batches_that_run_out_in_a_later_test_say_how_many_were_read():
  # Each test diverges within its first 160 batches: the third runs out.
  batches = list(itertools.islice(_noisy_batches(3), 400))
  with pytest.raises(ValueError, match=r"ran out after 400 batches; each range "
                     r"test takes up to num_steps \+ 1 = 226"):
    optax_bound.find_final_lr(
        _scaled_quadratic(8), jnp.ones(8), batches)


def test_a_noisy_minibatch_loss_is_not_read_as_diverging_at_its_start():
  # Least squares on minibatches of 32: the loss varies by about 25% from
  # batch to batch, as much as the divergence threshold, so the first steps
  # (before the average covers 10) are not read.
  data = np.random.default_rng(1).standard_normal((512, 4)).astype(np.float32)
  batches = itertools.cycle([(data[i:i + 32], data[i:i + 32].sum(1))
                             for i in range(0, 512, 32)])
  loss = lambda p, b: jnp.mean((b[0] @ p["w"] + p["b"] - b[1]) ** 2) + 1e-3
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    test = optax_bound.find_final_lr(
        loss, {"w": jnp.zeros(4), "b": jnp.zeros(())}, batches)
  hessian_top = np.linalg.eigvalsh(2 * data.T @ data / len(data)).max()
  limit = _limit(hessian_top, 0.9)
  assert all(limit / 4 < c.divergence_lr < 2 * limit for c in test.curves)
  assert test.final_lr < limit / 3


def test_a_loss_that_never_diverges_warns_and_suggests_a_sixth_of_max_lr():
  with pytest.warns(UserWarning, match="did not diverge up to max_lr=0.01"):
    test = optax_bound.find_final_lr(
        _quadratic(1.0), jnp.ones(16), itertools.repeat(None), max_lr=1e-2)
  assert test.divergence_lr is None
  assert test.final_lr == pytest.approx(1e-2 / 6)
  assert len(test.lrs) == 225


def test_a_loss_that_diverges_at_once_warns_to_lower_min_lr():
  # Stable below 3.8e-3: from min_lr = 0.1 every step diverges.
  with pytest.warns(UserWarning, match="lower min_lr"):
    test = optax_bound.find_final_lr(
        _quadratic(1e4), jnp.ones(16), itertools.repeat(None), min_lr=0.1)
  assert test.divergence_lr < 0.2


def test_minibatches_are_stacked_and_read_in_order():
  data = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
  batches = itertools.cycle(data.reshape(8, 8, 3))
  loss = lambda w, x: jnp.mean((x @ w - 1.0) ** 2)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    test = optax_bound.find_final_lr(loss, jnp.zeros(3), batches)
  # The first loss is at w = 0 on the first batch: (0 - 1)^2.
  assert test.initial_loss == pytest.approx(1.0)
  hessian_top = np.linalg.eigvalsh(2 * data.T @ data / len(data)).max()
  assert test.final_lr < _limit(hessian_top, 0.9)


def test_plot_marks_the_suggestion_and_the_divergence():
  matplotlib = pytest.importorskip("matplotlib")
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  test = optax_bound.find_final_lr(_quadratic(1e2), jnp.ones(16),
                                   itertools.repeat(None))
  ax = test.plot()
  labels = [line.get_label() for line in ax.get_lines()]
  assert f"final_lr = {test.final_lr:.3g}" in labels
  assert f"divergence, lr = {test.divergence_lr:.3g}" in labels
  assert ax.get_xscale() == "log"
  plt.close(ax.figure)
  # Five tests: the median one drawn and labelled, the other four faint.
  five = optax_bound.find_final_lr(_scaled_quadratic(16), jnp.ones(16),
                                   _noisy_batches(2))
  ax = five.plot()
  faint = [line for line in ax.get_lines() if line.get_alpha() == 0.3]
  assert len(faint) == 4
  assert any("median test" in line.get_label() for line in ax.get_lines())
  plt.close(ax.figure)


def _ok_loss(p, batch):
  return jnp.sum(p**2) + 1.0


@pytest.mark.parametrize(("options", "match"), [
    ({"min_lr": 1.0, "max_lr": 1.0}, "0 < min_lr < max_lr"),
    ({"min_lr": 0.0}, "0 < min_lr < max_lr"),
    ({"max_lr": np.inf}, "0 < min_lr < max_lr"),
    ({"num_steps": 19}, "at least 20"),
    ({"num_tests": 0}, "`num_tests` must be at least 1"),
    ({"b1": 1.0}, r"`b1` must be in \[0, 1\)"),
    ({"b1": -0.1}, r"`b1` must be in \[0, 1\)"),
])
def test_bad_options_raise_a_value_error_naming_them(options, match):
  with pytest.raises(ValueError, match=match):
    optax_bound.find_final_lr(_ok_loss, jnp.ones(2), itertools.repeat(None),
                              **options)


@pytest.mark.parametrize(("options", "match"), [
    ({"num_steps": 100.0}, "`num_steps` must be an integer"),
    ({"num_tests": 2.0}, "`num_tests` must be an integer"),
    ({"num_tests": True}, "`num_tests` must be an integer"),
    ({"b1": True}, "`b1` must be a real number"),
    ({"min_lr": "1e-6"}, "`min_lr` must be a real number"),
])
def test_options_of_the_wrong_type_raise_a_type_error(options, match):
  with pytest.raises(TypeError, match=match):
    optax_bound.find_final_lr(_ok_loss, jnp.ones(2), itertools.repeat(None),
                              **options)


def test_empty_or_exhausted_batches_raise_a_value_error():
  with pytest.raises(ValueError, match="`batches` is empty"):
    optax_bound.find_final_lr(_ok_loss, jnp.ones(2), [])
  with pytest.raises(ValueError, match=r"ran out after 5 batches.*cycle"):
    optax_bound.find_final_lr(_ok_loss, jnp.ones(2), [None] * 5)
  with pytest.raises(TypeError, match="`batches` must be an iterable"):
    optax_bound.find_final_lr(_ok_loss, jnp.ones(2), 3)


def test_batches_of_changing_shapes_raise_a_value_error():
  batches = itertools.chain([jnp.ones(2)], itertools.repeat(jnp.ones(3)))
  with pytest.raises(ValueError, match="structure and shapes of the first"):
    optax_bound.find_final_lr(lambda p, b: jnp.sum(p**2) + jnp.sum(b),
                              jnp.ones(2), batches)


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0, -1.0])
def test_a_loss_not_finite_and_positive_at_the_start_raises(value):
  loss = lambda p, batch: jnp.sum(p * 0.0) + value
  with pytest.raises(ValueError, match="finite and positive at the initial"):
    optax_bound.find_final_lr(loss, jnp.ones(2), itertools.repeat(None))


def test_a_loss_that_turns_negative_raises():
  # Positive at p = 1, negative once the step has moved p past 0.5.
  loss = lambda p, batch: jnp.sum(p) - 0.5
  with pytest.raises(ValueError, match="below 0"):
    optax_bound.find_final_lr(loss, jnp.ones(1), itertools.repeat(None))


@pytest.mark.parametrize("loss", [
    lambda p, batch: p**2,  # one loss per element
    lambda p, batch: jnp.sum(p**2).astype(jnp.complex64),
])
def test_a_loss_that_is_not_a_real_scalar_raises_a_type_error(loss):
  with pytest.raises(TypeError, match="`loss_fn` must return a real float scalar"):
    optax_bound.find_final_lr(loss, jnp.ones(3), itertools.repeat(None))


def test_integer_params_and_a_non_callable_loss_raise_a_type_error():
  with pytest.raises(TypeError, match="dtype int32"):
    optax_bound.find_final_lr(_ok_loss, jnp.arange(3), itertools.repeat(None))
  with pytest.raises(TypeError, match="`loss_fn` must be callable"):
    optax_bound.find_final_lr(1.0, jnp.ones(3), itertools.repeat(None))
