"""The two ends of the bound, the bound itself, and the paper's Algorithm 2 form.

gamma -> 0 opens the bound: AdaBound is then Adam with the reference's eps
placement. gamma -> infinity closes it on final_lr: AdaBound is then SGD with
momentum dampened by b1 (Savarese, arXiv 1908.04457). In between, every
effective step size lies in [lower(t), upper(t)]: ``tests/test_properties.py``.
"""

from _optimizers import select
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

STEPS = 50
# The reference AdaBound and AMSBound: one entry per moment estimator.
REFERENCE = select(public=True, weight_decay=None, paper_form=False,
                   accepts=("final_lr", "gamma"))


def _gradients():
  """A fixed gradient sequence whose scales span 10^-6 .. 10^0 per element."""
  rng = np.random.default_rng(0)
  scale = 10.0 ** np.linspace(-6, 0, 6)
  return scale * (0.3 + rng.standard_normal((STEPS, 6)))


def _trajectory(tx, grads, params):
  params = jnp.asarray(params)
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = tx.update(jnp.asarray(g), state, params)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(params))
  return np.stack(out)


def _adam_kingma_efficient(grads, params, lr, use_max, b1=0.9, b2=0.999,
                           eps=1e-8):
  """NumPy Adam or AMSGrad: eps on the raw sqrt(v), bias correction in the step."""
  p, m, v, v_max, out = params.copy(), 0.0, 0.0, 0.0, []
  for t, g in enumerate(grads, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    v_max = np.maximum(v_max, v)
    denominator = np.sqrt(v_max if use_max else v) + eps
    p = p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / denominator
    out.append(p)
  return np.stack(out)


@pytest.mark.parametrize("opt", REFERENCE)
def test_gamma_zero_is_adam_with_the_reference_eps_placement(opt):
  grads, params = _gradients(), np.ones(6)
  with jax.enable_x64(True):
    bounded = _trajectory(opt(learning_rate=1e-2, gamma=0.0), grads, params)
  expected = _adam_kingma_efficient(
      grads, params, lr=1e-2, use_max=opt.nu_max)
  np.testing.assert_allclose(bounded, expected, rtol=1e-13)


def test_optax_adam_differs_from_the_reference_where_gradients_are_small():
  """Optax adds eps to sqrt(v_hat): elements with gradients near eps move apart."""
  grads, params = _gradients(), np.ones(6)
  with jax.enable_x64(True):
    optax_adam = _trajectory(optax.adam(1e-2), grads, params)
  reference = _adam_kingma_efficient(grads, params, lr=1e-2, use_max=False)
  assert np.max(np.abs(reference - optax_adam)[:, 0]) > 1e-4
  np.testing.assert_allclose(reference[:, -1], optax_adam[:, -1], rtol=1e-6)


@pytest.mark.parametrize("opt", REFERENCE)
def test_huge_gamma_is_sgd_with_momentum_dampened_by_b1(opt):
  grads, params = _gradients(), np.ones(6)
  final_lr, b1 = 0.05, 0.9
  with jax.enable_x64(True):
    bounded = _trajectory(opt(final_lr=final_lr, b1=b1, gamma=1e12),
                          grads, params)
    # optax.sgd's trace is g + b1 * trace = m / (1 - b1): scale its lr.
    sgd = _trajectory(optax.sgd(final_lr * (1 - b1), momentum=b1), grads, params)
  np.testing.assert_allclose(bounded, sgd, rtol=1e-10)


def test_paper_form_is_algorithm_2_of_the_paper():
  """No bias correction, and the clipped step divided by sqrt(t)."""
  grads, params = _gradients(), np.ones(6)
  lr, final_lr, gamma, b1, b2, eps = 1e-2, 0.1, 0.01, 0.9, 0.999, 1e-8
  with jax.enable_x64(True):
    ours = _trajectory(
        optax_bound.amsbound(learning_rate=lr, final_lr=final_lr, b1=b1, b2=b2,
                             gamma=gamma, eps=eps, form="paper"),
        grads, params)
  p, m, v, v_max, expected = params.copy(), 0.0, 0.0, 0.0, []
  for t, g in enumerate(grads, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    v_max = np.maximum(v_max, v)
    lower = final_lr * (1 - 1 / (gamma * t + 1))
    upper = final_lr * (1 + 1 / (gamma * t))
    eta = np.clip(lr / (np.sqrt(v_max) + eps), lower, upper) / np.sqrt(t)
    p = p - eta * m
    expected.append(p)
  np.testing.assert_allclose(ours, np.stack(expected), rtol=1e-12)


def test_paper_bound_functions_are_reference_bounds_with_gamma_one_minus_b2():
  b2 = 0.999
  t = np.arange(1.0, 10_000.0)
  # float64: at small t both forms of the lower bound cancel catastrophically.
  with jax.enable_x64(True):
    lower, upper = optax_bound.reference_bounds(jnp.asarray(t), 0.1, 1 - b2)
  np.testing.assert_allclose(lower, 0.1 - 0.1 / ((1 - b2) * t + 1), rtol=1e-11)
  np.testing.assert_allclose(upper, 0.1 + 0.1 / ((1 - b2) * t), rtol=1e-14)


def test_custom_bound_fn_replaces_the_reference_bounds():
  def exponential_bounds(t, final_lr, gamma):
    closing = jnp.exp(-gamma * t)
    return final_lr * (1 - closing), final_lr * (1 + 10 * closing)

  tx = optax_bound.adabound(learning_rate=1.0, final_lr=0.1, gamma=0.5,
                            bound_fn=exponential_bounds)
  params = jnp.array([1.0, 1e-3, 1e3])
  state = tx.init(params)
  for t in range(1, 6):
    updates, state = tx.update(params, state, params)
    sizes = np.asarray(optax_bound.effective_step_sizes(updates, state))
    lower, upper = exponential_bounds(jnp.float32(t), 0.1, 0.5)
    assert np.all((sizes >= lower * (1 - 1e-6)) & (sizes <= upper * (1 + 1e-6)))
    # lr = 1 makes Adam's step sizes huge: the custom upper bound is in force.
    np.testing.assert_allclose(sizes.max(), upper, rtol=1e-6)


def test_bounding_optax_scale_by_adam_keeps_its_eps_placement():
  """The clip wraps any Adam-family estimator, optax.scale_by_adam included."""
  tx = optax_bound.clip_step_size_by_dynamic_bound(
      optax.scale_by_adam(), learning_rate=1e-2, gamma=0.0)
  grads, params = _gradients(), np.ones(6)
  with jax.enable_x64(True):
    np.testing.assert_allclose(
        _trajectory(tx, grads, params),
        _trajectory(optax.adam(1e-2), grads, params), rtol=1e-13)
