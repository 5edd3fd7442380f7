"""Strict dtype promotion: every constructor in every float dtype.

``jax.numpy_dtype_promotion('strict')`` (the setting of optimistix's test
suite, among others) refuses every implicit promotion between dtypes. The
steps cast each operand explicitly, so they run there, and the updates and
the state keep the dtypes they have under standard promotion.
"""

from _optimizers import select
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

DTYPES = {
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
    "float32": jnp.float32,
    "float64": jnp.float64,
}


def _params(dtype):
  return {"w": jnp.linspace(-1.0, 1.0, 6, dtype=dtype).reshape(2, 3),
          "b": jnp.full((3,), 0.5, dtype)}


def _steps(tx, params, steps=2):
  """``steps`` jitted steps; the last updates and every state's dtypes."""
  state = tx.init(params)
  step = jax.jit(tx.update)
  dtypes = []
  for i in range(steps):
    grads = jax.tree.map(lambda p, i=i: jnp.cos(p + i).astype(p.dtype), params)
    updates, state = step(grads, state, params)
    dtypes.append(jax.tree.map(jnp.result_type, state))
  return updates, state, dtypes


def _spellings(opt):
  """The entry as built from Python numbers, and from NumPy float32 ones."""
  yield opt(learning_rate=1e-2)
  numbers = {k: np.float32(v) for k, v in dict(
      learning_rate=1e-2, b1=0.9, b2=0.999, eps=1e-8, gamma=1e-3,
      final_lr=0.1).items() if opt.accepts(k)}
  yield opt(**numbers)


def _fast_for(*names):
  """Every public entry; those of ``names`` in the fast loop, all in the full run.

  Ours only: Optax's own optax.scale_by_adam (the bounded_optax_adam entry)
  does not run under strict promotion (its bias correction raises b1 ** count).
  """
  return [pytest.param(opt, marks=[] if opt.name in names else pytest.mark.slow)
          for opt in select(public=True)]


@pytest.mark.parametrize("dtype", [
    # bfloat16 in the fast loop; the other dtypes compile as many steps again.
    "bfloat16", *(pytest.param(d, marks=pytest.mark.slow)
                  for d in ("float16", "float32", "float64"))])
@pytest.mark.parametrize("opt", _fast_for("adabound"))
def test_every_optimizer_runs_under_strict_promotion_keeping_the_dtypes(
    opt, dtype):
  with jax.enable_x64(dtype == "float64"):
    params = _params(DTYPES[dtype])
    expected_updates, _, expected_dtypes = _steps(opt(learning_rate=1e-2),
                                                 params)
    with jax.numpy_dtype_promotion("strict"):
      results = [_steps(tx, params) for tx in _spellings(opt)]
    for updates, state, dtypes in results:
      chex.assert_trees_all_equal_dtypes(updates, params)
      assert dtypes == expected_dtypes
      chex.assert_tree_all_finite(updates)
      optax_bound.bound_stats(updates, state)
    # The casts are those standard promotion makes: the same numbers.
    chex.assert_trees_all_equal(results[0][0], expected_updates)


@pytest.mark.parametrize("dtype", [
    "bfloat16", pytest.param("float32", marks=pytest.mark.slow)])
@pytest.mark.parametrize("opt", _fast_for("adabound"))
def test_injected_hyperparameters_run_under_strict_promotion(opt, dtype):
  params = _params(DTYPES[dtype])
  tx = opt.injected(hyperparam_dtype=jnp.float32, learning_rate=1e-2)
  with jax.numpy_dtype_promotion("strict"):
    updates, _, _ = _steps(tx, params)
  chex.assert_trees_all_equal_dtypes(updates, params)


def test_the_moment_dtypes_and_base_lr_run_under_strict_promotion():
  params = _params(jnp.float32)
  with jax.numpy_dtype_promotion("strict"):
    for tx in (
        optax_bound.amsbound(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
        optax_bound.adabound(learning_rate=optax.linear_schedule(0.0, 1e-2, 4),
                             base_lr=np.float32(1e-2), weight_decay=np.float32(1e-3)),
        optax_bound.adabound(form="paper", weight_decay=optax.constant_schedule(1e-3)),
    ):
      updates, _, _ = _steps(tx, params)
      chex.assert_trees_all_equal_dtypes(updates, params)
