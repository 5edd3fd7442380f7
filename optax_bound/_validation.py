"""Construction-time checks of concrete hyperparameters.

Only concrete numbers are checked: a schedule is a function we cannot see into,
and a traced value (``optax.inject_hyperparams`` under ``jax.jit``) has no value
yet. Checking at construction keeps every ``update`` free of Python branches on
hyperparameters, as Optax's own transforms are.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _concrete_values(value: Any) -> np.ndarray | None:
  """The value as a NumPy array, or None where it cannot be known now."""
  if callable(value) or isinstance(value, jax.core.Tracer):
    return None
  return np.asarray(value)


def check_non_negative(name: str, value: Any) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``value >= 0`` (inf allowed)."""
  values = _concrete_values(value)
  if values is not None and not np.all(values >= 0):
    raise ValueError(f"`{name}` must be >= 0, got {value!r}.")


def check_finite_non_negative(name: str, value: Any) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``0 <= value < inf``.

  For the scales of a step (learning rates, decay rates): an infinite one turns
  every update into inf or NaN.
  """
  values = _concrete_values(value)
  if values is not None and not np.all((values >= 0) & np.isfinite(values)):
    raise ValueError(f"`{name}` must be finite and >= 0, got {value!r}.")


def check_decay_rate(name: str, value: Any) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``0 <= value < 1``."""
  values = _concrete_values(value)
  if values is not None and not np.all((values >= 0) & (values < 1)):
    raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")


def is_concrete_zero(value: Any) -> bool:
  """Whether ``value`` is a plain number equal to zero (not a schedule or array)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


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


def check_same_structure(updates: Any, params: Any) -> None:
  """Raises ``ValueError`` unless ``updates`` has the structure and shapes of params.

  ``params`` may be the parameters or a param-shaped part of the state. Shapes
  are static, so the check costs nothing under ``jax.jit``; without it a
  gradient of shape (3, 1) for a (3,) parameter would broadcast silently.
  """
  # Typed Any: mypy cannot resolve jaxlib's PyTreeDef, which does support ==.
  got: Any = jax.tree.structure(updates)
  expected: Any = jax.tree.structure(params)
  if got != expected:
    raise ValueError(
        "The updates' tree structure does not match the params the optimizer "
        f"was initialized with.\n  updates: {got}\n  params:  {expected}"
    )
  for (path, u), p in zip(
      jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(params),
      strict=True,
  ):
    if np.shape(u) != np.shape(p):
      raise ValueError(
          f"The update at {jax.tree_util.keystr(path) or 'the root'} has shape "
          f"{np.shape(u)}, but its parameter has shape {np.shape(p)}."
      )
