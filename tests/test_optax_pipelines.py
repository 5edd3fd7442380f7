"""optax_bound inside the Optax pipelines users build: chains, wrappers, masks.

Each test trains a small MLP (Dense -> LayerNorm -> ReLU -> Dense, with Flax's
parameter names) on minibatches of scikit-learn's digits and compares the
pipeline with the computation it stands for, number for number.
"""

import functools

from _optimizers import select
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

# Every test trains a model.
pytestmark = pytest.mark.slow

BATCH = 32
# One instance, so that the tests that use it share its compiled step.
ADABOUND = optax_bound.adabound(learning_rate=1e-2, final_lr=0.1, gamma=1e-2)


@functools.cache
def _digits():
  # Imported here: scikit-learn takes a second to import, and every test of
  # this file is slow, so the fast loop's collection should not pay for it.
  from sklearn import datasets
  x, y = datasets.load_digits(return_X_y=True)
  return (x / 16.0).astype(np.float32), y.astype(np.int32)


@functools.cache
def _params():
  """Flax's parameter names; LeCun-normal kernels drawn by NumPy, not jitted."""
  rng = np.random.default_rng(0)

  def dense(fan_in, fan_out):
    kernel = rng.normal(0, fan_in ** -0.5, (fan_in, fan_out))
    return {"kernel": jnp.asarray(kernel, jnp.float32),
            "bias": jnp.zeros(fan_out, jnp.float32)}
  return {
      "Dense_0": dense(64, 32),
      "LayerNorm_0": {"scale": jnp.ones(32), "bias": jnp.zeros(32)},
      "Dense_1": dense(32, 10),
  }


def _model(params, x):
  """Dense -> LayerNorm -> ReLU -> Dense."""
  h = x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]
  h = (h - h.mean(-1, keepdims=True)) / jnp.sqrt(h.var(-1, keepdims=True) + 1e-6)
  h = h * params["LayerNorm_0"]["scale"] + params["LayerNorm_0"]["bias"]
  h = jax.nn.relu(h)
  return h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def _batches(steps, size=BATCH):
  """``steps`` minibatches, stacked: x of shape (steps, size, 64)."""
  x, y = _digits()
  idx = np.stack([
      np.random.default_rng([1, t]).choice(len(y), size, replace=False)
      for t in range(steps)])
  return x[idx], y[idx]


def _loss(params, x, y):
  logits = _model(params, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@jax.jit
def _mean_grad(params, x, y, t):
  del t
  return jax.grad(_loss)(params, x, y)


@functools.cache
def _step(tx):
  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates
  return step


def _run(tx, batches, params=None, state=None, grad_fn=_mean_grad, start=0):
  """Jitted steps of ``tx`` over ``batches``, from ``_params()`` by default.

  Returns the last params and state, and a list of the (params, state,
  updates) after each step. The gradient functions and each optimizer's step
  are compiled once and shared across runs.
  """
  params = _params() if params is None else params
  state = tx.init(params) if state is None else state
  step = _step(tx)
  history = []
  for t, (x, y) in enumerate(zip(*batches, strict=True), start=start):
    params, state, updates = step(params, state, grad_fn(params, x, y, t))
    history.append((params, state, updates))
  return params, state, history


def _max_abs_diff(a, b):
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))),
      a, b)))


def _assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def _decay_mask(params):
  """True for kernels; biases and LayerNorm's scale and bias are skipped."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == "kernel", params)


_effective_step_sizes = jax.jit(optax_bound.effective_step_sizes)


def _step_size_range(updates, state):
  """The smallest and largest step size the bounded step applied."""
  sizes = _effective_step_sizes(updates, state)
  sizes = np.concatenate([np.ravel(s) for s in jax.tree.leaves(sizes)])
  sizes = sizes[np.isfinite(sizes)]  # NaN where mu is 0.
  return float(np.min(sizes)), float(np.max(sizes))


def _assert_within(step_sizes, lower, upper):
  smallest, largest = step_sizes
  assert float(lower) * (1 - 1e-5) <= smallest, (smallest, float(lower))
  assert largest <= float(upper) * (1 + 1e-5), (largest, float(upper))


@jax.jit
def _sum_grad(params, x, y, t):
  """The gradient of a sum-reduced loss: 32x the mean's, norm well above 1."""
  return jax.tree.map(lambda g: BATCH * g, _mean_grad(params, x, y, t))


@jax.jit
def _clipped_sum_grad(params, x, y, t):
  grads = _sum_grad(params, x, y, t)
  norm = optax.tree.norm(grads)
  return jax.tree.map(lambda g: g / jnp.maximum(norm, 1.0), grads)


def test_clip_by_global_norm_then_adabound_equals_adabound_on_clipped_grads():
  tx = optax.chain(optax.clip_by_global_norm(1.0), ADABOUND)
  batches = _batches(10)
  params, _, history = _run(tx, batches, grad_fn=_sum_grad)
  by_hand, _, _ = _run(ADABOUND, batches, grad_fn=_clipped_sum_grad)
  unclipped, _, _ = _run(ADABOUND, batches, grad_fn=_sum_grad)

  starts = [_params()] + [p for p, _, _ in history[:-1]]
  norms = [float(optax.tree.norm(_sum_grad(p, x, y, 0)))
           for p, x, y in zip(starts, *batches, strict=True)]
  assert min(norms) > 2.0  # The clip was active at every step.
  assert _max_abs_diff(params, by_hand) < 1e-6
  # Without the clip the trajectory is another one: the test can fail.
  assert _max_abs_diff(params, unclipped) > 1e-3


def test_multisteps_accumulation_equals_the_large_batch_step():
  k, steps = 4, 3
  tx = optax.MultiSteps(ADABOUND, every_k_schedule=k)
  xs, ys = _batches(steps, size=k * BATCH)
  micro = xs.reshape(k * steps, BATCH, -1), ys.reshape(k * steps, BATCH)

  params, state, history = _run(tx, micro)
  # The mean of k micro-batch means is the mean over the large batch.
  large, large_state, large_history = _run(ADABOUND, (xs, ys))
  small, _, _ = _run(ADABOUND, micro)

  before = _params()
  for t, (after, _, _) in enumerate(history):
    if t % k != k - 1:  # Accumulating, not stepping.
      _assert_trees_equal(after, before)
    before = after
  diffs = [_max_abs_diff(history[k * i + k - 1][0], large_history[i][0])
           for i in range(steps)]
  assert max(diffs) < 1e-6, diffs
  assert int(optax.tree.get(state.inner_opt_state, "count")) == steps
  assert _max_abs_diff(optax.tree.get(state.inner_opt_state, "mu"),
                       optax.tree.get(large_state, "mu")) < 1e-7
  assert _max_abs_diff(params, large) < 1e-6
  # k small steps are another trajectory: the comparison can fail.
  assert _max_abs_diff(params, small) > 1e-3


@jax.jit
def _zero_grad(params, x, y, t):
  del x, y, t
  return jax.tree.map(jnp.zeros_like, params)


@jax.jit
def _l2_on_kernels(params, x, y, t):
  return jax.tree.map(lambda m, g, p: g + 1e-2 * p if m else g,
                      _decay_mask(params), _mean_grad(params, x, y, t), params)


@pytest.mark.parametrize("opt", select(needs_params=True))
def test_weight_decay_mask_skips_biases_and_layer_norm(opt):
  wd, lr = 1e-2, 1e-2
  tx = opt.taking(learning_rate=lr, final_lr=0.1, gamma=1e-2, weight_decay=wd,
                  mask=_decay_mask)
  params = _params()
  mask = _decay_mask(params)
  assert sorted(jax.tree.leaves(mask)) == [False] * 4 + [True] * 2

  # With zero gradients only the decay can move a parameter.
  new_params, _, _ = _run(tx, _batches(1), grad_fn=_zero_grad)

  def check(decayed, old, new):
    if decayed:
      assert np.max(np.abs(np.asarray(new) - np.asarray(old))) > 1e-5
    else:
      np.testing.assert_array_equal(new, old)
  jax.tree.map(check, mask, params, new_params)
  if opt.weight_decay == "decoupled":
    # The authors' decoupled decay: p <- p - wd * p, not scaled by the lr
    # (AdamW's and AdaMod's are).
    rate = wd * lr if opt.lr_scaled_decay else wd
    for layer in ("Dense_0", "Dense_1"):
      np.testing.assert_allclose(new_params[layer]["kernel"],
                                 params[layer]["kernel"] * (1 - rate),
                                 rtol=1e-6)
    return
  # The masked L2 term is the gradient plus wd * p on kernels only: the same
  # steps as the optimizer without decay on those gradients.
  batches = _batches(5)
  decayed, _, _ = _run(tx, batches)
  without_decay = opt.taking(learning_rate=lr, final_lr=0.1, gamma=1e-2,
                             weight_decay=0.0)
  by_hand, _, _ = _run(without_decay, batches, grad_fn=_l2_on_kernels)
  assert _max_abs_diff(decayed, by_hand) < 1e-7
  # Decaying biases and norms too is another trajectory.
  everywhere, _, _ = _run(opt.taking(
      learning_rate=lr, final_lr=0.1, gamma=1e-2, weight_decay=wd), batches)
  assert _max_abs_diff(decayed, everywhere) > 1e-4


def test_inject_hyperparams_learning_rate_change_equals_a_step_schedule():
  # gamma=1 closes the bounds within a few steps, so the step sizes show
  # where final_lr * lr_t / lr_0 is.
  injected = optax.inject_hyperparams(optax_bound.adabound)(
      learning_rate=1e-2, final_lr=0.1, gamma=1.0)
  scheduled = optax_bound.adabound(
      learning_rate=optax.piecewise_constant_schedule(1e-2, {10: 0.1}),
      final_lr=0.1, gamma=1.0)
  xs, ys = _batches(21)
  params, state, history = _run(injected, (xs[:10], ys[:10]))
  # float32, as inject_hyperparams stores it: a weakly typed 1e-3 would
  # make the jitted step compile again.
  state.hyperparams["learning_rate"] = jnp.asarray(1e-3, jnp.float32)
  params, state, more = _run(
      injected, (xs[10:20], ys[10:20]), params, state, start=10)
  history += more
  scheduled_params, _, _ = _run(scheduled, (xs[:20], ys[:20]))
  assert _max_abs_diff(params, scheduled_params) < 1e-6

  # The step sizes of steps 1..10 lie in the band around final_lr = 0.1,
  # those of steps 11..20 around 0.1 * 1e-3 / 1e-2 = 0.01.
  ranges = [_step_size_range(u, s) for _, s, u in history]
  for t, step_sizes in enumerate(ranges, start=1):
    final_lr = 0.1 if t <= 10 else 0.01
    _assert_within(step_sizes, *optax_bound.reference_bounds(
        jnp.asarray(float(t)), final_lr, 1.0))
  assert ranges[9][0] > 0.09 and ranges[10][1] < 0.011

  # final_lr changes the same way, and it is coupled to the lr as well:
  # 0.05 * 1e-3 / 1e-2 = 0.005 from the next step on.
  state.hyperparams["final_lr"] = jnp.asarray(0.05, jnp.float32)
  last = xs[20:], ys[20:]
  _, _, [(_, new_state, updates)] = _run(injected, last, params, state)
  _assert_within(_step_size_range(updates, new_state),
                 *optax_bound.reference_bounds(jnp.asarray(21.0), 0.005, 1.0))
  # The initial lr lives in the state: a plain adabound built with the new
  # values continues the injected run exactly.
  fresh = optax_bound.adabound(learning_rate=1e-3, final_lr=0.05, gamma=1.0)
  _, _, [(_, _, fresh_updates)] = _run(fresh, last, params, state.inner_state)
  assert _max_abs_diff(fresh_updates, updates) < 1e-9


def test_tree_get_reads_the_bounds_state_through_wrappers():
  lr = optax.exponential_decay(1e-2, transition_steps=2, decay_rate=0.5)
  b2, final_lr, gamma = 0.999, 0.1, 0.5
  tx = optax.chain(
      optax.clip_by_global_norm(10.0),
      optax.apply_if_finite(
          optax_bound.amsbound(learning_rate=lr, final_lr=final_lr,
                               b2=b2, gamma=gamma),
          max_consecutive_errors=3),
  )
  xs, ys = _batches(6)
  _, state, history = _run(tx, (xs, ys))
  nu = nu_max = np.zeros(10, np.float32)
  starts = [_params()] + [p for p, _, _ in history[:-1]]
  for p, x, y in zip(starts, xs, ys, strict=True):
    g = np.asarray(_mean_grad(p, x, y, 0)["Dense_1"]["bias"])
    nu = b2 * nu + (1 - b2) * g * g
    nu_max = np.maximum(nu_max, nu)

  # Each field by name, wherever the wrappers put it.
  count = optax.tree.get(state, "count")
  assert int(count) == 6
  assert float(optax.tree.get(state, "initial_lr")) == pytest.approx(1e-2)
  assert float(optax.tree.get(state, "peak_lr")) == pytest.approx(1e-2)
  np.testing.assert_allclose(
      optax.tree.get(state, "nu_max")["Dense_1"]["bias"], nu_max, rtol=1e-5)
  assert int(optax.tree.get(state, "notfinite_count")) == 0

  # The band of the last step from the state alone, as a training loop would
  # log it. The lr of step t is lr(t - 1): the count before the increment.
  lower, upper = optax_bound.reference_bounds(
      count.astype(jnp.float32),
      optax_bound.coupled_final_lr(
          final_lr, lr(count - 1), optax.tree.get(state, "initial_lr"),
          optax.tree.get(state, "peak_lr"), "initial"),
      gamma)
  # 0.1 * lr(5) / lr(0) = 0.1 / 2**2.5 = 0.01768; with gamma * t = 3 the
  # band is 0.01768 * [3/4, 4/3].
  np.testing.assert_allclose(
      [float(lower), float(upper)], [0.0132583, 0.0235702], rtol=1e-5)
  _assert_within(_step_size_range(history[-1][2], state), lower, upper)

  # Under inject_hyperparams there are two counts: filter by the state type.
  injected = optax.inject_hyperparams(optax_bound.amsbound)(learning_rate=1e-2)
  state = injected.init(_params())
  with pytest.raises(KeyError):
    optax.tree.get(state, "count")
  estimator_count = optax.tree.get(state, "count", filtering=lambda path, _: (
      path[-1].tuple_name == "ScaleByAmsgradState"))
  assert int(estimator_count) == 0
  assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(1e-2)
