r"""Watching the bound: the step sizes a step took, and how many the bound set.

Both functions read what the step left in the optimizer state, wherever the
bound sits in it (inside ``optax.chain``, ``optax.inject_hyperparams``,
``optax.MultiSteps``, ``optax.apply_if_finite``, ``optax.masked`` or
``optax.multi_transform``), so a training loop logs the bound without passing
its hyperparameters again. Neither is on the step's path: a step that does
not call them pays nothing.
"""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_bound import _dynamic_bound
from optax_bound import _momental_bound

_BOUND_STATES = (
    _dynamic_bound.ClipStepSizeByDynamicBoundState,
    _momental_bound.ClipStepSizeByMomentalBoundState,
)
# Not a parameter of this bound: another group's, in multi_transform or masked.
_ELSEWHERE = object()


class BoundStats(NamedTuple):
  """What the bound did on one step; see :func:`bound_stats`."""

  #: The lower end of the band the step sizes were clipped into (the dynamic
  #: bound's lower(t)); 0 for the momental bound.
  lower: jax.Array
  #: The upper end of the band (the dynamic bound's upper(t)); for the
  #: momental bound, the median of its per-element bounds.
  upper: jax.Array
  #: The share of elements (with a nonzero first moment) whose step size was
  #: set by the lower bound.
  fraction_at_lower: jax.Array
  #: The share of elements whose step size was set by the upper bound.
  fraction_at_upper: jax.Array
  #: The median of the elements' step sizes :math:`|u| / |m|`.
  median_step_size: jax.Array


def _bound_states(state: optax.OptState) -> list[Any]:
  found = [
      node for node in jax.tree.leaves(
          state, is_leaf=lambda x: isinstance(x, _BOUND_STATES))
      if isinstance(node, _BOUND_STATES)
  ]
  if not found:
    raise ValueError(
        "The state holds no bound: pass the state returned by a step of "
        "optax_bound.adabound, amsbound, adaboundw, adamod, or of a chain "
        "holding clip_step_size_by_dynamic_bound or "
        "clip_step_size_by_momental_bound."
    )
  return found


def _first_moment(bound_state: Any) -> optax.Updates:
  return optax.tree.get(bound_state.inner_state, "mu")


def _per_parameter(updates, bound_state, fn):
  """``fn(update, mu, bound)`` where this bound owns the parameter.

  ``bound`` is the momental bound's per-element average of step sizes, or
  None for the dynamic bound. Elsewhere the result is ``_ELSEWHERE``. The
  bound's first moment is a prefix of the updates' tree: under
  ``optax.masked`` and ``optax.multi_transform`` the parameters of other
  groups are ``optax.MaskedNode``s in it.
  """
  trees = [_first_moment(bound_state), updates]
  if isinstance(bound_state, _momental_bound.ClipStepSizeByMomentalBoundState):
    trees.append(bound_state.step_size_average)

  def leaf(m, u, *bound):
    if m is None or isinstance(m, optax.MaskedNode):
      return jax.tree.map(lambda _: _ELSEWHERE, u)
    return fn(u, m, bound[0] if bound else None)

  return jax.tree.map(
      leaf, *trees,
      is_leaf=lambda x: x is None or isinstance(x, optax.MaskedNode),
  )


def _step_sizes(u, m):
  size = jnp.abs(u) / jnp.abs(m).astype(jnp.abs(u).dtype)
  return jnp.where(m == 0, jnp.nan, size)


def effective_step_sizes(
    updates: optax.Updates, state: optax.OptState
) -> optax.Updates:
  r"""The per-element step sizes :math:`|u_t| / |m_t|` a bounded step applied.

  Pass the updates and the new state of one step of
  :func:`optax_bound.adabound`, :func:`optax_bound.amsbound`,
  :func:`optax_bound.adamod` or any pipeline holding
  :func:`optax_bound.clip_step_size_by_dynamic_bound` or
  :func:`optax_bound.clip_step_size_by_momental_bound`: the result is the
  bounded step size of every element. (For :func:`optax_bound.adaboundw` and
  :func:`optax_bound.adamod` a decoupled decay is part of the updates, so pass
  ``weight_decay=0`` to observe the step sizes.)

  Args:
    updates: The updates returned by the step.
    state: The optimizer state returned by the same step.

  Returns:
    The step size of each element, in a tree like ``updates``; NaN where the
    first moment is 0 and the step size is undefined, and for parameters that
    no bound updates (a group frozen by ``optax.set_to_zero``, say).

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
  per_bound = [
      _per_parameter(updates, bound_state, lambda u, m, _: _step_sizes(u, m))
      for bound_state in _bound_states(state)
  ]

  def merge(u, *sizes):
    owned = [s for s in sizes if s is not _ELSEWHERE]
    if len(owned) > 1:
      raise ValueError(
          "Two bounds in the state update the same parameter; the step sizes "
          "are ambiguous."
      )
    if not owned:
      return jnp.full(jnp.shape(u), jnp.nan, jnp.abs(u).dtype)
    return owned[0]

  return jax.tree.map(merge, updates, *per_bound, is_leaf=lambda x: x is None)


class _Record(NamedTuple):
  size: jax.Array
  at_lower: jax.Array
  at_upper: jax.Array
  upper: jax.Array


def _rounding(dtype) -> float:
  """Relative error of a step size read back as |u| / |m| from its update."""
  return 8 * float(jnp.finfo(dtype).eps)


def bound_stats(updates: optax.Updates, state: optax.OptState) -> BoundStats:
  r"""What the bound did on one step: its band, how many it clipped, the median.

  One call for a training loop's log, to *see* the switch from Adam to SGD:
  early, few step sizes are clipped and their median is Adam's; once the band
  has closed around ``final_lr``, the fractions at the bounds approach 1. It
  reads the band from the state (the step stores it: two scalars), so it needs
  no hyperparameter, schedule or ``bound_fn`` again. Call it on the updates of
  a step that was applied (under ``optax.MultiSteps``, an accumulating
  mini-step's updates are zeros).

  Args:
    updates: The updates returned by the step.
    state: The optimizer state returned by the same step.

  Returns:
    A :class:`BoundStats`. With several bounds in the state (groups of
    ``optax.multi_transform``), the fractions and the median are over all
    their elements, each against its own band, and the band is the smallest
    lower and the largest upper bound. For the momental bound of
    :func:`optax_bound.adamod`, whose upper bound is per element, ``lower`` is
    0, ``upper`` the median of its per-element bounds, and
    ``fraction_at_upper`` the share of elements it capped.

  Examples:
    >>> import jax, jax.numpy as jnp, optax_bound
    >>> tx = optax_bound.adabound(learning_rate=0.1, final_lr=0.1, gamma=1.0)
    >>> params = jnp.array([2.0, -10.0, 100.0])
    >>> updates, state = tx.update(params, tx.init(params))
    >>> stats = optax_bound.bound_stats(updates, state)
    >>> print(f"band [{stats.lower:.2f}, {stats.upper:.2f}]: "
    ...       f"{stats.fraction_at_lower:.2f} at lower, "
    ...       f"{stats.fraction_at_upper:.2f} at upper, "
    ...       f"median {stats.median_step_size:.2f}")
    band [0.05, 0.20]: 0.33 at lower, 0.33 at upper, median 0.10
  """
  lowers, uppers, columns = [], [], []
  for bound_state in _bound_states(state):
    dynamic = isinstance(
        bound_state, _dynamic_bound.ClipStepSizeByDynamicBoundState)
    lower = bound_state.lower if dynamic else 0.0

    def record(u, m, per_element_bound, dynamic=dynamic, lower=lower,
               upper=bound_state.upper if dynamic else None):
      size = _step_sizes(u, m)
      tolerance = _rounding(size.dtype)
      if not dynamic:
        upper = per_element_bound.astype(size.dtype)
      return _Record(
          size=size,
          at_lower=size <= lower * (1 + tolerance),
          at_upper=size >= upper * (1 - tolerance),
          upper=jnp.broadcast_to(upper, size.shape).astype(size.dtype),
      )

    records = [
        r for r in jax.tree.leaves(
            _per_parameter(updates, bound_state, record),
            is_leaf=lambda x: isinstance(x, _Record))
        if isinstance(r, _Record)
    ]
    if not records:
      continue
    column = _Record(*(
        jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in field])
        for field in zip(*records, strict=True)
    ))
    columns.append(column)
    lowers.append(jnp.asarray(lower, jnp.float32))
    uppers.append(
        jnp.asarray(bound_state.upper, jnp.float32) if dynamic
        # The momental bound's per-element bounds, where a step size exists.
        else jnp.nanmedian(jnp.where(jnp.isnan(column.size), jnp.nan, column.upper))
    )
  if not columns:
    raise ValueError("The bounds in the state own no parameter of the updates.")
  size, at_lower, at_upper, _ = (
      jnp.concatenate(field) for field in zip(*columns, strict=True))
  defined = ~jnp.isnan(size)
  share = lambda hit: jnp.sum((hit > 0) & defined) / jnp.sum(defined)
  return BoundStats(
      lower=jnp.min(jnp.stack(lowers)),
      upper=jnp.max(jnp.stack(uppers)),
      fraction_at_lower=share(at_lower),
      fraction_at_upper=share(at_upper),
      median_step_size=jnp.nanmedian(size),
  )
