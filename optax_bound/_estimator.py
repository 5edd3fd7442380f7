"""The contract between a bound and the moment estimator it wraps.

A bound on the per-element step size
(:func:`optax_bound.clip_step_size_by_dynamic_bound`,
:func:`optax_bound.clip_step_size_by_momental_bound`) never sees the step size
itself. It sees the estimator's direction :math:`d_t` and first moment
:math:`m_t`, and reads the step size as :math:`\\alpha_t |d_t| / |m_t|`. That
holds when

* the state has a field ``mu`` (the first moment :math:`m_t`) and a field
  ``count`` (the steps taken), as ``optax.ScaleByAdamState`` does, and
* the direction is a positive per-element multiple of ``mu``:
  :math:`d_t = k_t \\odot m_t` with :math:`k_t \\ge 0`.

Known to hold it: :func:`optax_bound.scale_by_adam`,
:func:`optax_bound.scale_by_amsgrad`, ``optax.scale_by_adam()``,
``optax.scale_by_amsgrad()``, ``optax.scale_by_belief()`` (AdaBelief),
``optax.scale_by_yogi()``, ``optax.scale_by_radam()`` and
``optax.scale_by_adamax()``. Known to break it: ``optax.scale_by_adam(nesterov=True)``
(NAdam: the direction mixes in the current gradient) and ``optax.scale_by_lion()``
(the sign of a different average). :func:`check_estimator` runs the estimator
on a short probe when the bound is built and rejects one that breaks it.
"""

from typing import Any
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_bound import _numerics
from optax_bound import _validation

_MISSING = object()
# The update functions of estimators built here, which keep the contract by
# construction: probing them would compile their pass for the probe's shape,
# a third of a second of every fresh process's first step.
_KEEP_THE_CONTRACT: "weakref.WeakSet[Any]" = weakref.WeakSet()

# A probe that a direction built from anything but the first moment fails:
# gradients that change sign, so that the current gradient, or an average with
# another decay rate, points against the first moment somewhere.
_PROBE_GRADIENTS = np.array([
    [1.0, -1.0, 1e-3, 2.0, 0.0],
    [-0.5, 0.5, -1e-3, 2.0, 0.0],
    [0.3, -2.0, 5e-3, -1.0, 0.0],
    [-0.7, 0.1, -4e-3, 0.5, 0.0],
], np.float32)


def field(inner_state: optax.OptState, name: str, owner: str) -> Any:
  """The field ``mu`` (first moment) or ``count`` of an Adam-family state."""
  # A sentinel, because the first moment of the empty tree ``None`` is None.
  try:
    value = optax.tree.get(inner_state, name, default=_MISSING)
  except KeyError:
    # Optax's "Found multiple values": the step count or the first moment
    # of the bound's t and step size would be a guess.
    raise ValueError(
        f"{owner} needs a moment estimator whose state has one field "
        f"`{name}`; this one's has several (a chain of an estimator and "
        "another counting transform, such as optax.scale_by_schedule, or an "
        "estimator under optax.inject_hyperparams). Put the other transform "
        "outside the bound, optax.chain(bound, optax.scale_by_schedule(f)), "
        "and inject the hyperparameters of the whole optimizer: "
        "optax.inject_hyperparams(optax_bound.adabound)(...)."
    ) from None
  if value is _MISSING:
    raise ValueError(
        f"{owner} needs a moment estimator whose state has a field `{name}`, "
        "such as optax_bound.scale_by_adam or optax_bound.scale_by_amsgrad."
    )
  return value


def keeps_the_contract(
    estimator: optax.GradientTransformation,
) -> optax.GradientTransformation:
  """Marks ``estimator`` as one that keeps the contract; returns it."""
  _KEEP_THE_CONTRACT.add(estimator.update)
  return estimator


def _run_probe(estimator: optax.GradientTransformation) -> list[Any] | None:
  """The states and directions of the probe's steps; None where it cannot run.

  An estimator built from traced hyperparameters (``optax.inject_hyperparams``
  under ``jax.jit``) has no values to probe with, and one that cannot take a
  single array (a mask for a tree, say) cannot take the probe; either is left
  to the checks of ``update``.
  """
  estimator = optax.with_extra_args_support(estimator)
  params = jnp.zeros(_PROBE_GRADIENTS.shape[1:], jnp.float32)
  try:
    with jax.ensure_compile_time_eval():
      state = estimator.init(params)
      steps = [(None, state)]
      for gradient in _PROBE_GRADIENTS:
        direction, state = estimator.update(jnp.asarray(gradient), state, params)
        steps.append((direction, state))
  except (jax.errors.ConcretizationTypeError, TypeError, ValueError):
    return None
  if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(steps)):
    return None
  return steps


def check_estimator(estimator: optax.GradientTransformation, owner: str) -> None:
  """Raises ``ValueError`` if ``estimator`` breaks the contract on the probe.

  Runs four eager steps on five elements when the bound is built (a few
  milliseconds).
  """
  if estimator.update in _KEEP_THE_CONTRACT:
    return
  steps = _run_probe(estimator)
  if steps is None:
    return
  for direction, state in steps:
    mu = field(state, "mu", owner)
    field(state, "count", owner)
    if direction is None:
      continue
    direction, mu = np.asarray(direction), np.asarray(mu)
    agrees = np.where(mu == 0, direction == 0, direction * mu > 0)
    if not np.all(agrees | np.isnan(direction)):
      raise ValueError(
          f"{owner} bounds estimators whose direction is a positive multiple "
          "of their first moment `mu`; this one's points against `mu` (as "
          "optax.scale_by_adam(nesterov=True) and optax.scale_by_lion do), so "
          "its step size cannot be read off it."
      )


def map_bound_pass(bound_pass, updates, directions, mu, *trees, scalars=(),
                   **static):
  """Applies a bound's per-leaf pass to every leaf that has an update.

  ``bound_pass(direction, mu, *tree_leaves, *scalars, out_dtype=..., **static)``
  returns the leaf's result; ``None`` updates stay ``None``. The update's dtype
  is the gradient's (or the moment's, for an integer gradient).
  """
  def leaf(g, direction, m, *leaves):
    if g is None:
      return None
    return bound_pass(
        direction, m, *leaves, *scalars,
        out_dtype=_numerics.update_dtype(jnp.asarray(g), m), **static)

  return jax.tree.map(
      leaf, updates, directions, mu, *trees, is_leaf=lambda x: x is None)


def learning_rate_at(
    learning_rate: optax.ScalarOrSchedule, count: jax.Array, name: str
) -> jax.Array:
  """The learning rate of the step after ``count`` steps, never below 0.

  A schedule that overshoots below 0 (a hand-written linear decay) would
  otherwise turn the bound around: the bounds scale with the learning rate, so
  a negative one makes an ascent step of the bound's size. A learning rate
  below 0 is a learning rate of 0: no step.
  """
  if callable(learning_rate):
    value = learning_rate(count)
    _validation.check_schedule_value(name, value)
  else:
    value = learning_rate
  return jnp.maximum(jnp.asarray(value, _numerics.scalar_dtype()), 0)
