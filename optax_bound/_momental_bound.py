r"""The momental bound on the per-element step size: what makes Adam AdaMod.

AdaMod (Ding, Ren, Luo & Sun, 2019) caps each element's step size by an
exponential moving average of its own past step sizes:

.. math::

  \eta_t &= \alpha_t \, |d_t| / |m_t| \\
  s_t &= \beta_3 s_{t-1} + (1 - \beta_3) \eta_t, \qquad s_0 = 0 \\
  u_t &= \min(\eta_t, s_t) \, m_t

so that no element takes a step much larger than the ones it took before:
the average starts at 0 and rises over about :math:`1 / (1 - \beta_3)` steps,
which gives every element a warmup of its own. As with the dynamic bound
(:func:`optax_bound.clip_step_size_by_dynamic_bound`),
:func:`clip_step_size_by_momental_bound` wraps the moment estimator, reads
:math:`m_t` from its state and bounds the step size of its direction
:math:`d_t`; the estimator's contract is the same.

The learning rate is inside the average, as in the authors' code: under a
schedule, :math:`s_t` remembers the step sizes of the learning rates before.

Where :math:`m_t = 0` the step is 0 and its step size undefined; there the
average keeps its value. The authors' code averages
:math:`\alpha_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t) / (\sqrt{v_t} + \epsilon)`
there, which for an element that has never had a gradient is
:math:`\alpha_t / \epsilon` in size (1e5 at the defaults), so that element,
once its gradient arrives, steps like Adam with no bound for the next
thousands of steps. Here it starts bounded, as every element did at step 1.
The parameters' trajectories are the same until then (tested against the
authors' package).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_bound import _estimator
from optax_bound import _numerics
from optax_bound import _validation

_OWNER = "optax_bound.clip_step_size_by_momental_bound"


class ClipStepSizeByMomentalBoundState(NamedTuple):
  """State of :func:`clip_step_size_by_momental_bound`.

  The field names are part of the checkpoint format and are kept stable.
  """

  #: The average of the step sizes taken, :math:`s_t`, which bounds the next
  #: one; shaped as the parameters, in the real dtype of each.
  step_size_average: optax.Updates
  #: The state of the wrapped moment estimator, which holds the step
  #: ``count`` and the first moment ``mu``.
  inner_state: optax.OptState


class _LeafStep(NamedTuple):
  """What one leaf's pass computes."""

  update: jax.Array
  step_size_average: jax.Array


@functools.partial(jax.jit, static_argnames=("sign", "out_dtype"))
def _momental_pass(direction, mu, average, learning_rate, b3, one_minus_b3, *,
                   sign, out_dtype):
  """One leaf: the bounded update and the new average of step sizes.

  Jitted on its own, as the moments' pass is: traced once per distinct leaf
  shape and dtype, inlined into a jitted step.
  """
  dtype = _numerics.arithmetic_dtype(direction.dtype, mu.dtype, average.dtype)
  real = _numerics.real_dtype(dtype)
  mu = mu.astype(dtype)
  mu_size = jnp.abs(mu)
  # A learning rate of 0 is a step of 0, also where eps = 0 and an underflowed
  # second moment make the direction infinite (0 * inf would poison the
  # average for good).
  step = _numerics.select(
      jnp.broadcast_to(learning_rate > 0, direction.shape),
      learning_rate.astype(real) * direction.astype(dtype),
      jnp.zeros(direction.shape, dtype),
  )
  # Where mu = 0 the quotient is 0 / 0: keep the average (module docstring).
  undefined = mu_size == 0
  # With eps = 0 and an underflowed second moment, Adam's step size is
  # infinite, and so is the average and the step, as in the authors' code:
  # the momental bound has no finite value to cap it with.
  step_size = jnp.abs(step) / _numerics.select(
      undefined, jnp.ones_like(mu_size), mu_size
  )
  old_average = average.astype(real)
  # In the pass's dtype: traced float64 hyperparameters (inject_hyperparams
  # under jax_enable_x64) must not promote a float32 average.
  b3, one_minus_b3 = (jnp.asarray(x).astype(real) for x in (b3, one_minus_b3))
  new_average = _numerics.select(
      undefined, old_average, b3 * old_average + one_minus_b3 * step_size
  )
  # min(eta, s) * m, from eta and s only: with the estimator's step in the
  # first branch, XLA would keep both it and eta in memory between the loop
  # that writes the average and the one that writes the update.
  bounded = _numerics.select(
      step_size <= new_average, step_size, new_average) * mu
  return _LeafStep(
      update=(sign * bounded).astype(out_dtype),
      step_size_average=new_average.astype(average.dtype),
  )


def clip_step_size_by_momental_bound(
    moment_estimator: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    *,
    b3: jax.typing.ArrayLike = 0.999,
    flip_sign: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""Cap the per-element step size of an Adam-family method by its own past average.

  Wraps ``moment_estimator`` as :func:`clip_step_size_by_dynamic_bound` does,
  but bounds the step size :math:`\eta_t = \alpha_t |d_t| / |m_t|` from above
  only, by :math:`s_t`, an exponential moving average of the element's step
  sizes (AdaMod's momental bound):

  .. math::

    s_t &= \beta_3 s_{t-1} + (1 - \beta_3) \eta_t \\
    u_t &= \min(\eta_t, s_t) \, m_t

  and the returned update is :math:`-u_t`. A learning rate below 0 (a
  schedule that overshoots) is taken as 0: no step.

  Args:
    moment_estimator: The Adam-family transform whose step size is bounded;
      the same contract as in :func:`clip_step_size_by_dynamic_bound` (fields
      ``mu`` and ``count``, a direction that is a positive multiple of ``mu``).
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
    b3: Decay rate of the average of step sizes; it spans about
      ``1 / (1 - b3)`` steps.
    flip_sign: Whether to return the descent update :math:`-u_t` (the default)
      or the step :math:`u_t` itself.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`ClipStepSizeByMomentalBoundState` around the estimator's state.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_bound
    >>> tx = optax_bound.clip_step_size_by_momental_bound(
    ...     optax_bound.scale_by_adam(), learning_rate=0.1, b3=0.9)
    >>> state = tx.init(jnp.zeros(()))
    >>> # On a constant gradient Adam's updates are all -0.1 (lr-sized). The
    >>> # average of step sizes starts at 0, so the first steps are cut, and
    >>> # grow back towards Adam's over about 1 / (1 - b3) = 10 steps.
    >>> for _ in range(5):
    ...   updates, state = tx.update(jnp.ones(()), state)
    ...   print(f"{updates:.4f}")
    -0.0100
    -0.0271
    -0.0448
    -0.0612
    -0.0755

  References:
    Ding, Ren, Luo & Sun, `An Adaptive and Momental Bound Method for
    Stochastic Learning <https://arxiv.org/abs/1910.12249>`_, 2019
  """
  _validation.check_hyperparameter(
      "learning_rate", learning_rate, _validation.FINITE_NON_NEGATIVE,
      schedule=True,
  )
  _validation.check_hyperparameter("b3", b3, _validation.DECAY_RATE)
  _estimator.check_estimator(moment_estimator, _OWNER)
  moment_estimator = optax.with_extra_args_support(moment_estimator)
  sign = -1 if flip_sign else 1

  def init_fn(params):
    _validation.check_inexact_leaves(params)
    return ClipStepSizeByMomentalBoundState(
        step_size_average=jax.tree.map(
            lambda p: jnp.zeros_like(
                p, dtype=_numerics.real_dtype(jnp.result_type(p))),
            params,
        ),
        inner_state=moment_estimator.init(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    _validation.check_state(_OWNER, state, ClipStepSizeByMomentalBoundState)
    _validation.check_same_structure(updates, state.step_size_average)
    directions, inner_state = moment_estimator.update(
        updates, state.inner_state, params, **extra_args
    )
    lr = _estimator.learning_rate_at(
        learning_rate,
        _estimator.field(state.inner_state, "count", _OWNER),
        "learning_rate",
    )
    steps = _estimator.map_bound_pass(
        _momental_pass, updates, directions,
        _estimator.field(inner_state, "mu", _OWNER), state.step_size_average,
        scalars=(lr, b3, 1 - b3), sign=sign,
    )
    updates, step_size_average = _numerics.unzip(steps, _LeafStep)
    return updates, ClipStepSizeByMomentalBoundState(
        step_size_average=step_size_average, inner_state=inner_state
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
