"""Properties of every step, for any tree, dtype, valid hyperparameters and gradients.

Hypothesis draws the trees, the hyperparameters and the gradient sequences.
Random trees (nesting, scalars, zero-size arrays, None leaves, float32, bfloat16
and float64) check that nothing raises, that everything stays finite and that
the state keeps its types; they compile once per tree. The numeric properties
(the bounds, the running maximum) run on one vector per dtype with traced
hyperparameters: each optimizer is built inside ``jax.jit`` from arrays, so one
compilation serves every draw (traced values, by design, are not validated and
must not raise). The examples are derandomized: the suite is the same on every
run.
"""

import dataclasses
import functools
import math

from _optimizers import select
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
DTYPES = ("float32", "bfloat16", "float64")
SHAPES = ((), (0,), (1,), (3,), (2, 0), (2, 3))
WARMUP = 4
INT32_MAX = 2**31 - 1


def _log_uniform(low, high):
  return st.floats(math.log10(low), math.log10(high)).map(lambda e: 10.0**e)


def _zero_or(strategy):
  return st.one_of(st.just(0.0), strategy)


@st.composite
def _hyperparameters(draw):
  hyperparameters = dict(
      learning_rate=draw(_zero_or(_log_uniform(1e-6, 1.0))),
      final_lr=draw(_zero_or(_log_uniform(1e-4, 10.0))),
      b1=draw(st.floats(0.0, 0.9999)),
      b2=draw(st.floats(0.0, 0.99999)),
      b3=draw(st.floats(0.0, 0.9999)),
      gamma=draw(_zero_or(_log_uniform(1e-6, 1e3))),
      eps=draw(_zero_or(_log_uniform(1e-12, 0.1))),
      weight_decay=draw(_zero_or(_log_uniform(1e-6, 0.1))),
  )
  # gamma = 0 opens the bound: the step is Adam's, m / (sqrt(v) + eps), which
  # is 0 / 0 where v underflows and eps = 0, and can exceed float32's range
  # where v vanishes (b2 = 0 and a zero gradient) and eps is tiny, as
  # optax.adam's does. So an open bound comes with an eps that keeps Adam's
  # step finite for gradients up to ~1e31; a closed bound takes any eps.
  hypothesis.assume(
      hyperparameters["gamma"] > 0 or hyperparameters["eps"] >= 1e-6)
  return hyperparameters


def _optimizer(opt, hyperparameters, learning_rate=None):
  """``opt`` built from (possibly traced) hyperparameters, those it takes."""
  kwargs = dict(hyperparameters)
  if learning_rate is not None:
    kwargs["learning_rate"] = learning_rate
  return opt.taking(**kwargs)


def _as_arrays(hyperparameters):
  """Hyperparameters as arrays of the default float dtype: traced under jit."""
  dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
  return {k: jnp.asarray(v, dtype) for k, v in hyperparameters.items()}


def _types(tree):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


def _shapes(tree):
  return jax.tree.map(jnp.shape, tree)


def _all_finite(tree):
  return all(
      bool(np.all(np.isfinite(np.asarray(x, np.float64))))
      for x in jax.tree.leaves(tree)
  )


# -- Random trees: no exception, finite updates, a state whose types never change.


@dataclasses.dataclass(frozen=True)
class _Leaf:
  """The shape and dtype of a parameter leaf (not a pytree: jax sees a leaf)."""

  shape: tuple[int, ...]
  dtype: str


_LEAVES = st.one_of(
    st.none(),
    st.builds(_Leaf, st.sampled_from(SHAPES), st.sampled_from(DTYPES)),
)
# A bare None is Optax's "no params", which weight decay rightly asks for;
# test_a_tree_that_is_just_none_is_an_empty_tree covers it where none is needed.
_TREES = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.sampled_from("abcd"), children, max_size=3),
    ),
    max_leaves=6,
).filter(lambda tree: tree is not None)


def _materialize(spec, rng, scale):
  """Arrays for the leaves of ``spec``; ``scale`` draws each element's size."""

  def leaf(spec_leaf):
    values = rng.standard_normal(spec_leaf.shape) * scale(spec_leaf.shape)
    return jnp.asarray(values, spec_leaf.dtype)

  return jax.tree.map(leaf, spec)


def _gradient_scale(rng):
  """Element sizes from 1e-3 to 1e3, and a fifth of the elements exactly 0."""
  return lambda shape: (10.0 ** rng.uniform(-3, 3, shape)) * (
      rng.uniform(size=shape) > 0.2)


def _apply(tx, params, state, grads):
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), updates, state


@functools.cache
def _traced_init_and_step(opt):
  """init and step of ``opt``, built inside jit from traced hyperparameters."""
  init = jax.jit(lambda hp, params: _optimizer(opt, hp).init(params))
  step = jax.jit(lambda hp, *args: _apply(_optimizer(opt, hp), *args))
  return init, step


def _init_and_step(opt, hyperparameters, traced):
  if traced:
    init, step = _traced_init_and_step(opt)
    hyperparameters = _as_arrays(hyperparameters)
    return (functools.partial(init, hyperparameters),
            functools.partial(step, hyperparameters))
  tx = _optimizer(opt, hyperparameters)  # Python floats: the common case
  return tx.init, jax.jit(functools.partial(_apply, tx))


# Every hyperparameter is drawn, weight decay included: the public aliases.
@pytest.mark.slow  # a compilation per drawn tree
@hypothesis.settings(max_examples=25, **SETTINGS)
@hypothesis.given(
    opt=st.sampled_from(select(public=True)),
    spec=_TREES,
    hyperparameters=_hyperparameters(),
    traced=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_trees_give_finite_updates_and_a_state_of_fixed_types(
    opt, spec, hyperparameters, traced, seed):
  # The momental bound caps Adam's step by an average of Adam's step sizes:
  # where Adam's exceeds float32's range (a tiny eps), so may it; it takes
  # the eps an open dynamic bound takes.
  hypothesis.assume(opt.bound == "dynamic" or hyperparameters["eps"] >= 1e-6)
  rng = np.random.default_rng(seed)
  x64 = any(leaf.dtype == "float64" for leaf in jax.tree.leaves(spec))
  with jax.enable_x64(x64):
    init, step = _init_and_step(opt, hyperparameters, traced)
    params = _materialize(spec, rng, lambda shape: 1.0)
    state = init(params)
    state_types = _types(state)
    for _ in range(3):
      grads = _materialize(spec, rng, _gradient_scale(rng))
      new_params, updates, state = step(params, state, grads)
      # Updates are shaped and None where the params are, and of the
      # gradients' dtype (Optax's contract) unless traced float32
      # hyperparameters promote bfloat16, as they do in Optax.
      assert jax.tree.structure(updates) == jax.tree.structure(params)
      assert _shapes(updates) == _shapes(params)
      if not traced:
        assert _types(updates) == _types(params)
      assert _types(new_params) == _types(params)
      assert _types(state) == state_types
      assert _all_finite(updates) and _all_finite(new_params)
      assert _all_finite(state)
      params = new_params


# -- One vector per dtype, any valid hyperparameters, schedule and gradients.

SIZE = 8
STEPS = 6


@st.composite
def _gradient_sequences(draw, max_exponent):
  """Gradients of sizes 10^-30 .. 10^max_exponent, zeros included, any sign."""
  exponents = draw(st.lists(
      st.floats(-30.0, max_exponent), min_size=SIZE, max_size=SIZE))
  seed = draw(st.integers(0, 2**32 - 1))
  rng = np.random.default_rng(seed)
  grads = rng.standard_normal((STEPS, SIZE)) * 10.0 ** np.asarray(exponents)
  # Whole steps and whole elements of zeros: first moments that are exactly 0.
  grads[rng.uniform(size=STEPS) < 0.2] = 0.0
  grads[:, rng.uniform(size=SIZE) < 0.2] = 0.0
  return grads


def _schedule(learning_rate, offset, decay):
  """A linear warmup (from 0 when ``offset == 0``) times an exponential decay."""
  return lambda count: (
      learning_rate * jnp.minimum(1.0, (count + offset) / WARMUP)
      * decay**count)


_SCHEDULES = st.tuples(
    st.sampled_from([0.0, 1.0, float(WARMUP)]),  # from 0, from lr / 4, constant
    st.one_of(st.just(1.0), st.floats(0.5, 1.0)),
)
_START_COUNTS = st.one_of(
    st.just(0),
    st.integers(0, INT32_MAX),
    st.integers(INT32_MAX - STEPS, INT32_MAX),  # saturates during the run
)


@functools.partial(jax.jit, static_argnames="opt")
def _bounded_run(opt, hyperparameters, schedule, params, grads, start_count):
  """``STEPS`` steps from a state whose count starts at ``start_count``."""
  learning_rate = _schedule(hyperparameters["learning_rate"], *schedule)
  tx = _optimizer(opt, hyperparameters, learning_rate=learning_rate)
  state = optax.tree.set(tx.init(params), count=start_count)

  def counts(state):
    """Every count: a decay or a 1 / sqrt(t) schedule keeps one of its own."""
    return jnp.stack(
        [c for _, c in optax.tree.get_all_with_path(state, "count")])

  def step(carry, g):
    params, state = carry
    lr = learning_rate(counts(state)[0])
    updates, state = tx.update(g, state, params)
    record = dict(
        updates=updates,
        sizes=optax_bound.effective_step_sizes(updates, state),
        lr=lr,
        counts=counts(state),
        **{k: optax.tree.get(state, k) for k in ("mu", "nu")},
    )
    if opt.nu_max:
      record["nu_max"] = optax.tree.get(state, "nu_max")
    return (optax.apply_updates(params, updates), state), record

  _, records = jax.lax.scan(step, (params, state), grads)
  return learning_rate(jnp.zeros([], jnp.int32)), records


def _run_bounded(opt, dtype, hyperparameters, schedule, grads, start_count):
  if opt.weight_decay == "decoupled":  # no part of the step size
    hyperparameters = dict(hyperparameters, weight_decay=0.0)
  hyperparameters = _as_arrays(hyperparameters)
  params = jnp.asarray(np.linspace(-1.0, 1.0, SIZE), dtype)
  lr_0, records = _bounded_run(
      opt, hyperparameters, schedule, params, jnp.asarray(grads, dtype),
      jnp.asarray(start_count, jnp.int32))
  return hyperparameters, float(lr_0), jax.tree.map(np.asarray, records)


def _expected_bounds(hyperparameters, lr_0, lrs, counts):
  """The reference's bounds per step, in float64, from the learning rates used.

  ``final_lr * lr_t / lr_0``, with the running peak for ``lr_0`` where
  ``lr_0 == 0`` (see ``optax_bound.coupled_final_lr``).
  """
  lrs = lrs.astype(np.float64)
  peaks = np.maximum.accumulate(np.maximum(lrs, lr_0))
  reference = lr_0 if lr_0 > 0 else peaks
  final_lr = float(hyperparameters["final_lr"])
  final_lrs = np.where(
      reference > 0, final_lr * lrs / np.where(reference > 0, reference, 1), 0)
  gamma_t = float(hyperparameters["gamma"]) * counts.astype(np.float64)
  lower = final_lrs * (1 - 1 / (gamma_t + 1))
  with np.errstate(divide="ignore", invalid="ignore"):
    upper = np.where(gamma_t > 0, final_lrs * (1 + 1 / gamma_t), np.inf)
  return final_lrs, lower, upper


@pytest.mark.slow  # the heaviest property: 40 runs, a compilation per dtype
@hypothesis.settings(max_examples=40, **SETTINGS)
@hypothesis.given(
    opt=st.sampled_from(select(
        public=True, paper_form=False, bound="dynamic")),
    dtype=st.sampled_from(DTYPES),
    hyperparameters=_hyperparameters(),
    schedule=_SCHEDULES,
    grads=_gradient_sequences(max_exponent=30.0),
    start_count=_START_COUNTS,
)
def test_every_effective_step_size_lies_within_the_bounds(
    opt, dtype, hyperparameters, schedule, grads, start_count):
  with jax.enable_x64(dtype == "float64"):
    hyperparameters, lr_0, records = _run_bounded(
        opt, dtype, hyperparameters, schedule, grads, start_count)
    compute_eps = float(jnp.finfo(
        jax.dtypes.canonicalize_dtype(jnp.float64)).eps)
  updates, mu = records["updates"], records["mu"]
  # Finite gradients up to 1e30 give finite updates and first moments.
  assert np.all(np.isfinite(updates.astype(np.float64)))
  assert np.all(np.isfinite(mu.astype(np.float64)))
  counts = np.minimum(start_count + np.arange(1, STEPS + 1), INT32_MAX)
  for count in records["counts"].T:
    np.testing.assert_array_equal(count, counts)
  final_lrs, lower, upper = _expected_bounds(
      hyperparameters, lr_0, records["lr"], counts)
  # To rounding: a few ulps of the parameter dtype, and of the scalar dtype
  # for the cancellation in 1 - 1 / (gamma t + 1).
  finfo = jnp.finfo(dtype)
  rtol = 4 * max(float(finfo.eps), compute_eps)
  slack = (rtol * final_lrs)[:, None]
  size, m = np.abs(updates.astype(np.float64)), np.abs(mu.astype(np.float64))
  # |u| / |m| in [lower, upper], as products: where lower * |m| underflows, the
  # update may flush to 0, which `tiny` absorbs.
  tiny = float(finfo.tiny)
  assert np.all(size >= (lower[:, None] * (1 - rtol) - slack) * m - tiny)
  with np.errstate(invalid="ignore"):  # inf * 0 where upper is inf and m is 0
    high = np.where(m > 0, (upper[:, None] * (1 + rtol) + slack) * m, 0)
  assert np.all(size <= high + tiny)
  # effective_step_sizes is |u| / |m|, and NaN exactly where m == 0.
  sizes = records["sizes"].astype(np.float64)
  np.testing.assert_array_equal(np.isnan(sizes), m == 0)
  normal = (m > 0) & (size > tiny / float(finfo.eps))
  np.testing.assert_allclose(sizes[normal], (size / np.where(m > 0, m, 1))[
      normal], rtol=rtol)


@pytest.mark.parametrize("opt", select(within_reference_bounds=True))
def test_a_run_that_clips_at_both_bounds_stays_within_them(opt):
  """The drawn runs are 6 steps long and need not reach every case of the clip.

  This one is 50 steps of gradients whose sizes span 1e-6 .. 1 per element:
  step sizes are clipped at the lower bound, at the upper bound and not at
  all, each many times, and every one lies within the bounds.
  """
  final_lr, gamma, steps = 0.1, 0.05, 50
  rng = np.random.default_rng(0)
  scale = 10.0 ** np.linspace(-6, 0, 64)
  grads = scale * (0.3 + rng.standard_normal((steps, 64)))
  tx = opt(learning_rate=1e-2, final_lr=final_lr, gamma=gamma)
  params = jnp.ones(64)
  state = tx.init(params)
  clipped_low = clipped_high = inside = 0
  for t, g in enumerate(grads, start=1):
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
    sizes = np.asarray(optax_bound.effective_step_sizes(updates, state))
    lower, upper = optax_bound.reference_bounds(jnp.float32(t), final_lr, gamma)
    assert np.all(sizes >= float(lower) * (1 - 1e-6))
    assert np.all(sizes <= float(upper) * (1 + 1e-6))
    clipped_low += np.sum(np.isclose(sizes, lower, rtol=1e-6))
    clipped_high += np.sum(np.isclose(sizes, upper, rtol=1e-6))
    inside += np.sum((sizes > lower * 1.01) & (sizes < upper * 0.99))
  # The sequence is built so that all three cases occur.
  assert min(clipped_low, clipped_high, inside) > 50


@hypothesis.settings(max_examples=25, **SETTINGS)
@hypothesis.given(
    opt=st.sampled_from(select(public=True, nu_max=True)),
    dtype=st.sampled_from(DTYPES),
    hyperparameters=_hyperparameters(),
    schedule=_SCHEDULES,
    grads=_gradient_sequences(max_exponent=15.0),
    start_count=_START_COUNTS,
)
def test_running_max_never_decreases(
    opt, dtype, hyperparameters, schedule, grads, start_count):
  with jax.enable_x64(dtype == "float64"):
    _, _, records = _run_bounded(
        opt, dtype, hyperparameters, schedule, grads, start_count)
  nu, nu_max = records["nu"], records["nu_max"]
  assert np.all(np.diff(nu_max.astype(np.float64), axis=0) >= 0)
  assert np.all(nu_max >= nu) and np.all(nu_max[0] == nu[0])
  assert np.all(np.isfinite(nu_max.astype(np.float64)))


@pytest.mark.parametrize("opt", select(public=True))
def test_python_float_leaves_work_like_zero_dim_arrays(opt):
  """Optax takes Python scalars as leaves (optax.adam does); so must we."""
  tx = opt(learning_rate=0.1, weight_decay=1e-2)
  params = {"scale": 2.0, "w": jnp.ones(2)}
  as_arrays = jax.tree.map(jnp.asarray, params)
  grads = {"scale": 0.5, "w": jnp.full(2, 0.5)}
  updates, state = tx.update(grads, tx.init(params), params)
  expected, expected_state = tx.update(
      jax.tree.map(jnp.asarray, grads), tx.init(as_arrays), as_arrays)
  # Not bitwise: optax.add_decayed_weights adds g + wd * p of Python floats in
  # float64 before JAX sees them, where arrays add in float32.
  np.testing.assert_allclose(updates["scale"], expected["scale"], rtol=1e-6)
  assert _types(state) == _types(expected_state)


@pytest.mark.parametrize("opt", select(needs_params=False))
def test_a_tree_that_is_just_none_is_an_empty_tree(opt):
  """As for optax.adam: no leaves, no updates, no error."""
  tx = opt(learning_rate=0.1)
  updates, state = tx.update(None, tx.init(None))
  assert updates is None
  counts = optax.tree.get_all_with_path(state, "count")
  assert counts and all(int(count) == 1 for _, count in counts)
