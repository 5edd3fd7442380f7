"""Optax's contract, tested as Optax tests its own optimizers."""

from _optimizers import UNDER_TEST
from _optimizers import select
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

LEARNING_RATE = 0.1


def _slow(*values):
  """Parameters for the full run only: one compilation each, for every entry."""
  return [pytest.param(value, marks=pytest.mark.slow) for value in values]


def _parabola(dtype):
  initial = jnp.array([-1.0, 10.0, 1.0], dtype)
  target = jnp.array([1.0, -1.0, 1.0], dtype)
  return initial, target, lambda p: jnp.sum(_abs_sq(p - target))


def _rosenbrock(dtype):
  a = 1.0 + 1.0j if jnp.iscomplexobj(jnp.zeros((), dtype)) else 1.0
  initial = jnp.zeros(2, dtype)
  target = jnp.array([a, a**2], dtype)
  objective = lambda p: (_abs_sq(a - p[0])
                         + 100.0 * _abs_sq(p[1] - p[0] ** 2))
  return initial, target, objective


def _abs_sq(x):
  return (x * jnp.conj(x)).real


def _descend(tx, objective, params, steps):
  @jax.jit
  def run(params):
    def step(carry, _):
      params, state = carry
      # Complex gradients are conjugated before they update the parameters.
      grads = jax.tree.map(jnp.conj, jax.grad(objective)(params))
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, steps)
    return params
  return run(params)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
@pytest.mark.parametrize("problem", [_parabola, _rosenbrock])
@pytest.mark.parametrize(
    "opt", select(public=True, weight_decay=None, paper_form=False))
def test_converges_on_parabola_and_rosenbrock(opt, problem, dtype):
  initial, target, objective = problem(dtype)
  # Rosenbrock's curvature (~1e3 at the optimum) caps the SGD end of the
  # bound: final_lr = 5e-3 is stable there, and gamma = 1e-2 reaches it early.
  tx = opt.taking(learning_rate=0.01, final_lr=5e-3, gamma=1e-2)
  params = _descend(tx, objective, initial, steps=10_000)
  np.testing.assert_allclose(params, target, atol=1e-3)


@pytest.mark.parametrize("opt", UNDER_TEST)
def test_jitted_step_compiles_once(opt):
  tx = opt(learning_rate=LEARNING_RATE)
  traces = []

  @jax.jit
  def step(params, state, grads):
    traces.append(None)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
  state = tx.init(params)
  for i in range(40):
    grads = jax.tree.map(lambda p, i=i: jnp.full_like(p, 0.5 + i), params)
    params, state = step(params, state, grads)
  assert len(traces) == 1
  assert step._cache_size() == 1


@pytest.mark.parametrize("opt", select(public=True))
def test_changing_an_injected_learning_rate_never_retraces(opt):
  tx = opt.injected(learning_rate=LEARNING_RATE)
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    updates, state = tx.update(params, state, params)
    return optax.apply_updates(params, updates), state

  chex.clear_trace_counter()  # counted per function, across parameters
  state = tx.init(params)
  dtype = state.hyperparams["learning_rate"].dtype
  for learning_rate in (0.1, 0.05, 1e-3, 0.0, 0.2, 0.1):
    state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, dtype)
    params, state = step(params, state)
  chex.assert_tree_all_finite(params)


@pytest.mark.parametrize("opt", UNDER_TEST)
def test_update_accepts_unexpected_extra_args(opt):
  tx = opt(learning_rate=LEARNING_RATE)
  params = jnp.array([1.0, -2.0])
  state = tx.init(params)
  plain, _ = tx.update(params, state, params)
  extra, _ = tx.update(params, state, params, unexpected_arg_for_optax=1)
  np.testing.assert_array_equal(plain, extra)


@pytest.mark.parametrize("opt", select(public=True))
def test_float_and_constant_schedule_give_bitwise_equal_steps(opt):
  params = {"w": jnp.linspace(-1.0, 1.0, 7)}
  grads = [jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)), params)
           for i in range(5)]

  def run(tx):
    p, state = params, tx.init(params)
    for g in grads:
      updates, state = tx.update(g, state, p)
      p = optax.apply_updates(p, updates)
    return p

  with_float = run(opt(learning_rate=3e-2))
  with_schedule = run(opt(learning_rate=optax.constant_schedule(3e-2)))
  np.testing.assert_array_equal(with_float["w"], with_schedule["w"])


@pytest.mark.parametrize("opt", select(public=True))
@pytest.mark.parametrize("learning_rate", [
    pytest.param(3e-2, id="float"),
    pytest.param(optax.exponential_decay(3e-2, 2, 0.5, staircase=True),
                 id="schedule", marks=pytest.mark.slow)])
def test_inject_hyperparams_matches_the_plain_optimizer(opt, learning_rate):
  kwargs = {k: v for k, v in dict(
      learning_rate=learning_rate, final_lr=0.05, gamma=0.1).items()
            if opt.accepts(k)}
  plain = opt(**kwargs)
  injected = opt.injected(**kwargs)
  params = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
  states = [jax.jit(plain.init)(params), jax.jit(injected.init)(params)]
  p = [params, params]
  for i in range(6):
    for k, tx in enumerate((plain, injected)):
      grads = jax.tree.map(lambda x, i=i: jnp.cos(x + i), p[k])
      updates, states[k] = jax.jit(tx.update)(grads, states[k], p[k])
      p[k] = optax.apply_updates(p[k], updates)
  for a, b in zip(*p, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  # Optax's own "equality of new optimizer states": the injected optimizer's
  # inner state is the plain one's, structure and values (after six steps,
  # a first moment near 0 from cancelling gradients needs an atol).
  chex.assert_trees_all_close(states[1].inner_state, states[0], rtol=1e-4,
                              atol=1e-6)
  assert float(states[1].hyperparams["learning_rate"]) == pytest.approx(
      # The stored learning rate is the one the 6th step (count 5) used.
      float(learning_rate(5)) if callable(learning_rate) else learning_rate)


@pytest.mark.parametrize("opt", UNDER_TEST)
def test_multisteps_first_update_is_zero(opt):
  tx = optax.MultiSteps(opt(learning_rate=LEARNING_RATE), every_k_schedule=4)
  params = jnp.array([1.0, 2.0])
  updates, _ = tx.update(jnp.array([0.5, -0.5]), tx.init(params), params)
  np.testing.assert_array_equal(updates, jnp.zeros(2))


@pytest.mark.parametrize("opt", UNDER_TEST)
def test_masked_leaves_are_untouched_and_others_updated(opt):
  tx = optax.masked(opt(learning_rate=LEARNING_RATE), {"w": True, "frozen": False})
  params = {"w": jnp.ones(3), "frozen": jnp.ones(2)}
  grads = {"w": jnp.ones(3), "frozen": jnp.full(2, 7.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["frozen"], grads["frozen"])
  assert np.all(np.asarray(updates["w"]) < 0)


@pytest.mark.parametrize("opt", UNDER_TEST)
def test_tree_map_params_reaches_every_moment(opt):
  tx = opt(learning_rate=LEARNING_RATE)
  params = {"w": jnp.ones((2, 3))}
  state = tx.init(params)
  state = tx.update(params, state, params)[1]
  marked = optax.tree.map_params(tx, lambda v: jnp.full_like(v, 7.0), state)
  for field in ("mu", "nu", "nu_max"):
    moment = optax.tree.get(marked, field)
    if moment is not None:
      np.testing.assert_array_equal(moment["w"], 7.0)
  counts = optax.tree.get_all_with_path(marked, "count")
  assert counts and all(int(count) == 1 for _, count in counts)


@pytest.mark.parametrize("opt", select(needs_params=False))
def test_params_are_optional_where_not_needed(opt):
  tx = opt(learning_rate=LEARNING_RATE)
  grads = jnp.array([1.0, -1.0])
  updates, _ = tx.update(grads, tx.init(grads))
  assert updates.shape == (2,)


@pytest.mark.parametrize("opt", select(needs_params=True))
def test_missing_params_for_weight_decay_is_a_clear_error(opt):
  tx = opt(learning_rate=LEARNING_RATE)
  grads = jnp.array([1.0, -1.0])
  with pytest.raises(ValueError, match="params"):
    tx.update(grads, tx.init(grads))


@pytest.mark.parametrize("dtype", [
    jnp.float32, *_slow(jnp.float16, jnp.bfloat16, jnp.float64, jnp.complex64)])
@pytest.mark.parametrize("opt", UNDER_TEST)
def test_state_dtypes_and_shapes_are_stable_under_cond(opt, dtype):
  with jax.enable_x64(dtype == jnp.float64):
    tx = opt(learning_rate=LEARNING_RATE)
    params = jnp.array([1.0, -2.0, 3.0], dtype)

    @jax.jit
    def step(params, state):
      grads = jax.tree.map(jnp.conj, jax.grad(
          lambda p: jnp.sum(_abs_sq(p)))(params))
      # lax.cond demands both branches return identical shapes and dtypes.
      take = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      updates, state = jax.lax.cond(
          take, lambda: tx.update(grads, state, params),
          lambda: (params, state))
      return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(2):
      params, state = step(params, state)
    assert params.dtype == dtype


@pytest.mark.parametrize("opt", UNDER_TEST)
@pytest.mark.parametrize(
    "dtype", [jnp.float32, *_slow(jnp.bfloat16, jnp.float16)])
def test_updates_have_the_gradients_dtype(opt, dtype):
  tx = opt(learning_rate=LEARNING_RATE)
  params = jnp.array([1.0, 2.0], dtype)
  updates, _ = jax.jit(tx.update)(params * 2, jax.jit(tx.init)(params), params)
  assert updates.dtype == dtype


@pytest.mark.parametrize("mu_dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("opt", select(public=True))
def test_mu_dtype_sets_the_first_moment_only(opt, mu_dtype):
  tx = opt(mu_dtype=mu_dtype)
  params = jnp.ones(3, jnp.float32) if mu_dtype == jnp.bfloat16 else jnp.ones(
      3, jnp.bfloat16)
  state = tx.update(params, tx.init(params), params)[1]
  assert optax.tree.get(state, "mu").dtype == mu_dtype
  assert optax.tree.get(state, "nu").dtype == params.dtype


@pytest.mark.parametrize("opt", UNDER_TEST)
def test_none_leaves_and_empty_trees(opt):
  tx = opt(learning_rate=LEARNING_RATE)
  params = {"w": jnp.ones(2), "nothing": None, "empty": {}}
  grads = {"w": jnp.ones(2), "nothing": None, "empty": {}}
  updates, _ = tx.update(grads, tx.init(params), params)
  assert updates["nothing"] is None and updates["empty"] == {}
  assert np.all(np.asarray(updates["w"]) < 0)
  updates, _ = tx.update({}, tx.init({}), {})
  assert updates == {}


def test_complex_parameters_get_complex_updates_and_real_second_moments():
  tx = optax_bound.amsbound(learning_rate=0.1)
  params = jnp.array([1.0 + 2.0j, -3.0j], jnp.complex64)
  updates, state = tx.update(jnp.conj(params), tx.init(params), params)
  assert updates.dtype == jnp.complex64
  assert optax.tree.get(state, "nu").dtype == jnp.float32
  assert optax.tree.get(state, "nu_max").dtype == jnp.float32
  # At t=1 Adam's step is lr * g / |g| per element: a move of lr towards 0.
  np.testing.assert_allclose(np.abs(updates), [0.1, 0.1], rtol=1e-5)
  np.testing.assert_allclose(
      updates, -0.1 * np.conj(params) / np.abs(params), rtol=1e-5)


def test_state_donation_donates_every_buffer_once():
  tx = optax_bound.amsbound(learning_rate=jnp.asarray(0.1))
  params = {"w": jnp.ones((4, 4))}

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step, donate_argnums=(0, 1))
  state = tx.init(params)
  for _ in range(3):
    params, state = step(params, state, {"w": jnp.ones((4, 4))})
  assert int(optax.tree.get(state, "count")) == 3


@pytest.mark.parametrize("opt", select(public=True, weight_decay=None))
def test_inject_hyperparams_with_the_defaults_behaves_like_the_plain_optimizer(
    opt):
  """No params needed, and bfloat16 updates for bfloat16 parameters.

  A default weight decay of 0 would become an injected (traced) hyperparameter
  whose value the decay cannot see: it would ask for params, and its float32
  product with the parameters would promote the updates.
  """
  params = jnp.array([1.0, -2.0, 0.5], jnp.bfloat16)
  grads = jnp.array([0.5, -1.0, 2.0], jnp.bfloat16)
  plain = opt(learning_rate=0.1)
  injected = opt.injected(hyperparam_dtype=jnp.float32, learning_rate=0.1)
  expected, _ = plain.update(grads, plain.init(params))
  updates, _ = injected.update(grads, injected.init(params))
  assert updates.dtype == expected.dtype == jnp.bfloat16
  np.testing.assert_allclose(
      np.asarray(updates, np.float32), np.asarray(expected, np.float32),
      rtol=1e-2)


@pytest.mark.parametrize("opt", select(public=True))
def test_traced_float64_hyperparameters_keep_a_float32_state(opt):
  """inject_hyperparams under jax_enable_x64 traces float64 hyperparameters:
  they must not promote a float32 parameter's state (found by a drawn tree)."""
  with jax.enable_x64(True):
    params = {"w": jnp.array([1.0, -2.0], jnp.float32),
              "v": jnp.array(0.5, jnp.float64)}
    tx = opt.injected(hyperparam_dtype=jnp.float64, learning_rate=0.1)
    state = tx.init(params)
    step = jax.jit(tx.update)
    types = lambda tree: jax.tree.map(lambda x: jnp.result_type(x), tree)
    new_state = state
    for _ in range(2):
      updates, new_state = step(params, new_state, params)
    assert types(new_state) == types(state)
    assert np.all(np.isfinite(updates["w"])) and np.all(np.isfinite(updates["v"]))
