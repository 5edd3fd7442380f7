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
from optax_bound import _numerics

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


class _Owned:
  """``fn``'s result for one leaf and the bound that owns the leaf.

  A plain object, not a pytree: a tree of results keeps it whole as a leaf.
  """

  def __init__(self, bound_state: Any, value: Any):
    self.bound_state = bound_state
    self.value = value


def _owned(updates, state, fn):
  """``fn(bound_state, update, mu, bound)`` for the one bound owning each leaf.

  A tree like ``updates`` of :class:`_Owned` results, and ``_ELSEWHERE``
  where no bound owns the parameter. Two bounds owning one parameter
  (``optax.chain(adabound(), adabound())``) leave its step size, and so every
  statistic of it, undefined: an error, not a number.
  """
  per_bound = [
      _per_parameter(
          updates, bound_state,
          lambda u, m, bound, bound_state=bound_state: _Owned(
              bound_state, fn(bound_state, u, m, bound)))
      for bound_state in _bound_states(state)
  ]

  def merge(u, *results):
    del u
    owned = [r for r in results if r is not _ELSEWHERE]
    if len(owned) > 1:
      raise ValueError(
          "Two bounds in the state update the same parameter (a chain of two "
          "bounded optimizers, say); its step size, and what each bound did "
          "to it, are ambiguous."
      )
    return owned[0] if owned else _ELSEWHERE

  return jax.tree.map(merge, updates, *per_bound, is_leaf=lambda x: x is None)


def _size_dtype(u, m):
  """The dtype step sizes are read back in: float32 or wider, never bfloat16."""
  return _numerics.arithmetic_dtype(
      _numerics.real_dtype(jnp.result_type(u)),
      _numerics.real_dtype(jnp.result_type(m)),
      _numerics.scalar_dtype(),
  )


def _step_sizes(u, m):
  """``|u| / |m|`` in :func:`_size_dtype` (one rounding), NaN where m is 0."""
  dtype = _size_dtype(u, m)
  size = jnp.abs(u).astype(dtype) / jnp.abs(m).astype(dtype)
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
  sizes = _owned(
      updates, state,
      lambda bound_state, u, m, bound: _step_sizes(u, m).astype(
          jnp.abs(u).dtype))

  def leaf(u, size):
    if size is _ELSEWHERE:
      return jnp.full(jnp.shape(u), jnp.nan, jnp.abs(u).dtype)
    return size.value

  return jax.tree.map(leaf, updates, sizes, is_leaf=lambda x: x is None)


class _Record(NamedTuple):
  size: jax.Array
  at_lower: jax.Array
  at_upper: jax.Array
  upper: jax.Array


def _unit_roundoff(dtype) -> float:
  return float(jnp.finfo(dtype).eps) / 2


def _tolerance(u, m, bound) -> float:
  """Relative error of a step size at a bound, read back as |u| / |m|.

  The bound's step is ``bound * m`` computed in the pass's dtype and rounded
  once to the update's dtype (and the momental bound's average once more, to
  its storage dtype); the read-back divides once more. One unit roundoff per
  low-precision rounding, and a few of the wide dtype's for the rest: for
  bfloat16 updates that is 0.4%, not the 6% a tolerance of 8 eps would be.
  """
  wide = _size_dtype(u, m)
  tolerance = _unit_roundoff(jnp.abs(u).dtype) + 8 * _unit_roundoff(wide)
  if bound is not None:
    tolerance += _unit_roundoff(jnp.result_type(bound))
  return tolerance


def _record(bound_state, u, m, per_element_bound):
  """One leaf's step sizes and which bound set them."""
  size = _step_sizes(u, m)
  tolerance = _tolerance(u, m, per_element_bound)
  if isinstance(bound_state, _dynamic_bound.ClipStepSizeByDynamicBoundState):
    lower, upper = _numerics.cast_all(
        size.dtype, bound_state.lower, bound_state.upper)
    at_lower = size <= lower * (1 + tolerance)
  else:
    (upper,) = _numerics.cast_all(size.dtype, per_element_bound)
    at_lower = jnp.zeros(size.shape, jnp.bool_)
  return _Record(
      size=size,
      at_lower=at_lower,
      at_upper=size >= upper * (1 - tolerance),
      upper=jnp.broadcast_to(upper, size.shape),
  )


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
  by_bound: dict[int, tuple[Any, list[_Record]]] = {
      id(b): (b, []) for b in _bound_states(state)}
  for owned in jax.tree.leaves(_owned(updates, state, _record)):
    if isinstance(owned, _Owned):
      by_bound[id(owned.bound_state)][1].append(owned.value)
  lowers, uppers, columns = [], [], []
  for bound_state, owned in by_bound.values():
    if not owned:
      continue
    column = _Record(*(
        jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in field])
        for field in zip(*owned, strict=True)
    ))
    columns.append(column)
    if isinstance(bound_state, _dynamic_bound.ClipStepSizeByDynamicBoundState):
      lowers.append(jnp.asarray(bound_state.lower).astype(jnp.float32))
      uppers.append(jnp.asarray(bound_state.upper).astype(jnp.float32))
    else:
      lowers.append(jnp.zeros([], jnp.float32))
      # The momental bound's per-element bounds, where a step size exists.
      uppers.append(jnp.nanmedian(
          jnp.where(jnp.isnan(column.size), jnp.nan, column.upper)))
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
