"""``python -m benchmarks.speed.device``: one bounded run that measures a GPU.

    timeout 540 python -m benchmarks.speed.device        # on a GPU: 8 minutes at most
    python -m benchmarks.speed.device --tiny --out /tmp/device   # any machine, a minute

The speed benchmarks were written and measured on a CPU; an optimizer step is
bound by memory traffic on a GPU, where the figures that matter differ. This
script takes them in one command whose wall-clock time is bounded by
``--max-seconds``, in four stages, each announced by a progress line:

1. ``tests``: the fast tests (``-m "not slow"``) of the parity, Optax
   contract, property and fault files, in a pytest subprocess on the device,
   with the count of each outcome and each failure's reason. The test files
   that only run on the CPU (they force the CPU platform or host devices, as
   the sharding, multihost and checkpoint tests do) are found by reading
   ``tests/`` and listed, not run.
2. ``copy``: the device's copy bandwidth, ``COPY`` over one large float32
   buffer: the bytes read and written, over the median time of a call.
3. ``step_time``: the donated, jit-compiled step of ``step_time``, each step
   waited for (``jax.block_until_ready``; ``torch.cuda.synchronize()`` after a
   PyTorch step), in interleaved rounds: ours, Optax's counterparts, PyTorch's
   fused and foreach Adam and the authors' AdaBound on the ResNet-34 and GPT-2
   trees, and fewer of them (``SWEEP_OPTIMIZERS``) on single buffers of 1e4 to
   1e9 parameters; float32, then bfloat16. Each ratio (``RATIOS``) is the
   median over rounds of per-round ratios, with their min and max; each
   step's achieved bandwidth counts the bytes an ideal pass moves
   (``step_time``) and is also given as a fraction of the copy bandwidth.
4. ``first_step``: the time to the first step of ``first_step``, from empty
   caches, and the eager update.

What cannot run is skipped with its reason in the JSON, and the run goes on:
torch absent, or without CUDA while JAX runs on a GPU; ``adabound`` absent; an
optimizer that raised (out of memory, say); a stage or a job once the budget
is spent (``step_time`` stops ``--first-step-seconds`` before the end, so that
the first step has its time). ``device.json`` is rewritten after every stage,
so a run cut short keeps what it measured.

JAX is told not to take 75% of the GPU's memory at start
(``XLA_PYTHON_CLIENT_PREALLOCATE=false``): the tests' subprocess and torch
need their share. The largest buffers are drawn on the device
(``_workloads.device_params_and_grads``): NumPy would take minutes.

Writes ``device.json`` (every number, the device, driver and versions),
``device.png`` and ``device_tests.log`` (the pytest output) to ``--out``:
``benchmarks/results/gpu`` on a GPU, else the git-ignored
``benchmarks/results/tmp/device``.
"""

import argparse
import gc
import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from typing import Any
from typing import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from benchmarks._common import report
from benchmarks.speed import _workloads
from benchmarks.speed import first_step
from benchmarks.speed import step_time
import optax_bound

ROOT = pathlib.Path(__file__).parents[2]
STAGES = ("tests", "copy", "step_time", "first_step")
DEVICE_TESTS = ("tests/test_reference_parity.py", "tests/test_optax_contract.py",
                "tests/test_properties.py", "tests/test_faults.py")
# What makes a test file CPU-only, and why, as tests/ spells it.
CPU_ONLY_SIGNS = {
    r"JAX_PLATFORMS\W+cpu": "forces the CPU platform (JAX_PLATFORMS=cpu)",
    r"xla_force_host_platform_device_count":
        "runs on host CPU devices (--xla_force_host_platform_device_count)",
}
COPY = "a jitted, donated x -> -x"  # Reads and writes each byte once.
TORCH_PEERS = ("torch Adam (fused)", "torch Adam (foreach)",
               "authors' AdaBound")
TREE_OPTIMIZERS = ("adabound", "amsbound", "adaboundw", "adamod", "optax.adam",
                   "optax.amsgrad", "optax.adamw", *TORCH_PEERS)
# The buffers show how a step's bandwidth grows with its size: ours, their
# Optax counterparts, SGD (a STREAM triad) and PyTorch's fastest kernel.
SWEEP_OPTIMIZERS = ("adabound", "amsbound", "adamod", "optax.adam",
                    "optax.amsgrad", "optax.sgd", "torch Adam (fused)")
RATIOS = (("adabound", "optax.adam"), ("amsbound", "optax.amsgrad"),
          ("adamod", "optax.adam"), ("adabound", "torch Adam (fused)"),
          ("adaboundw", "optax.adamw"), ("adabound", "torch Adam (foreach)"),
          ("authors' AdaBound", "adabound"))
HEADLINE = RATIOS[:4]  # The figure's.
# Our targets on a GPU, as step_time.TARGETS: (numerator, denominator,
# workloads, sense, bound, why), float32. A GPU step is bound by memory
# traffic, so the arithmetic of the clip (and of AdaMod's minimum) should be
# free, and the bytes alone should set the time.
_TREES = ("resnet34", "gpt2")
TARGETS = [
    ("adabound", "optax.adam", _TREES, "<=", 1.0,
     "Adam's bytes in one fused pass; the clip's arithmetic is free in a "
     "pass bound by memory"),
    ("amsbound", "optax.amsgrad", _TREES, "<=", 1.0,
     "AMSGrad's bytes in one fused pass; the clip's arithmetic is free"),
    ("adamod", "optax.adam", _TREES, "<=", 1.3,
     "36 vs 28 B/param is 1.29x; XLA:GPU fuses loops with several outputs, "
     "so its step sizes need not go through memory"),
    ("adabound", "torch Adam (fused)", ("gpt2",), "<=", 1.1,
     "the same bytes as PyTorch's fused CUDA kernel, in one fused pass"),
]
# (fraction of the copy bandwidth, optimizers, why), on the buffers of
# Settings.bandwidth_from parameters or more (1e8: 400 MB, far past the
# caches, where a step is bound by the device's memory alone).
BANDWIDTH_TARGET = (0.85, ("adabound", "amsbound", "adamod"),
                    "a pass bound by memory streams near the copy's rate")
VERSIONS = ("jax", "jaxlib", "optax", "flax", "chex", "numpy", "torch",
            "adabound", "pytest", "hypothesis")


class Settings(NamedTuple):
  speed: step_time.Settings  # The step time's and the first step's.
  copy_size: int
  copy_repeats: int
  tests: tuple[str, ...]
  tests_timeout: float
  first_step_seconds: float  # Kept for the first step at the end.
  max_seconds: float
  bandwidth_from: int  # The buffers that BANDWIDTH_TARGET reads.
  device_draw_from: int  # Larger trees are drawn on the device.


FULL = Settings(
    step_time.FULL._replace(
        sizes=tuple(10**k for k in range(4, 10)), repeats=10, steps=10,
        budget=10.0, first_step_workloads=_TREES, first_step_rounds=2),
    copy_size=10**9, copy_repeats=20, tests=DEVICE_TESTS, tests_timeout=150,
    first_step_seconds=100, max_seconds=450, bandwidth_from=10**8,
    device_draw_from=10**8)
# One tree of each kind: the tiny ResNet-34 would take a minute more, on the
# same code.
TINY = Settings(
    step_time.TINY._replace(workloads=("gpt2", "sweep"),
                            first_step_workloads=("gpt2",),
                            first_step_rounds=1),
    copy_size=10**5, copy_repeats=3,
    tests=("tests/test_reference_parity.py::"
           "test_step_lr_schedules_are_the_recorded_pytorch_schedule",),
    tests_timeout=120, first_step_seconds=30, max_seconds=300,
    bandwidth_from=10**4, device_draw_from=10**4)


def _budget_spent(settings: Settings) -> str:
  return (f"the run's time budget (--max-seconds {settings.max_seconds:g}) "
          "was spent")


# -- The machine.


def nvidia_smi() -> dict[str, str]:
  """The driver version and what ``nvidia-smi`` says of each GPU, or 'unknown'."""
  exe = shutil.which("nvidia-smi")
  if exe is None:
    return {"driver": "unknown", "nvidia_smi": "nvidia-smi not found"}
  try:
    out = subprocess.run(
        [exe, "--query-gpu=name,driver_version,memory.total",
         "--format=csv,noheader"], capture_output=True, text=True, timeout=30,
        check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError) as e:
    return {"driver": "unknown", "nvidia_smi": f"failed: {e}"}
  fields = [f.strip() for f in out.splitlines()[0].split(",")] if out else []
  return {"driver": fields[1] if len(fields) > 1 else "unknown",
          "nvidia_smi": out}


def environment(torch_device: str | None) -> dict[str, Any]:
  """The device, driver and versions (``report.machine`` adds the date)."""
  versions = {}
  for name in VERSIONS:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  # JAX's CUDA plugins (jax-cuda12-plugin, jax-cuda13-pjrt, ...).
  versions.update({d.metadata["Name"]: d.version
                   for d in importlib.metadata.distributions()
                   if (d.metadata["Name"] or "").lower().replace("_", "-")
                   .startswith("jax-cuda")})
  versions["optax_bound"] = optax_bound.__version__
  try:
    from jax.extend import backend as jax_backend

    platform_version = jax_backend.get_backend().platform_version
  except Exception as e:  # An accessor that moved in a new jax: recorded.
    platform_version = f"unknown ({type(e).__name__})"
  env = {"backend": jax.default_backend(),
         "devices": [d.device_kind for d in jax.devices()],
         "platform_version": platform_version, **nvidia_smi(),
         "versions": versions, "torch_device": torch_device}
  if torch_device == "cuda":
    import torch

    env["torch_cuda"] = {"version": torch.version.cuda,
                         "device": torch.cuda.get_device_name(0)}
  return env


def torch_lineup(backend: str) -> tuple[dict[str, Callable], str | None,
                                        dict[str, str]]:
  """The PyTorch peers that race here, their device, and why the others don't.

  torch runs where JAX does: on the CPU, or on CUDA where JAX runs on a GPU
  (a step on the host would not race the device's).
  """
  peers, missing = step_time.importable_torch_peers()
  peers = {name: peers[name] for name in TORCH_PEERS if name in peers}
  skipped = {name: missing[name] for name in TORCH_PEERS if name in missing}
  if not peers:
    return {}, None, skipped
  import torch

  if backend == "cpu":
    return peers, "cpu", skipped
  if backend == "gpu" and torch.cuda.is_available():
    return peers, "cuda", skipped
  why = (f"torch {torch.__version__} has no CUDA device, and JAX runs on the "
         f"{backend}: a step on the host would not race the device's")
  return {}, None, {**skipped, **dict.fromkeys(peers, why)}


# -- Stage 1: the fast tests on the device.


def cpu_only_tests(root: pathlib.Path = ROOT) -> list[dict[str, Any]]:
  """The test files that run on the CPU only, each with its reasons."""
  out = []
  for path in sorted((root / "tests").glob("test_*.py")):
    text = path.read_text()
    reasons = [why for sign, why in CPU_ONLY_SIGNS.items()
               if re.search(sign, text)]
    if reasons:
      out.append({"file": path.relative_to(root).as_posix(),
                  "reasons": reasons})
  return out


_OUTCOME = re.compile(
    r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", re.M)
_SHORT = re.compile(r"^(FAILED|ERROR) (\S+::\S+)(?: - (.*))?$", re.M)


def parse_pytest(text: str) -> dict[str, Any]:
  """Outcome counts and failures from ``pytest -v -rfE`` output, whole or cut."""
  outcomes: dict[str, set[str]] = {}
  for test, outcome in _OUTCOME.findall(text):
    outcomes.setdefault(outcome.lower(), set()).add(test)
  counts = {k: len(outcomes.get(k, ())) for k in
            ("passed", "failed", "error", "skipped", "xfail", "xpass")}
  summary = re.findall(r"^=+ (.* in [\d.]+s.*?) =+$", text, re.M)
  return {"counts": counts, "ran": sum(counts.values()),
          "failures": [{"outcome": o, "test": t, "reason": why}
                       for o, t, why in _SHORT.findall(text)],
          "summary": summary[-1] if summary else None}


def run_tests(tests: tuple[str, ...], timeout: float,
              log: pathlib.Path) -> dict[str, Any]:
  """``pytest -m "not slow"`` on ``tests``, less the CPU-only files."""
  cpu_only = cpu_only_tests()
  excluded = {c["file"] for c in cpu_only}
  chosen = [t for t in tests if t.split("::")[0] not in excluded]
  command = [sys.executable, "-m", "pytest", *chosen, "-m", "not slow", "-v",
             "-rfE"]
  started = time.perf_counter()
  log.parent.mkdir(parents=True, exist_ok=True)
  with log.open("w") as f:
    process = subprocess.Popen(command, cwd=ROOT, stdout=f,
                               stderr=subprocess.STDOUT)
    try:
      returncode: int | None = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
      returncode = None
  return {"command": " ".join(command[1:]), "files": chosen,
          "not_run_cpu_only": sorted(set(tests) - set(chosen)),
          "cpu_only": cpu_only, "returncode": returncode,
          "timed_out": returncode is None, "timeout_s": timeout,
          "seconds": time.perf_counter() - started,
          **parse_pytest(log.read_text())}


# -- Stage 2: the copy bandwidth.


def copy_bandwidth(size: int, repeats: int) -> dict[str, Any]:
  """GB/s of ``COPY`` over ``size`` float32 values: bytes moved / median time."""
  negate = jax.jit(jnp.negative, donate_argnums=0)
  x = jax.block_until_ready(negate(jnp.ones((size,), jnp.float32)))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    x = jax.block_until_ready(negate(x))
    times.append(time.perf_counter() - start)
  moved = 2 * x.nbytes
  del x
  t = np.asarray(times)
  return {"what": COPY, "size": size, "dtype": "float32",
          "bytes_per_call": moved, "times_s": times,
          "median_s": float(np.median(t)),
          "gb_per_s": moved / float(np.median(t)) / 1e9,
          "gb_per_s_min": moved / float(t.max()) / 1e9,
          "gb_per_s_max": moved / float(t.min()) / 1e9}


# -- Stage 3: the step time.


def lineup(workload: step_time.Workload, optimizers: list[str],
           peers: dict[str, Callable]) -> list[str]:
  """The optimizers that race on one tree."""
  pool = SWEEP_OPTIMIZERS if workload.key == "buffer" else TREE_OPTIMIZERS
  return [name for name in pool if name in optimizers
          and (name in step_time.JAX_OPTIMIZERS or name in peers)]


def _drawer(settings: Settings) -> Callable[[_workloads.Shapes, str],
                                             tuple[Any, Any]]:
  def draw(shapes, dtype):
    if _workloads.num_params(shapes) >= settings.device_draw_from:
      return _workloads.device_params_and_grads(shapes, dtype)
    return _workloads.params_and_grads(shapes, dtype)

  return draw


def _jobs(settings: Settings) -> list[tuple[step_time.Workload, str]]:
  # float32 first: our targets are read there.
  return [(w, d) for d in settings.speed.dtypes
          for w in step_time.workloads(settings.speed)]


def _free_memory(torch_device: str | None) -> None:
  gc.collect()
  if torch_device == "cuda":
    import torch

    torch.cuda.empty_cache()  # For JAX's next allocations.


def run_step_time(settings: Settings, optimizers: list[str], peers,
                  torch_device: str | None, deadline: float, progress
                  ) -> dict[str, Any]:
  """Every (tree, dtype) job until ``deadline``; the raw records."""
  records, not_run = [], []
  for workload, dtype in _jobs(settings):
    names = lineup(workload, optimizers, peers)
    if not names or time.perf_counter() >= deadline:
      not_run.append({"workload": workload.label, "dtype": dtype, "reason": (
          _budget_spent(settings) if names else "no chosen optimizer races "
          "here")})
      continue
    progress.set_postfix_str(f"{workload.label} {dtype}")
    try:
      records.append(step_time.run_workload(
          workload, dtype, names, peers, settings.speed, progress,
          draw=_drawer(settings), torch_device=torch_device or "cpu",
          deadline=deadline))
    except Exception as e:  # Out of memory while drawing, say: recorded.
      not_run.append({"workload": workload.label, "dtype": dtype,
                      "reason": f"{type(e).__name__}: {e}"[:2000]})
    _free_memory(torch_device)
  return {"records": records, "not_run": not_run}


def _why_absent(name: str, record: dict[str, Any],
                skipped: dict[str, str]) -> str:
  run = record["runs"].get(name)
  if run is None:
    return skipped.get(name, "not chosen (--optimizers)")
  return run.get("error") or run.get("stopped") or "no shared round"


def ratios(records: list[dict[str, Any]], skipped: dict[str, str]
           ) -> list[dict[str, Any]]:
  """Each ``RATIOS`` pair on each job where both race, or why it is absent."""
  out = []
  for record in records:
    pool = SWEEP_OPTIMIZERS if record["workload"] == "buffer" else (
        TREE_OPTIMIZERS)
    for numerator, denominator in RATIOS:
      if numerator not in pool or denominator not in pool:
        continue
      entry = {"workload": record["label"], "key": record["workload"],
               "params": record["params"], "dtype": record["dtype"],
               "numerator": numerator, "denominator": denominator}
      r = step_time.ratio(record["runs"], numerator, denominator)
      if r is None:
        entry["missing"] = "; ".join(
            f"{name}: {_why_absent(name, record, skipped)}"
            for name in (numerator, denominator)
            if "summary" not in record["runs"].get(name, {}))
      out.append({**entry, **(r or {})})
  return out


def add_copy_fractions(records: list[dict[str, Any]],
                       copy: dict[str, Any] | None) -> None:
  """Each step's achieved bandwidth as a fraction of the copy's, in place."""
  for record in records:
    for run in record["runs"].values():
      if "summary" in run:
        run["summary"]["fraction_of_copy"] = (
            run["summary"]["gb_per_s"] / copy["gb_per_s"] if copy else None)


def bandwidth_targets(records: list[dict[str, Any]], min_params: int
                      ) -> list[dict[str, Any]]:
  """``BANDWIDTH_TARGET`` on each buffer of ``min_params`` or more, each dtype."""
  fraction, names, why = BANDWIDTH_TARGET
  out = []
  for record in records:
    if record["workload"] != "buffer" or record["params"] < min_params:
      continue
    for name in names:
      s = record["runs"].get(name, {}).get("summary")
      if s and s["fraction_of_copy"] is not None:
        out.append({"optimizer": name, "workload": record["label"],
                    "dtype": record["dtype"], "gb_per_s": s["gb_per_s"],
                    "fraction_of_copy": s["fraction_of_copy"],
                    "target": f">= {fraction} of the copy bandwidth",
                    "met": bool(s["fraction_of_copy"] >= fraction),
                    "why": why})
  return out


# -- The report.


def _tables(result: dict[str, Any]) -> str:
  stages = result["stages"]
  out = []
  for name in STAGES:
    stage = stages.get(name, {})
    out.append(f"{name}: {stage.get('status')}"
               + (f" ({stage['reason']})" if stage.get("reason") else ""))
  tests = stages.get("tests", {})
  if "counts" in tests:
    counts = ", ".join(f"{n} {k}" for k, n in tests["counts"].items() if n)
    out.append(f"Tests on {result['environment']['backend']}: {counts or 'none ran'}"
               f" in {tests['seconds']:.0f} s"
               + (" (cut at the timeout)" if tests["timed_out"] else "")
               + "".join(f"\n  {f['outcome']} {f['test']}: {f['reason']}"
                         for f in tests["failures"])
               + "".join(f"\n  CPU-only, not run: {c['file']} "
                         f"({'; '.join(c['reasons'])})"
                         for c in tests["cpu_only"]))
  copy = stages.get("copy", {}).get("result")
  if copy:
    out.append(f"Copy bandwidth ({copy['what']}, {copy['size']:.0e} float32): "
               f"{copy['gb_per_s']:.1f} GB/s [{copy['gb_per_s_min']:.1f}, "
               f"{copy['gb_per_s_max']:.1f}]")
  step = stages.get("step_time", {})
  records = step.get("records", [])
  out += [step_time._table(r) for r in records if r["workload"] != "buffer"]
  if records:
    names = [n for n in SWEEP_OPTIMIZERS
             if any("summary" in r["runs"].get(n, {}) for r in records)]

    def cell(record, name):
      s = record["runs"].get(name, {}).get("summary")
      if not s:
        return "-"
      fraction = s["fraction_of_copy"]
      return f"{s['gb_per_s']:.1f}" + (
          f" ({fraction:.2f})" if fraction is not None else "")

    out.append("Achieved GB/s (fraction of the copy bandwidth)\n"
               + report.table(["workload", "dtype", *names],
                              [[r["label"], r["dtype"],
                                *(cell(r, n) for n in names)]
                               for r in records]))
  if step.get("ratios"):
    out.append("Step-time ratios: the median of per-round ratios\n"
               + report.table(
                   ["workload", "dtype", "ratio", "measured"],
                   [[r["workload"], r["dtype"],
                     f"{r['numerator']} / {r['denominator']}",
                     report.format_ratio(r) if "median" in r
                     else f"not measured: {r['missing']}"]
                    for r in step["ratios"]]))
  targets = step.get("targets", []) + step.get("bandwidth_targets", [])
  if targets:
    out.append("Our targets on a GPU (float32 ratios; bandwidth at >= "
               f"{result['settings']['bandwidth_from']:.0e} parameters)\n"
               + report.table(
                   ["workload", "what", "measured", "target", "met", "why"],
                   [[t["workload"] + (f" {t['dtype']}" if "dtype" in t
                                      else ""),
                     t.get("optimizer") or
                     f"{t['numerator']} / {t['denominator']}",
                     f"{t.get('median', t.get('fraction_of_copy')):.3f}",
                     t["target"], "yes" if t["met"] else "no", t["why"]]
                    for t in targets]))
  first = stages.get("first_step", {}).get("result")
  if first and first["trees"]:
    out.append(first_step.table(first))
  if result["skipped"]:
    out.append("Skipped\n" + "\n".join(
        f"  {s['what']}: {s['reason']}" for s in result["skipped"]))
  return "\n\n".join(out)


def plot(result: dict[str, Any], path: pathlib.Path) -> None:
  """Ours over the baselines; bandwidth against size; time to first step."""
  fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
  env = result["environment"]
  fig.suptitle(f"{', '.join(sorted(set(env['devices'])))} "
               f"({env['backend']}), {result['machine']['date'][:10]}")
  step = result["stages"].get("step_time", {})
  shown = [r for r in step.get("ratios", [])
           if "median" in r and r["key"] != "buffer"
           and (r["numerator"], r["denominator"]) in HEADLINE]
  groups = list(dict.fromkeys((r["workload"], r["dtype"]) for r in shown))
  width = 0.8 / max(len(groups), 1)
  for i, group in enumerate(groups):
    for k, pair in enumerate(HEADLINE):
      for r in shown:
        if (r["workload"], r["dtype"]) == group and (
            r["numerator"], r["denominator"]) == pair:
          x = k + (i - (len(groups) - 1) / 2) * width
          axes[0].bar(x, r["median"], width, color=f"C{i}",
                      label=" ".join(group) if k == 0 else None)
          axes[0].errorbar(x, r["median"], [[r["median"] - r["min"]],
                                            [r["max"] - r["median"]]],
                           color="k", lw=0.8, capsize=2)
  axes[0].axhline(1.0, color="k", lw=0.8)
  axes[0].set_xticks(range(len(HEADLINE)),
                     [f"{a}\n/ {b}" for a, b in HEADLINE], fontsize=8)
  axes[0].set_ylabel("step-time ratio (median over rounds, min-max)")
  axes[0].set_title("Ours against the baselines, trees")
  if groups:
    axes[0].legend(fontsize=8)
  axes[0].grid(alpha=0.3, axis="y")

  buffers = [r for r in step.get("records", []) if r["workload"] == "buffer"]
  for k, name in enumerate(SWEEP_OPTIMIZERS):
    for dtype, style in (("float32", "-"), ("bfloat16", "--")):
      points = sorted((r["params"], r["runs"][name]["summary"]["gb_per_s"])
                      for r in buffers if r["dtype"] == dtype
                      and "summary" in r["runs"].get(name, {}))
      if points:
        axes[1].plot(*zip(*points, strict=True), style, marker="o",
                     color=f"C{k}",
                     label=name if dtype == "float32" else None)
  copy = result["stages"].get("copy", {}).get("result")
  if copy:
    axes[1].axhline(copy["gb_per_s"], color="k", ls=":",
                    label=f"copy, {copy['gb_per_s']:.0f} GB/s")
  axes[1].set_xscale("log")
  axes[1].set_yscale("log")
  axes[1].set_xlabel("parameters in one buffer (solid float32, dashed "
                     "bfloat16)")
  axes[1].set_ylabel("achieved GB/s (ideal single-pass bytes / time)")
  axes[1].set_title("Bandwidth against size")
  if axes[1].get_legend_handles_labels()[0]:
    axes[1].legend(fontsize=7)
  axes[1].grid(alpha=0.3)

  first = result["stages"].get("first_step", {}).get("result") or {}
  labels, totals = [], []
  for tree in first.get("trees", []):
    for name, timing in tree["runs"].items():
      labels.append(f"{tree['label']}: {name}")
      totals.append(timing["median_s"]["total"])
  axes[2].barh(range(len(totals)), totals,
               color=["C0" if n.split(": ")[1] in step_time.OPTAX_COUNTERPART
                      else "C7" for n in labels])
  axes[2].set_yticks(range(len(totals)), labels, fontsize=7)
  axes[2].invert_yaxis()
  axes[2].set_xlabel("seconds from empty caches (median over rounds)")
  axes[2].set_title("Time to first step, float32\n(blue: ours, grey: Optax)")
  axes[2].grid(alpha=0.3, axis="x")
  report.save_figure(fig, path, dpi=110)


# -- The run.


def _parse(argv) -> tuple[Settings, list[str], tuple[str, ...], pathlib.Path]:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.speed.device",
      description=__doc__.split("\n")[0].split(": ", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="Defaults are sized for one H200: about 8 minutes.")
  split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())
  add = parser.add_argument
  add("--tiny", action="store_true", help="a tiny GPT-2, buffers of 1e3 and "
      "1e4, 2 rounds, one test: the CPU smoke test")
  add("--out", type=pathlib.Path, help="where the JSON, figure and test log "
      "go (default benchmarks/results/gpu on a GPU, else "
      "benchmarks/results/tmp/device)")
  add("--max-seconds", type=float, help="wall-clock budget of the whole run; "
      f"stages past it are skipped (default {FULL.max_seconds:g}, "
      f"--tiny {TINY.max_seconds:g})")
  add("--stages", default=",".join(STAGES), help="comma-separated, of: "
      f"{', '.join(STAGES)} (default all)")
  add("--tests", help="comma-separated test files or node ids (default "
      f"{','.join(DEVICE_TESTS)})")
  add("--tests-timeout", type=float, help="seconds for the tests (default "
      f"{FULL.tests_timeout:g})")
  add("--workloads", help=f"comma-separated, of: {', '.join(step_time.WORKLOADS)}"
      f" (default {','.join(FULL.speed.workloads)})")
  add("--dtypes", help=f"comma-separated (default {','.join(FULL.speed.dtypes)})")
  add("--sizes", help="buffer sizes (default 1e4,1e5,1e6,1e7,1e8,1e9)")
  add("--optimizers", help="comma-separated (default all of: "
      f"{', '.join(dict.fromkeys(TREE_OPTIMIZERS + SWEEP_OPTIMIZERS))})")
  add("--repeats", type=int, help=f"rounds (default {FULL.speed.repeats})")
  add("--steps", type=int, help="timed steps per block (default "
      f"{FULL.speed.steps})")
  add("--budget", type=float, help="seconds of timed steps after which an "
      f"optimizer stops taking turns (default {FULL.speed.budget:g})")
  add("--copy-size", type=float, help="float32 values copied (default "
      f"{FULL.copy_size:.0e})")
  add("--copy-repeats", type=int, help=f"(default {FULL.copy_repeats})")
  add("--first-step-workloads", help="comma-separated trees (default "
      f"{','.join(FULL.speed.first_step_workloads)})")
  add("--first-step-rounds", type=int, help="(default "
      f"{FULL.speed.first_step_rounds})")
  add("--first-step-seconds", type=float, help="seconds kept for the first "
      f"step: the step time stops that early (default "
      f"{FULL.first_step_seconds:g})")
  args = parser.parse_args(argv)
  settings = TINY if args.tiny else FULL
  speed = settings.speed._replace(**{k: v for k, v in {
      "workloads": args.workloads and split(args.workloads),
      "dtypes": args.dtypes and split(args.dtypes),
      "sizes": args.sizes and tuple(int(float(x)) for x in split(args.sizes)),
      "repeats": args.repeats, "steps": args.steps, "budget": args.budget,
      "first_step_workloads": (None if args.first_step_workloads is None
                               else split(args.first_step_workloads)),
      "first_step_rounds": args.first_step_rounds,
  }.items() if v is not None})
  settings = settings._replace(speed=speed, **{k: v for k, v in {
      "copy_size": args.copy_size and int(args.copy_size),
      "copy_repeats": args.copy_repeats,
      "tests": args.tests and split(args.tests),
      "tests_timeout": args.tests_timeout,
      "first_step_seconds": args.first_step_seconds,
      "max_seconds": args.max_seconds,
  }.items() if v is not None})
  optimizers = list(split(args.optimizers) if args.optimizers
                    else dict.fromkeys(TREE_OPTIMIZERS + SWEEP_OPTIMIZERS))
  stages = split(args.stages)
  unknown = set(optimizers) - set(TREE_OPTIMIZERS) - set(SWEEP_OPTIMIZERS)
  unknown |= (set(speed.workloads) | set(speed.first_step_workloads)) - set(
      step_time.WORKLOADS)
  unknown |= set(stages) - set(STAGES)
  unknown |= set(speed.dtypes) - {"float32", "bfloat16"}
  if unknown:
    parser.error(f"unknown optimizers, workloads, dtypes or stages: "
                 f"{sorted(unknown)}")
  out = args.out or report.RESULTS / (
      "gpu" if jax.default_backend() == "gpu" and not args.tiny
      else "tmp/device")
  return settings, optimizers, stages, out


def main(argv: list[str] | None = None) -> dict[str, Any]:
  # Before JAX makes its GPU client: it would take 75% of the memory.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  settings, optimizers, chosen, out = _parse(argv)
  started = time.perf_counter()
  end = started + settings.max_seconds
  out.mkdir(parents=True, exist_ok=True)
  backend = jax.default_backend()
  peers, torch_device, peer_skips = torch_lineup(backend)
  result: dict[str, Any] = {
      "machine": report.machine(), "environment": environment(torch_device),
      "settings": {**settings._asdict(), "speed": settings.speed._asdict()},
      "optimizers": optimizers, "stages": {},
      "skipped": [{"what": name, "reason": why}
                  for name, why in peer_skips.items() if name in optimizers]}
  stages = result["stages"]

  def save() -> None:
    result["seconds"] = time.perf_counter() - started
    report.write_json(out / "device.json", result)

  def begin(k: int, name: str, what: str) -> bool:
    """Prints the stage's progress line; False (and why) when it is not run."""
    now = time.perf_counter()
    reason = ("not chosen (--stages)" if name not in chosen
              else _budget_spent(settings) if now >= end else None)
    print(f"[{k}/{len(STAGES)}] {name}: "
          f"{'skipped, ' + reason if reason else what} ({now - started:.0f} s "
          f"in, {max(end - now, 0):.0f} s left)", flush=True)
    if reason:
      stages[name] = {"status": "skipped", "reason": reason}
      result["skipped"].append({"what": f"stage {name}", "reason": reason})
    return reason is None

  def finish(name: str, t0: float, **data) -> None:
    stages[name] = {"status": "done", "reason": None,
                    "seconds": time.perf_counter() - t0, **data}
    save()

  def failed(name: str, t0: float, e: Exception) -> None:
    reason = f"{type(e).__name__}: {e}"[:2000]
    stages[name] = {"status": "failed", "reason": reason,
                    "seconds": time.perf_counter() - t0}
    result["skipped"].append({"what": f"stage {name}", "reason": reason})
    save()

  print(f"{result['environment']['devices'][0]} ({backend}), driver "
        f"{result['environment']['driver']}; budget {settings.max_seconds:g} s;"
        f" writing to {out}", flush=True)
  save()

  if begin(1, "tests", f"pytest on {len(settings.tests)} paths"):
    t0 = time.perf_counter()
    try:
      tests = run_tests(settings.tests, min(settings.tests_timeout,
                                            end - t0), out / "device_tests.log")
      finish("tests", t0, **tests)
      if tests["timed_out"]:
        stages["tests"].update(status="cut short", reason=(
            f"stopped at {tests['timeout_s']:.0f} s"))
    except Exception as e:  # Recorded; the measurements go on.
      failed("tests", t0, e)

  copy = None
  if begin(2, "copy", f"{COPY} over {settings.copy_size:.0e} float32"):
    t0 = time.perf_counter()
    try:
      copy = copy_bandwidth(settings.copy_size, settings.copy_repeats)
      finish("copy", t0, result=copy)
    except Exception as e:  # Out of memory, say: recorded.
      failed("copy", t0, e)

  jobs = _jobs(settings)
  if begin(3, "step_time", f"{len(jobs)} jobs of trees and buffers"):
    t0 = time.perf_counter()
    deadline = end - (settings.first_step_seconds
                      if "first_step" in chosen else 0)
    total = settings.speed.repeats * sum(
        len(lineup(w, optimizers, peers)) for w, _ in jobs)
    try:
      with tqdm(total=total, desc="step time") as progress:
        step = run_step_time(settings, optimizers, peers, torch_device,
                             deadline, progress)
      records = step["records"]
      add_copy_fractions(records, copy)
      finish("step_time", t0, **step, ratios=ratios(records, peer_skips),
             targets=step_time.targets(records, TARGETS),
             bandwidth_targets=bandwidth_targets(
                 records, settings.bandwidth_from))
      cut = any(j["reason"] == _budget_spent(settings)
                for j in step["not_run"]) or any(
                    "stopped" in run for r in records
                    for run in r["runs"].values())
      if cut:
        stages["step_time"].update(status="cut short",
                                   reason=_budget_spent(settings))
      result["skipped"] += [
          {"what": f"step time, {j['workload']} {j['dtype']}",
           "reason": j["reason"]} for j in step["not_run"]]
      result["skipped"] += [
          {"what": f"step time, {r['label']} {r['dtype']}, {name}",
           "reason": run["error"]}
          for r in records for name, run in r["runs"].items()
          if "error" in run]
      save()
    except Exception as e:  # Recorded; the first step goes on.
      failed("step_time", t0, e)

  if begin(4, "first_step", "from empty caches, on "
           f"{', '.join(settings.speed.first_step_workloads)}"):
    t0 = time.perf_counter()
    try:
      with tqdm(total=first_step.progress_steps(settings.speed, optimizers),
                desc="first step") as progress:
        first = first_step.run(settings.speed, optimizers, progress,
                               draw=_drawer(settings), deadline=end)
        measured = progress.n
      finish("first_step", t0, result=first)
      if measured < progress.total:
        stages["first_step"].update(status="cut short",
                                    reason=_budget_spent(settings))
        save()
    except Exception as e:  # Recorded.
      failed("first_step", t0, e)

  try:
    plot(result, out / "device.png")
  except Exception as e:  # A figure must not lose the numbers.
    result["skipped"].append({"what": "figure", "reason":
                              f"{type(e).__name__}: {e}"})
  save()
  print()
  print(_tables(result))
  files = [out / f for f in ("device.json", "device.png", "device_tests.log")
           if (out / f).exists()]
  print(f"\n{time.perf_counter() - started:.0f} s (budget "
        f"{settings.max_seconds:g} s). Written: "
        f"{', '.join(str(f) for f in files)}")
  return result


if __name__ == "__main__":
  main()
