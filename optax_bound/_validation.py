"""Checks of arguments, parameters and states, with errors that name the culprit.

Hyperparameters are checked where they are concrete: a number or an array at
construction, a schedule's value where it is first called. A traced value
(``optax.inject_hyperparams`` under ``jax.jit``) has no value yet; its shape
and dtype still do, and are checked. Checking outside ``update``'s arithmetic
keeps every step free of Python branches on hyperparameter values, as Optax's
own transforms are.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optax_bound import _numerics

# The accepted range of each kind of hyperparameter, as the errors state it.
NON_NEGATIVE = ">= 0"
FINITE_NON_NEGATIVE = "finite and >= 0"
FINITE_POSITIVE = "finite and > 0"
DECAY_RATE = "in [0, 1)"

_IN_RANGE = {
    NON_NEGATIVE: lambda x: x >= 0,
    # An infinite scale of a step (a learning rate, a decay) turns every
    # update into inf or NaN.
    FINITE_NON_NEGATIVE: lambda x: (x >= 0) & np.isfinite(x),
    DECAY_RATE: lambda x: (x >= 0) & (x < 1),
  # A learning rate that others are divided by.
  FINITE_POSITIVE: lambda x: (x > 0) & np.isfinite(x),
}


def check_scalar(name: str, value: Any) -> None:
  """Raises ``ValueError`` unless ``value`` is a real scalar that is not a bool.

  Works on traced values too (shape and dtype are static). A shape-(1,) learning
  rate would broadcast into every update, turning a scalar parameter's update
  into shape (1,); ``True`` is a number to NumPy and a mistake to a reader.
  """
  dtype = getattr(value, "dtype", None)
  if isinstance(value, (bool, np.bool_)) or (
      dtype is not None and jnp.dtype(dtype) == jnp.bool_
  ):
    raise ValueError(f"`{name}` must be a number, got the boolean {value!r}.")
  shape = np.shape(value)
  if shape != ():
    raise ValueError(f"`{name}` must be a scalar, got an array of shape {shape}.")
  if dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
    raise ValueError(f"`{name}` must be real, got dtype {dtype}.")


def check_hyperparameter(
    name: str,
    value: Any,
    accepted: str,
    *,
    schedule: bool = False,
    optional: bool = False,
) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``value`` is valid.

  Args:
    name: The argument's name, as the caller wrote it.
    value: A number, an array, a traced value or (where ``schedule``) a
      callable.
    accepted: ``NON_NEGATIVE``, ``FINITE_NON_NEGATIVE`` or ``DECAY_RATE``.
    schedule: Whether a schedule (a callable of the step count) is accepted;
      its values are checked by :func:`check_schedule_value` when it is called.
    optional: Whether ``None`` is accepted.
  """
  if value is None and optional:
    return
  if callable(value):
    if schedule:
      return
    raise ValueError(
        f"`{name}` must be a number, not a schedule: only `learning_rate` and "
        f"`final_lr` follow the step count. Got {value!r}."
    )
  check_scalar(name, value)
  if isinstance(value, jax.core.Tracer):
    return
  if not np.all(_IN_RANGE[accepted](np.asarray(value))):
    raise ValueError(f"`{name}` must be {accepted}, got {value!r}.")


def check_schedule_value(name: str, value: Any) -> None:
  """Raises ``ValueError`` unless a schedule's value is a real scalar.

  Runs each time the schedule is called, under ``jax.jit`` too: shapes and
  dtypes are static, so this costs nothing in the compiled step.
  """
  try:
    check_scalar(name, value)
  except ValueError as error:
    raise ValueError(f"The schedule passed as {error}") from None


def check_decay_rate_in_dtype(name: str, value: Any, dtype: Any) -> None:
  """Raises ``ValueError`` if ``value`` rounds to 1 in the moments' arithmetic.

  ``b2 = 1 - 1e-9`` is < 1 in float64 but 1.0 in float32, where it would
  freeze the moment at its initial zero.
  """
  if callable(value) or isinstance(value, jax.core.Tracer):
    return
  dtype = _numerics.arithmetic_dtype(dtype)
  if np.asarray(value, dtype=_numerics.real_dtype(dtype)) >= 1:
    raise ValueError(
        f"`{name}` must be in [0, 1) in {jnp.dtype(dtype).name}, the dtype the "
        f"moments are computed in; {value!r} rounds to 1.0 there."
    )


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")


def check_dtype(name: str, dtype: Any, *, complex_ok: bool = True) -> None:
  """Raises ``ValueError`` unless ``dtype`` is None or a float (or complex) dtype.

  An integer moment would round every update to 0 and freeze training.
  """
  if dtype is None:
    return
  try:
    dtype = jnp.dtype(dtype)
  except TypeError:
    raise ValueError(
        f"`{name}` must be a float dtype or None, got {dtype!r}."
    ) from None
  kind = jnp.inexact if complex_ok else jnp.floating
  if not jnp.issubdtype(dtype, kind):
    raise ValueError(
        f"`{name}` must be a {'float or complex' if complex_ok else 'real float'}"
        f" dtype or None, got {dtype.name}."
    )


def check_mask(mask: Any) -> None:
  """Raises ``ValueError`` for a mask that is one boolean, not a tree or callable.

  ``optax.inject_hyperparams`` takes a callable ``mask`` for a schedule, calls
  it with the step count and passes on what it returns, a single boolean,
  unless ``mask`` is named in ``static_args``: the decay would be switched off
  (or on) for every parameter, silently.
  """
  dtype = getattr(mask, "dtype", None)
  if isinstance(mask, (bool, np.bool_)) or (
      dtype is not None and np.shape(mask) == () and jnp.dtype(dtype) == jnp.bool_
  ):
    raise ValueError(
        "`mask` must be a tree of booleans like the params, or a callable "
        f"returning one; got the single boolean {mask!r}. Under "
        "optax.inject_hyperparams, name a callable mask in static_args: "
        "inject_hyperparams(optax_bound.adabound, static_args=('mask',))."
    )


def is_concrete_zero(value: Any) -> bool:
  """Whether ``value`` is a number equal to zero, however it is spelled.

  A Python, NumPy or concrete JAX scalar; not a schedule, and not a traced
  value (``inject_hyperparams`` under ``jax.jit``), whose value is unknown.
  """
  if callable(value) or isinstance(value, (bool, jax.core.Tracer)):
    return False
  try:
    array = np.asarray(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return False
  return array.shape == () and array.dtype != np.bool_ and bool(array == 0)


def check_inexact_leaves(params: Any) -> None:
  """Raises ``TypeError`` naming the first leaf that is not float or complex.

  An integer or boolean leaf has no gradient step; silently rounding its update
  would hide a bug in the caller's tree.
  """
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    dtype = getattr(leaf, "dtype", None) or np.result_type(leaf)
    # jnp, not np: NumPy does not know bfloat16 is a float.
    if not jnp.issubdtype(dtype, jnp.inexact):
      where = jax.tree_util.keystr(path) or "the root of the tree"
      raise TypeError(
          f"optax_bound optimizes float and complex parameters; the leaf at "
          f"{where} has dtype {dtype}. Keep non-trainable "
          "leaves out of the optimizer, e.g. with optax.masked or "
          "optax.multi_transform and optax.set_to_zero."
      )


def check_state(owner: str, state: Any, expected: type | tuple[type, ...]) -> None:
  """Raises ``TypeError`` unless ``state`` was made by ``owner``'s ``init``.

  A state from another optimizer (an AMSBound state given to AdaBound, a
  masked decay's state to an unmasked one, ``None``) would otherwise be read
  field by field, or fail deep inside with a message that names nothing.
  """
  if not isinstance(state, expected):
    names = (expected,) if isinstance(expected, type) else expected
    raise TypeError(
        f"{owner} was given a state it did not create: expected "
        f"{' or '.join(t.__name__ for t in names)}, got {type(state).__name__}."
        " Pass the state returned by this optimizer's init (or a checkpoint of"
        " it restored into that structure)."
    )


def check_same_structure(updates: Any, params: Any) -> None:
  """Raises ``ValueError`` unless ``updates`` has the structure and shapes of params.

  ``params`` may be the parameters or a param-shaped part of the state. Shapes
  are static, so the check costs nothing under ``jax.jit``; without it a
  gradient of shape (3, 1) for a (3,) parameter would broadcast silently.
  """
  update_leaves, got_def = jax.tree.flatten(updates)
  param_leaves, expected = jax.tree.flatten(params)
  # Typed Any: mypy cannot resolve jaxlib's PyTreeDef, which does support ==.
  got: Any = got_def
  if got != expected:
    raise ValueError(
        "The updates' tree structure does not match the params the optimizer "
        f"was initialized with.\n  updates: {got}\n  params:  {expected}"
    )
  for u, p in zip(update_leaves, param_leaves, strict=True):
    if np.shape(u) != np.shape(p):
      break
  else:
    return
  # Only on failure: name the first mismatched leaf by its path.
  for (path, u), p in zip(
      jax.tree_util.tree_leaves_with_path(updates), param_leaves, strict=True
  ):
    if np.shape(u) != np.shape(p):
      raise ValueError(
          f"The update at {jax.tree_util.keystr(path) or 'the root'} has shape "
          f"{np.shape(u)}, but its parameter has shape {np.shape(p)}."
      )
