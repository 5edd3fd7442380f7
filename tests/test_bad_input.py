"""Bad input: clear errors at construction and at init, never silent garbage.

Concrete hyperparameters are checked when the optimizer is built; traced ones
(``optax.inject_hyperparams`` under ``jax.jit``) cannot be, and must not raise.
Integer and boolean parameters are rejected at ``init``, naming the leaf; an
update tree that does not match the parameters is rejected at ``update``.
"""

import re

from _optimizers import select
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

# The public moment estimators: blocks, not optimizers on their own.
ESTIMATORS = {
    "scale_by_adam": optax_bound.scale_by_adam,
    "scale_by_amsgrad": optax_bound.scale_by_amsgrad,
}
# The accepted range of each argument, as the error message states it.
RANGES = {
    "learning_rate": "finite and >= 0",
    "final_lr": "finite and >= 0",
    "b1": "in [0, 1)",
    "b2": "in [0, 1)",
    "gamma": ">= 0",
    "eps": ">= 0",
    "weight_decay": "finite and >= 0",
}
BAD_VALUES = {
    "learning_rate": [-1e-3, np.nan, np.float32(-1.0), jnp.asarray(-1.0)],
    "final_lr": [-0.1, np.nan],
    "b1": [1.0, -0.1, 1.5, np.nan],
    "b2": [1.0, -1e-9, np.nan],
    "gamma": [-1e-3, np.nan],
    "eps": [-1e-8, np.nan],
    "weight_decay": [-1e-4, np.nan],
}
# The public blocks and the hyperparameters each takes: the estimators, and
# the bound wrapped around one by hand (the table's entries that are not
# public aliases).
BLOCKS = {
    **{name: (make, ("b1", "b2", "eps")) for name, make in ESTIMATORS.items()},
    **{opt.name: (opt, ("learning_rate", "final_lr", "gamma"))
       for opt in select(public=False)},
}


def _message(arg):
  return re.escape(f"`{arg}` must be {RANGES[arg]}, got ")


@pytest.mark.parametrize("arg,value", [
    (arg, value) for arg, values in BAD_VALUES.items() for value in values])
@pytest.mark.parametrize("opt", select(public=True))
def test_invalid_hyperparameter_raises_naming_it_and_its_range(
    opt, arg, value):
  with pytest.raises(ValueError, match=_message(arg)):
    opt(**{arg: value})


@pytest.mark.parametrize("block,arg,value", [
    (block, arg, value) for block, (_, args) in BLOCKS.items() for arg in args
    for value in BAD_VALUES[arg][:2]])
def test_public_blocks_reject_invalid_hyperparameters(block, arg, value):
  make, _ = BLOCKS[block]
  with pytest.raises(ValueError, match=_message(arg)):
    make(**{arg: value})


@pytest.mark.parametrize("opt", select(public=True))
def test_array_hyperparameter_raises_naming_its_shape(opt):
  with pytest.raises(ValueError, match=re.escape(
      "`final_lr` must be a scalar, got an array of shape (2,).")):
    opt(final_lr=jnp.array([0.1, -0.1]))


@pytest.mark.parametrize("arg", ["learning_rate", "final_lr", "weight_decay"])
@pytest.mark.parametrize("opt", select(public=True))
def test_infinite_scales_are_rejected(opt, arg):
  """An infinite lr, final_lr or decay can only give Inf or NaN updates.

  (lr = inf gives final_lr * inf / inf = NaN bounds; final_lr = inf and
  weight_decay = inf give infinite updates.) ``gamma = inf`` stays valid: it
  is the SGD limit, the bounds closed on final_lr from the first step.
  """
  with pytest.raises(ValueError, match=rf"`{arg}` must be .*got inf"):
    opt(**{arg: np.inf})


@pytest.mark.parametrize("arg,choices", [
    ("form", "('reference', 'paper')"),
    ("final_lr_coupling", "('initial', 'peak', 'fixed')")])
@pytest.mark.parametrize("opt", select(public=True))
def test_unknown_choice_raises_listing_the_choices(opt, arg, choices):
  with pytest.raises(ValueError, match=re.escape(
      f"`{arg}` must be one of {choices}, got 'nope'.")):
    opt(**{arg: "nope"})


@pytest.mark.parametrize("edge", [
    dict(learning_rate=0.0), dict(final_lr=0.0), dict(b1=0.0), dict(b2=0.0),
    dict(gamma=0.0), dict(eps=0.0), dict(weight_decay=0.0),
    dict(b1=0.999999, b2=0.999999), dict(gamma=np.inf),
    dict(learning_rate=jnp.asarray(1e-3), final_lr=np.float32(0.1))],
    ids=lambda edge: ",".join(f"{k}={v}" for k, v in edge.items()))
@pytest.mark.parametrize("opt", select(public=True))
def test_edges_of_the_valid_ranges_are_accepted_and_stay_finite(opt, edge):
  tx = opt(**edge)
  params = jnp.array([1.0, -2.0, 0.5])
  state = tx.init(params)
  for g in ([0.1, -0.2, 0.0], [1.0, 1.0, 1.0]):
    updates, state = tx.update(jnp.array(g), state, params)
    assert np.all(np.isfinite(updates))
  if opt.within_reference_bounds and edge.get("gamma") == np.inf:
    # The bounds are final_lr from the start: the step is 0.1 * mu.
    np.testing.assert_allclose(
        updates, -0.1 * np.asarray(optax.tree.get(state, "mu")), rtol=1e-6)


@pytest.mark.parametrize("opt", select(public=True))
def test_traced_hyperparameters_are_not_validated_and_do_not_raise(opt):
  """Inside jit the values are unknown: even invalid ones build and run."""
  params = jnp.array([1.0, -2.0])

  @jax.jit
  def build_and_step(learning_rate, final_lr, b1, b2, gamma, eps, decay):
    tx = opt(learning_rate=learning_rate, final_lr=final_lr, b1=b1, b2=b2,
             gamma=gamma, eps=eps, weight_decay=decay)
    return tx.update(params, tx.init(params), params)[0]

  valid = build_and_step(1e-3, 0.1, 0.9, 0.999, 1e-3, 1e-8, 1e-4)
  assert np.all(np.isfinite(valid))
  # The caller's responsibility once traced; no exception is the contract.
  build_and_step(-1.0, -0.1, 1.5, 1.0, -1.0, -1.0, -1.0)


@pytest.mark.parametrize("opt", select(public=True))
def test_inject_hyperparams_validates_concrete_values_at_init_only(opt):
  params = jnp.array([1.0, -2.0])
  # Concrete at init (outside jit): checked like a constructor argument.
  bad = opt.injected(b1=1.0)
  with pytest.raises(ValueError, match=_message("b1")):
    bad.init(params)
  # Traced at every jitted update: not checked, not raised.
  tx = opt.injected(learning_rate=1e-3)
  state = jax.jit(tx.init)(params)
  state.hyperparams["b1"] = jnp.asarray(1.5)
  jax.jit(tx.update)(params, state, params)


def test_inject_hyperparams_over_bfloat16_needs_a_float32_hyperparam_dtype():
  """By default Optax casts hyperparameters to the params' dtype: in bfloat16
  the default b2 = 0.999 rounds to 1.0, which is caught (not run silently)."""
  params = jnp.array([1.0, -2.0], jnp.bfloat16)
  with pytest.raises(ValueError, match=r"`b2` must be in \[0, 1\), got .*bfloat16"):
    optax.inject_hyperparams(optax_bound.adabound)().init(params)
  tx = optax.inject_hyperparams(
      optax_bound.adabound, hyperparam_dtype=jnp.float32)()
  updates, _ = tx.update(params, tx.init(params), params)
  assert np.all(np.isfinite(np.asarray(updates, np.float32)))


# -- Integer parameters.

INTEGER_LEAVES = {
    "int32": jnp.array([1, 2], jnp.int32),
    "int8": jnp.array([1, 2], jnp.int8),
    "uint8": jnp.array([1, 2], jnp.uint8),
    "bool": jnp.array([True, False]),
    "python_int": 3,
}


@pytest.mark.parametrize("kind", list(INTEGER_LEAVES))
@pytest.mark.parametrize("make", [
    *select(public=True),
    *(pytest.param(make, id=name) for name, make in ESTIMATORS.items())])
def test_integer_params_are_rejected_at_init_naming_the_leaf(make, kind):
  leaf = INTEGER_LEAVES[kind]
  params = {"layer": [jnp.ones(2), {"steps": leaf}], "bias": jnp.zeros(3)}
  dtype = jnp.asarray(leaf).dtype if kind != "python_int" else None
  with pytest.raises(TypeError) as error:
    make().init(params)
  message = str(error.value)
  assert "['layer'][1]['steps']" in message
  assert (str(dtype) if dtype is not None else "int") in message
  assert "optax.masked" in message and "optax.set_to_zero" in message


def test_the_suggested_workaround_for_integer_leaves_works():
  """optax.multi_transform with optax.set_to_zero, as the TypeError suggests."""
  params = {"w": jnp.array([1.0, -2.0]), "step": jnp.array(3, jnp.int32)}
  labels = {"w": "train", "step": "frozen"}
  tx = optax.multi_transform(
      {"train": optax_bound.amsbound(learning_rate=0.1),
       "frozen": optax.set_to_zero()}, labels)
  grads = {"w": jnp.array([1.0, 1.0]), "step": jnp.array(0, jnp.int32)}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.1, -0.1], rtol=1e-5)
  assert int(updates["step"]) == 0


# -- Update trees that do not match the params.

PARAMS = {"w": jnp.ones(3), "b": jnp.ones(2)}
MISMATCHED_TREES = {
    "missing_leaf": {"w": jnp.ones(3)},
    "extra_leaf": {"w": jnp.ones(3), "b": jnp.ones(2), "c": jnp.ones(1)},
    "list_for_dict": [jnp.ones(3), jnp.ones(2)],
    "none_for_leaf": {"w": None, "b": jnp.ones(2)},
}


@pytest.mark.parametrize("case", list(MISMATCHED_TREES))
@pytest.mark.parametrize("opt", select(public=True))
def test_update_tree_that_does_not_match_the_params_names_both(opt, case):
  tx = opt()
  grads = MISMATCHED_TREES[case]
  with pytest.raises(ValueError, match="does not match the params") as error:
    tx.update(grads, tx.init(PARAMS), PARAMS)
  message = str(error.value)
  assert str(jax.tree.structure(grads)) in message
  assert str(jax.tree.structure(PARAMS)) in message


@pytest.mark.parametrize("shape,jit", [
    ((3, 1), False), ((1,), False), ((4,), False), ((3, 1), True)])
@pytest.mark.parametrize("opt", select(public=True))
def test_update_leaf_of_the_wrong_shape_raises_naming_it(opt, shape, jit):
  """A (3, 1) gradient for a (3,) parameter must not broadcast into a (3, 3)
  first moment; the error names the leaf and both shapes."""
  tx = opt()
  grads = {"w": jnp.ones(shape), "b": jnp.ones(2)}
  update = jax.jit(tx.update) if jit else tx.update
  with pytest.raises(ValueError) as error:
    update(grads, tx.init(PARAMS), PARAMS)
  message = str(error.value)
  assert "['w']" in message and "(3,)" in message and str(shape) in message
