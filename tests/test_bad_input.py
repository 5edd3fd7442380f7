"""Bad input: clear errors at construction and at init, never silent garbage.

Concrete hyperparameters are checked when the optimizer is built; traced ones
(``optax.inject_hyperparams`` under ``jax.jit``) cannot be, and must not raise.
Integer and boolean parameters are rejected at ``init``, naming the leaf; an
update tree that does not match the parameters is rejected at ``update``.
"""

import inspect
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
    "b3": "in [0, 1)",
    "gamma": ">= 0",
    "eps": ">= 0",
    "eps_root": ">= 0",
    "weight_decay": "finite and >= 0",
}
BAD_VALUES = {
    "learning_rate": [-1e-3, np.nan, np.float32(-1.0), jnp.asarray(-1.0)],
    "final_lr": [-0.1, np.nan],
    "b1": [1.0, -0.1, 1.5, np.nan],
    "b2": [1.0, -1e-9, np.nan],
    "b3": [1.0, -0.5, np.nan],
    "gamma": [-1e-3, np.nan],
    "eps": [-1e-8, np.nan],
    "eps_root": [-1e-16, np.nan],
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


def _each_accepted(args, opts=None):
  """(optimizer, argument) for every public optimizer and argument it takes."""
  return [(opt, arg) for opt in opts or select(public=True) for arg in args
          if opt.accepts(arg)]


@pytest.mark.parametrize("opt,arg,value", [
    (opt, arg, value) for opt, arg in _each_accepted(BAD_VALUES)
    for value in BAD_VALUES[arg]])
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


NUMBERS = ("learning_rate", "final_lr", "b1", "b2", "b3", "gamma", "eps",
           "eps_root", "weight_decay")


@pytest.mark.parametrize("value,message", [
    (jnp.array([1e-3]), "must be a scalar, got an array of shape (1,)"),
    (np.full(3, 1e-3), "must be a scalar, got an array of shape (3,)"),
    (True, "must be a number, got the boolean True"),
    (jnp.asarray(False), "must be a number, got the boolean"),
], ids=["shape_1", "shape_3", "true", "bool_array"])
@pytest.mark.parametrize("opt,arg", _each_accepted(NUMBERS))
def test_non_scalar_or_boolean_hyperparameters_are_rejected_naming_them(
    opt, arg, value, message):
  """A shape-(1,) learning rate would broadcast a scalar parameter's update to
  shape (1,); True is 1 to NumPy and a mistake to a reader."""
  with pytest.raises(ValueError, match=re.escape(f"`{arg}` {message}")):
    opt(**{arg: value})


@pytest.mark.parametrize("opt", select(public=True))
def test_a_schedule_that_returns_an_array_is_rejected_when_it_is_called(opt):
  tx = opt(learning_rate=lambda count: jnp.full(2, 1e-3))
  params = jnp.ones(2)
  with pytest.raises(ValueError, match=re.escape(
      "The schedule passed as `learning_rate` must be a scalar, got an array "
      "of shape (2,).")):
    tx.update(params, tx.init(params), params)


@pytest.mark.parametrize("opt,arg", _each_accepted(
    ("b1", "b2", "b3", "gamma", "eps", "eps_root")))
def test_a_schedule_where_only_a_number_is_meant_is_rejected_naming_it(
    opt, arg):
  with pytest.raises(ValueError, match=re.escape(
      f"`{arg}` must be a number, not a schedule")):
    opt(**{arg: optax.constant_schedule(0.5)})


@pytest.mark.parametrize("opt", select(public=True))
def test_positional_hyperparameters_after_the_learning_rate_are_an_error(opt):
  """optax.adam(1e-3, 0.9, 0.999) reads b1, b2; here the second argument is
  final_lr. A call written in Optax's order fails instead of misreading."""
  with pytest.raises(TypeError, match="positional argument"):
    opt.constructor(1e-3, 0.9, 0.999)
  opt.constructor(1e-3)  # the learning rate alone may be positional


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_the_estimators_take_optax_positional_order(name):
  ours = list(inspect.signature(ESTIMATORS[name]).parameters)
  theirs = list(inspect.signature(getattr(optax, name)).parameters)
  assert ours[:5] == theirs[:5] == ["b1", "b2", "eps", "eps_root", "mu_dtype"]


@pytest.mark.parametrize("arg,dtype", [
    ("mu_dtype", jnp.int32), ("mu_dtype", jnp.bool_), ("nu_dtype", jnp.int8),
    ("nu_dtype", jnp.complex64), ("mu_dtype", "not a dtype")])
@pytest.mark.parametrize("make", [
    *select(public=True),
    *(pytest.param(make, id=name) for name, make in ESTIMATORS.items())])
def test_moment_dtypes_that_are_not_floats_are_rejected_naming_them(
    make, arg, dtype):
  """An integer first moment rounds every update to 0: training freezes."""
  with pytest.raises(ValueError, match=f"`{arg}` must be a .*float"):
    make(**{arg: dtype})


@pytest.mark.parametrize("opt", select(public=True))
def test_decay_rates_that_round_to_one_where_the_moments_are_computed_are_rejected(
    opt):
  """1 - 1e-9 < 1 in float64 but is 1.0 in float32, where it would freeze
  the moment at 0. bfloat16 moments are computed in float32: 0.999 is fine."""
  tx = opt(b2=1 - 1e-9)
  with pytest.raises(ValueError, match=r"`b2` must be in \[0, 1\) in float32"):
    tx.init(jnp.ones(2, jnp.float32))
  with jax.enable_x64(True):
    tx.init(jnp.ones(2, jnp.float64))
  state = opt().init(jnp.ones(2, jnp.bfloat16))
  assert optax.tree.get(state, "nu").dtype == jnp.bfloat16


@pytest.mark.parametrize("opt,arg", _each_accepted(
    ("learning_rate", "final_lr", "weight_decay")))
def test_infinite_scales_are_rejected(opt, arg):
  """An infinite lr, final_lr or decay can only give Inf or NaN updates.

  (lr = inf gives final_lr * inf / inf = NaN bounds; final_lr = inf and
  weight_decay = inf give infinite updates.) ``gamma = inf`` stays valid: it
  is the SGD limit, the bounds closed on final_lr from the first step.
  """
  with pytest.raises(ValueError, match=rf"`{arg}` must be .*got inf"):
    opt(**{arg: np.inf})


CHOICES = {"form": "('reference', 'paper')",
           "final_lr_coupling": "('initial', 'peak', 'fixed')"}


@pytest.mark.parametrize("opt,arg", _each_accepted(CHOICES))
def test_unknown_choice_raises_listing_the_choices(opt, arg):
  with pytest.raises(ValueError, match=re.escape(
      f"`{arg}` must be one of {CHOICES[arg]}, got 'nope'.")):
    opt(**{arg: "nope"})


EDGES = [
    dict(learning_rate=0.0), dict(final_lr=0.0), dict(b1=0.0), dict(b2=0.0),
    dict(b3=0.0), dict(gamma=0.0), dict(eps=0.0), dict(eps_root=0.0),
    dict(weight_decay=0.0), dict(weight_decay=None),
    dict(b1=0.999999, b2=0.999999), dict(gamma=np.inf),
    dict(learning_rate=jnp.asarray(1e-3), final_lr=np.float32(0.1)),
    dict(final_lr=optax.linear_schedule(0.1, 0.0, 2))]


@pytest.mark.parametrize("opt,edge", [
    pytest.param(opt, edge, id=f"{opt.name}-" + ",".join(edge))
    for opt in select(public=True) for edge in EDGES if opt.accepts(*edge)])
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

  valid = dict(learning_rate=1e-3, final_lr=0.1, b1=0.9, b2=0.999, b3=0.999,
               gamma=1e-3, eps=1e-8, eps_root=0.0, weight_decay=1e-4)
  invalid = dict(learning_rate=-1.0, final_lr=-0.1, b1=1.5, b2=1.0, b3=2.0,
                 gamma=-1.0, eps=-1.0, eps_root=-1.0, weight_decay=-1.0)
  accepted = [arg for arg in valid if opt.accepts(arg)]

  @jax.jit
  def build_and_step(hyperparams):
    tx = opt(**hyperparams)
    return tx.update(params, tx.init(params), params)[0]

  updates = build_and_step({arg: valid[arg] for arg in accepted})
  assert np.all(np.isfinite(updates))
  # The caller's responsibility once traced; no exception is the contract.
  build_and_step({arg: invalid[arg] for arg in accepted})


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


# -- States that another optimizer made.

def _masked_decay():
  return optax_bound.adabound(
      weight_decay=1e-3, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))


MIXED_UP_STATES = {
    # (the optimizer, the one whose state it is given, the name in the error)
    "amsbound_to_adabound": (optax_bound.adabound, optax_bound.amsbound,
                             "ScaleByAmsgradState"),
    "adamod_to_adabound": (optax_bound.adabound, optax_bound.adamod,
                           "a tuple of 3"),
    "adabound_to_adamod": (optax_bound.adamod, optax_bound.adabound,
                           "a tuple of 2"),
    "masked_to_unmasked": (lambda: optax_bound.adabound(weight_decay=1e-3),
                           _masked_decay, "MaskedState"),
    "unmasked_to_masked": (_masked_decay,
                           lambda: optax_bound.adabound(weight_decay=1e-3),
                           "DecaySchedule"),
    "none": (optax_bound.adabound, None, "NoneType"),
}


@pytest.mark.parametrize("case", list(MIXED_UP_STATES))
def test_a_state_from_another_optimizer_is_rejected_naming_it(case):
  make, make_other, got = MIXED_UP_STATES[case]
  state = None if make_other is None else make_other().init(PARAMS)
  with pytest.raises(TypeError, match="given a state it did not create") as error:
    make().update(PARAMS, state, PARAMS)
  assert got in str(error.value)


def test_a_state_restored_into_its_own_structure_is_accepted():
  tx = optax_bound.amsbound(learning_rate=0.1)
  state = tx.init(PARAMS)
  restored = jax.tree.map(np.asarray, state)  # e.g. from a checkpoint
  updates, _ = tx.update(PARAMS, restored, PARAMS)
  expected, _ = tx.update(PARAMS, state, PARAMS)
  jax.tree.map(np.testing.assert_array_equal, updates, expected)


# -- Masks.

@pytest.mark.parametrize("mask", [True, False, jnp.asarray(True)],
                         ids=["true", "false", "bool_array"])
def test_a_mask_that_is_one_boolean_is_rejected(mask):
  with pytest.raises(ValueError, match="`mask` must be a tree of booleans"):
    optax_bound.adabound(weight_decay=1e-3, mask=mask)


def test_a_callable_mask_under_inject_hyperparams_must_be_static():
  """inject_hyperparams calls a callable for a schedule: with the step count it
  returns one boolean, which would switch the decay off (or on) everywhere."""
  params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
  mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
  with pytest.raises(ValueError, match="static_args"):
    optax.inject_hyperparams(optax_bound.adabound)(
        learning_rate=0.1, weight_decay=0.5, mask=mask).init(params)
  tx = optax.inject_hyperparams(optax_bound.adabound, static_args=("mask",))(
      learning_rate=0.1, weight_decay=0.5, mask=mask)
  plain = optax_bound.adabound(learning_rate=0.1, weight_decay=0.5, mask=mask)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  expected, _ = plain.update(zero, plain.init(params), params)
  # Injected hyperparameters are float32 arrays: 1 - b1 rounds differently.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
               updates, expected)
  # The decay reached the kernel and not the bias.
  assert np.all(np.asarray(updates["w"]) < 0)
  np.testing.assert_array_equal(updates["b"], 0)


def _bound_fn_returning(make):
  def bound_fn(t, final_lr, gamma):
    lower, upper = optax_bound.reference_bounds(t, final_lr, gamma)
    return make(lower, upper)
  return bound_fn


@pytest.mark.parametrize("make,error,match", [
    (lambda lo, up: (jnp.full(4, lo), jnp.full(4, up)), ValueError,
     "lower bound has shape \\(4,\\)"),
    (lambda lo, up: (lo, jnp.full((1,), up)), ValueError,
     "upper bound has shape \\(1,\\)"),
    (lambda lo, up: (lo,), TypeError, "returned a tuple of 1"),
    (lambda lo, up: (lo, up, lo), TypeError, "returned a tuple of 3"),
    (lambda lo, up: lo, TypeError, "returned a single value of shape \\(\\)"),
    (lambda lo, up: (lo + 0j, up), ValueError, "dtype complex"),
], ids=["per_element", "shape_1", "one", "three", "array", "complex"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_a_bound_fn_that_does_not_return_two_scalars_is_refused_naming_it(
    make, error, match, jit):
  tx = optax_bound.adabound(bound_fn=_bound_fn_returning(make))
  params = jnp.ones(4)
  update = jax.jit(tx.update) if jit else tx.update
  with pytest.raises(error, match="`bound_fn\\(t, final_lr, gamma\\)` must"):
    update(params, tx.init(params))
  with pytest.raises(error, match=match):
    update(params, tx.init(params))


@pytest.mark.parametrize("estimator", [
    lambda: optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(
        optax.constant_schedule(1.0))),
    lambda: optax.inject_hyperparams(optax.scale_by_adam)(b1=0.9),
], ids=["chained_schedule", "injected_estimator"])
@pytest.mark.parametrize("bound", [
    optax_bound.clip_step_size_by_dynamic_bound,
    optax_bound.clip_step_size_by_momental_bound,
], ids=["dynamic", "momental"])
def test_an_estimator_with_several_counts_is_refused_saying_what_is_needed(
    estimator, bound):
  with pytest.raises(ValueError, match="one field `count`; this one's has"):
    bound(estimator())
