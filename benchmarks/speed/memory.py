"""Memory: the state each optimizer keeps, and the peak memory of a donated step.

    python -m benchmarks.speed.memory          # ResNet-34, GPT-2; float32, bfloat16
    python -m benchmarks.speed.memory --quick  # ResNet-34, float32

For each optimizer and tree (``_workloads``), three measures:

* **State**: the bytes of the arrays of the state that ``tx.init`` returns
  (or that a PyTorch optimizer holds after one step), per parameter, and how
  many param-sized buffers that is. AdaBound should keep 2 (``mu``, ``nu``),
  AMSBound 3 (and ``nu_max``), AdaMod 3 (``mu``, ``nu`` and the average of
  step sizes ``s``), and nothing else but a few scalars: 8, 12 and 12 bytes
  per float32 parameter. With ``mu_dtype=nu_dtype=jnp.bfloat16`` (the rows
  "... bf16 moments") AdaBound and AMSBound should keep 4 and 6.
* **XLA's plan**: ``compiled.memory_analysis()`` of the jitted step with its
  parameters and state donated. Its peak minus its arguments is what the step
  allocates beyond its inputs (temporaries, and outputs that could not reuse a
  donated input): 0 for a step that updates in place. Without donation the
  step needs its outputs on top of its arguments: arguments + outputs + temps.
* **Measured**: the peak resident memory (RSS) of this process during two
  steps, minus the resident memory before them. Linux resets the high-water
  mark on request (``/proc/self/clear_refs``), and glibc is told to serve
  every allocation over 64 KiB by ``mmap``, so that a temporary shows up in
  RSS when it is made and leaves it when it is freed, instead of reusing heap
  pages that were resident already. This measures the PyTorch peers the same
  way (their temporaries: the authors' code makes three param-sized ones per
  leaf). Elsewhere than Linux with glibc it is left out.

Writes ``memory.json`` to ``--out`` and prints a table per tree.
"""

import argparse
import ctypes
import gc
import pathlib
import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from benchmarks._common import report
from benchmarks.speed import _workloads
from benchmarks.speed import step_time
import optax_bound

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter; fixing it also stops glibc
MMAP_THRESHOLD = 64 * 1024  # from raising the threshold as big blocks are freed.
MEASURED_STEPS = 2
# Ours with their moments in bfloat16 (AMSBound's running maximum follows
# nu_dtype): the memory they save on a float32 model.
BF16_MOMENTS = dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
OPTIMIZERS = {
    **step_time.JAX_OPTIMIZERS,
    "adabound bf16 moments": lambda: optax_bound.adabound(**BF16_MOMENTS),
    "amsbound bf16 moments": lambda: optax_bound.amsbound(**BF16_MOMENTS),
}
STATUS = pathlib.Path("/proc/self/status")
CLEAR_REFS = pathlib.Path("/proc/self/clear_refs")


def _rss_measurable() -> bool:
  """Serves big allocations by mmap; whether RSS peaks can be measured here."""
  if not sys.platform.startswith("linux") or not CLEAR_REFS.exists():
    return False
  try:
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
  except (OSError, AttributeError):
    return False


def _status_bytes(field: str) -> int:
  match = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.M)
  return 1024 * int(match.group(1))


def _peak_over(steps, rss: bool) -> int | None:
  """Bytes resident at the peak of ``steps()`` beyond those resident before."""
  if not rss:
    steps()
    return None
  gc.collect()
  before = _status_bytes("VmRSS")
  CLEAR_REFS.write_text("5")  # Resets the high-water mark VmHWM to VmRSS.
  steps()
  return _status_bytes("VmHWM") - before


def _jax_record(make, params, grads, rss: bool) -> dict[str, Any]:
  tx = make()
  carry = [jax.tree.map(jnp.copy, params)]
  carry.append(tx.init(carry[0]))
  compiled = step_time.donated_train_step(tx).lower(
      carry[0], carry[1], grads).compile()
  analysis = compiled.memory_analysis()

  def steps(n):
    for _ in range(n):
      carry[:] = compiled(carry[0], carry[1], grads)
      jax.block_until_ready(carry)

  steps(1)  # Warm-up, as for the PyTorch peers.
  leaves = jax.tree.leaves(carry[1])
  return {
      "state_bytes": sum(x.nbytes for x in leaves),
      "param_sized_state_bytes": sum(x.nbytes for x in leaves if x.ndim),
      "xla": {
          "arguments": analysis.argument_size_in_bytes,
          "outputs": analysis.output_size_in_bytes,
          "aliased": analysis.alias_size_in_bytes,
          "temps": analysis.temp_size_in_bytes,
          "peak": analysis.peak_memory_in_bytes,
          "extra_donated": (analysis.peak_memory_in_bytes
                            - analysis.argument_size_in_bytes),
          "extra_not_donated": (analysis.output_size_in_bytes
                                + analysis.temp_size_in_bytes),
      },
      "measured_extra": _peak_over(lambda: steps(MEASURED_STEPS), rss),
  }


def _torch_record(make, torch_params, rss: bool) -> dict[str, Any]:
  optimizer = make(torch_params)
  optimizer.step()  # Allocates the state.
  tensors = [t for state in optimizer.state.values() for t in state.values()
             if hasattr(t, "element_size")]
  nbytes = lambda t: t.numel() * t.element_size()

  def steps():
    for _ in range(MEASURED_STEPS):
      optimizer.step()

  return {
      "state_bytes": sum(nbytes(t) for t in tensors),
      "param_sized_state_bytes": sum(nbytes(t) for t in tensors if t.dim()),
      "xla": None,
      "measured_extra": _peak_over(steps, rss),
  }


def run_tree(workload: step_time.Workload, dtype: str, optimizers: list[str],
             peers, rss: bool, progress) -> dict[str, Any]:
  """Every optimizer's record on one tree in one dtype."""
  params, grads = _workloads.params_and_grads(workload.shapes, dtype)
  n_params = _workloads.num_params(workload.shapes)
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  records = {}
  for name in optimizers:
    if name in OPTIMIZERS:
      records[name] = _jax_record(OPTIMIZERS[name], params, grads, rss)
      progress.update()
  wanted = [n for n in optimizers if n in step_time.TORCH_PEERS]
  if peers and wanted and dtype == "float32":
    leaves = step_time.torch_params(params, grads)
    for name in wanted:
      records[name] = _torch_record(peers[name], leaves, rss)
      gc.collect()
    del leaves
  for record in records.values():
    record["state_bytes_per_param"] = record["state_bytes"] / n_params
    record["param_sized_state_bytes_per_param"] = (
        record["param_sized_state_bytes"] / n_params)
    record["param_sized_buffers"] = (record["param_sized_state_bytes"]
                                     / param_bytes)
  return {"workload": workload.key, "label": workload.label, "dtype": dtype,
          "params": n_params, "param_bytes": param_bytes,
          "largest_leaf_bytes": max(x.nbytes for x in jax.tree.leaves(params)),
          "optimizers": records}


def _table(tree: dict[str, Any]) -> str:
  n = tree["params"]
  per_param = lambda b: "" if b is None else f"{b / n:.2f}"
  mib = lambda b: "" if b is None else f"{b / 2**20:.1f}"
  rows = []
  for name, r in tree["optimizers"].items():
    xla = r["xla"] or {}
    rows.append([name, f"{r['param_sized_state_bytes_per_param']:.2f}",
                 f"{r['param_sized_buffers']:.2f}",
                 f"{r['state_bytes'] - r['param_sized_state_bytes']}",
                 per_param(xla.get("extra_donated")),
                 per_param(xla.get("extra_not_donated")),
                 per_param(r["measured_extra"]), mib(r["measured_extra"])])
  return (f"{tree['label']}, {tree['dtype']}: {n:,} parameters "
          f"({tree['param_bytes'] / 2**20:.0f} MiB; largest leaf "
          f"{tree['largest_leaf_bytes'] / 2**20:.1f} MiB)\n"
          + report.table(
              ["optimizer", "state B/param", "param-sized buffers",
               "scalar state B", "XLA extra B/param (donated)",
               "XLA extra B/param (not donated)",
               "measured peak B/param", "measured peak MiB"], rows))


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.speed.memory", description=__doc__.split("\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true",
                    help="ResNet-34 in float32 only")
  mode.add_argument("--tiny", action="store_true",
                    help="tiny trees of the same structure (the smoke test)")
  parser.add_argument("--workloads", help="comma-separated, of: resnet34, "
                      "deep_stack, gpt2 (default resnet34,gpt2; resnet34 "
                      "with --quick)")
  parser.add_argument("--dtypes", help="comma-separated (default float32,"
                      "bfloat16; float32 with --quick)")
  parser.add_argument("--optimizers", default=",".join(
      [*OPTIMIZERS, *step_time.TORCH_PEERS]),
      help="comma-separated (default: all)")
  parser.add_argument("--out", type=pathlib.Path, help="where memory.json "
                      "goes (default benchmarks/results/speed, or "
                      "benchmarks/results/tmp/speed with --quick or --tiny)")
  args = parser.parse_args(argv)
  split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
  preset = step_time.TINY if args.tiny else step_time.FULL
  settings = preset._replace(
      workloads=tuple(split(args.workloads or (
          "resnet34" if args.quick else "resnet34,gpt2"))),
      dtypes=tuple(split(args.dtypes or (
          "float32" if args.quick else "float32,bfloat16"))))
  optimizers = split(args.optimizers)
  unknown = set(optimizers) - set(OPTIMIZERS) - set(step_time.TORCH_PEERS)
  unknown |= set(settings.workloads) - {"resnet34", "deep_stack", "gpt2"}
  if unknown:
    parser.error(f"unknown optimizers or workloads: {sorted(unknown)}")
  out = args.out or report.RESULTS / ("tmp/speed" if args.quick or args.tiny
                                      else "speed")
  out.mkdir(parents=True, exist_ok=True)

  rss = _rss_measurable()
  if not rss:
    print("No RSS peaks here (they need Linux with glibc): state and XLA's "
          "plan only.")
  peers = step_time.torch_peers()
  if peers is None:
    print("torch, adabound or pytorch_optimizer is not installed: no PyTorch "
          'peers (pip install ".[reference]").')
  jobs = [(w, d) for w in step_time.workloads(settings) for d in settings.dtypes]
  started = time.perf_counter()
  trees = []
  with tqdm(total=len(jobs) * len(optimizers), desc="memory") as progress:
    for workload, dtype in jobs:
      progress.set_postfix_str(f"{workload.label} {dtype}")
      trees.append(run_tree(workload, dtype, optimizers, peers, rss, progress))
      progress.update(len([n for n in optimizers if n in step_time.TORCH_PEERS]))
  seconds = time.perf_counter() - started
  path = report.write_json(out / "memory.json", {
      "settings": {"workloads": settings.workloads, "dtypes": settings.dtypes,
                   "tiny": settings.tiny, "rss_measured": rss},
      "seconds": seconds, "trees": trees,
  })
  print("\n\n".join(_table(t) for t in trees))
  print(f"\n{seconds / 60:.1f} min. Raw numbers: {path}")
  return {"trees": trees, "json": path}


if __name__ == "__main__":
  main()
