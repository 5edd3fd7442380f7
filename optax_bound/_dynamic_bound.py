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
multiple of its ``mu`` (true of :func:`optax_bound.scale_by_adam`,
:func:`optax_bound.scale_by_amsgrad`, ``optax.scale_by_adam`` and
``optax.scale_by_amsgrad``). The clip then never divides by :math:`m_t`: with
:math:`s = |\alpha_t d_t|`, the bounded step is

.. math::

  u_t = \operatorname{sign}(m_t) \cdot
        \mathrm{clip}\left(s,\ \eta_l(t) |m_t|,\ \eta_u(t) |m_t|\right),

which equals :math:`\mathrm{clip}(s / |m_t|, \eta_l, \eta_u) \, m_t` and holds
for complex parameters with :math:`\operatorname{sign}(m) = m / |m|`. For real
ones :math:`\alpha_t d_t` already has the sign of :math:`m_t`, so :math:`u_t`
is one of :math:`\alpha_t d_t`, :math:`\eta_l(t) m_t` and
:math:`\eta_u(t) m_t`, each computed as the formula computes it, and two
comparisons of magnitudes pick it: no sign to copy, and no elementwise ``min``
or ``max``, whose NaN handling costs more than the comparison itself. This is
for speed: under ``jax.jit`` on a CPU the pass that applies the update is
about as busy computing as it is waiting for memory, and in bfloat16 this form
took AdaBound's ResNet-34 step from about 1.9x to 1.5x ``optax.adam``'s; in
float32 the two tie (``benchmarks/speed.py``, README "Speed and memory").

The learning rate at step ``t`` is ``learning_rate(count)`` with the count
before it is incremented (Optax's convention, and what a PyTorch scheduler
gives the reference).
"""

from typing import Callable
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_bound import _validation

BoundFn = Callable[
    [jax.Array, jax.Array, jax.typing.ArrayLike], tuple[jax.Array, jax.Array]
]
"""``bound_fn(t, final_lr, gamma) -> (lower, upper)``, with ``t`` counted from 1."""

FinalLrCoupling = Literal["initial", "peak", "fixed"]
FINAL_LR_COUPLINGS = ("initial", "peak", "fixed")


def _float_dtype() -> jnp.dtype:
  """float64 under ``jax_enable_x64``, else float32: the dtype of scalar math."""
  return jax.dtypes.canonicalize_dtype(jnp.float64)


def reference_bounds(
    t: jax.Array,
    final_lr: jax.Array,
    gamma: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array]:
  r"""The bounds of the authors' code, which converge to ``final_lr`` like 1/t.

  .. math::

    \eta_l(t) = \eta^* \left(1 - \frac{1}{\gamma t + 1}\right), \qquad
    \eta_u(t) = \eta^* \left(1 + \frac{1}{\gamma t}\right)

  The paper's experiments use :math:`0.1 \mp 0.1 / ((1 - \beta_2) t + ...)`,
  which is this function with ``final_lr=0.1`` and ``gamma=1 - b2``.
  ``gamma=0`` switches the bound off (lower 0, upper infinite: Adam), also where
  ``final_lr`` is 0.

  Args:
    t: The step number, counted from 1.
    final_lr: The learning rate :math:`\eta^*` both bounds converge to.
    gamma: The convergence speed of the bounds.

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

  # shape=(), default float dtype: the learning rate at step 0 (``lr_0``).
  initial_lr: jax.typing.ArrayLike
  # shape=(), default float dtype: the largest learning rate used so far.
  peak_lr: jax.typing.ArrayLike
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
      the bounds follow a decay but not a warmup) or ``'fixed'`` (``final_lr``
      as given, whatever the learning rate).

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
  if coupling == "fixed":
    return jnp.asarray(final_lr, _float_dtype())
  if coupling == "initial":
    reference = jnp.where(initial_lr > 0, initial_lr, peak_lr)
  else:
    reference = peak_lr
  # A zero reference means every learning rate so far, this one too, was 0.
  return jnp.asarray(
      final_lr * learning_rate / jnp.where(reference > 0, reference, 1)
  )


def _bounded_update(g, direction, mu, learning_rate, lower, upper, sign):
  """One leaf of the bounded update; see the module docstring."""
  if g is None:
    return None
  dtype = jnp.result_type(direction, mu)
  real_dtype = jnp.finfo(dtype).dtype
  mu = mu.astype(dtype)
  learning_rate = learning_rate.astype(real_dtype)
  if jnp.iscomplexobj(mu):
    mu_abs = jnp.abs(mu)
    # With eps = 0 an underflowed second moment makes the direction infinite;
    # a zero learning rate then means a zero step, not 0 * inf = NaN.
    unbounded = jnp.where(
        learning_rate > 0, jnp.abs(learning_rate * direction), 0
    )
    step = jnp.sign(mu) * jnp.clip(
        unbounded,
        lower.astype(real_dtype) * mu_abs,
        upper.astype(real_dtype) * mu_abs,
    )
    # A zero mu has a zero update even where eps=0 made its direction 0/0.
    step = jnp.where(mu_abs == 0, jnp.zeros_like(step), step)
    return (sign * step).astype(jnp.result_type(g))
  # Real parameters: the three candidate updates, each with the sign of mu
  # and the sign flip (carried by the scalars) already on it. NaN bounds (NaN
  # hyperparameters) make the rate NaN, so that the step is NaN as it is
  # through clip. A zero learning rate is a zero step, as above, but a
  # non-finite mu still poisons it (0 * inf), as it does the bounds in clip.
  invalid = jnp.isnan(lower) | jnp.isnan(upper)
  rate = jnp.where(invalid, jnp.nan, sign * learning_rate)
  step = jnp.where(learning_rate > 0, rate * direction, (0 * rate) * mu)
  # clip(s, lower |m|, upper |m|) with s >= 0: a lower bound below 0 never
  # binds and one above the upper bound gives way to it, so clamping the
  # scalar lower bound into [0, upper] lets two comparisons do the clip.
  lower = jnp.minimum(jnp.maximum(lower, 0), upper)
  lower_step = (sign * lower).astype(real_dtype) * mu
  upper_step = (sign * upper).astype(real_dtype) * mu
  size = jnp.abs(step)
  # Comparisons with NaN are False, so a NaN step stays NaN.
  step = jnp.where(size < jnp.abs(lower_step), lower_step, step)
  step = jnp.where(size > jnp.abs(upper_step), upper_step, step)
  # A zero mu has a zero update even where eps=0 made its direction 0/0.
  return jnp.where(mu == 0, jnp.zeros_like(step), step).astype(
      jnp.result_type(g))


_MISSING = object()


def _estimator_field(inner_state: optax.OptState, name: str) -> optax.Updates:
  """The field ``mu`` (first moment) or ``count`` of an Adam-family state."""
  # A sentinel, because the first moment of the empty tree ``None`` is None.
  value = optax.tree.get(inner_state, name, default=_MISSING)
  if value is _MISSING:
    raise ValueError(
        "clip_step_size_by_dynamic_bound needs a moment estimator whose state "
        f"has a field `{name}`, such as optax_bound.scale_by_adam or "
        "optax_bound.scale_by_amsgrad."
    )
  return value


def clip_step_size_by_dynamic_bound(
    moment_estimator: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: jax.typing.ArrayLike = 0.1,
    gamma: jax.typing.ArrayLike = 1e-3,
    *,
    bound_fn: BoundFn | None = None,
    final_lr_coupling: FinalLrCoupling = "initial",
    flip_sign: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""Clip the per-element step size of an Adam-family method into a dynamic bound.

  Wraps ``moment_estimator``, whose direction :math:`d_t` must be a positive
  per-element multiple of the first moment :math:`m_t` in its state's ``mu``,
  and whose state counts the steps in ``count``. With :math:`\alpha_t` the
  learning rate and :math:`\eta^*_t` the coupled
  final learning rate:

  .. math::

    \eta_t &= \alpha_t \, |d_t| / |m_t| \\
    \eta^*_t &= \eta^* \alpha_t / \alpha_0 \\
    u_t &= \mathrm{clip}(\eta_t, \eta_l(t), \eta_u(t)) \, m_t

  and the returned update is :math:`-u_t`, so the method starts like the
  wrapped estimator (wide bounds) and ends like SGD with momentum at
  :math:`\eta^*_t` (bounds collapsed). :math:`\eta_t` is never formed as a
  quotient; see the module docstring.

  Args:
    moment_estimator: The Adam-family transform whose step size is bounded,
      e.g. :func:`optax_bound.scale_by_amsgrad`.
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
    final_lr: The learning rate both bounds converge to (SGD's learning rate).
    gamma: The convergence speed of the bounds; after about ``1 / gamma`` steps
      they are within a factor of 2 of ``final_lr``.
    bound_fn: ``bound_fn(t, final_lr, gamma) -> (lower, upper)``, with ``t``
      counted from 1; default :func:`optax_bound.reference_bounds`. Under
      ``optax.inject_hyperparams``, name it in ``static_args``.
    final_lr_coupling: How ``final_lr`` follows the learning rate; see
      :func:`optax_bound.coupled_final_lr`. ``'initial'`` is the reference.
    flip_sign: Whether to return the descent update :math:`-u_t` (the default,
      like ``optax.scale_by_learning_rate``) or the step :math:`u_t` itself.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`ClipStepSizeByDynamicBoundState` around the estimator's state.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_bound
    >>> tx = optax_bound.clip_step_size_by_dynamic_bound(
    ...     optax_bound.scale_by_adam(), learning_rate=0.1, final_lr=0.1)
    >>> params = jnp.array([1.0, 2.0, 3.0])
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   grads = jax.grad(lambda x: jnp.sum(x**2))(params)
    ...   updates, state = tx.update(grads, state)
    ...   params = optax.apply_updates(params, updates)
    >>> print(params)
    [0.70158833 1.7006254  2.7003837 ]

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019
  """
  _validation.check_finite_non_negative("learning_rate", learning_rate)
  _validation.check_finite_non_negative("final_lr", final_lr)
  _validation.check_non_negative("gamma", gamma)
  _validation.check_choice(
      "final_lr_coupling", final_lr_coupling, FINAL_LR_COUPLINGS
  )
  bounds = reference_bounds if bound_fn is None else bound_fn
  moment_estimator = optax.with_extra_args_support(moment_estimator)
  sign = -1 if flip_sign else 1

  def learning_rate_at(count):
    lr = learning_rate(count) if callable(learning_rate) else learning_rate
    return jnp.asarray(lr, _float_dtype())

  def init_fn(params):
    initial_lr = learning_rate_at(jnp.zeros([], jnp.int32))
    return ClipStepSizeByDynamicBoundState(
        # Distinct buffers, also from a learning rate passed as an array, so
        # that a step that donates its state donates each buffer once.
        initial_lr=jnp.array(initial_lr, copy=True),
        peak_lr=jnp.array(initial_lr, copy=True),
        inner_state=moment_estimator.init(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    directions, inner_state = moment_estimator.update(
        updates, state.inner_state, params, **extra_args
    )
    # The estimator has counted this step: t is its count, and the schedule
    # is read one step earlier, at the count before the increment.
    count = _estimator_field(inner_state, "count")
    lr = learning_rate_at(_estimator_field(state.inner_state, "count"))
    peak_lr = jnp.maximum(state.peak_lr, lr)
    lower, upper = bounds(
        count.astype(_float_dtype()),
        coupled_final_lr(
            final_lr, lr, state.initial_lr, peak_lr, final_lr_coupling
        ),
        gamma,
    )
    updates = jax.tree.map(
        lambda g, d, m: _bounded_update(g, d, m, lr, lower, upper, sign),
        updates,
        directions,
        _estimator_field(inner_state, "mu"),
        is_leaf=lambda x: x is None,
    )
    return updates, ClipStepSizeByDynamicBoundState(
        initial_lr=state.initial_lr,
        peak_lr=peak_lr.astype(state.peak_lr.dtype),
        inner_state=inner_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def effective_step_sizes(
    updates: optax.Updates, state: optax.OptState
) -> optax.Updates:
  r"""The per-element step sizes :math:`|u_t| / |m_t|` a bounded step applied.

  Pass the updates and the new state of one step of
  :func:`optax_bound.adabound`, :func:`optax_bound.amsbound` or any chain that
  ends in :func:`clip_step_size_by_dynamic_bound`: the result is the clipped
  step size of every element, which lies in ``[lower(t), upper(t)]``. (For
  :func:`optax_bound.adaboundw` the decoupled decay is part of the updates, so
  pass ``weight_decay=0`` to observe the step sizes.)

  Args:
    updates: The updates returned by the step.
    state: The optimizer state returned by the same step; its ``mu`` is read.

  Returns:
    A tree like ``updates``: the step size of each element, NaN where the
    first moment is 0 and the step size is undefined.

  Examples:
    >>> import jax.numpy as jnp, optax_bound
    >>> params = jnp.array([2.0, -10.0, 100.0])
    >>> # At t = 1 with gamma = 1 the bounds are [0.05, 0.2]. Adam's step sizes,
    >>> # 1 / |g| here (0.5, 0.1 and 0.01), are clipped into them.
    >>> tx = optax_bound.adabound(learning_rate=0.1, final_lr=0.1, gamma=1.0)
    >>> updates, state = tx.update(params, tx.init(params))
    >>> print(optax_bound.effective_step_sizes(updates, state))
    [0.20000002 0.09999933 0.05      ]

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019 (Figure 1)
  """
  return jax.tree.map(
      lambda u, m: None if u is None else jnp.where(
          m == 0, jnp.nan, jnp.abs(u) / jnp.abs(m).astype(jnp.abs(u).dtype)
      ),
      updates,
      _estimator_field(state, "mu"),
      is_leaf=lambda x: x is None,
  )
