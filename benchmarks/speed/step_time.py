"""Step time: AdaBound, AMSBound, AdaBoundW and AdaMod against Optax and PyTorch.

    python -m benchmarks.speed            # the README's figures (~15 min on 2 cores)
    python -m benchmarks.speed --quick    # ResNet-34 and buffers to 1e7, float32
    python -m benchmarks.speed --only step_time --workloads resnet34 --dtypes float32

Every optimizer takes steps on the same parameter trees (``_workloads``):
ResNet-34 (110 leaves, 21.3M) and GPT-2 small (148 leaves, 124M), and fewer
of them (``SWEEP_OPTIMIZERS``) on one flat buffer of 1e4 to 1e8 parameters, in
float32 and bfloat16. A JAX step is
``jax.jit``-compiled with its parameters and state donated, as a training step
is, and includes ``optax.apply_updates``; a PyTorch step is ``optimizer.step()``
with the gradients in place (PyTorch peers run in float32 only, and only when
torch is installed: ``pip install ".[reference]"``).

How the times are taken, so that the ratios mean something on a shared
machine: the optimizers take turns. Each round runs every optimizer for one
block (a fresh state, one warm-up step, then ``--steps`` timed steps), in an
order that rotates from round to round, so that each ratio is the median over
rounds of two blocks run seconds apart; its spread over rounds is printed as
the noise. An optimizer stops taking turns once its timed steps have used
``--budget`` seconds (the authors' AMSBound takes seconds per GPT-2 step).

Achieved bandwidth counts the bytes an ideal single pass must move: read the
parameters, the gradients and the state, write the parameters and the state
(28 bytes per float32 parameter for AdaBound and Adam; 36 for AMSBound, and
for AdaMod, which reads p, g, mu, nu, s and writes p, mu, nu, s; 12 for SGD,
which is a STREAM triad and so the machine's attainable bandwidth).

``run`` writes ``speed.json`` (every timed step) and ``speed.png`` to
``--out`` and returns the tables; ``python -m benchmarks.speed``
(``__main__.py``) runs it, and the time to first step (``first_step.py``).
Not yet measured on a GPU: the script runs unchanged there (``jax[cuda]``),
where a step is bound by memory traffic and the bandwidth panel of the figure
is the one to read.
"""

import gc
import importlib
import math
import os
import pathlib
import time
from typing import Any
from typing import Callable
from typing import NamedTuple
import warnings

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax

from benchmarks._common import report
from benchmarks.speed import _workloads
import optax_bound

WEIGHT_DECAY = 1e-4  # optax.adamw's default; adaboundw gets the same.

# Ours at the defaults, and the Optax optimizer each one is Optax's version of.
JAX_OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "adabound": optax_bound.adabound,
    "amsbound": optax_bound.amsbound,
    "adaboundw": lambda: optax_bound.adaboundw(weight_decay=WEIGHT_DECAY),
    "adamod": optax_bound.adamod,
    "optax.adam": lambda: optax.adam(1e-3),
    "optax.amsgrad": lambda: optax.amsgrad(1e-3),
    "optax.adamw": lambda: optax.adamw(1e-3, weight_decay=WEIGHT_DECAY),
    "optax.sgd": lambda: optax.sgd(1e-3),
}
OPTAX_COUNTERPART = {"adabound": "optax.adam", "amsbound": "optax.amsgrad",
                     "adaboundw": "optax.adamw", "adamod": "optax.adam"}
# The PyTorch peers, and which of ours each one races. PyTorch's Adam is the
# fastest CPU kernel we know for AdaBound's memory traffic.
TORCH_PEERS = {
    "authors' AdaBound": "adabound",
    "authors' AMSBound": "amsbound",
    "pytorch_optimizer AdaBound": "adabound",
    "pytorch_optimizer AMSBound": "amsbound",
    "torch Adam (for-loop)": "adabound",
    "torch Adam (foreach)": "adabound",
    "torch Adam (fused)": "adabound",
}
# Our targets: (numerator, denominator, workloads, sense, bound, why). A ratio
# is step-time numerator / denominator. Why each, at length:
# - ours no slower than Optax's counterpart: AdaBound moves Adam's bytes
#   (AMSBound AMSGrad's) in one fused pass, and its clip adds only arithmetic;
# - AdaMod within 1.1x of Adam on ResNet-34: it is Adam's fused pass plus one
#   more param-sized stream (s, the average of step sizes) and a minimum. Its
#   ideal traffic is 36 B/param against Adam's 28 (1.29x), so a step bound by
#   memory bandwidth alone would take 1.29x; on a CPU, where Adam's pass
#   reaches about two thirds of SGD's bandwidth (its square root and division
#   take their share), the extra stream should cost less than that;
# - ours 4x faster than the authors' AdaBound and 15x than their AMSBound: their
#   step is a Python loop of PyTorch kernels per leaf, with param-sized
#   temporaries, which we expected to take ~220 ms and ~1300 ms per ResNet-34
#   step; 2x than pytorch_optimizer's AdaBound, a per-leaf loop of kernels too;
# - ours within 2x of PyTorch's fused Adam, the fastest CPU kernel we know for
#   the same memory traffic: a jitted pass should stay in its class.
_BOTH = ("resnet34", "gpt2")
_PER_LEAF_LOOP = "a Python loop of PyTorch kernels per leaf"
TARGETS = [
    ("adabound", "optax.adam", _BOTH, "<=", 1.0,
     "Adam's bytes in one fused pass; the clip is arithmetic"),
    ("amsbound", "optax.amsgrad", _BOTH, "<=", 1.0,
     "AMSGrad's bytes in one fused pass; the clip is arithmetic"),
    ("adamod", "optax.adam", ("resnet34",), "<=", 1.1,
     "Adam's pass, one more stream (36 vs 28 B/param) and a min"),
    ("authors' AdaBound", "adabound", _BOTH, ">=", 4.0,
     _PER_LEAF_LOOP + ", with temporaries"),
    ("authors' AMSBound", "amsbound", _BOTH, ">=", 15.0,
     _PER_LEAF_LOOP + ", with temporaries"),
    ("pytorch_optimizer AdaBound", "adabound", _BOTH, ">=", 2.0,
     _PER_LEAF_LOOP),
    ("adabound", "torch Adam (fused)", _BOTH, "<=", 2.0,
     "the fastest CPU kernel we know for the same bytes"),
]
# The buffer sweep shows how the cost grows with size, so it races fewer:
# ours, their Optax counterparts, SGD (a STREAM triad: the bandwidth that the
# machine gives) and the fastest PyTorch kernel.
SWEEP_OPTIMIZERS = ("adabound", "amsbound", "optax.adam", "optax.amsgrad",
                    "optax.sgd", "torch Adam (fused)")


class Settings(NamedTuple):
  workloads: tuple[str, ...]
  dtypes: tuple[str, ...]
  sizes: tuple[int, ...]
  repeats: int
  steps: int
  budget: float
  tiny: bool
  # The time to first step (first_step.py): its trees and rounds.
  first_step_workloads: tuple[str, ...]
  first_step_rounds: int


WORKLOADS = ("resnet34", "deep_stack", "gpt2", "sweep")
FULL = Settings(("resnet34", "gpt2", "sweep"), ("float32", "bfloat16"),
                (10**4, 10**5, 10**6, 10**7, 10**8), repeats=10, steps=3,
                budget=15.0, tiny=False,
                first_step_workloads=("resnet34", "deep_stack", "gpt2"),
                first_step_rounds=5)
QUICK = FULL._replace(workloads=("resnet34", "sweep"), dtypes=("float32",),
                      sizes=(10**4, 10**5, 10**6, 10**7), repeats=5,
                      first_step_workloads=("resnet34", "deep_stack"),
                      first_step_rounds=3)
TINY = FULL._replace(sizes=(10**3, 10**4), repeats=2, steps=2, budget=1.0,
                     tiny=True, first_step_rounds=2)


class Workload(NamedTuple):
  key: str  # "resnet34", "deep_stack", "gpt2" or "buffer"
  label: str
  shapes: _workloads.Shapes


def workloads(settings: Settings) -> list[Workload]:
  """The trees of the run, in order."""
  out = []
  for name in settings.workloads:
    # Tiny trees: narrow and one block deep, so that they compile fast.
    if name == "resnet34":
      shapes = (_workloads.resnet34(width=4, blocks=(1, 1, 1, 1))
                if settings.tiny else _workloads.resnet34())
      out.append(Workload(name, "ResNet-34", shapes))
    elif name == "gpt2":
      shapes = (_workloads.gpt2(d_model=16, n_layer=1, vocab=64, n_ctx=16)
                if settings.tiny else _workloads.gpt2())
      out.append(Workload(name, "GPT-2 small", shapes))
    elif name == "deep_stack":
      shapes = (_workloads.deep_stack(n_blocks=5, d_model=4)
                if settings.tiny else _workloads.deep_stack())
      out.append(Workload(name, "Deep stack", shapes))
    else:
      out += [Workload("buffer", f"buffer {size:.0e}",
                       _workloads.single_buffer(size))
              for size in settings.sizes]
  return out


class Block(NamedTuple):
  """One optimizer with a fresh state: ``step()`` runs and waits for one step."""

  step: Callable[[], None]
  state_bytes: Callable[[], int]  # The param-sized state kept between steps.


def donated_train_step(tx: optax.GradientTransformation) -> Callable:
  """``(params, state, grads) -> (params, state)``: one step, as training takes it.

  ``tx.update`` then ``optax.apply_updates``, jitted with the parameters and
  the state donated, so that XLA may update them in place. The memory
  benchmark measures this same step.
  """
  def train_step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(train_step, donate_argnums=(0, 1))


def _jax_block_factory(make: Callable[[], optax.GradientTransformation],
                       params: Any, grads: Any) -> Callable[[], Block]:
  tx = make()
  train_step = donated_train_step(tx)

  def start() -> Block:
    # A copy to donate: the shared parameters start every block alike.
    carry = [jax.tree.map(jnp.copy, params)]
    carry.append(tx.init(carry[0]))

    def step():
      carry[:] = train_step(carry[0], carry[1], grads)
      jax.block_until_ready(carry)

    return Block(step, lambda: sum(
        x.nbytes for x in jax.tree.leaves(carry[1]) if x.ndim))

  return start


# The package that each PyTorch peer comes from (the `reference` extra).
_PEER_PACKAGE = {
    "authors' AdaBound": "adabound", "authors' AMSBound": "adabound",
    "pytorch_optimizer AdaBound": "pytorch_optimizer",
    "pytorch_optimizer AMSBound": "pytorch_optimizer",
    "torch Adam (for-loop)": "torch", "torch Adam (foreach)": "torch",
    "torch Adam (fused)": "torch",
}


def importable_torch_peers() -> tuple[dict[str, Callable[[list[Any]], Any]],
                                      dict[str, str]]:
  """The PyTorch optimizers that can be built, by name; why each other cannot."""
  modules, missing = {}, {}
  for package in sorted(set(_PEER_PACKAGE.values())):
    try:
      modules[package] = importlib.import_module(package)
    except ImportError as e:  # adabound without torch says "No module torch".
      missing[package] = f"{package} is not importable ({e})"
  # The authors' code uses an overload of Tensor.add_ that torch deprecated.
  warnings.filterwarnings("ignore", message="This overload of add_")
  makers = {
      "authors' AdaBound": lambda ps: modules["adabound"].AdaBound(ps),
      "authors' AMSBound": lambda ps: modules["adabound"].AdaBound(
          ps, amsbound=True),
      "pytorch_optimizer AdaBound": lambda ps: modules[
          "pytorch_optimizer"].AdaBound(ps, weight_decay=0.0),
      "pytorch_optimizer AMSBound": lambda ps: modules[
          "pytorch_optimizer"].AdaBound(ps, weight_decay=0.0, ams_bound=True),
      "torch Adam (for-loop)": lambda ps: modules["torch"].optim.Adam(
          ps, foreach=False),
      "torch Adam (foreach)": lambda ps: modules["torch"].optim.Adam(
          ps, foreach=True),
      "torch Adam (fused)": lambda ps: modules["torch"].optim.Adam(
          ps, fused=True),
  }
  return ({name: make for name, make in makers.items()
           if _PEER_PACKAGE[name] in modules},
          {name: missing[_PEER_PACKAGE[name]] for name in makers
           if _PEER_PACKAGE[name] in missing})


def torch_peers() -> dict[str, Callable[[list[Any]], Any]] | None:
  """The PyTorch optimizers by name, or None where any of them is missing."""
  peers, missing = importable_torch_peers()
  return None if missing else peers


def _torch_block_factory(make, params: list[Any]) -> Callable[[], Block]:
  import torch

  # A CUDA step is only queued when step() returns: wait for it, as
  # jax.block_until_ready does for a JAX step.
  on_cuda = any(p.is_cuda for p in params)

  def start() -> Block:
    optimizer = make(params)

    def step():
      optimizer.step()
      if on_cuda:
        torch.cuda.synchronize()

    return Block(step, lambda: sum(
        t.numel() * t.element_size() for state in optimizer.state.values()
        for t in state.values() if hasattr(t, "dim") and t.dim()))

  return start


def torch_params(params: Any, grads: Any, device: str = "cpu") -> list[Any]:
  """The same values as torch leaves on ``device``, with their gradients in place."""
  import torch

  def tensor(x):
    # Through a float32 copy: NumPy has no bfloat16 that torch reads, and a
    # view of JAX's buffer would let torch write into it.
    return torch.from_numpy(np.array(x, np.float32)).to(
        device, getattr(torch, str(x.dtype)))

  leaves = []
  for p, g in zip(jax.tree.leaves(params), jax.tree.leaves(grads), strict=True):
    leaf = torch.nn.Parameter(tensor(p))
    leaf.grad = tensor(g)
    leaves.append(leaf)
  return leaves


def _time_blocks(starts: dict[str, Callable[[], Block]], settings: Settings,
                 progress, deadline: float = math.inf
                 ) -> dict[str, dict[str, Any]]:
  """Rounds of blocks; returns each optimizer's timed steps, round by round.

  An optimizer that raises (out of memory, say) keeps its error and takes no
  more turns, and the others go on. No block starts after ``deadline`` (a
  ``time.perf_counter()`` value): each run then says where it stopped.
  """
  names = list(starts)
  runs: dict[str, dict[str, Any]] = {
      name: {"rounds": [], "times": [], "state_bytes": None}
      for name in names}
  spent = dict.fromkeys(names, 0.0)
  for r in range(settings.repeats):
    # Rotate, so that no optimizer always runs right after the same one.
    for name in names[r % len(names):] + names[:r % len(names)]:
      if time.perf_counter() >= deadline:
        for run in runs.values():
          run["stopped"] = f"time budget spent in round {r}"
        return runs
      progress.update()
      if spent[name] > settings.budget or "error" in runs[name]:
        continue
      times = []
      block: Block | None = None
      try:
        block = starts[name]()
        block.step()  # Compiles in the first round; allocates the state.
        gc.disable()  # A collection inside a timed step would be noise.
        for _ in range(settings.steps):
          start = time.perf_counter()
          block.step()
          times.append(time.perf_counter() - start)
        state_bytes = block.state_bytes()
      except Exception as e:  # Recorded; the others go on.
        runs[name]["error"] = f"{type(e).__name__}: {e}"[:2000]
        continue
      finally:
        gc.enable()
        block = None  # Frees the state (no cycles hold it)...
        # ... and the young cycles go too: a full collection takes 0.2 s once
        # torch is imported, and a GPU run has a thousand blocks.
        gc.collect(1)
      runs[name]["rounds"].append(r)
      runs[name]["times"].append(times)
      runs[name]["state_bytes"] = state_bytes
      spent[name] += sum(times)
  return runs


def _summary(run: dict[str, Any], n_params: int, param_bytes: int,
             grad_bytes: int) -> dict[str, float]:
  times = np.concatenate([np.asarray(t) for t in run["times"]])
  median = float(np.median(times))
  # The ideal single pass: read p, g and the state; write p and the state.
  traffic = 2 * param_bytes + grad_bytes + 2 * run["state_bytes"]
  return {
      "median_ms": 1e3 * median,
      "p25_ms": 1e3 * float(np.percentile(times, 25)),
      "p75_ms": 1e3 * float(np.percentile(times, 75)),
      "steps": int(times.size),
      "ns_per_param": 1e9 * median / n_params,
      "ideal_bytes_per_param": traffic / n_params,
      "gb_per_s": traffic / median / 1e9,
  }


def ratio(runs: dict[str, Any], numerator: str, denominator: str
          ) -> dict[str, float] | None:
  """numerator / denominator step time, per shared round; their median and spread.

  Each round's ratio is of the two optimizers' median steps in that round, run
  seconds apart (``report.ratio_summary``): the statistic every table and the
  docs report.
  """
  if numerator not in runs or denominator not in runs:
    return None
  medians = [{r: float(np.median(t)) for r, t in
              zip(runs[name]["rounds"], runs[name]["times"], strict=True)}
             for name in (numerator, denominator)]
  shared = sorted(set(medians[0]) & set(medians[1]))
  if not shared:
    return None
  return report.ratio_summary([medians[0][r] / medians[1][r] for r in shared])


def lineup(workload: Workload, dtype: str, optimizers: list[str],
           peers) -> list[str]:
  """The optimizers that race on one tree in one dtype."""
  if workload.key == "buffer":
    optimizers = [name for name in optimizers if name in SWEEP_OPTIMIZERS]
  # The PyTorch peers race in float32 only, and only where torch is installed.
  return [name for name in optimizers if name in JAX_OPTIMIZERS
          or (peers and dtype == "float32")]


def run_workload(workload: Workload, dtype: str, names: list[str], peers,
                 settings: Settings, progress, *,
                 draw: Callable[[_workloads.Shapes, str], tuple[Any, Any]] = (
                     _workloads.params_and_grads),
                 torch_device: str = "cpu", deadline: float = math.inf
                 ) -> dict[str, Any]:
  """Times the optimizers on one tree in one dtype; returns the raw record.

  ``draw`` makes the parameters and gradients; the PyTorch peers get copies
  on ``torch_device``. A run with no timed step (its error, or the
  ``deadline`` of ``_time_blocks``) has no summary.
  """
  started = time.perf_counter()
  params, grads = draw(workload.shapes, dtype)
  n_params = _workloads.num_params(workload.shapes)
  starts = {name: _jax_block_factory(JAX_OPTIMIZERS[name], params, grads)
            for name in names if name in JAX_OPTIMIZERS}
  if any(name in TORCH_PEERS for name in names):
    leaves = torch_params(params, grads, torch_device)
    starts.update({name: _torch_block_factory(peers[name], leaves)
                   for name in names if name in TORCH_PEERS})
  runs = _time_blocks(starts, settings, progress, deadline)
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  for run in runs.values():
    if run["times"]:
      run["summary"] = _summary(run, n_params, param_bytes, param_bytes)
  return {
      "workload": workload.key, "label": workload.label, "dtype": dtype,
      "params": n_params,
      "leaves": len(_workloads.leaf_shapes(workload.shapes)),
      "seconds": time.perf_counter() - started, "runs": runs,
  }


def _reference_of(name: str) -> str | None:
  return OPTAX_COUNTERPART.get(name) or TORCH_PEERS.get(name)


def _table(record: dict[str, Any]) -> str:
  rows = []
  for name, run in record["runs"].items():
    if "summary" not in run:
      rows.append([name, *["-"] * 6, run.get("error") or run.get("stopped")])
      continue
    s = run["summary"]
    reference = _reference_of(name)
    r = ratio(record["runs"], name, reference) if reference else None
    versus = report.format_ratio(r, reference) if r else ""
    rows.append([name, f"{s['median_ms']:.3f}",
                 f"{s['p25_ms']:.3f}-{s['p75_ms']:.3f}", s["steps"],
                 f"{s['ns_per_param']:.3f}",
                 f"{s['ideal_bytes_per_param']:.0f}", f"{s['gb_per_s']:.1f}",
                 versus])
  return (f"{record['label']}, {record['dtype']}: {record['params']:,} "
          f"parameters in {record['leaves']} leaves\n"
          + report.table(["optimizer", "median ms", "p25-p75 ms", "steps",
                           "ns/param", "B/param", "GB/s",
                           "step time vs: median of per-round ratios"], rows))


def targets(records: list[dict[str, Any]], which: list[tuple] = TARGETS
            ) -> list[dict[str, Any]]:
  """Each of our targets (``TARGETS``), on each workload where both sides ran."""
  out = []
  for numerator, denominator, keys, sense, bound, why in which:
    for record in records:
      if record["workload"] not in keys or record["dtype"] != "float32":
        continue
      r = ratio(record["runs"], numerator, denominator)
      if r is None:
        continue
      met = r["median"] <= bound if sense == "<=" else r["median"] >= bound
      out.append({"numerator": numerator, "denominator": denominator,
                  "workload": record["label"], "target": f"{sense} {bound}",
                  "met": bool(met), "why": why, **r})
  return out


def _targets_table(rows: list[dict[str, Any]]) -> str:
  return ("Our targets (float32, step-time ratio: the median of per-round "
          "ratios, its IQR and range)\n" + report.table(
              ["workload", "ratio", "median", "IQR", "range", "rounds",
               "target", "met", "why"],
              [[t["workload"], f"{t['numerator']} / {t['denominator']}",
                f"{t['median']:.3f}", f"{t['q25']:.3f}-{t['q75']:.3f}",
                f"{t['min']:.3f}-{t['max']:.3f}", t["rounds"], t["target"],
                "yes" if t["met"] else "no", t["why"]]
               for t in rows]))


def _tables(records: list[dict[str, Any]], reached: list[dict[str, Any]]
            ) -> list[str]:
  return [*map(_table, records), *([_targets_table(reached)] if reached else [])]


def comparisons(record: dict[str, Any]) -> list[dict[str, Any]]:
  """Each optimizer of one record against its reference (``ratio``)."""
  out = []
  for name in record["runs"]:
    reference = _reference_of(name)
    r = ratio(record["runs"], name, reference) if reference else None
    if r:
      out.append({"numerator": name, "denominator": reference, **r})
  return out


def plot(records: list[dict[str, Any]], path: pathlib.Path) -> None:
  """Time per parameter and bandwidth against size; step times of the trees."""
  fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
  buffers = [r for r in records
             if r["workload"] == "buffer" and r["dtype"] == "float32"]
  names = [n for n in SWEEP_OPTIMIZERS if any(n in r["runs"] for r in buffers)]
  for name in names:
    points = sorted((r["params"], r["runs"][name]["summary"]) for r in buffers
                    if "summary" in r["runs"].get(name, {}))
    sizes = [n for n, _ in points]
    style = "-" if name in JAX_OPTIMIZERS else "--"
    axes[0].plot(sizes, [s["ns_per_param"] for _, s in points], style,
                 marker="o", label=name)
    axes[1].plot(sizes, [s["gb_per_s"] for _, s in points], style,
                 marker="o", label=name)
  for ax, ylabel in zip(axes[:2], ("ns per parameter", "achieved GB/s "
                                   "(ideal single-pass bytes / time)"),
                        strict=True):
    ax.set_xscale("log")
    ax.set_xlabel("parameters in one float32 buffer")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[0].set_yscale("log")
  axes[0].set_title("Time per parameter")
  axes[1].set_title("Bandwidth")
  if names:
    axes[0].legend(fontsize=8)
  trees = [r for r in records
           if r["workload"] != "buffer" and r["dtype"] == "float32"]
  labels, values, colors = [], [], []
  for record in trees:
    for name, run in record["runs"].items():
      if "summary" not in run:
        continue
      labels.append(f"{record['label']}: {name}")
      values.append(run["summary"]["median_ms"])
      colors.append("C0" if name in OPTAX_COUNTERPART else
                    "C7" if name in JAX_OPTIMIZERS else "C3")
  axes[2].barh(range(len(values)), values, color=colors)
  axes[2].set_yticks(range(len(values)), labels, fontsize=7)
  axes[2].invert_yaxis()
  axes[2].set_xscale("log")
  axes[2].set_xlabel("median step time, ms (log)")
  axes[2].set_title("Trees, float32\n(blue: ours, grey: Optax, red: PyTorch)")
  axes[2].grid(alpha=0.3, axis="x")
  report.save_figure(fig, path, dpi=120)


def run(settings: Settings, optimizers: list[str], peers, out: pathlib.Path,
        progress) -> dict[str, Any]:
  """Times every (tree, dtype) job; saves speed.json and speed.png to ``out``."""
  jobs = [(w, d, lineup(w, d, optimizers, peers))
          for w in workloads(settings) for d in settings.dtypes]
  started = time.perf_counter()
  records = []
  for workload, dtype, names in jobs:
    progress.set_postfix_str(f"{workload.label} {dtype}")
    records.append(run_workload(workload, dtype, names, peers, settings,
                                progress))
  seconds = time.perf_counter() - started
  load_after = os.getloadavg()[0]
  reached = targets(records)
  for record in records:
    record["ratios"] = comparisons(record)
  tables = _tables(records, reached)
  plot(records, out / "speed.png")
  path = report.write_json(out / "speed.json", {
      "settings": settings._asdict(), "seconds": seconds,
      "load_average_after": load_after, "targets": reached,
      "records": records,
  })
  return {"records": records, "targets": reached, "json": path,
          "png": out / "speed.png", "table": "\n\n".join(tables),
          "seconds": seconds, "load_average_after": load_after}


def progress_steps(settings: Settings, optimizers: list[str], peers) -> int:
  """How many blocks ``run`` times: the length of its progress bar."""
  return settings.repeats * sum(
      len(lineup(w, d, optimizers, peers))
      for w in workloads(settings) for d in settings.dtypes)


def main(argv: list[str] | None = None) -> str:
  """``python -m benchmarks.speed.step_time [speed.json]``: the tables again.

  Recomputes every table from the timed steps stored in a ``speed.json``
  (by default the committed one), without timing anything.
  """
  import argparse
  import json

  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.speed.step_time", description=main.__doc__)
  parser.add_argument("json", nargs="?", type=pathlib.Path,
                      default=report.RESULTS / "speed" / "speed.json")
  saved = json.loads(parser.parse_args(argv).json.read_text())
  text = "\n\n".join(_tables(saved["records"], targets(saved["records"])))
  print(f"{saved['machine']['date']}, {saved['machine']['cpu']}\n\n{text}")
  return text


if __name__ == "__main__":
  main()
