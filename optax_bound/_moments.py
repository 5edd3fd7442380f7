r"""The moment estimators of AdaBound and AMSBound, as the authors' code computes them.

AdaBound bounds the per-element step size of an Adam-family method; the step
size it bounds is the one of the authors' reference code, which is the
"efficient" form of Adam from Section 2 of Kingma & Ba, not Optax's form. Both
estimators here return the direction

.. math::

  d_t = \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
        \cdot \frac{m_t}{\sqrt{v_t} + \epsilon},

and :func:`optax_bound.clip_step_size_by_dynamic_bound` reads the step size
:math:`\eta_t \cdot |d_t| / |m_t|` off it. Three places differ from Optax's
namesakes, and each one moves the trajectory well above float64 round-off
(about 1e-2 after 20 steps at the defaults), so parity with the reference
needs all three:

* *Bias correction is a factor of the step size.* The first moment stays raw
  (:math:`m_t`, not :math:`\hat m_t`) and its correction
  :math:`1 / (1 - \beta_1^t)` multiplies the step size, so the dynamic bound
  clips it together with the rest of the step size.
* *eps sits on the raw root*: :math:`\sqrt{v_t} + \epsilon`, where Optax adds
  it to :math:`\sqrt{\hat v_t}`.
* *AMSGrad's running maximum is over the raw* :math:`v_t`, where
  ``optax.scale_by_amsgrad`` takes it over the bias-corrected
  :math:`\hat v_t` by default.

The second moment of a complex gradient is :math:`|g|^2`, kept in the real
dtype of the parameter, so complex parameters cost no more state than real
ones of the same precision.
"""


import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_bound import _estimator
from optax_bound import _numerics
from optax_bound import _validation


def _abs_sq(g: jax.Array) -> jax.Array:
  if jnp.iscomplexobj(g):
    return g.real * g.real + g.imag * g.imag
  return g * g


def _real_zeros_like(
    tree: optax.Params, dtype: jax.typing.DTypeLike | None
) -> optax.Params:
  """Zeros in ``dtype``, or in the real dtype of each leaf (float32 for complex64).

  ``zeros_like`` keeps each parameter's sharding, so every moment is born on
  its parameter's shards, never replicated.
  """
  return jax.tree.map(
      lambda p: jnp.zeros_like(
          p, dtype=dtype or _numerics.real_dtype(jnp.result_type(p))
      ),
      tree,
  )


def reference_step_size_correction(
    b1: jax.typing.ArrayLike,
    b2: jax.typing.ArrayLike,
    count: jax.typing.ArrayLike,
) -> jax.Array:
  r"""The reference's bias correction, as one factor of the step size.

  Args:
    b1: Decay rate of the first moment.
    b2: Decay rate of the second moment.
    count: The step number ``t``, counted from 1.

  Returns:
    :math:`\sqrt{1 - \beta_2^t} / (1 - \beta_1^t)` as a scalar in the
    default float dtype (float64 under ``jax_enable_x64``), computed in full
    precision before it meets low-precision moments, where ``b2 ** t`` would
    round to 1.

  Examples:
    >>> import optax_bound
    >>> print(f"{optax_bound.reference_step_size_correction(0.9, 0.999, 1):.4f}")
    0.3162

  References:
    Kingma & Ba, `Adam: A Method for Stochastic Optimization
    <https://arxiv.org/abs/1412.6980>`_, ICLR 2015 (Section 2, last paragraph)
  """
  t, b1, b2 = _numerics.cast_all(_numerics.scalar_dtype(), count, b1, b2)
  return jnp.sqrt(1 - b2**t) / (1 - b1**t)


class _LeafStep(NamedTuple):
  """What one leaf's pass computes: the direction and the new moments."""

  direction: jax.Array
  mu: jax.Array
  nu: jax.Array
  nu_max: jax.Array | None


@functools.partial(jax.jit, static_argnames=("out_dtype", "add_eps_root"))
def _moment_pass(g, m, v, v_max, correction, b1, one_minus_b1, b2,
                 one_minus_b2, eps, eps_root, *, out_dtype, add_eps_root):
  """One leaf's pass: the new moments and the direction, in one fused loop.

  Jitted on its own so that a tree traces it once per distinct leaf shape and
  dtype, not once per leaf (``jax.jit`` inlines it into a jitted step; eagerly
  it is one dispatch per leaf instead of one per operation).
  """
  dtype = _numerics.arithmetic_dtype(g.dtype, m.dtype, v.dtype)
  real = _numerics.real_dtype(dtype)
  g = g.astype(dtype)
  # Every operand in the pass's dtypes, explicitly: a hyperparameter may be a
  # NumPy float32 or an injected array, and the pass must also run under
  # jax.numpy_dtype_promotion('strict'). A real factor of a complex moment is
  # cast to the complex dtype, as standard promotion would.
  b1, one_minus_b1 = _numerics.cast_all(dtype, b1, one_minus_b1)
  b2, one_minus_b2, eps, eps_root, correction = _numerics.cast_all(
      real, b2, one_minus_b2, eps, eps_root, correction)
  # The first moment as the state keeps it: the direction is a multiple of
  # the stored mu (which the bounds read), and with a low-precision mu_dtype
  # XLA need not keep the unrounded one in memory for the update's loop.
  new_m = (b1 * m.astype(dtype) + one_minus_b1 * g).astype(m.dtype)
  # The moments keep the dtypes they were created with (traced float32
  # hyperparameters would promote them). The running maximum is taken before
  # the cast, as the cast is monotonic: with a low-precision nu_dtype, XLA
  # need not keep the rounded moment in memory for the maximum's loop.
  wide_v = _numerics.saturate(
      b2 * v.astype(real) + one_minus_b2 * _abs_sq(g), v.dtype)
  new_v = wide_v.astype(v.dtype)
  denominator_moment = new_v
  if v_max is not None:
    v_max = jnp.maximum(v_max.astype(real), wide_v).astype(v_max.dtype)
    denominator_moment = v_max
  root_argument = denominator_moment.astype(real)
  if add_eps_root:
    root_argument = root_argument + eps_root
  # (correction / denominator) * m, in the reference's order of rounding.
  direction = (correction / (jnp.sqrt(root_argument) + eps)).astype(dtype) * (
      new_m.astype(dtype))
  return _LeafStep(
      direction=direction.astype(out_dtype),
      mu=new_m,
      nu=new_v,
      nu_max=v_max,
  )


def _scale_by_reference_moments(
    owner: str,
    b1: jax.typing.ArrayLike,
    b2: jax.typing.ArrayLike,
    eps: jax.typing.ArrayLike,
    eps_root: jax.typing.ArrayLike,
    mu_dtype: jax.typing.DTypeLike | None,
    nu_dtype: jax.typing.DTypeLike | None,
    bias_correction: bool,
    use_max: bool,
) -> optax.GradientTransformation:
  """The shared body of :func:`scale_by_adam` and :func:`scale_by_amsgrad`."""
  _validation.check_hyperparameter("b1", b1, _validation.DECAY_RATE)
  _validation.check_hyperparameter("b2", b2, _validation.DECAY_RATE)
  _validation.check_hyperparameter("eps", eps, _validation.NON_NEGATIVE)
  _validation.check_hyperparameter("eps_root", eps_root, _validation.NON_NEGATIVE)
  _validation.check_dtype("mu_dtype", mu_dtype)
  _validation.check_dtype("nu_dtype", nu_dtype, complex_ok=False)
  state_type = optax.ScaleByAmsgradState if use_max else optax.ScaleByAdamState
  # A literal 0 adds nothing: leave it out of the traced program.
  add_eps_root = not _validation.is_concrete_zero(eps_root)

  def init_fn(params):
    _validation.check_inexact_leaves(params)
    mu = optax.tree.zeros_like(params, dtype=mu_dtype)
    nu = _real_zeros_like(params, nu_dtype)
    for dtype in {moment.dtype for moment in jax.tree.leaves((mu, nu))}:
      _validation.check_decay_rate_in_dtype("b1", b1, dtype)
      _validation.check_decay_rate_in_dtype("b2", b2, dtype)
    count = jnp.zeros([], jnp.int32)
    if use_max:
      return optax.ScaleByAmsgradState(
          count=count, mu=mu, nu=nu, nu_max=_real_zeros_like(params, nu_dtype)
      )
    return optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  def update_fn(updates, state, params=None):
    del params
    _validation.check_state(owner, state, state_type)
    _validation.check_same_structure(updates, state.mu)
    count = optax.safe_increment(state.count)
    if bias_correction:
      correction = reference_step_size_correction(b1, b2, count)
    else:
      correction = jnp.ones([], _numerics.scalar_dtype())
    # 1 - b computed here, in Python where b is a number: in the pass it
    # would round differently.
    hyperparams = (b1, 1 - b1, b2, 1 - b2, eps, eps_root)

    def leaf_step(g, m, v, v_max=None):
      if g is None:
        return None
      g = jnp.asarray(g)
      return _moment_pass(
          g, m, v, v_max, correction, *hyperparams,
          out_dtype=_numerics.update_dtype(g, m), add_eps_root=add_eps_root,
      )

    moments = (state.mu, state.nu) + ((state.nu_max,) if use_max else ())
    steps = jax.tree.map(
        leaf_step, updates, *moments, is_leaf=lambda x: x is None
    )
    directions, mu, nu, nu_max = _numerics.unzip(steps, _LeafStep)
    if use_max:
      return directions, optax.ScaleByAmsgradState(
          count=count, mu=mu, nu=nu, nu_max=nu_max
      )
    return directions, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return _estimator.keeps_the_contract(
      optax.GradientTransformation(init_fn, update_fn))


def scale_by_adam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
    *,
    nu_dtype: jax.typing.DTypeLike | None = None,
    bias_correction: bool = True,
) -> optax.GradientTransformation:
  r"""Rescale updates by Adam's moments, as AdaBound's reference code does.

  The moment estimator of :func:`optax_bound.adabound`. Unlike
  ``optax.scale_by_adam``, ``eps`` is added to the square root of the raw
  second moment and the bias correction is one scalar factor of the step:

  .. math::

    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2 \\
    d_t &= \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
           \cdot \frac{m_t}{\sqrt{v_t} + \epsilon}

  On its own it is Adam as Kingma & Ba write its efficient form (multiply by
  ``-learning_rate`` to get the update); wrapped by
  :func:`optax_bound.clip_step_size_by_dynamic_bound` it is AdaBound.

  Args:
    b1: Decay rate for the exponentially weighted average of grads.
    b2: Decay rate for the exponentially weighted average of squared grads.
    eps: Term added to the square root of the raw second moment.
    eps_root: Term added to the raw second moment inside the square root, as in
      ``optax.scale_by_adam``: a positive value keeps gradients *through* the
      update finite where it is 0 (a dead unit, in meta-learning). 0 is the
      reference.
    mu_dtype: Optional ``dtype`` to be used for the first order accumulator;
      if ``None`` then the ``dtype`` is inferred from ``params`` and
      ``updates``.
    nu_dtype: Optional ``dtype`` of the second moment; if
      ``None``, the real dtype of each parameter. ``jnp.bfloat16`` halves its
      memory; the arithmetic runs in float32 or wider either way.
    bias_correction: Whether to apply the factor
      :math:`\sqrt{1 - \beta_2^t} / (1 - \beta_1^t)`. ``False`` gives the
      paper's Algorithm 2, which has none.

  Returns:
    A :class:`optax.GradientTransformation` whose state is an
    ``optax.ScaleByAdamState`` (``count``, ``mu``, ``nu``).

  Examples:
    >>> import jax.numpy as jnp, optax, optax_bound
    >>> # Adam's first direction is sign(g), unless |g| is near eps: eps on
    >>> # the raw root weighs more than on Optax's bias-corrected one.
    >>> grads = jnp.array([1e-9, 1e-6, 1e-3])
    >>> for tx in (optax_bound.scale_by_adam(), optax.scale_by_adam()):
    ...   directions, _ = tx.update(grads, tx.init(grads))
    ...   print(" ".join(f"{d:.4f}" for d in directions))
    0.0032 0.7597 0.9997
    0.0909 0.9901 1.0000

  References:
    Kingma & Ba, `Adam: A Method for Stochastic Optimization
    <https://arxiv.org/abs/1412.6980>`_, ICLR 2015 (Section 2, last paragraph)

    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019
  """
  return _scale_by_reference_moments(
      "optax_bound.scale_by_adam", b1, b2, eps, eps_root, mu_dtype, nu_dtype,
      bias_correction, use_max=False,
  )


def scale_by_amsgrad(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
    *,
    nu_dtype: jax.typing.DTypeLike | None = None,
    bias_correction: bool = True,
) -> optax.GradientTransformation:
  r"""Rescale updates by AMSGrad's moments, as AMSBound's reference code does.

  The moment estimator of :func:`optax_bound.amsbound`. Unlike
  ``optax.scale_by_amsgrad``, the running maximum is taken over the raw second
  moment (not the bias-corrected one), ``eps`` is added to its square root, and
  the bias correction is one scalar factor of the step:

  .. math::

    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2 \\
    \hat v_t &= \max(\hat v_{t-1}, v_t) \\
    d_t &= \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
           \cdot \frac{m_t}{\sqrt{\hat v_t} + \epsilon}

  Args:
    b1: Decay rate for the exponentially weighted average of grads.
    b2: Decay rate for the exponentially weighted average of squared grads.
    eps: Term added to the square root of the running maximum.
    eps_root: Term added to the running maximum inside the square root, as in
      ``optax.scale_by_adam``: a positive value keeps gradients *through* the
      update finite where it is 0 (a dead unit, in meta-learning). 0 is the
      reference.
    mu_dtype: Optional ``dtype`` to be used for the first order accumulator;
      if ``None`` then the ``dtype`` is inferred from ``params`` and
      ``updates``.
    nu_dtype: Optional ``dtype`` of the second moment and its running maximum;
      if ``None``, the real dtype of each parameter. ``jnp.bfloat16`` halves its
      memory; the arithmetic runs in float32 or wider either way.
    bias_correction: Whether to apply the factor
      :math:`\sqrt{1 - \beta_2^t} / (1 - \beta_1^t)`. ``False`` gives the
      paper's Algorithm 2, which has none.

  Returns:
    A :class:`optax.GradientTransformation` whose state is an
    ``optax.ScaleByAmsgradState`` (``count``, ``mu``, ``nu``, ``nu_max``).

  Examples:
    >>> import jax.numpy as jnp, optax_bound
    >>> # After a gradient of 10, Adam's second moment decays and its
    >>> # directions grow back; AMSGrad's running maximum holds them down.
    >>> for tx in (optax_bound.scale_by_adam(b2=0.9),
    ...            optax_bound.scale_by_amsgrad(b2=0.9)):
    ...   state = tx.init(jnp.zeros(()))
    ...   directions = []
    ...   for g in (10.0, 1.0, 1.0):
    ...     d, state = tx.update(jnp.asarray(g), state)
    ...     directions.append(f"{d:.4f}")
    ...   print(" ".join(directions))
    1.0000 0.7605 0.6672
    1.0000 0.7255 0.6075

  References:
    Reddi et al., `On the Convergence of Adam and Beyond
    <https://openreview.net/forum?id=ryQu7f-RZ>`_, ICLR 2018

    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019
  """
  return _scale_by_reference_moments(
      "optax_bound.scale_by_amsgrad", b1, b2, eps, eps_root, mu_dtype, nu_dtype,
      bias_correction, use_max=True,
  )
