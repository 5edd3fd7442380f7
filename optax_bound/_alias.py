r"""AdaBound, AMSBound, AdaBoundW and AdaMod: public blocks, chained as the authors do.

Each constructor is an ``optax.chain`` of public transforms and nothing else:

* ``adabound``  = L2 decay into the gradient, then
  :func:`~optax_bound.clip_step_size_by_dynamic_bound` around
  :func:`~optax_bound.scale_by_adam`;
* ``amsbound``  = the same around :func:`~optax_bound.scale_by_amsgrad`;
* ``adaboundw`` = the bounded step, then the decoupled decay
  :math:`\lambda p` (or :math:`\lambda \alpha_t p`), then the sign flip;
* ``adamod``    = :func:`~optax_bound.clip_step_size_by_momental_bound` around
  :func:`~optax_bound.scale_by_adam`, then the decoupled decay
  :math:`\lambda \alpha_t p`, then the sign flip.

``form='paper'`` swaps the reference for the paper's Algorithm 2: no bias
correction in the estimator and the bounded step divided by :math:`\sqrt t`
(inside the bound, so that the state is the reference form's and its band is
the one the step sizes were clipped into).

Every hyperparameter after ``learning_rate`` is keyword-only: Optax's
``adam(learning_rate, b1, b2, ...)`` order would otherwise read
``adabound(1e-3, 0.9, 0.999)`` as ``final_lr=0.9, b1=0.999``.
"""

from typing import Any
from typing import Callable
from typing import Literal
from typing import NamedTuple
from typing import Optional
from typing import Union
from typing import get_args

import jax
import jax.numpy as jnp
import optax

from optax_bound import _dynamic_bound
from optax_bound import _estimator
from optax_bound import _momental_bound
from optax_bound import _moments
from optax_bound import _numerics
from optax_bound import _validation

Form = Literal["reference", "paper"]
MaskOrFn = Optional[Union[Any, Callable[[optax.Params], Any]]]


class DecaySchedule(NamedTuple):
  """State of a weight decay: the step count its schedule is read at.

  Kept for every decay, scheduled or not, so that the state's structure does
  not depend on how the decay is spelled.
  """

  # shape=(), dtype=jnp.int32. Named as in Optax's states (it shadows
  # tuple.count, as there).
  count: jax.typing.ArrayLike  # type: ignore[assignment]


def _with_state_check(
    tx: optax.GradientTransformation, owner: str, expected: type
) -> optax.GradientTransformation:
  def update_fn(updates, state, params=None):
    _validation.check_state(owner, state, expected)
    return tx.update(updates, state, params)

  return optax.GradientTransformation(tx.init, update_fn)


def _add_decayed_weights(
    weight_decay: Any, mask: MaskOrFn, owner: str
) -> optax.GradientTransformation:
  """``u + weight_decay * p``, in the update's dtype; nothing for ``None``.

  Unlike ``optax.add_decayed_weights``, the decay term is cast to each
  update's dtype: a float32 decay (``inject_hyperparams``) must not turn the
  bfloat16 updates of bfloat16 parameters into float32 ones. And the state is
  a :class:`DecaySchedule` for every spelling of a decay (a Python, NumPy or
  JAX number, a schedule, an injected value, 0 too), so that a checkpoint of
  one restores into every other; only ``None`` (no decay) keeps none.
  """
  _validation.check_hyperparameter(
      "weight_decay", weight_decay, _validation.FINITE_NON_NEGATIVE,
      schedule=True, optional=True,
  )
  if weight_decay is None:
    return _with_state_check(optax.identity(), owner, optax.EmptyState)
  _validation.check_mask(mask)
  # A concrete 0, however spelled, adds nothing and needs no params.
  zero = _validation.is_concrete_zero(weight_decay)

  def init_fn(params):
    del params
    return DecaySchedule(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    new_state = DecaySchedule(count=optax.safe_increment(state.count))
    if zero:
      return updates, new_state
    if params is None:
      raise ValueError(
          f"{owner} with a weight decay needs `params` in `update`: "
          "tx.update(grads, state, params)."
      )
    # Before the tree map, whose mismatch error names neither tree.
    _validation.check_same_structure(updates, params)
    if callable(weight_decay):
      rate = weight_decay(state.count)
      _validation.check_schedule_value("weight_decay", rate)
    else:
      rate = weight_decay

    def decay(g, p):
      if g is None:
        return None
      g, p = jnp.asarray(g), jnp.asarray(p)
      dtype = _numerics.update_dtype(g, p)
      wide = _numerics.arithmetic_dtype(p.dtype)
      (wide_rate,) = _numerics.cast_all(_numerics.real_dtype(wide), rate)
      term = (wide_rate.astype(wide) * p.astype(wide)).astype(dtype)
      return g.astype(dtype) + term

    updates = jax.tree.map(decay, updates, params, is_leaf=lambda x: x is None)
    return updates, new_state

  decay = _with_state_check(
      optax.GradientTransformation(init_fn, update_fn), owner, DecaySchedule)
  if mask is None:
    return decay
  return _with_state_check(optax.masked(decay, mask), owner, optax.MaskedState)


def _chain(owner: str, *transforms: optax.GradientTransformation):
  """``optax.chain`` that rejects a state of another length.

  ``optax.chain`` zips transforms with states, so a state of another chain
  (the paper form's three states given to the reference's two) would be
  truncated silently. Each transform checks its own state's type.
  """
  chained = optax.chain(*transforms)

  def update_fn(updates, state, params=None, **extra_args):
    if not isinstance(state, tuple) or len(state) != len(transforms):
      got = (f"a tuple of {len(state)}" if isinstance(state, tuple)
             else type(state).__name__)
      raise TypeError(
          f"{owner} was given a state it did not create: expected the tuple "
          f"of {len(transforms)} states of its optax.chain, got {got}. Pass "
          "the state returned by this optimizer's init."
      )
    return chained.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(chained.init, update_fn)


def _bounded_step(
    moment_estimator: optax.GradientTransformation,
    *,
    learning_rate: optax.ScalarOrSchedule,
    final_lr: optax.ScalarOrSchedule,
    gamma: jax.typing.ArrayLike,
    bound_fn: _dynamic_bound.BoundFn | None,
    final_lr_coupling: _dynamic_bound.FinalLrCoupling,
    base_lr: jax.typing.ArrayLike | None,
    form: Form,
    flip_sign: bool,
) -> optax.GradientTransformation:
  """The bounded step; in the paper's form, divided by sqrt(t) in the bound.

  In the bound, not after it (``optax.scale_by_schedule``): the band the
  state keeps is then the one the step sizes were clipped into, which
  :func:`optax_bound.bound_stats` compares them with, and the state holds one
  step count, not two.
  """
  return _dynamic_bound.build_dynamic_bound(
      moment_estimator,
      learning_rate=learning_rate,
      final_lr=final_lr,
      gamma=gamma,
      bound_fn=bound_fn,
      final_lr_coupling=final_lr_coupling,
      base_lr=base_lr,
      flip_sign=flip_sign,
      step_size_scale=_inverse_sqrt_step if form == "paper" else None,
  )


def _inverse_sqrt_step(count: jax.Array) -> jax.Array:
  """The paper's :math:`1 / \\sqrt{t}`, with ``count`` before the increment."""
  # In float: a saturated int32 count + 1 would wrap to -2^31.
  return jax.lax.rsqrt(count.astype(_numerics.scalar_dtype()) + 1)


def _moment_kwargs(b1, b2, eps, eps_root, mu_dtype, nu_dtype, form):
  _validation.check_choice("form", form, get_args(Form))
  return dict(
      b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
      nu_dtype=nu_dtype, bias_correction=form == "reference",
  )


def _lr_scaled(weight_decay, learning_rate):
  """``weight_decay * learning_rate``, as a number or a schedule."""
  if weight_decay is None or _validation.is_concrete_zero(weight_decay):
    return weight_decay
  if isinstance(weight_decay, (int, float)) and isinstance(
      learning_rate, (int, float)):
    return weight_decay * max(learning_rate, 0.0)

  def decay_rate(count):
    rate = weight_decay(count) if callable(weight_decay) else weight_decay
    lr = _estimator.learning_rate_at(learning_rate, count, "learning_rate")
    return _numerics.cast_all(lr.dtype, rate)[0] * lr

  return decay_rate


def adabound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    *,
    final_lr: optax.ScalarOrSchedule = 0.1,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    gamma: jax.typing.ArrayLike = 1e-3,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: optax.ScalarOrSchedule | None = None,
    mask: MaskOrFn = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
    bound_fn: _dynamic_bound.BoundFn | None = None,
    final_lr_coupling: _dynamic_bound.FinalLrCoupling = "initial",
    base_lr: jax.typing.ArrayLike | None = None,
    form: Form = "reference",
) -> optax.GradientTransformationExtraArgs:
  r"""AdaBound: Adam whose per-element step size is clipped into a dynamic bound.

  The bounds start wide, so training starts like Adam, and close on
  ``final_lr``, so it ends like SGD with momentum (``final_lr`` below says
  which SGD). Per step, with :math:`t` counted from 1:

  .. math::

    g_t &\leftarrow g_t + \lambda p_{t-1} \\
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2 \\
    \eta_t &= \frac{\alpha_t}{\sqrt{v_t} + \epsilon} \cdot
              \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t} \\
    \eta^*_t &= \eta^* \alpha_t / \alpha_0 \\
    \eta_l(t) &= \eta^*_t \left(1 - \tfrac{1}{\gamma t + 1}\right) \\
    \eta_u(t) &= \eta^*_t \left(1 + \tfrac{1}{\gamma t}\right) \\
    p_t &= p_{t-1} - \mathrm{clip}(\eta_t, \eta_l(t), \eta_u(t)) \, m_t

  where :math:`\alpha_t` is the learning rate of step :math:`t`,
  :math:`\lambda` is ``weight_decay``, :math:`\eta^*` is ``final_lr`` and
  :math:`\gamma` is ``gamma``. :math:`\eta^*_t` is ``final_lr`` carried along
  the learning rate's schedule, relative to the learning rate :math:`\alpha_0`
  it was set for (see :func:`coupled_final_lr`), and :math:`\eta_l(t)`,
  :math:`\eta_u(t)` are the lower and upper bounds, which close on it.

  This is the authors' code to float64 round-off (tested against it). Every
  argument after ``learning_rate`` is keyword-only.

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
      Adam's learning rate at the start; one below 0 is taken as 0.
    final_lr: The learning rate the bounds close on, a number or a schedule;
      it follows the learning rate (``final_lr * lr_t / lr_0``) unless
      ``final_lr_coupling`` says otherwise. Once the band has closed, the
      update is ``final_lr * m``, with ``m <- b1 * m + (1 - b1) * g``: SGD
      with momentum dampened by ``b1``. PyTorch's and Optax's SGD do not
      dampen (``buf <- b1 * buf + g``), so in theirs it is a learning rate of
      ``final_lr * (1 - b1)``: ``final_lr=0.1, b1=0.9`` ends as
      ``torch.optim.SGD(params, lr=0.01, momentum=0.9)`` or
      ``optax.sgd(0.01, momentum=0.9)``.
    b1: Exponential decay rate to track the first moment of past gradients.
    b2: Exponential decay rate to track the second moment of past gradients.
    gamma: How fast the band closes: the bounds are within a factor of 2 of
      ``final_lr`` after about ``1 / gamma`` steps (at ``t = 1 / gamma`` they
      are ``final_lr / 2`` and ``2 * final_lr``) and within 10% after
      ``10 / gamma``; 0 never closes it (Adam).
    eps: A small constant added to the square root of the raw second moment.
    eps_root: A small constant added to the second moment inside the square
      root, as in ``optax.adam``: a positive value keeps gradients *through*
      the update finite where the second moment is 0 (meta-learning). 0 is
      the reference.
    weight_decay: L2 penalty added to the gradient, as the reference's
      ``weight_decay`` (see :func:`adaboundw` for decoupled decay); a number
      or a schedule. ``None`` (the default) or 0: no decay, and ``update``
      needs no ``params``.
    mask: A tree with same structure as (or a prefix of) the params PyTree, or
      a Callable that returns such a pytree given the params/updates. The leaves
      should be booleans, ``True`` for leaves/subtrees you want to apply the
      weight decay to, and ``False`` for those you want to skip. Under
      ``optax.inject_hyperparams``, name a callable mask in ``static_args``.
    mu_dtype: Optional ``dtype`` to be used for the first order accumulator;
      if ``None`` then the ``dtype`` is inferred from ``params`` and
      ``updates``.
    nu_dtype: Optional ``dtype`` of the second moment; if ``None``, the real
      dtype of each parameter. ``jnp.bfloat16`` halves its memory.
    bound_fn: ``bound_fn(t, final_lr, gamma) -> (lower, upper)``; default
      :func:`optax_bound.reference_bounds`.
    final_lr_coupling: ``'initial'`` (reference), ``'peak'`` or ``'fixed'``;
      see :func:`optax_bound.coupled_final_lr`.
    base_lr: The learning rate the reference's PyTorch optimizer was built
      with: when given, the bounds follow ``final_lr * lr_t / base_lr``, as
      the authors' code does under any PyTorch scheduler (under a
      ``LambdaLR`` warmup, the top of the warmup); never read from a resumed
      state. See :func:`optax_bound.clip_step_size_by_dynamic_bound`.
    form: ``'reference'`` (the authors' code) or ``'paper'`` (Algorithm 2 of
      the paper: no bias correction, bounded step divided by :math:`\sqrt t`).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_bound
    >>> def f(x): return jnp.sum(x ** 2)
    >>> # gamma = 1 closes the band within a few steps, around final_lr = 0.3:
    >>> # its lower bound lifts Adam's lr-sized steps (with gamma = 0, this
    >>> # is Adam and prints 1.28E+01 1.17E+01 1.07E+01 9.69E+00 8.78E+00).
    >>> solver = optax_bound.adabound(learning_rate=0.1, final_lr=0.3, gamma=1.0)
    >>> params = jnp.array([1., 2., 3.])
    >>> opt_state = solver.init(params)
    >>> for _ in range(5):
    ...   grad = jax.grad(f)(params)
    ...   updates, opt_state = solver.update(grad, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print('Objective function: {:.2E}'.format(f(params)))
    Objective function: 1.28E+01
    Objective function: 1.09E+01
    Objective function: 8.22E+00
    Objective function: 5.37E+00
    Objective function: 2.84E+00

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019
  """
  owner = "optax_bound.adabound"
  return _chain(
      owner,
      _add_decayed_weights(weight_decay, mask, owner),
      _bounded_step(
          _moments.scale_by_adam(**_moment_kwargs(
              b1, b2, eps, eps_root, mu_dtype, nu_dtype, form)),
          learning_rate=learning_rate,
          final_lr=final_lr,
          gamma=gamma,
          bound_fn=bound_fn,
          final_lr_coupling=final_lr_coupling,
          base_lr=base_lr,
          form=form,
          flip_sign=True,
      ),
  )


def amsbound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    *,
    final_lr: optax.ScalarOrSchedule = 0.1,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    gamma: jax.typing.ArrayLike = 1e-3,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: optax.ScalarOrSchedule | None = None,
    mask: MaskOrFn = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
    bound_fn: _dynamic_bound.BoundFn | None = None,
    final_lr_coupling: _dynamic_bound.FinalLrCoupling = "initial",
    base_lr: jax.typing.ArrayLike | None = None,
    form: Form = "reference",
) -> optax.GradientTransformationExtraArgs:
  r"""AMSBound: AMSGrad whose per-element step size is clipped into a dynamic bound.

  As :func:`adabound` (whose formula defines the symbols), with the running
  maximum of the raw second moment in the denominator
  (:func:`optax_bound.scale_by_amsgrad`):

  .. math::

    \hat v_t &= \max(\hat v_{t-1}, v_t) \\
    \eta_t &= \alpha_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
              \cdot \frac{1}{\sqrt{\hat v_t} + \epsilon}

  Every argument after ``learning_rate`` is keyword-only.

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
      Adam's learning rate at the start; one below 0 is taken as 0.
    final_lr: The learning rate the bounds close on, a number or a schedule;
      it follows the learning rate (``final_lr * lr_t / lr_0``) unless
      ``final_lr_coupling`` says otherwise. Once the band has closed, the
      update is ``final_lr * m``, with ``m <- b1 * m + (1 - b1) * g``: SGD
      with momentum dampened by ``b1``. PyTorch's and Optax's SGD do not
      dampen (``buf <- b1 * buf + g``), so in theirs it is a learning rate of
      ``final_lr * (1 - b1)``: ``final_lr=0.1, b1=0.9`` ends as
      ``torch.optim.SGD(params, lr=0.01, momentum=0.9)`` or
      ``optax.sgd(0.01, momentum=0.9)``.
    b1: Exponential decay rate to track the first moment of past gradients.
    b2: Exponential decay rate to track the second moment of past gradients.
    gamma: How fast the band closes: the bounds are within a factor of 2 of
      ``final_lr`` after about ``1 / gamma`` steps (at ``t = 1 / gamma`` they
      are ``final_lr / 2`` and ``2 * final_lr``) and within 10% after
      ``10 / gamma``; 0 never closes it (Adam).
    eps: A small constant added to the square root of the running maximum.
    eps_root: A small constant added to the running maximum inside the square
      root, as in ``optax.amsgrad``; 0 is the reference.
    weight_decay: L2 penalty added to the gradient, as the reference's
      ``weight_decay``; a number or a schedule. ``None`` (the default) or 0:
      no decay, and ``update`` needs no ``params``.
    mask: A tree with same structure as (or a prefix of) the params PyTree, or
      a Callable that returns such a pytree given the params/updates. The leaves
      should be booleans, ``True`` for leaves/subtrees you want to apply the
      weight decay to, and ``False`` for those you want to skip. Under
      ``optax.inject_hyperparams``, name a callable mask in ``static_args``.
    mu_dtype: Optional ``dtype`` to be used for the first order accumulator;
      if ``None`` then the ``dtype`` is inferred from ``params`` and
      ``updates``.
    nu_dtype: Optional ``dtype`` of the second moment and its running
      maximum; if ``None``, the real dtype of each parameter.
    bound_fn: ``bound_fn(t, final_lr, gamma) -> (lower, upper)``; default
      :func:`optax_bound.reference_bounds`.
    final_lr_coupling: ``'initial'`` (reference), ``'peak'`` or ``'fixed'``;
      see :func:`optax_bound.coupled_final_lr`.
    base_lr: The learning rate the reference's PyTorch optimizer was built
      with: when given, the bounds follow ``final_lr * lr_t / base_lr``, as
      the authors' code does under any PyTorch scheduler (under a
      ``LambdaLR`` warmup, the top of the warmup); never read from a resumed
      state. See :func:`optax_bound.clip_step_size_by_dynamic_bound`.
    form: ``'reference'`` (the authors' code) or ``'paper'`` (Algorithm 2 of
      the paper: no bias correction, bounded step divided by :math:`\sqrt t`).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp, optax_bound
    >>> # After a gradient of 10, AdaBound's second moment decays and its
    >>> # steps grow back; AMSBound's running maximum holds them down.
    >>> for solver in (optax_bound.adabound(learning_rate=0.1, b2=0.9),
    ...                optax_bound.amsbound(learning_rate=0.1, b2=0.9)):
    ...   opt_state = solver.init(jnp.zeros(()))
    ...   steps = []
    ...   for grad in (10.0, 1.0, 1.0, 1.0):
    ...     updates, opt_state = solver.update(jnp.asarray(grad), opt_state)
    ...     steps.append(f"{updates:.4f}")
    ...   print(" ".join(steps))
    -0.1000 -0.0761 -0.0667 -0.0620
    -0.1000 -0.0725 -0.0607 -0.0539

  References:
    Luo et al., `Adaptive Gradient Methods with Dynamic Bound of Learning Rate
    <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019

    Reddi et al., `On the Convergence of Adam and Beyond
    <https://openreview.net/forum?id=ryQu7f-RZ>`_, ICLR 2018
  """
  owner = "optax_bound.amsbound"
  return _chain(
      owner,
      _add_decayed_weights(weight_decay, mask, owner),
      _bounded_step(
          _moments.scale_by_amsgrad(**_moment_kwargs(
              b1, b2, eps, eps_root, mu_dtype, nu_dtype, form)),
          learning_rate=learning_rate,
          final_lr=final_lr,
          gamma=gamma,
          bound_fn=bound_fn,
          final_lr_coupling=final_lr_coupling,
          base_lr=base_lr,
          form=form,
          flip_sign=True,
      ),
  )


def adaboundw(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    *,
    final_lr: optax.ScalarOrSchedule = 0.1,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    gamma: jax.typing.ArrayLike = 1e-3,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: optax.ScalarOrSchedule | None = None,
    mask: MaskOrFn = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
    bound_fn: _dynamic_bound.BoundFn | None = None,
    final_lr_coupling: _dynamic_bound.FinalLrCoupling = "initial",
    base_lr: jax.typing.ArrayLike | None = None,
    form: Form = "reference",
    lr_scaled_decay: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaBoundW: AdaBound with decoupled weight decay, as in the authors' repository.

  The bounded step of :func:`adabound` (whose formula defines
  :math:`\eta_t`, :math:`\eta_l(t)` and :math:`\eta_u(t)`) without the L2
  term, and the decay :math:`\lambda`, ``weight_decay``, subtracted from the
  parameters directly:

  .. math::

    p_t &= p_{t-1} - \mathrm{clip}(\eta_t, \eta_l(t), \eta_u(t)) \, m_t \\
        &\quad - \lambda p_{t-1}

  The authors' AdaBoundW does not scale the decay by the learning rate;
  ``lr_scaled_decay=True`` subtracts :math:`\lambda \alpha_t p_{t-1}` instead,
  as AdamW does (and ``pytorch_optimizer``'s default). Every argument after
  ``learning_rate`` is keyword-only.

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
      Adam's learning rate at the start; one below 0 is taken as 0.
    final_lr: The learning rate the bounds close on, a number or a schedule;
      it follows the learning rate (``final_lr * lr_t / lr_0``) unless
      ``final_lr_coupling`` says otherwise. Once the band has closed, the
      update is ``final_lr * m``, with ``m <- b1 * m + (1 - b1) * g``: SGD
      with momentum dampened by ``b1``. PyTorch's and Optax's SGD do not
      dampen (``buf <- b1 * buf + g``), so in theirs it is a learning rate of
      ``final_lr * (1 - b1)``: ``final_lr=0.1, b1=0.9`` ends as
      ``torch.optim.SGD(params, lr=0.01, momentum=0.9)`` or
      ``optax.sgd(0.01, momentum=0.9)``.
    b1: Exponential decay rate to track the first moment of past gradients.
    b2: Exponential decay rate to track the second moment of past gradients.
    gamma: How fast the band closes: the bounds are within a factor of 2 of
      ``final_lr`` after about ``1 / gamma`` steps (at ``t = 1 / gamma`` they
      are ``final_lr / 2`` and ``2 * final_lr``) and within 10% after
      ``10 / gamma``; 0 never closes it (Adam).
    eps: A small constant added to the square root of the raw second moment.
    eps_root: A small constant added to the second moment inside the square
      root, as in ``optax.adam``; 0 is the reference.
    weight_decay: Strength of the decoupled weight decay, a number or a
      schedule. ``None`` (the default) or 0: no decay.
    mask: A tree with same structure as (or a prefix of) the params PyTree, or
      a Callable that returns such a pytree given the params/updates. The leaves
      should be booleans, ``True`` for leaves/subtrees you want to apply the
      weight decay to, and ``False`` for those you want to skip. Under
      ``optax.inject_hyperparams``, name a callable mask in ``static_args``.
    mu_dtype: Optional ``dtype`` to be used for the first order accumulator;
      if ``None`` then the ``dtype`` is inferred from ``params`` and
      ``updates``.
    nu_dtype: Optional ``dtype`` of the second moment; if ``None``, the real
      dtype of each parameter.
    bound_fn: ``bound_fn(t, final_lr, gamma) -> (lower, upper)``; default
      :func:`optax_bound.reference_bounds`.
    final_lr_coupling: ``'initial'`` (reference), ``'peak'`` or ``'fixed'``;
      see :func:`optax_bound.coupled_final_lr`.
    base_lr: The learning rate the reference's PyTorch optimizer was built
      with: when given, the bounds follow ``final_lr * lr_t / base_lr``, as
      the authors' code does under any PyTorch scheduler (under a
      ``LambdaLR`` warmup, the top of the warmup); never read from a resumed
      state. See :func:`optax_bound.clip_step_size_by_dynamic_bound`.
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
  owner = "optax_bound.adaboundw"
  _validation.check_hyperparameter(
      "weight_decay", weight_decay, _validation.FINITE_NON_NEGATIVE,
      schedule=True, optional=True,
  )
  decay_rate = (
      _lr_scaled(weight_decay, learning_rate) if lr_scaled_decay
      else weight_decay
  )
  return _chain(
      owner,
      _bounded_step(
          _moments.scale_by_adam(**_moment_kwargs(
              b1, b2, eps, eps_root, mu_dtype, nu_dtype, form)),
          learning_rate=learning_rate,
          final_lr=final_lr,
          gamma=gamma,
          bound_fn=bound_fn,
          final_lr_coupling=final_lr_coupling,
          base_lr=base_lr,
          form=form,
          flip_sign=False,
      ),
      _add_decayed_weights(decay_rate, mask, owner),
      optax.scale(-1.0),
  )


def adamod(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    *,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    b3: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: optax.ScalarOrSchedule | None = None,
    mask: MaskOrFn = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaMod: Adam whose per-element step size is capped by its own past average.

  Each element's step size is bounded from above by an exponential moving
  average of the step sizes it took (the momental bound), which gives every
  element a warmup of about :math:`1 / (1 - \beta_3)` steps and damps
  sudden large steps. Per step, with :math:`t` counted from 1 and
  :math:`\alpha_t` the learning rate:

  .. math::

    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2 \\
    \eta_t &= \alpha_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
              \cdot \frac{1}{\sqrt{v_t} + \epsilon} \\
    s_t &= \beta_3 s_{t-1} + (1 - \beta_3) \eta_t \\
    p_t &= p_{t-1} - \lambda \alpha_t p_{t-1} - \min(\eta_t, s_t) \, m_t

  with the weight decay decoupled and scaled by the learning rate, as the
  authors' code does. This is the authors' ``adamod`` 0.0.3 to float64
  round-off (tested against it). Every argument after ``learning_rate`` is
  keyword-only.

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
      One below 0 is taken as 0.
    b1: Exponential decay rate to track the first moment of past gradients.
    b2: Exponential decay rate to track the second moment of past gradients.
    b3: Exponential decay rate of the average of step sizes that bounds them.
    eps: A small constant added to the square root of the raw second moment.
    eps_root: A small constant added to the second moment inside the square
      root, as in ``optax.adam``; 0 is the reference.
    weight_decay: Strength of the decoupled decay :math:`\lambda \alpha_t
      p_{t-1}`, a number or a schedule. ``None`` (the default) or 0: no decay.
    mask: A tree with same structure as (or a prefix of) the params PyTree, or
      a Callable that returns such a pytree given the params/updates. The leaves
      should be booleans, ``True`` for leaves/subtrees you want to apply the
      weight decay to, and ``False`` for those you want to skip. Under
      ``optax.inject_hyperparams``, name a callable mask in ``static_args``.
    mu_dtype: Optional ``dtype`` to be used for the first order accumulator;
      if ``None`` then the ``dtype`` is inferred from ``params`` and
      ``updates``.
    nu_dtype: Optional ``dtype`` of the second moment; if ``None``, the real
      dtype of each parameter.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_bound
    >>> def f(x): return jnp.sum(x ** 2)
    >>> # b3 = 0.9: the average of step sizes holds the first steps down and
    >>> # lets them grow over ~10 steps (Adam, b3 = 0, prints 1.28E+01
    >>> # 1.17E+01 1.07E+01 9.69E+00 8.78E+00).
    >>> solver = optax_bound.adamod(learning_rate=0.1, b3=0.9)
    >>> params = jnp.array([1., 2., 3.])
    >>> opt_state = solver.init(params)
    >>> for _ in range(5):
    ...   grad = jax.grad(f)(params)
    ...   updates, opt_state = solver.update(grad, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print('Objective function: {:.2E}'.format(f(params)))
    Objective function: 1.39E+01
    Objective function: 1.36E+01
    Objective function: 1.30E+01
    Objective function: 1.24E+01
    Objective function: 1.16E+01

  References:
    Ding, Ren, Luo & Sun, `An Adaptive and Momental Bound Method for
    Stochastic Learning <https://arxiv.org/abs/1910.12249>`_, 2019
  """
  owner = "optax_bound.adamod"
  _validation.check_hyperparameter(
      "weight_decay", weight_decay, _validation.FINITE_NON_NEGATIVE,
      schedule=True, optional=True,
  )
  return _chain(
      owner,
      _momental_bound.clip_step_size_by_momental_bound(
          _moments.scale_by_adam(**_moment_kwargs(
              b1, b2, eps, eps_root, mu_dtype, nu_dtype, "reference")),
          learning_rate=learning_rate,
          b3=b3,
          flip_sign=False,
      ),
      _add_decayed_weights(
          _lr_scaled(weight_decay, learning_rate), mask, owner),
      optax.scale(-1.0),
  )
