"""Resume and determinism: a restart is invisible, bit for bit.

Save after k steps, restore into a freshly built optimizer (as a new process
would), continue: the parameters and the state equal the uninterrupted run's
bit for bit. The state goes through flax.serialization's msgpack bytes, or
through host NumPy arrays and pickle; Orbax is tested elsewhere.
"""

import functools
import pickle

from _optimizers import UNDER_TEST
from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

# Every test trains each run twice, in two freshly built optimizers.
pytestmark = pytest.mark.slow

STEPS = 8
# Steps where something happens that the state must remember: a NaN gradient
# skipped by optax.apply_if_finite, and a learning rate injected by hand.
NAN_AT = 4
INJECT_AT = 3

# Every optimizer under test, and the wrappers and schedules whose state a
# restart must carry as well.
CONFIGS = {
    **{opt.name: functools.partial(
        opt.taking, learning_rate=3e-2, final_lr=0.1, gamma=0.1)
       for opt in UNDER_TEST},
    # lr_0 = 0 lives in the state: after a restart the bounds must still be
    # measured against the running peak.
    "amsbound_warmup_from_zero": lambda: optax_bound.amsbound(
        learning_rate=optax.warmup_cosine_decay_schedule(0.0, 3e-2, 3, 20),
        final_lr=0.1, gamma=0.1),
    "adabound_injected": lambda: optax.inject_hyperparams(
        optax_bound.adabound, hyperparam_dtype=jnp.float32)(
            learning_rate=3e-2, final_lr=0.1, gamma=0.1),
    "amsbound_apply_if_finite": lambda: optax.apply_if_finite(
        optax_bound.amsbound(learning_rate=3e-2, final_lr=0.1, gamma=0.1), 3),
}


def _params(dtype=jnp.float32):
  """A nested dict with a matrix, a bfloat16 vector and a scalar."""
  return {
      "dense": {"w": jnp.linspace(-1.0, 1.0, 6, dtype=dtype).reshape(2, 3),
                "b": jnp.array([0.1, -0.2, 0.3], jnp.bfloat16)},
      "scale": jnp.array(1.5, dtype),
  }


def _loss(params):
  w = params["dense"]["w"]
  b = params["dense"]["b"].astype(w.dtype)
  x = jnp.array([1.0, -2.0], w.dtype)
  return jnp.sum(jnp.sin(params["scale"] * (x @ w + b) - 0.5) ** 2)


def _stepper(tx):
  @jax.jit
  def step(params, state, k):
    grads = jax.grad(_loss)(params)
    if isinstance(state, optax.ApplyIfFiniteState):
      grads = jax.tree.map(
          lambda g: jnp.where(k == NAN_AT, jnp.nan, g).astype(g.dtype), grads)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  def train(params, state, first, last):
    """Steps ``first`` .. ``last - 1``; returns (params, state) after each."""
    history = []
    for k in range(first, last):
      if k == INJECT_AT and hasattr(state, "hyperparams"):
        state = state._replace(hyperparams=dict(
            state.hyperparams, learning_rate=jnp.asarray(1e-2, jnp.float32)))
      params, state = step(params, state, k)
      history.append((params, state))
    return history

  return train


@functools.cache
def _uninterrupted_run(name):
  """(params, state) after each of the ``STEPS`` steps of one run."""
  tx = CONFIGS[name]()
  params = _params()
  state = tx.init(params)
  return [(params, state), *_stepper(tx)(params, state, 0, STEPS)]


@functools.cache
def _fresh(name):
  """A second optimizer, as a new process builds it, and its own compiled step."""
  tx = CONFIGS[name]()
  return tx, _stepper(tx)


def _through_msgpack(tree, template):
  return serialization.from_bytes(template, serialization.to_bytes(tree))


def _through_numpy_pickle(tree, template):
  del template
  restored = pickle.loads(pickle.dumps(jax.device_get(tree)))
  return jax.tree.map(jnp.asarray, restored)


ROUND_TRIPS = {"msgpack": _through_msgpack, "numpy_pickle": _through_numpy_pickle}


def _assert_bitwise_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    x, y = np.asarray(x), np.asarray(y)
    assert (x.dtype, x.shape) == (y.dtype, y.shape)
    # Bits, not values: -0.0 == 0.0 and NaN != NaN would hide differences.
    np.testing.assert_array_equal(
        np.atleast_1d(x).view(np.uint8), np.atleast_1d(y).view(np.uint8))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resume_after_k_steps_is_bitwise_the_uninterrupted_run(name):
  expected = _uninterrupted_run(name)
  # A new process: a new optimizer, with a template state from its init.
  fresh, train = _fresh(name)
  template = fresh.init(_params())
  for round_trip in ROUND_TRIPS.values():
    for saved_at in (1, 5):
      saved_params, saved_state = expected[saved_at]
      params = round_trip(saved_params, _params())
      state = round_trip(saved_state, template)
      _assert_bitwise_equal(state, saved_state)
      resumed = train(params, state, saved_at, STEPS)
      _assert_bitwise_equal(resumed, expected[saved_at + 1:])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_identical_runs_are_bitwise_equal(name):
  tx, train = _fresh(name)
  params = _params()
  run = train(params, tx.init(params), 0, STEPS)
  _assert_bitwise_equal(run, _uninterrupted_run(name)[1:])
  # Equal because deterministic, not because nothing moved.
  moved = run[-1][0]["dense"]["w"]
  assert np.all(np.abs(np.asarray(moved - params["dense"]["w"])) > 1e-3)


def test_float64_resume_is_bitwise_the_uninterrupted_run():
  with jax.enable_x64(True):
    tx = CONFIGS["amsbound_warmup_from_zero"]()
    params = _params(jnp.float64)
    expected = _stepper(tx)(params, tx.init(params), 0, STEPS)
    fresh = CONFIGS["amsbound_warmup_from_zero"]()
    restored = _through_msgpack(expected[2], (params, fresh.init(params)))
    assert optax.tree.get(restored[1], "nu")["dense"]["w"].dtype == jnp.float64
    assert optax.tree.get(restored[1], "initial_lr").dtype == jnp.float64
    _assert_bitwise_equal(
        _stepper(fresh)(*restored, 3, STEPS), expected[3:])
