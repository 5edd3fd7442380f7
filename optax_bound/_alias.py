r"""AdaBound, AMSBound and AdaBoundW: the public blocks chained as the authors run them.

Each constructor is an ``optax.chain`` of public transforms and nothing else:

* ``adabound``  = L2 decay into the gradient, then
  :func:`~optax_bound.clip_step_size_by_dynamic_bound` around
  :func:`~optax_bound.scale_by_adam`;
* ``amsbound``  = the same around :func:`~optax_bound.scale_by_amsgrad`;
* ``adaboundw`` = the bounded step, then the decoupled decay
  :math:`\lambda p` (or :math:`\lambda \alpha_t p`), then the sign flip.

``form='paper'`` swaps the reference for the paper's Algorithm 2: no bias
correction in the estimator and the bounded step divided by :math:`\sqrt t`
(``optax.scale_by_schedule`` after the clip).
"""

from typing import Any
from typing import Callable
from typing import Literal
from typing import Optional
from typing import Union

import jax
import jax.numpy as jnp
import optax

from optax_bound import _dynamic_bound
from optax_bound import _moments
from optax_bound import _validation

Form = Literal["reference", "paper"]
FORMS = ("reference", "paper")
MaskOrFn = Optional[Union[Any, Callable[[optax.Params], Any]]]


def _inverse_sqrt_step(count: jax.Array) -> jax.Array:
  """The paper's :math:`1 / \\sqrt{t}`, with ``count`` before the increment."""
  # In float: a saturated int32 count + 1 would wrap to -2^31.
  return jax.lax.rsqrt(
      count.astype(jax.dtypes.canonicalize_dtype(jnp.float64)) + 1
  )


def _add_decayed_weights(
    weight_decay: Any, mask: MaskOrFn
) -> optax.GradientTransformation:
  """``u + weight_decay * p``; no work, and no params needed, for a literal 0."""
  _validation.check_finite_non_negative("weight_decay", weight_decay)
  if _validation.is_concrete_zero(weight_decay):
    return optax.identity()
  decay = optax.add_decayed_weights(weight_decay, mask)

  def update_fn(updates, state, params=None):
    # Before Optax's tree map, whose mismatch error names neither tree.
    if params is not None:
      _validation.check_same_structure(updates, params)
    return decay.update(updates, state, params)

  return optax.GradientTransformation(decay.init, update_fn)


def _bounded_step(
    moment_estimator: optax.GradientTransformation,
    *,
    learning_rate: optax.ScalarOrSchedule,
    final_lr: jax.typing.ArrayLike,
    gamma: jax.typing.ArrayLike,
    bound_fn: _dynamic_bound.BoundFn | None,
    final_lr_coupling: _dynamic_bound.FinalLrCoupling,
    form: Form,
    flip_sign: bool,
) -> tuple[optax.GradientTransformation, ...]:
  """The bounded step, and in the paper's form its division by sqrt(t)."""
  clip = _dynamic_bound.clip_step_size_by_dynamic_bound(
      moment_estimator,
      learning_rate=learning_rate,
      final_lr=final_lr,
      gamma=gamma,
      bound_fn=bound_fn,
      final_lr_coupling=final_lr_coupling,
      flip_sign=flip_sign,
  )
  if form == "paper":
    return clip, optax.scale_by_schedule(_inverse_sqrt_step)
  return (clip,)


def _moment_kwargs(b1, b2, eps, mu_dtype, form) -> dict[str, Any]:
  _validation.check_choice("form", form, FORMS)
  return dict(
      b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype,
      bias_correction=form == "reference",
  )


def adabound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: jax.typing.ArrayLike = 0.1,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    gamma: jax.typing.ArrayLike = 1e-3,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    mask: MaskOrFn = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
    bound_fn: _dynamic_bound.BoundFn | None = None,
    final_lr_coupling: _dynamic_bound.FinalLrCoupling = "initial",
    form: Form = "reference",
) -> optax.GradientTransformationExtraArgs:
  r"""AdaBound: Adam whose per-element step size is clipped into a dynamic bound.

  The bounds start wide, so training starts like Adam, and converge to
  ``final_lr``, so it ends like SGD with momentum. Per step, with :math:`t`
  counted from 1 and :math:`\alpha_t` the learning rate:

  .. math::

    g_t &\leftarrow g_t + \lambda p_{t-1} \\
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2 \\
    \eta_t &= \alpha_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
              \cdot \frac{1}{\sqrt{v_t} + \epsilon} \\
    \eta^*_t &= \eta^* \alpha_t / \alpha_0 \\
    p_t &= p_{t-1} - \mathrm{clip}\left(\eta_t,\
           \eta^*_t \left(1 - \tfrac{1}{\gamma t + 1}\right),\
           \eta^*_t \left(1 + \tfrac{1}{\gamma t}\right)\right) m_t

  This is the authors' code to float64 round-off (tested against it).

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
      Adam's learning rate at the start.
    final_lr: The learning rate SGD ends with; it follows the learning rate
      (``final_lr * lr_t / lr_0``) unless ``final_lr_coupling`` says otherwise.
    b1: Exponential decay rate to track the first moment of past gradients.
    b2: Exponential decay rate to track the second moment of past gradients.
    gamma: The convergence speed of the bounds.
    eps: A small constant added to the square root of the raw second moment.
    weight_decay: L2 penalty added to the gradient, as the reference's
      ``weight_decay`` (see :func:`adaboundw` for decoupled decay).
    mask: A tree with same structure as (or a prefix of) the params PyTree, or
      a Callable that returns such a pytree given the params/updates. The leaves
      should be booleans, `True` for leaves/subtrees you want to apply the
      weight decay to, and `False` for those you want to skip.
    mu_dtype: Optional `dtype` to be used for the first order accumulator; if
      `None` then the `dtype` is inferred from `params` and `updates`.
    bound_fn: ``bound_fn(t, final_lr, gamma) -> (lower, upper)``; default
      :func:`optax_bound.reference_bounds`.
    final_lr_coupling: ``'initial'`` (reference), ``'peak'`` or ``'fixed'``;
      see :func:`optax_bound.coupled_final_lr`.
    form: ``'reference'`` (the authors' code) or ``'paper'`` (Algorithm 2 of
      the paper: no bias correction, bounded step divided by :math:`\sqrt t`).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_bound
    >>> def f(x): return jnp.sum(x ** 2)
    >>> solver = optax_bound.adabound(learning_rate=0.1, final_lr=0.1)
    >>> params = jnp.array([1., 2., 3.])
    >>> opt_state = solver.init(params)
    >>> for _ in range(5):
    ...   grad = jax.grad(f)(params)
    ...   updates, opt_state = solver.update(grad, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print('Objective function: {:.2E}'.format(f(params)))
    Objective function: 1.28E+01
    Objective function: 1.17E+01
    Objective function: 1.07E+01
    Objective function: 9.69E+00
    Objective function: 8.78E+00

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019
  """
  return optax.chain(
      _add_decayed_weights(weight_decay, mask),
      *_bounded_step(
          _moments.scale_by_adam(**_moment_kwargs(b1, b2, eps, mu_dtype, form)),
          learning_rate=learning_rate,
          final_lr=final_lr,
          gamma=gamma,
          bound_fn=bound_fn,
          final_lr_coupling=final_lr_coupling,
          form=form,
          flip_sign=True,
      ),
  )


def amsbound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: jax.typing.ArrayLike = 0.1,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    gamma: jax.typing.ArrayLike = 1e-3,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    mask: MaskOrFn = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
    bound_fn: _dynamic_bound.BoundFn | None = None,
    final_lr_coupling: _dynamic_bound.FinalLrCoupling = "initial",
    form: Form = "reference",
) -> optax.GradientTransformationExtraArgs:
  r"""AMSBound: AMSGrad whose per-element step size is clipped into a dynamic bound.

  As :func:`adabound`, with the running maximum of the raw second moment in
  the denominator (:func:`optax_bound.scale_by_amsgrad`):

  .. math::

    \hat v_t &= \max(\hat v_{t-1}, v_t) \\
    \eta_t &= \alpha_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
              \cdot \frac{1}{\sqrt{\hat v_t} + \epsilon}

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
      Adam's learning rate at the start.
    final_lr: The learning rate SGD ends with; it follows the learning rate
      (``final_lr * lr_t / lr_0``) unless ``final_lr_coupling`` says otherwise.
    b1: Exponential decay rate to track the first moment of past gradients.
    b2: Exponential decay rate to track the second moment of past gradients.
    gamma: The convergence speed of the bounds.
    eps: A small constant added to the square root of the running maximum.
    weight_decay: L2 penalty added to the gradient, as the reference's
      ``weight_decay``.
    mask: A tree with same structure as (or a prefix of) the params PyTree, or
      a Callable that returns such a pytree given the params/updates. The leaves
      should be booleans, `True` for leaves/subtrees you want to apply the
      weight decay to, and `False` for those you want to skip.
    mu_dtype: Optional `dtype` to be used for the first order accumulator; if
      `None` then the `dtype` is inferred from `params` and `updates`.
    bound_fn: ``bound_fn(t, final_lr, gamma) -> (lower, upper)``; default
      :func:`optax_bound.reference_bounds`.
    final_lr_coupling: ``'initial'`` (reference), ``'peak'`` or ``'fixed'``;
      see :func:`optax_bound.coupled_final_lr`.
    form: ``'reference'`` (the authors' code) or ``'paper'`` (Algorithm 2 of
      the paper: no bias correction, bounded step divided by :math:`\sqrt t`).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_bound
    >>> def f(x): return jnp.sum(x ** 2)
    >>> solver = optax_bound.amsbound(learning_rate=0.1, final_lr=0.1)
    >>> params = jnp.array([1., 2., 3.])
    >>> opt_state = solver.init(params)
    >>> for _ in range(5):
    ...   grad = jax.grad(f)(params)
    ...   updates, opt_state = solver.update(grad, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print('Objective function: {:.2E}'.format(f(params)))
    Objective function: 1.28E+01
    Objective function: 1.17E+01
    Objective function: 1.07E+01
    Objective function: 9.69E+00
    Objective function: 8.78E+00

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019

    Reddi et al., `On the Convergence of Adam and Beyond
    <https://openreview.net/forum?id=ryQu7f-RZ>`_, ICLR 2018
  """
  return optax.chain(
      _add_decayed_weights(weight_decay, mask),
      *_bounded_step(
          _moments.scale_by_amsgrad(
              **_moment_kwargs(b1, b2, eps, mu_dtype, form)
          ),
          learning_rate=learning_rate,
          final_lr=final_lr,
          gamma=gamma,
          bound_fn=bound_fn,
          final_lr_coupling=final_lr_coupling,
          form=form,
          flip_sign=True,
      ),
  )


def adaboundw(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: jax.typing.ArrayLike = 0.1,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    gamma: jax.typing.ArrayLike = 1e-3,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    mask: MaskOrFn = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
    bound_fn: _dynamic_bound.BoundFn | None = None,
    final_lr_coupling: _dynamic_bound.FinalLrCoupling = "initial",
    form: Form = "reference",
    lr_scaled_decay: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaBoundW: AdaBound with decoupled weight decay, as in the authors' repository.

  The bounded step of :func:`adabound` without the L2 term, and the decay
  subtracted from the parameters directly:

  .. math::

    p_t = p_{t-1} - \mathrm{clip}(\eta_t, \eta_l(t), \eta_u(t)) \, m_t
          - \lambda p_{t-1}

  The authors' AdaBoundW does not scale the decay by the learning rate;
  ``lr_scaled_decay=True`` subtracts :math:`\lambda \alpha_t p_{t-1}` instead,
  as AdamW does (and ``pytorch_optimizer``'s default).

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
      Adam's learning rate at the start.
    final_lr: The learning rate SGD ends with; it follows the learning rate
      (``final_lr * lr_t / lr_0``) unless ``final_lr_coupling`` says otherwise.
    b1: Exponential decay rate to track the first moment of past gradients.
    b2: Exponential decay rate to track the second moment of past gradients.
    gamma: The convergence speed of the bounds.
    eps: A small constant added to the square root of the raw second moment.
    weight_decay: Strength of the decoupled weight decay.
    mask: A tree with same structure as (or a prefix of) the params PyTree, or
      a Callable that returns such a pytree given the params/updates. The leaves
      should be booleans, `True` for leaves/subtrees you want to apply the
      weight decay to, and `False` for those you want to skip.
    mu_dtype: Optional `dtype` to be used for the first order accumulator; if
      `None` then the `dtype` is inferred from `params` and `updates`.
    bound_fn: ``bound_fn(t, final_lr, gamma) -> (lower, upper)``; default
      :func:`optax_bound.reference_bounds`.
    final_lr_coupling: ``'initial'`` (reference), ``'peak'`` or ``'fixed'``;
      see :func:`optax_bound.coupled_final_lr`.
    form: ``'reference'`` (the authors' code) or ``'paper'`` (Algorithm 2 of
      the paper: no bias correction, bounded step divided by :math:`\sqrt t`).
    lr_scaled_decay: Whether the decay is multiplied by the learning rate.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_bound
    >>> def f(x): return jnp.sum(x ** 2)
    >>> solver = optax_bound.adaboundw(
    ...     learning_rate=0.1, final_lr=0.1, weight_decay=1e-2)
    >>> params = jnp.array([1., 2., 3.])
    >>> opt_state = solver.init(params)
    >>> for _ in range(5):
    ...   grad = jax.grad(f)(params)
    ...   updates, opt_state = solver.update(grad, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print('Objective function: {:.2E}'.format(f(params)))
    Objective function: 1.26E+01
    Objective function: 1.12E+01
    Objective function: 9.99E+00
    Objective function: 8.86E+00
    Objective function: 7.82E+00

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019

    Loshchilov & Hutter, `Decoupled Weight Decay Regularization
    <https://openreview.net/forum?id=Bkg6RiCqY7>`_, ICLR 2019
  """
  _validation.check_finite_non_negative("weight_decay", weight_decay)
  decay_rate: optax.ScalarOrSchedule
  if not lr_scaled_decay:
    decay_rate = weight_decay
  elif callable(learning_rate):
    decay_rate = lambda count: weight_decay * learning_rate(count)
  else:
    decay_rate = weight_decay * learning_rate
  return optax.chain(
      *_bounded_step(
          _moments.scale_by_adam(**_moment_kwargs(b1, b2, eps, mu_dtype, form)),
          learning_rate=learning_rate,
          final_lr=final_lr,
          gamma=gamma,
          bound_fn=bound_fn,
          final_lr_coupling=final_lr_coupling,
          form=form,
          flip_sign=False,
      ),
      _add_decayed_weights(decay_rate, mask),
      optax.scale(-1.0),
  )
