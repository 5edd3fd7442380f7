"""The dtypes the transforms compute in, and the elementwise helpers they share.

Three dtypes meet in every step, and each has one rule, spelled here once:

* *Per-step scalars* (the learning rate, the bounds, the bias correction) are
  computed once per step in :func:`scalar_dtype`, float64 under
  ``jax_enable_x64`` and float32 otherwise, whatever the parameters' dtype,
  and cast to each leaf's dtype in its pass.
* *Moment arithmetic* runs in :func:`arithmetic_dtype`, at least float32:
  in bfloat16, ``b2 = 0.999`` rounds to 1.0 and the second moment would never
  decay. The moments are then stored in their own dtypes.
* *Updates* come back in the gradient's dtype (:func:`update_dtype`), as
  Optax's do; an integer gradient on a float parameter gets the parameter's.
"""

from typing import Any

import jax
import jax.numpy as jnp


def scalar_dtype() -> jnp.dtype:
  """The dtype of per-step scalars: float64 under ``jax_enable_x64``, else float32."""
  return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def arithmetic_dtype(*dtypes: Any) -> jnp.dtype:
  """The promoted dtype of ``dtypes``, at least float32 (complex64 for complex).

  Found under JAX's standard promotion rules whatever the user's setting: this
  is the dtype the passes cast every operand to explicitly, so that they also
  run under ``jax.numpy_dtype_promotion('strict')``.
  """
  with jax.numpy_dtype_promotion("standard"):
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def cast_all(dtype: Any, *values: Any) -> tuple[jax.Array, ...]:
  """Each of ``values`` (numbers, NumPy or JAX scalars, tracers) as ``dtype``.

  The explicit casts that let every step run under
  ``jax.numpy_dtype_promotion('strict')``; under standard promotion they are
  the casts it would make, so no value changes.
  """
  return tuple(jnp.asarray(value).astype(dtype) for value in values)


def real_dtype(dtype: Any) -> jnp.dtype:
  """float32 for complex64, float64 for complex128; a real dtype unchanged."""
  return jnp.dtype(jnp.finfo(dtype).dtype)


def update_dtype(gradient: jax.Array, moment: jax.Array) -> jnp.dtype:
  """The gradient's dtype when it is inexact, else the moment's (an int grad)."""
  if jnp.issubdtype(gradient.dtype, jnp.inexact):
    return gradient.dtype
  return moment.dtype


def select(pred: jax.Array, on_true: jax.Array, on_false: jax.Array) -> jax.Array:
  """``jnp.where`` for operands of one shape and dtype, as a single primitive.

  ``jnp.where`` wraps its select in a nested ``jit``, which costs a call in the
  traced program and its lowering per use; per leaf and per step, that was a
  measurable share of the time to the first step.
  """
  return jax.lax.select(pred, on_true, on_false)


def saturate(v: jax.Array, dtype: Any) -> jax.Array:
  """``v``, held at ``dtype``'s largest value instead of +inf: safe to cast.

  A gradient above ~1.8e19 (float32, bfloat16) squares to inf; an infinite
  second moment would pin its element at the lower bound for ever, and turn
  into 0 * inf = NaN with ``b2 = 0``. Finite values are unchanged, bit for bit,
  and NaN stays NaN (NaN > max is False). The bound is the largest value of
  ``dtype``, the dtype ``v`` is stored in, and exact in the wider dtype it is
  computed in, so it holds before the cast: float32's largest value would
  round to inf in bfloat16.
  """
  # Before the cast, not after: a comparison on the cast value made XLA keep
  # the unsaturated bfloat16 moment in memory for the update's loop (2 bytes
  # per parameter). A select, not jnp.minimum: with minimum, XLA recomputed
  # the moment inside the pass that updates the parameters (reading g and the
  # old nu again) and so had to copy the old nu before it was overwritten in
  # place: 12 more bytes per parameter, and AdaBound's step took 2.7x
  # optax.adam's on the ResNet-34 tree (benchmarks/speed).
  big = jnp.asarray(jnp.finfo(dtype).max, v.dtype)
  return select(v > big, jax.lax.full_like(v, big), v)


def unzip(tree: Any, leaf_type: Any) -> tuple:
  """The fields of the NamedTuple ``leaf_type`` at each leaf, as separate trees.

  For a per-leaf function that returns several arrays at once (one pass over
  each parameter): ``leaf_type`` is private, so no tuple of the caller's tree
  is mistaken for one.
  """
  is_leaf = lambda x: isinstance(x, leaf_type)
  return tuple(
      jax.tree.map(lambda x, name=name: getattr(x, name), tree, is_leaf=is_leaf)
      for name in leaf_type._fields
  )
