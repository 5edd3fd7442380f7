"""The cost of the first step, pinned by counting, not by timing.

Time to the first step is tracing plus XLA's compilation, and both grow with
the program per leaf. Each leaf's pass (moments, bound) is one jitted function,
traced once per distinct shape and dtype and called once per leaf, so the
traced step holds a few equations per leaf where ``optax.adam`` holds 16; and
the compiled step holds no more per leaf than ``optax.adam``'s plus the
clip's comparisons. The counts are marginal (the difference between a tree of
8 leaves and one of 4), so that the per-step scalars, computed once, are not
counted. ``python -m benchmarks.speed --only first_step`` measures the times.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import optax_bound

# The bounded step's comparisons and selects, and the second moment's
# saturation, on top of the Adam-family pass they wrap (measured: 16 for
# AdaBound over Adam, 15 for AMSBound over AMSGrad, 16 for AdaBoundW over
# AdamW); the momental bound divides, averages and selects (41 over Adam).
PAIRS = {
    "adabound": (lambda: optax_bound.adabound(learning_rate=1e-3),
                 lambda: optax.adam(1e-3), 18),
    "amsbound": (lambda: optax_bound.amsbound(learning_rate=1e-3),
                 lambda: optax.amsgrad(1e-3), 18),
    "adaboundw": (lambda: optax_bound.adaboundw(
        learning_rate=1e-3, weight_decay=1e-4),
                  lambda: optax.adamw(1e-3, weight_decay=1e-4), 18),
    "adamod": (lambda: optax_bound.adamod(learning_rate=1e-3),
               lambda: optax.adam(1e-3), 44),
}


def _tree(n):
  # Distinct shapes: leaves of one shape would share a trace.
  return {f"p{i}": jnp.zeros((8, 3 + i), jnp.float32) for i in range(n)}


def _sizes(make, n):
  """(equations of the traced step, instructions of the compiled step)."""
  params = _tree(n)
  tx = make()

  def step(p, s, g):
    updates, s = tx.update(g, s, p)
    return optax.apply_updates(p, updates), s

  state = tx.init(params)
  equations = len(jax.make_jaxpr(step)(params, state, params).eqns)
  compiled = jax.jit(step).lower(params, state, params).compile().as_text()
  instructions = sum(" = " in line for line in compiled.splitlines())
  return equations, instructions


def _per_leaf(make):
  small, large = _sizes(make, 4), _sizes(make, 8)
  return tuple((b - a) / 4 for a, b in zip(small, large, strict=True))


@pytest.mark.slow  # compiles eight steps
@pytest.mark.parametrize("name", list(PAIRS))
def test_each_leaf_adds_a_few_traced_equations_and_adams_compiled_pass(name):
  ours, optax_counterpart, compiled_allowance = PAIRS[name]
  our_equations, our_instructions = _per_leaf(ours)
  their_equations, their_instructions = _per_leaf(optax_counterpart)
  # One call per pass (moments, bound; a decay) and the parameter update.
  assert our_equations <= 6 < their_equations
  assert our_instructions <= their_instructions + compiled_allowance


def test_leaves_of_one_shape_share_one_trace_of_each_pass():
  params = {f"p{i}": jnp.zeros((8, 3), jnp.float32) for i in range(6)}
  tx = optax_bound.amsbound(learning_rate=1e-3)
  jaxpr = jax.make_jaxpr(lambda s, g: tx.update(g, s)[0])(tx.init(params), params)
  calls = [eqn for eqn in jaxpr.eqns
           if eqn.params.get("name") in ("_moment_pass", "_bounded_pass")]
  # Two passes per leaf, six leaves: twelve calls of two traced functions.
  assert len(calls) == 12
  assert len({id(eqn.params["jaxpr"].jaxpr) for eqn in calls}) == 2
