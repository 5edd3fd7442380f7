"""Gradients *through* the optimizer: with respect to its learning rate and to the
initial parameters (MAML-style), in float64, against central finite differences.

Reverse mode must be finite and right wherever the unrolled training is
differentiable, including where the bound is open (``gamma = 0``, the
reference's Adam, or a ``bound_fn`` with an infinite upper bound): an
infinite bound that a comparison never selects must not enter the backward
pass as 0 * inf. Where a gradient is exactly 0, the square root of the second
moment is not differentiable, as in ``optax.adam``; ``eps_root`` makes it so.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

# Unrolled float64 training differentiated in both modes: a few seconds.
pytestmark = pytest.mark.slow

STEPS = 5
# Per-coordinate curvatures of the inner quadratic; a 0 makes that
# coordinate's gradient exactly 0 at every step (a dead unit).
CURVATURES = (1.0, 2.0, 3.0)
INITIAL = (0.3, -2.0, 5.0)


def _open_upper_bound(t, final_lr, gamma):
  del t, gamma
  return 0.0 * final_lr, jnp.inf


OPEN_BOUNDS = {
    "gamma_zero": lambda lr: optax_bound.adabound(learning_rate=lr, gamma=0.0),
    "infinite_upper_bound": lambda lr: optax_bound.amsbound(
        learning_rate=lr, bound_fn=_open_upper_bound),
    "closing_bound": lambda lr: optax_bound.adabound(
        learning_rate=lr, final_lr=0.1, gamma=0.5),
    "momental_bound": lambda lr: optax_bound.adamod(learning_rate=lr, b3=0.9),
}


def _loss_after_training(learning_rate, params, make, curvatures=CURVATURES):
  """The outer loss, sum(p**2), after STEPS inner steps from ``params``."""
  curvatures = jnp.asarray(curvatures)
  tx = make(learning_rate)
  state = tx.init(params)
  for _ in range(STEPS):
    grads = jax.grad(lambda p: jnp.sum(curvatures * (p - 1.0) ** 2))(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return jnp.sum(params**2)


def _central_difference(f, x, h=1e-6):
  return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name", list(OPEN_BOUNDS))
def test_gradient_with_respect_to_the_learning_rate_matches_finite_differences(
    name):
  with jax.enable_x64(True):
    params = jnp.asarray(INITIAL, jnp.float64)
    loss = lambda lr: _loss_after_training(lr, params, OPEN_BOUNDS[name])
    reverse = jax.grad(loss)(1e-2)
    forward = jax.jvp(loss, (1e-2,), (1.0,))[1]
    numeric = _central_difference(loss, 1e-2)
    assert np.isfinite(reverse)
    np.testing.assert_allclose(reverse, numeric, rtol=1e-6)
    np.testing.assert_allclose(reverse, forward, rtol=1e-12)
    # Not a trivial 0: the learning rate does move the outcome.
    assert abs(float(reverse)) > 1e-2


@pytest.mark.parametrize("name", list(OPEN_BOUNDS))
def test_gradient_with_respect_to_the_initial_parameters_matches_finite_differences(
    name):
  with jax.enable_x64(True):
    params = jnp.asarray(INITIAL, jnp.float64)
    loss = lambda p: _loss_after_training(1e-2, p, OPEN_BOUNDS[name])
    reverse = jax.grad(loss)(params)
    assert np.all(np.isfinite(reverse))
    for i in range(params.size):
      unit = jnp.zeros_like(params).at[i].set(1.0)
      numeric = _central_difference(
          lambda h, unit=unit: loss(params + h * unit), 0.0)
      np.testing.assert_allclose(reverse[i], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("make", [
    lambda lr, eps_root: optax_bound.adabound(learning_rate=lr, eps_root=eps_root),
    lambda lr, eps_root: optax_bound.amsbound(learning_rate=lr, eps_root=eps_root),
    lambda lr, eps_root: optax_bound.adamod(learning_rate=lr, eps_root=eps_root),
], ids=["adabound", "amsbound", "adamod"])
def test_eps_root_keeps_gradients_finite_where_a_gradient_is_exactly_zero(make):
  """A dead unit: like optax.adam, NaN without eps_root, right with it."""
  with jax.enable_x64(True):
    params = jnp.asarray(INITIAL, jnp.float64)
    dead = (1.0, 2.0, 0.0)

    def loss(p, eps_root):
      return _loss_after_training(
          1e-1, p, lambda lr: make(lr, eps_root), curvatures=dead)

    assert np.isnan(jax.grad(loss)(params, 0.0)[2])
    assert np.isnan(
        jax.grad(lambda p: _loss_after_training(
            1e-1, p, lambda lr: optax.adam(lr), curvatures=dead))(params)[2])
    reverse = jax.grad(loss)(params, 1e-30)
    assert np.all(np.isfinite(reverse))
    # The dead coordinate never moves, so d loss / d p = 2 p there.
    np.testing.assert_allclose(reverse[2], 2 * params[2], rtol=1e-12)
    unit = jnp.zeros_like(params).at[0].set(1.0)
    numeric = _central_difference(lambda h: loss(params + h * unit, 1e-30), 0.0)
    np.testing.assert_allclose(reverse[0], numeric, rtol=1e-6)
