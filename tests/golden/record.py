"""Records the golden trajectories that pin optax_bound to the authors' code.

Runs the authors' `adabound` 0.0.5 and `adamod` 0.0.3 (PyTorch) on fixed
gradient sequences, in float64 and float32, and a float64 NumPy transcription of
their AdaBoundW (which was never released on PyPI), and saves every parameter at
every step to `reference_trajectories.npz` beside this file. The test suite
reads that file and needs no torch.

    pip install ".[reference]"      # torch==2.13.0 (CPU), adabound, adamod, ...
    python tests/golden/record.py

Before it saves, the recorder checks its own inputs: the NumPy transcriptions
must reproduce the authors' AdaBound, AMSBound and AdaMod in float64, and
pytorch_optimizer's AdaBound(weight_decouple=True, fixed_decay=...) must agree
with the transcription's AdaBoundW, so that every case rests on two
independent readings of the algorithm.
"""

import argparse
import json
import math
import pathlib
import warnings

import numpy as np

STEPS = 300
SHAPES = {"scalar": (), "vector": (5,), "matrix": (3, 4)}

# Each case: the optimizer, its keyword arguments (the names of
# optax_bound.adabound or optax_bound.adamod), and an optional PyTorch StepLR
# or LambdaLR schedule.
CASES = {
    "adabound_default": dict(optimizer="adabound", kwargs={}),
    "amsbound_default": dict(optimizer="amsbound", kwargs={}),
    "adabound_l2": dict(optimizer="adabound", kwargs=dict(weight_decay=5e-2)),
    "amsbound_l2": dict(optimizer="amsbound", kwargs=dict(weight_decay=5e-2)),
    # Bounds that close within the run: most elements end clipped.
    "adabound_active_clip": dict(
        optimizer="adabound",
        kwargs=dict(learning_rate=1e-2, final_lr=0.05, gamma=0.05),
    ),
    "amsbound_active_clip": dict(
        optimizer="amsbound",
        kwargs=dict(learning_rate=1e-2, final_lr=0.05, gamma=0.05),
    ),
    # lr * 0.1 every 100 steps through torch.optim.lr_scheduler.StepLR.
    "adabound_step_lr": dict(
        optimizer="adabound",
        kwargs=dict(learning_rate=1e-2, final_lr=0.1, gamma=1e-2),
        step_lr=dict(step_size=100, gamma=0.1),
    ),
    "amsbound_step_lr": dict(
        optimizer="amsbound",
        kwargs=dict(learning_rate=1e-2, final_lr=0.1, gamma=1e-2,
                    weight_decay=1e-2),
        step_lr=dict(step_size=100, gamma=0.1),
    ),
    # A LambdaLR warmup, then a decay: the authors' code divides by base_lr,
    # the lr it was built with (the top of the warmup), so its bounds rise
    # with the warmup. optax_bound follows it when given base_lr.
    "adabound_lambda_lr_warmup": dict(
        optimizer="adabound",
        kwargs=dict(learning_rate=1e-2, base_lr=1e-2, final_lr=0.1, gamma=1e-2),
        lambda_lr=dict(warmup_steps=50, decay_rate=0.99),
    ),
    "amsbound_lambda_lr_warmup": dict(
        optimizer="amsbound",
        kwargs=dict(learning_rate=1e-2, base_lr=1e-2, final_lr=0.1, gamma=1e-2,
                    weight_decay=1e-2),
        lambda_lr=dict(warmup_steps=50, decay_rate=0.99),
    ),
    # eps = 0: the element whose gradient is always 0 must still not move.
    "adabound_eps0": dict(optimizer="adabound", kwargs=dict(eps=0.0)),
    # AdaBoundW, from the NumPy transcription (float64 only).
    "adaboundw_decoupled": dict(
        optimizer="adaboundw", kwargs=dict(weight_decay=1e-3)
    ),
    "adaboundw_lr_scaled": dict(
        optimizer="adaboundw",
        kwargs=dict(learning_rate=1e-2, weight_decay=0.03, lr_scaled_decay=True),
    ),
    # At b3 = 0.999 the bound, an average that starts from 0, stays below the
    # step sizes all run long: it sets every step of the default cases.
    "adamod_default": dict(optimizer="adamod", kwargs={}),
    # Decoupled decay scaled by lr: (1 - wd * lr)^300 = 0.86 of |p| by itself.
    "adamod_weight_decay": dict(
        optimizer="adamod", kwargs=dict(learning_rate=1e-2, weight_decay=5e-2)
    ),
    # A short memory for the momental bound: it binds on some elements and
    # steps, the plain step size on the others.
    "adamod_active": dict(
        optimizer="adamod", kwargs=dict(learning_rate=1e-2, b3=0.9)
    ),
    # adamod reads group["lr"] at every step, so StepLR drives both the step
    # size and the decay. The bound sets most steps before the first drop and
    # none after it: the drop leaves it above the new step sizes.
    "adamod_step_lr": dict(
        optimizer="adamod",
        kwargs=dict(learning_rate=1e-2, b3=0.99, weight_decay=1e-2),
        step_lr=dict(step_size=100, gamma=0.1),
    ),
}

DEFAULTS = dict(learning_rate=1e-3, final_lr=0.1, b1=0.9, b2=0.999, gamma=1e-3,
                eps=1e-8, weight_decay=0.0, lr_scaled_decay=False)
# The authors' adamod 0.0.3 defaults (its docstring says beta3=0.9999; its
# signature says 0.999, and the signature is what runs).
ADAMOD_DEFAULTS = dict(learning_rate=1e-3, b1=0.9, b2=0.999, b3=0.999, eps=1e-8,
                       weight_decay=0.0)


def hyperparameters(config) -> dict:
  defaults = ADAMOD_DEFAULTS if config["optimizer"] == "adamod" else DEFAULTS
  return {**defaults, **config["kwargs"]}


def libm_power(base: float, exponents) -> np.ndarray:
  """`base ** exponents` element by element through C's pow.

  NumPy's SIMD pow (AVX-512 builds) differs from C's by an ulp on some inputs,
  which would make the recorded data depend on the CPU that records it.
  """
  return np.vectorize(lambda e: base ** float(e), otypes=[np.float64])(exponents)


def make_problem(seed: int = 0):
  """Initial parameters (|p| in [2, 4]) and a fixed gradient sequence.

  Per element, the gradient scale spans 10^-5 .. 10^0 so that both bounds
  are active somewhere, and one element's gradient is always exactly 0. The
  parameters stay far from 0, so that relative errors mean something.
  """
  rng = np.random.default_rng(seed)
  params, grads = {}, {}
  for name, shape in SHAPES.items():
    params[name] = rng.choice([-1.0, 1.0], shape) * rng.uniform(2, 4, shape)
    scale = libm_power(10.0, rng.uniform(-5, 0, shape))
    mean = rng.uniform(-0.5, 0.5, shape)
    grads[name] = scale * (mean + rng.standard_normal((STEPS, *shape)))
  grads["matrix"][:, 0, 0] = 0.0
  return params, grads


def warmup_then_decay(warmup_steps: int, decay_rate: float):
  """The LambdaLR factor of epoch t: a linear warmup to 1, then a decay.

  In Python floats, as PyTorch's LambdaLR calls it.
  """
  def factor(t: int) -> float:
    return min(1.0, (t + 1) / warmup_steps) * decay_rate ** max(
        0, t + 1 - warmup_steps)
  return factor


def learning_rates(config) -> np.ndarray:
  """The learning rate of each step, as the PyTorch scheduler sets it."""
  lr = hyperparameters(config)["learning_rate"]
  step_lr = config.get("step_lr")
  steps = np.arange(STEPS)
  if "lambda_lr" in config:
    factor = warmup_then_decay(**config["lambda_lr"])
    return np.array([lr * factor(t) for t in range(STEPS)])
  if step_lr is None:
    return np.full(STEPS, lr)
  return lr * libm_power(step_lr["gamma"], steps // step_lr["step_size"])


def run_reference(config, params, grads, dtype):
  """The authors' adabound 0.0.5 or adamod 0.0.3, one PyTorch tensor per leaf."""
  import adabound
  import adamod
  import torch

  hp = hyperparameters(config)
  torch_dtype = {np.float64: torch.float64, np.float32: torch.float32}[dtype]
  tensors = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch_dtype))
             for k, v in params.items()}
  if config["optimizer"] == "adamod":
    opt = adamod.AdaMod(
        list(tensors.values()), lr=hp["learning_rate"],
        betas=(hp["b1"], hp["b2"]), beta3=hp["b3"], eps=hp["eps"],
        weight_decay=hp["weight_decay"],
    )
  else:
    opt = adabound.AdaBound(
        list(tensors.values()), lr=hp["learning_rate"],
        betas=(hp["b1"], hp["b2"]), final_lr=hp["final_lr"], gamma=hp["gamma"],
        eps=hp["eps"], weight_decay=hp["weight_decay"],
        amsbound=config["optimizer"] == "amsbound",
    )
  scheduler = None
  if config.get("step_lr"):
    scheduler = torch.optim.lr_scheduler.StepLR(opt, **config["step_lr"])
  if config.get("lambda_lr"):
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_then_decay(**config["lambda_lr"]))
  trajectory = {k: [] for k in params}
  lrs = []
  for t in range(STEPS):
    for k, p in tensors.items():
      p.grad = torch.tensor(grads[k][t], dtype=torch_dtype)
    lrs.append(opt.param_groups[0]["lr"])
    opt.step()
    if scheduler is not None:
      scheduler.step()
    for k, p in tensors.items():
      trajectory[k].append(p.detach().numpy().copy())
  np.testing.assert_allclose(lrs, learning_rates(config), rtol=1e-15)
  return {k: np.stack(v) for k, v in trajectory.items()}


def run_transcription(config, params, grads):
  """A float64 NumPy transcription of the authors' AdaBound / AMSBound / AdaBoundW.

  Line for line the authors' step(), with AdaBoundW's decoupled decay
  `p <- p - step - wd * p_old` (or `wd * lr * p_old` when lr-scaled).
  """
  hp = hyperparameters(config)
  b1, b2, eps, gamma = hp["b1"], hp["b2"], hp["eps"], hp["gamma"]
  decoupled = config["optimizer"] == "adaboundw"
  use_max = config["optimizer"] == "amsbound"
  lrs = learning_rates(config)
  # The lr the optimizer was built with; under a LambdaLR warmup, not lrs[0].
  base_lr = hp["learning_rate"]
  p = {k: np.array(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  v_max = {k: np.zeros_like(x) for k, x in p.items()}
  trajectory = {k: [] for k in p}
  with np.errstate(divide="ignore", invalid="ignore"):
    for t in range(1, STEPS + 1):
      lr = lrs[t - 1]
      for k in p:
        g = grads[k][t - 1]
        if not decoupled and hp["weight_decay"] != 0:
          g = g + hp["weight_decay"] * p[k]
        m[k] = m[k] * b1 + (1 - b1) * g
        v[k] = v[k] * b2 + (1 - b2) * g * g
        if use_max:
          v_max[k] = np.maximum(v_max[k], v[k])
          denom = np.sqrt(v_max[k]) + eps
        else:
          denom = np.sqrt(v[k]) + eps
        step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        final_lr = hp["final_lr"] * lr / base_lr
        lower = final_lr * (1 - 1 / (gamma * t + 1))
        upper = final_lr * (1 + 1 / (gamma * t))
        step = np.clip(np.full_like(denom, step_size) / denom, lower, upper)
        step = step * m[k]
        if decoupled and hp["weight_decay"] != 0:
          decay = hp["weight_decay"] * (lr if hp["lr_scaled_decay"] else 1.0)
          decayed = p[k] * decay
          p[k] = p[k] - step - decayed
        else:
          p[k] = p[k] - step
        trajectory[k].append(p[k].copy())
  return {k: np.stack(x) for k, x in trajectory.items()}


def run_adamod_transcription(config, params, grads):
  """A float64 NumPy transcription of the authors' AdaMod (adamod 0.0.3).

  Line for line their step(): eps on the raw root, the bias corrections in the
  step size, the momental bound `s` an average of past step sizes (lr
  included), and decay `p <- p - wd * lr * p` on the old parameter, decoupled
  from the gradient and applied before the step.

  Returns the trajectory and, per step, a mask of the elements whose step the
  momental bound sets (s < eta), leaving out elements with m == 0, whose step
  is 0 whichever side binds.
  """
  hp = hyperparameters(config)
  b1, b2, b3, eps, wd = hp["b1"], hp["b2"], hp["b3"], hp["eps"], hp["weight_decay"]
  lrs = learning_rates(config)
  p = {k: np.array(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(x) for k, x in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  s = {k: np.zeros_like(x) for k, x in p.items()}
  trajectory = {k: [] for k in p}
  bound_binds, step_binds = [], []
  for t in range(1, STEPS + 1):
    lr = lrs[t - 1]
    binds, unbound = [], []
    for k in p:
      g = grads[k][t - 1]
      m[k] = m[k] * b1 + (1 - b1) * g
      v[k] = v[k] * b2 + (1 - b2) * g * g
      denom = np.sqrt(v[k]) + eps
      step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
      if wd != 0:
        p[k] = p[k] + (-wd * lr) * p[k]
      eta = np.full_like(denom, step_size) / denom
      s[k] = s[k] * b3 + (1 - b3) * eta
      moving = np.ravel(m[k] != 0)
      binds.append(np.ravel(s[k] < eta)[moving])
      unbound.append(np.ravel(eta <= s[k])[moving])
      p[k] = p[k] - np.minimum(eta, s[k]) * m[k]
      trajectory[k].append(p[k].copy())
    bound_binds.append(np.concatenate(binds))
    step_binds.append(np.concatenate(unbound))
  binding = dict(bound=np.stack(bound_binds), step=np.stack(step_binds))
  return {k: np.stack(x) for k, x in trajectory.items()}, binding


def run_pytorch_optimizer_adaboundw(config, params, grads):
  """pytorch_optimizer's AdaBound with decoupled decay, as a cross-check."""
  import pytorch_optimizer
  import torch

  hp = hyperparameters(config)
  tensors = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64))
             for k, v in params.items()}
  opt = pytorch_optimizer.AdaBound(
      list(tensors.values()), lr=hp["learning_rate"], betas=(hp["b1"], hp["b2"]),
      final_lr=hp["final_lr"], gamma=hp["gamma"], eps=hp["eps"],
      weight_decay=hp["weight_decay"], weight_decouple=True,
      fixed_decay=not hp["lr_scaled_decay"],
  )
  trajectory = {k: [] for k in params}
  for t in range(STEPS):
    for k, p in tensors.items():
      p.grad = torch.tensor(grads[k][t], dtype=torch.float64)
    opt.step()
    for k, p in tensors.items():
      trajectory[k].append(p.detach().numpy().copy())
  return {k: np.stack(v) for k, v in trajectory.items()}


def max_relative_error(a, b) -> float:
  return max(float(np.max(np.abs(a[k] - b[k]) / np.abs(b[k]))) for k in b)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      "--out", type=pathlib.Path,
      default=pathlib.Path(__file__).with_name("reference_trajectories.npz"),
  )
  args = parser.parse_args()
  # adabound and adamod call the deprecated add_(scalar, tensor) and
  # addcmul_(scalar, tensor, tensor) overloads, which still run on torch 2.13.
  warnings.filterwarnings(
      "ignore", message="This overload of add", category=UserWarning
  )

  params, grads = make_problem()
  arrays = {}
  for name in SHAPES:
    arrays[f"init/{name}"] = params[name]
    arrays[f"grads/{name}"] = grads[name]
  for case, config in CASES.items():
    arrays[f"lr/{case}"] = learning_rates(config)
    binding = None
    if config["optimizer"] == "adamod":
      numpy64, binding = run_adamod_transcription(config, params, grads)
    else:
      numpy64 = run_transcription(config, params, grads)
    if config["optimizer"] == "adaboundw":
      trajectories = {"float64": numpy64}
      cross_check = run_pytorch_optimizer_adaboundw(config, params, grads)
      error = max_relative_error(cross_check, numpy64)
      source = "numpy transcription"
      check = f"pytorch_optimizer vs transcription {error:.1e}"
      assert error < 1e-6, check
    else:
      trajectories = {
          "float64": run_reference(config, params, grads, np.float64),
          "float32": run_reference(config, params, grads, np.float32),
      }
      error = max_relative_error(numpy64, trajectories["float64"])
      adamod = config["optimizer"] == "adamod"
      source = "adamod 0.0.3" if adamod else "adabound 0.0.5"
      check = f"transcription vs reference {error:.1e}"
      assert error < 1e-12, check
      single = max_relative_error(trajectories["float32"], trajectories["float64"])
      check += f", float32 vs float64 {single:.1e}"
    for dtype, trajectory in trajectories.items():
      for name in SHAPES:
        arrays[f"params/{case}/{dtype}/{name}"] = trajectory[name].astype(dtype)
    smallest = min(float(np.min(np.abs(x))) for x in numpy64.values())
    print(f"{case:22s} {source:20s} {check}; min |p| {smallest:.2f}")
    if binding:
      print(f"{'':22s} momental bound sets the step on "
            f"{binding['bound'].mean():.0%} of element-steps, the step size on "
            f"{binding['step'].mean():.0%}")
      if case == "adamod_active":
        share = binding["bound"].mean()
        assert 0.2 < share < 0.8, f"the bound binds on {share:.0%}"
  arrays["cases"] = np.array(json.dumps(CASES))
  arrays["defaults"] = np.array(json.dumps(DEFAULTS))
  arrays["adamod_defaults"] = np.array(json.dumps(ADAMOD_DEFAULTS))
  np.savez_compressed(args.out, **arrays)
  print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
  main()
