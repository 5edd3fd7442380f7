"""Parity with the authors' code, on trajectories recorded by tests/golden/record.py.

The four reference quirks (bias correction inside the clip, eps on the raw
root, AMSGrad's max over the raw second moment, final_lr following the
schedule) are each worth ~1e-2 after 20 steps; these tolerances pin all four.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_bound

GOLDEN = np.load(
    pathlib.Path(__file__).parent / "golden" / "reference_trajectories.npz"
)
CASES = json.loads(str(GOLDEN["cases"]))
LEAVES = ("scalar", "vector", "matrix")
TOLERANCE = {"float64": 1e-9, "float32": 5e-5}


def _step_lr(config, dtype="float32"):
  """torch.optim.lr_scheduler.StepLR as an Optax schedule.

  optax.exponential_decay evaluates in float32 even under jax_enable_x64 (its
  0.01 is 0.01 * (1 - 2.2e-8)), so the float64 runs use the formula itself.
  """
  lr = config["kwargs"]["learning_rate"]
  step_size, gamma = config["step_lr"]["step_size"], config["step_lr"]["gamma"]
  if dtype == "float64":
    return lambda count: lr * gamma ** (count // step_size)
  return optax.exponential_decay(
      lr, transition_steps=step_size, decay_rate=gamma, staircase=True
  )


def _lambda_lr(config):
  """The recorded LambdaLR warmup then decay, as an Optax schedule.

  Computed in the default float dtype: float64 in the float64 runs.
  """
  lr = config["kwargs"]["learning_rate"]
  warmup = config["lambda_lr"]["warmup_steps"]
  decay_rate = config["lambda_lr"]["decay_rate"]

  def schedule(count):
    t = jnp.asarray(count, jnp.result_type(float)) + 1
    return lr * (jnp.minimum(1.0, t / warmup)
                 * decay_rate ** jnp.maximum(0.0, t - warmup))

  return schedule


def _optimizer(config, dtype="float32"):
  kwargs = dict(config["kwargs"])
  if "step_lr" in config:
    kwargs["learning_rate"] = _step_lr(config, dtype)
  if "lambda_lr" in config:
    kwargs["learning_rate"] = _lambda_lr(config)
  # The recorded optimizer's name is that of its public constructor.
  return getattr(optax_bound, config["optimizer"])(**kwargs)


def _run(tx, dtype):
  """All steps in one jitted scan; returns params and step sizes per step."""
  params = {k: jnp.asarray(GOLDEN[f"init/{k}"], dtype) for k in LEAVES}
  grads = {k: jnp.asarray(GOLDEN[f"grads/{k}"], dtype) for k in LEAVES}

  def step(carry, g):
    params, state = carry
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), params

  @jax.jit
  def run(params, grads):
    _, trajectory = jax.lax.scan(step, (params, tx.init(params)), grads)
    return trajectory

  return run(params, grads)


_FAST_CASES = ("adabound_default", "amsbound_active_clip", "adabound_step_lr",
               "adabound_lambda_lr_warmup", "amsbound_lambda_lr_warmup",
               "adamod_active")


def _cases_with_dtypes():
  """Every recorded case; float64 and the variants in the full run only.

  The fast loop keeps one float32 case of each optimizer and schedule
  (float32's tolerance pins each quirk too).
  """
  for case in CASES:
    for dtype in ("float64", "float32"):
      if f"params/{case}/{dtype}/scalar" in GOLDEN:
        fast = dtype == "float32" and case in _FAST_CASES
        marks = [] if fast else [pytest.mark.slow]
        yield pytest.param(case, dtype, id=f"{case}-{dtype}", marks=marks)


@pytest.mark.parametrize("case,dtype", list(_cases_with_dtypes()))
def test_trajectory_matches_reference(case, dtype):
  with jax.enable_x64(dtype == "float64"):
    trajectory = _run(_optimizer(CASES[case], dtype), getattr(jnp, dtype))
    trajectory = jax.tree.map(np.asarray, trajectory)
  errors = [
      np.max(np.abs(trajectory[k] - GOLDEN[f"params/{case}/{dtype}/{k}"])
             / np.abs(GOLDEN[f"params/{case}/{dtype}/{k}"]))
      for k in LEAVES
  ]
  assert trajectory["scalar"].dtype == np.dtype(dtype)
  assert max(errors) <= TOLERANCE[dtype], f"max relative error {max(errors):.2e}"


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-15), ("float32", 6e-8)])
def test_step_lr_schedules_are_the_recorded_pytorch_schedule(dtype, rtol):
  recorded = GOLDEN["lr/adabound_step_lr"]
  schedule = _step_lr(CASES["adabound_step_lr"], dtype)
  with jax.enable_x64(dtype == "float64"):
    lrs = np.array([schedule(jnp.int32(t)) for t in range(len(recorded))])
  np.testing.assert_allclose(lrs, recorded, rtol=rtol)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-14), ("float32", 5e-6)])
def test_lambda_lr_schedule_is_the_recorded_pytorch_schedule(dtype, rtol):
  config = CASES["adabound_lambda_lr_warmup"]
  recorded = GOLDEN["lr/adabound_lambda_lr_warmup"]
  with jax.enable_x64(dtype == "float64"):
    schedule = _lambda_lr(config)
    lrs = np.array([schedule(jnp.int32(t)) for t in range(len(recorded))])
  np.testing.assert_allclose(lrs, recorded, rtol=rtol)


@pytest.mark.parametrize("coupling", ["initial", "peak"])
def test_no_coupling_without_base_lr_reproduces_a_lambda_lr_warmup(coupling):
  """Why base_lr exists: neither coupling follows the reference's warmup."""
  config = CASES["adabound_lambda_lr_warmup"]
  kwargs = {k: v for k, v in config["kwargs"].items() if k != "base_lr"}
  kwargs["learning_rate"] = _lambda_lr(config)
  trajectory = _run(optax_bound.adabound(**kwargs, final_lr_coupling=coupling),
                    jnp.float32)
  golden = GOLDEN["params/adabound_lambda_lr_warmup/float32/vector"]
  error = np.max(np.abs(np.asarray(trajectory["vector"]) - golden)
                 / np.abs(golden))
  # 'initial' is off by 3.4 (relative), 'peak' by 1.7e-3: 34x the tolerance.
  assert error > 10 * TOLERANCE["float32"], f"max relative error {error:.2e}"


@pytest.mark.slow  # 59 steps run eagerly
def test_golden_data_exercises_both_bounds_and_the_interior():
  """The recorded runs clip at the lower bound, at the upper bound, and not at all."""
  config = CASES["amsbound_active_clip"]
  kwargs = {**json.loads(str(GOLDEN["defaults"])), **config["kwargs"]}
  tx = optax_bound.amsbound(
      learning_rate=kwargs["learning_rate"], final_lr=kwargs["final_lr"],
      gamma=kwargs["gamma"],
  )
  params = {k: jnp.asarray(GOLDEN[f"init/{k}"]) for k in LEAVES}
  state = tx.init(params)
  where = {"lower": 0, "upper": 0, "inside": 0}
  for t in range(1, 60):
    grads = {k: jnp.asarray(GOLDEN[f"grads/{k}"][t - 1]) for k in LEAVES}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    lower, upper = optax_bound.reference_bounds(
        jnp.float32(t), kwargs["final_lr"], kwargs["gamma"]
    )
    sizes = np.concatenate([
        np.ravel(x) for x in jax.tree.leaves(
            optax_bound.effective_step_sizes(updates, state))
    ])
    sizes = sizes[np.isfinite(sizes)]
    where["lower"] += int(np.sum(np.isclose(sizes, lower, rtol=1e-5)))
    where["upper"] += int(np.sum(np.isclose(sizes, upper, rtol=1e-5)))
    where["inside"] += int(np.sum((sizes > lower * 1.001) & (sizes < upper * 0.999)))
  assert min(where.values()) > 20, where
