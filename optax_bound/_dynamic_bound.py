r"""The dynamic bound on the per-element step size: what makes Adam AdaBound.

Design. With :math:`\alpha_t` the learning rate, AdaBound's step is
:math:`\mathrm{clip}(\alpha_t d_t / m_t, \eta_l(t), \eta_u(t)) \, m_t`: the clip
must see both the first moment :math:`m_t` and the step size
:math:`\alpha_t d_t / m_t` of the moment estimator. So
:func:`clip_step_size_by_dynamic_bound` *wraps* the moment estimator: it runs
it, takes its direction :math:`d_t`, reads :math:`m_t` from the field ``mu``
of its state, and returns the bounded update. Nothing is
computed twice and no buffer is added: under ``jax.jit`` the estimator and the
clip fuse into one pass over each parameter.

The wrapped estimator must return a direction that is a positive per-element
multiple of its ``mu`` (the contract of ``optax_bound._estimator``, checked
when the bound is built). The clip then never divides by :math:`m_t`: with
:math:`s = |\alpha_t d_t|`, the bounded step is

.. math::

  u_t = \operatorname{sign}(m_t) \cdot
        \mathrm{clip}\left(s,\ \eta_l(t) |m_t|,\ \eta_u(t) |m_t|\right),

which equals :math:`\mathrm{clip}(s / |m_t|, \eta_l, \eta_u) \, m_t`. Since
:math:`\alpha_t d_t` already has the phase of :math:`m_t`, :math:`u_t` is one
of :math:`\alpha_t d_t`, :math:`\eta_l(t) m_t` and :math:`\eta_u(t) m_t`, and
two comparisons of magnitudes pick it, for real and complex parameters alike:
no sign to copy, no elementwise ``min`` or ``max``, and no division. The
scalars of the step (the learning rate, the bounds clamped into
:math:`0 \le \eta_l \le \eta_u \le` the dtype's largest value) are computed
once per step and cast once per dtype, not once per leaf.

Clamping the upper bound to a finite number is what keeps meta-gradients
finite: an infinite upper bound (``gamma = 0``, or a ``bound_fn`` that opens
the band) never wins the comparison, yet its product with :math:`m_t` would
enter the backward pass as :math:`0 \cdot \infty`.

The learning rate at step ``t`` is ``learning_rate(count)`` with the count
before it is incremented (Optax's convention, and what a PyTorch scheduler
gives the reference).
"""

import functools
from typing import Callable
from typing import Literal
from typing import NamedTuple
from typing import get_args

import jax
import jax.numpy as jnp
import optax

from optax_bound import _estimator
from optax_bound import _numerics
from optax_bound import _validation

BoundFn = Callable[
    [jax.Array, jax.Array, jax.typing.ArrayLike], tuple[jax.Array, jax.Array]
]
"""``bound_fn(t, final_lr, gamma) -> (lower, upper)``, with ``t`` counted from 1."""

FinalLrCoupling = Literal["initial", "peak", "fixed"]
FINAL_LR_COUPLINGS: tuple[str, ...] = get_args(FinalLrCoupling)

_OWNER = "optax_bound.clip_step_size_by_dynamic_bound"


def reference_bounds(
    t: jax.Array,
    final_lr: jax.Array,
    gamma: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array]:
  r"""The bounds of the authors' code, which converge to ``final_lr`` like 1/t.

  .. math::

    \eta_l(t) &= \eta^* \left(1 - \frac{1}{\gamma t + 1}\right) \\
    \eta_u(t) &= \eta^* \left(1 + \frac{1}{\gamma t}\right)

  The paper's experiments use :math:`0.1 \mp 0.1 / ((1 - \beta_2) t + ...)`,
  which is this function with ``final_lr=0.1`` and ``gamma=1 - b2``.
  ``gamma=0`` switches the bound off (lower 0, upper infinite: Adam), also where
  ``final_lr`` is 0.

  Args:
    t: The step number, counted from 1.
    final_lr: The learning rate :math:`\eta^*` both bounds converge to.
    gamma: How fast the bounds close on ``final_lr``: within a factor of 2
      of it at ``t = 1 / gamma`` (``final_lr / 2`` and ``2 * final_lr``),
      within 10% at ``t = 10 / gamma``.

  Returns:
    The pair ``(lower, upper)``.

  Examples:
    >>> import jax.numpy as jnp, optax_bound
    >>> lower, upper = optax_bound.reference_bounds(jnp.array(1000.), 0.1, 1e-3)
    >>> print(f"{lower:.3f} {upper:.3f}")
    0.050 0.200

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019 (Section 4 and
    the authors' code, `Luolc/AdaBound <https://github.com/Luolc/AdaBound>`_)
  """
  gamma_t = gamma * t
  lower = final_lr * (1 - 1 / (gamma_t + 1))
  positive = gamma_t > 0
  upper = jnp.where(
      positive, final_lr * (1 + 1 / jnp.where(positive, gamma_t, 1)), jnp.inf
  )
  return lower, upper


class ClipStepSizeByDynamicBoundState(NamedTuple):
  """State of :func:`clip_step_size_by_dynamic_bound`.

  The step count is the wrapped estimator's ``count``, not a copy of it. The
  field names are part of the checkpoint format and are kept stable.
  """

  #: The learning rate at step 0 (``lr_0``), a scalar (shape ``()``) of the
  #: default float dtype, as are the three fields below.
  initial_lr: jax.typing.ArrayLike
  #: The largest learning rate used so far.
  peak_lr: jax.typing.ArrayLike
  #: The lower end of the band the last step's sizes were clipped into,
  #: after clamping to ``0 <= lower <= upper``; 0 before any step.
  lower: jax.typing.ArrayLike
  #: The upper end of that band, clamped to the dtype's largest value (an
  #: open bound is stored as that value, so that the state stays finite);
  #: that value before any step.
  upper: jax.typing.ArrayLike
  #: The state of the wrapped moment estimator, which holds the step
  #: ``count`` and the first moment ``mu``.
  inner_state: optax.OptState


def coupled_final_lr(
    final_lr: jax.typing.ArrayLike,
    learning_rate: jax.Array,
    initial_lr: jax.Array,
    peak_lr: jax.Array,
    coupling: FinalLrCoupling,
) -> jax.Array:
  r"""The final learning rate the bounds converge to at this step.

  The reference has PyTorch schedulers move its bounds with the learning rate:

  .. math::

    \eta^*_t = \eta^* \, \alpha_t / \alpha_0

  With :math:`\alpha_0 = 0` (a warmup from zero) that ratio does not exist; the
  learning rate is then measured against its running peak
  :math:`\max_{s \le t} \alpha_s`, which for a warmup followed by a decay is
  what the user means.

  Args:
    final_lr: The final learning rate at the reference learning rate.
    learning_rate: The learning rate of this step.
    initial_lr: The learning rate of step 0.
    peak_lr: The largest learning rate up to and including this step.
    coupling: ``'initial'`` (the reference: relative to ``lr_0``, or to the peak
      where ``lr_0 == 0``), ``'peak'`` (relative to the running peak, so that
      the bounds follow a decay but not a warmup: for a warmup that starts
      above 0, where ``'initial'`` would multiply ``final_lr`` by the warmup's
      whole rise) or ``'fixed'`` (``final_lr`` as given, whatever the learning
      rate).

  Returns:
    The coupled final learning rate; 0 whenever the learning rate is 0 (unless
    ``coupling == 'fixed'``), never a division by zero.

  Examples:
    >>> import jax.numpy as jnp, optax_bound
    >>> lr_0, lr_t = jnp.float32(1e-3), jnp.float32(1e-4)  # after a 10x decay
    >>> for coupling in ("initial", "peak", "fixed"):
    ...   fl = optax_bound.coupled_final_lr(0.1, lr_t, lr_0, lr_0, coupling)
    ...   print(coupling, f"{fl:.3f}")
    initial 0.010
    peak 0.010
    fixed 0.100

  References:
    The authors' code, `Luolc/AdaBound <https://github.com/Luolc/AdaBound>`_
    ("lr_scheduler cannot affect final_lr, this is a workaround")
  """
  _validation.check_choice("coupling", coupling, FINAL_LR_COUPLINGS)
  final_lr, learning_rate, initial_lr, peak_lr = _numerics.cast_all(
      _numerics.scalar_dtype(), final_lr, learning_rate, initial_lr, peak_lr)
  if coupling == "fixed":
    return final_lr
  if coupling == "initial":
    reference = jnp.where(initial_lr > 0, initial_lr, peak_lr)
  else:
    reference = peak_lr
  # A zero reference means every learning rate so far, this one too, was 0.
  return final_lr * learning_rate / jnp.where(reference > 0, reference, 1)


def _clamped_bounds(lower, upper):
  """The bounds as the step applies them: ``0 <= lower <= upper < inf``, or NaN.

  A lower bound below 0 never binds, one above the upper bound gives way to
  it, and a negative upper bound (a negative ``final_lr`` from a schedule, or
  a custom ``bound_fn``) is 0, not an ascent. A NaN bound (NaN
  hyperparameters) makes both NaN, and so the step NaN, as through a clip.
  """
  lower, upper = _numerics.cast_all(_numerics.scalar_dtype(), lower, upper)
  invalid = jnp.isnan(lower) | jnp.isnan(upper)
  nan = jnp.full_like(upper, jnp.nan)
  # Finite: an open bound is the dtype's largest value.
  upper = jax.lax.select(
      invalid, nan, jnp.clip(upper, 0, jnp.finfo(upper.dtype).max))
  lower = jax.lax.select(invalid, nan, jnp.minimum(jnp.maximum(lower, 0), upper))
  return lower, upper


@functools.partial(jax.jit, static_argnames=("sign", "out_dtype"))
def _bounded_pass(direction, mu, learning_rate, lower, upper, *, sign, out_dtype):
  """One leaf of the bounded update; see the module docstring.

  Jitted on its own, as the moments' pass is: traced once per distinct leaf
  shape and dtype, inlined into a jitted step.
  """
  dtype = _numerics.arithmetic_dtype(direction.dtype, mu.dtype)
  real = _numerics.real_dtype(dtype)
  mu = mu.astype(dtype)
  # Real factors of a complex step are cast to its dtype, as standard
  # promotion would, so that the pass runs under strict promotion too.
  step = learning_rate.astype(dtype) * direction.astype(dtype)
  lower_step = lower.astype(dtype) * mu
  # Finite after the cast (float32's largest value is inf in bfloat16): an
  # infinite upper bound never wins a comparison, but its product with mu
  # would enter the backward pass as 0 * inf.
  upper_step = jnp.minimum(
      upper.astype(real), jnp.finfo(real).max).astype(dtype) * mu
  size = jnp.abs(step)
  # A comparison with NaN is False: a NaN step (0 * inf at a learning rate of
  # 0, or 0 / 0 where eps = 0 and mu = 0) takes the upper bound's step, which
  # is 0 there; NaN bounds, or a NaN mu, make every candidate NaN.
  step = _numerics.select(size <= jnp.abs(upper_step), step, upper_step)
  step = _numerics.select(size < jnp.abs(lower_step), lower_step, step)
  return (sign * step).astype(out_dtype)


def clip_step_size_by_dynamic_bound(
    moment_estimator: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    *,
    final_lr: optax.ScalarOrSchedule = 0.1,
    gamma: jax.typing.ArrayLike = 1e-3,
    bound_fn: BoundFn | None = None,
    final_lr_coupling: FinalLrCoupling = "initial",
    base_lr: jax.typing.ArrayLike | None = None,
    flip_sign: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""Clip the per-element step size of an Adam-family method into a dynamic bound.

  Wraps ``moment_estimator``, whose direction :math:`d_t` must be a positive
  per-element multiple of the first moment :math:`m_t` in its state's ``mu``,
  and whose state counts the steps in ``count``. With :math:`\alpha_t` the
  learning rate and :math:`\eta^*_t` the coupled final learning rate:

  .. math::

    \eta_t &= \alpha_t \, |d_t| / |m_t| \\
    \eta^*_t &= \eta^* \alpha_t / \alpha_0 \\
    u_t &= \mathrm{clip}(\eta_t, \eta_l(t), \eta_u(t)) \, m_t

  where :math:`\eta^*` is ``final_lr``, :math:`\alpha_0` the learning rate it
  was set for (see :func:`coupled_final_lr`) and :math:`\eta_l(t)`,
  :math:`\eta_u(t)` the bounds ``bound_fn`` gives for :math:`\eta^*_t`. The
  returned update is :math:`-u_t`, so the method starts like the wrapped
  estimator (wide bounds) and ends as :math:`\eta^*_t m_t` (bounds closed):
  SGD with momentum dampened by :math:`\beta_1`, if :math:`m_t` is Adam's
  average (see ``final_lr`` in :func:`adabound`).

  :math:`\eta_t` is never formed as a quotient, which would be 0 / 0 where
  :math:`m_t = 0`. With :math:`s = |\alpha_t d_t|`, the bounded step is

  .. math::

    u_t = \operatorname{sign}(m_t) \cdot
          \mathrm{clip}(s, \eta_l(t) |m_t|, \eta_u(t) |m_t|)

  which equals :math:`\mathrm{clip}(s / |m_t|, \eta_l(t), \eta_u(t)) \, m_t`
  wherever :math:`m_t \neq 0`, and 0 where :math:`m_t = 0`: two comparisons of
  magnitudes pick one of :math:`\alpha_t d_t`, :math:`\eta_l(t) m_t` and
  :math:`\eta_u(t) m_t`, for real and complex parameters alike. A learning
  rate below 0 (a schedule that overshoots) is taken as 0: no step.

  Args:
    moment_estimator: The Adam-family transform whose step size is bounded.
      Its state must have fields ``mu`` and ``count``, and its direction must
      be a positive per-element multiple of ``mu``. Known to hold this:
      :func:`optax_bound.scale_by_adam`, :func:`optax_bound.scale_by_amsgrad`,
      ``optax.scale_by_adam()``, ``optax.scale_by_amsgrad()``,
      ``optax.scale_by_belief()`` (AdaBelief), ``optax.scale_by_yogi()``,
      ``optax.scale_by_radam()``, ``optax.scale_by_adamax()``. Known to break
      it, and rejected here: ``optax.scale_by_adam(nesterov=True)``,
      ``optax.scale_by_lion()``. The contract is checked by a short probe run
      when the bound is built.
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
    final_lr: The learning rate both bounds converge to, a number or a
      schedule of the step count: once they have closed, the update is
      ``final_lr * mu`` (for Adam's ``mu``, SGD with dampened momentum; see
      ``final_lr`` in :func:`adabound` for PyTorch's and Optax's equivalent).
    gamma: How fast the band closes: with the reference's bounds, they are
      within a factor of 2 of ``final_lr`` after about ``1 / gamma`` steps
      (at ``t = 1 / gamma`` they are ``final_lr / 2`` and ``2 * final_lr``)
      and within 10% after ``10 / gamma``; 0 never closes it.
    bound_fn: ``bound_fn(t, final_lr, gamma) -> (lower, upper)``, with ``t``
      counted from 1; default :func:`optax_bound.reference_bounds`. Under
      ``optax.inject_hyperparams``, name it in ``static_args``.
    final_lr_coupling: How ``final_lr`` follows the learning rate; see
      :func:`optax_bound.coupled_final_lr`. ``'initial'`` is the reference.
    base_lr: The learning rate the reference's PyTorch optimizer was built
      with (the authors' ``base_lr``). When given, the bounds follow
      ``final_lr * lr_t / base_lr`` at every step, exactly as the reference
      does under any PyTorch scheduler: under a ``LambdaLR`` warmup,
      ``base_lr`` is the top of the warmup and the bounds rise with it. It is
      an argument, never read from the state, so a resumed state cannot
      change it. Goes with ``final_lr_coupling='initial'`` only.
    flip_sign: Whether to return the descent update :math:`-u_t` (the default,
      like ``optax.scale_by_learning_rate``) or the step :math:`u_t` itself.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`ClipStepSizeByDynamicBoundState` around the estimator's state.

  Examples:
    >>> import jax.numpy as jnp, optax_bound
    >>> grads = jnp.array([2.0, 10.0, 100.0])
    >>> # Adam's first step sizes, lr |d| / |m|, are 1 / |g| here: 0.5, 0.1 and
    >>> # 0.01. gamma = 0 leaves them open; at t = 1 with gamma = 1 the band
    >>> # is [0.05, 0.2]: the first is cut to the upper bound, the third
    >>> # raised to the lower bound, and the update is step size * mu.
    >>> for gamma in (0.0, 1.0):
    ...   tx = optax_bound.clip_step_size_by_dynamic_bound(
    ...       optax_bound.scale_by_adam(), learning_rate=0.1, final_lr=0.1,
    ...       gamma=gamma)
    ...   updates, state = tx.update(grads, tx.init(grads))
    ...   print(" ".join(f"{u:.3f}" for u in updates))
    -0.100 -0.100 -0.100
    -0.040 -0.100 -0.500

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019
  """
  return build_dynamic_bound(
      moment_estimator,
      learning_rate=learning_rate,
      final_lr=final_lr,
      gamma=gamma,
      bound_fn=bound_fn,
      final_lr_coupling=final_lr_coupling,
      base_lr=base_lr,
      flip_sign=flip_sign,
  )


def _bounds_of(bound_fn, t, final_lr, gamma):
  """``bound_fn``'s pair of scalar bounds, or an error that names ``bound_fn``.

  Checked where it is traced (shapes are static): per-element bounds would
  broadcast against every leaf and change the shape of the state's band, and
  a scan over steps would then fail far from the cause.
  """
  result = bound_fn(t, final_lr, gamma)
  if not isinstance(result, (tuple, list)) or len(result) != 2:
    got = (f"a {type(result).__name__} of {len(result)}"
           if isinstance(result, (tuple, list))
           else f"a single value of shape {jnp.shape(result)}")
    raise TypeError(
        "`bound_fn(t, final_lr, gamma)` must return the pair (lower, upper); "
        f"it returned {got}."
    )
  for name, bound in zip(("lower", "upper"), result, strict=True):
    dtype = jnp.result_type(bound)
    if jnp.shape(bound) != () or not jnp.issubdtype(dtype, jnp.number) or (
        jnp.issubdtype(dtype, jnp.complexfloating)):
      raise ValueError(
          "`bound_fn(t, final_lr, gamma)` must return two real scalars, one "
          f"bound for every element; its {name} bound has shape "
          f"{jnp.shape(bound)} and dtype {dtype}."
      )
  return result


def build_dynamic_bound(
    moment_estimator: optax.GradientTransformation,
    *,
    learning_rate: optax.ScalarOrSchedule,
    final_lr: optax.ScalarOrSchedule,
    gamma: jax.typing.ArrayLike,
    bound_fn: BoundFn | None,
    final_lr_coupling: FinalLrCoupling,
    base_lr: jax.typing.ArrayLike | None,
    flip_sign: bool,
    step_size_scale: Callable[[jax.Array], jax.Array] | None = None,
) -> optax.GradientTransformationExtraArgs:
  r""":func:`clip_step_size_by_dynamic_bound`, with a scale of the bounded step.

  ``step_size_scale(count)``, a positive scalar of the count before the
  increment, multiplies the bounded step: the paper's Algorithm 2 divides it
  by :math:`\sqrt t`. It multiplies the learning rate and both bounds before
  the clip, which is the same step, so that the band the state keeps is the
  one the step sizes :math:`|u_t| / |m_t|` were clipped into.
  """
  _validation.check_hyperparameter(
      "learning_rate", learning_rate, _validation.FINITE_NON_NEGATIVE,
      schedule=True,
  )
  _validation.check_hyperparameter(
      "final_lr", final_lr, _validation.FINITE_NON_NEGATIVE, schedule=True
  )
  _validation.check_hyperparameter("gamma", gamma, _validation.NON_NEGATIVE)
  _validation.check_hyperparameter(
      "base_lr", base_lr, _validation.FINITE_POSITIVE, optional=True)
  _validation.check_choice(
      "final_lr_coupling", final_lr_coupling, FINAL_LR_COUPLINGS
  )
  if base_lr is not None and final_lr_coupling != "initial":
    raise ValueError(
        "`base_lr` sets the learning rate the bounds are relative to, as the "
        "reference's final_lr * lr_t / base_lr; "
        f"final_lr_coupling={final_lr_coupling!r} would ignore it. Pass one "
        "or the other."
    )
  _estimator.check_estimator(moment_estimator, _OWNER)
  bounds = reference_bounds if bound_fn is None else bound_fn
  moment_estimator = optax.with_extra_args_support(moment_estimator)
  sign = -1 if flip_sign else 1
  scalar = _numerics.scalar_dtype

  def init_fn(params):
    _validation.check_inexact_leaves(params)
    initial_lr = _estimator.learning_rate_at(
        learning_rate, jnp.zeros([], jnp.int32), "learning_rate"
    )
    return ClipStepSizeByDynamicBoundState(
        # Distinct buffers, also from a learning rate passed as an array, so
        # that a step that donates its state donates each buffer once.
        initial_lr=jnp.array(initial_lr, copy=True),
        peak_lr=jnp.array(initial_lr, copy=True),
        lower=jnp.zeros([], scalar()),
        upper=jnp.full([], jnp.finfo(scalar()).max, scalar()),
        inner_state=moment_estimator.init(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    _validation.check_state(_OWNER, state, ClipStepSizeByDynamicBoundState)
    mu = _estimator.field(state.inner_state, "mu", _OWNER)
    if not isinstance(mu, optax.MaskedNode):
      _validation.check_same_structure(updates, mu)
    directions, inner_state = moment_estimator.update(
        updates, state.inner_state, params, **extra_args
    )
    # The estimator has counted this step: t is its count, and the schedules
    # are read one step earlier, at the count before the increment.
    count = _estimator.field(inner_state, "count", _OWNER)
    previous_count = _estimator.field(state.inner_state, "count", _OWNER)
    lr = _estimator.learning_rate_at(learning_rate, previous_count, "learning_rate")
    peak_lr = jnp.maximum(state.peak_lr.astype(lr.dtype), lr)
    final_lr_at_t = _estimator.learning_rate_at(
        final_lr, previous_count, "final_lr")
    if base_lr is None:
      final_lr_t = coupled_final_lr(
          final_lr_at_t, lr, state.initial_lr, peak_lr, final_lr_coupling)
    else:
      # The state's initial_lr and peak_lr are kept (one state structure
      # whatever the arguments), but the reference of the coupling is
      # base_lr.
      final_lr_t = coupled_final_lr(
          final_lr_at_t, lr, base_lr, base_lr, "initial")
    gamma_t, t = _numerics.cast_all(scalar(), gamma, count)
    lower, upper = _clamped_bounds(*_bounds_of(bounds, t, final_lr_t, gamma_t))
    if step_size_scale is not None:
      (scale,) = _numerics.cast_all(scalar(), step_size_scale(previous_count))
      lr, lower, upper = lr * scale, lower * scale, upper * scale
    updates = _estimator.map_bound_pass(
        _bounded_pass, updates, directions,
        _estimator.field(inner_state, "mu", _OWNER),
        scalars=(lr, lower, upper), sign=sign,
    )
    return updates, ClipStepSizeByDynamicBoundState(
        initial_lr=state.initial_lr,
        peak_lr=peak_lr.astype(state.peak_lr.dtype),
        lower=lower.astype(state.lower.dtype),
        upper=upper.astype(state.upper.dtype),
        inner_state=inner_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
