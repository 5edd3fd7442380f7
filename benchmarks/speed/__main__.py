"""``python -m benchmarks.speed``: the step time, then the time to first step.

    python -m benchmarks.speed                        # both parts, full size
    python -m benchmarks.speed --only first_step      # the time to first step
    python -m benchmarks.speed --only step_time --workloads resnet34

``step_time.py`` times a compiled step of every optimizer (``speed.json``,
``speed.png``); ``first_step.py`` times what comes before the first step, and
the eager ``tx.update`` (``first_step.json``, ``first_step.png``). Both write
to ``--out`` and print their tables at the end.
"""

import argparse
import os
import pathlib
import time
from typing import Any

from tqdm.auto import tqdm

from benchmarks._common import report
from benchmarks.speed import first_step
from benchmarks.speed import step_time

PARTS = ("step_time", "first_step")


def _parse(argv) -> tuple[step_time.Settings, list[str], tuple[str, ...],
                          pathlib.Path]:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.speed", description=__doc__.split("\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true",
                    help="ResNet-34 and buffers up to 1e7, float32, 5 rounds; "
                    "first step on ResNet-34 and the deep stack, 3 rounds")
  mode.add_argument("--tiny", action="store_true",
                    help="tiny trees of the same structure (the smoke test)")
  parser.add_argument("--only", default=",".join(PARTS),
                      help=f"comma-separated parts, of: {', '.join(PARTS)} "
                      "(default both)")
  parser.add_argument("--workloads", help="comma-separated, of: "
                      f"{', '.join(step_time.WORKLOADS)} (default: "
                      f"{','.join(step_time.FULL.workloads)} for the step "
                      "time, "
                      f"{','.join(step_time.FULL.first_step_workloads)} for "
                      "the first step, which has no sweep)")
  parser.add_argument("--dtypes", help="comma-separated, of the step time "
                      f"(default {','.join(step_time.FULL.dtypes)}; the first "
                      "step is float32)")
  parser.add_argument("--sizes", help="comma-separated buffer sizes of the "
                      "sweep (default 1e4,1e5,1e6,1e7,1e8)")
  parser.add_argument("--optimizers", default=",".join(
      [*step_time.JAX_OPTIMIZERS, *step_time.TORCH_PEERS]),
      help="comma-separated (default: all; the first step races "
      f"{', '.join(first_step.OPTIMIZERS)})")
  parser.add_argument("--repeats", type=int,
                      help=f"rounds of the step time (default "
                      f"{step_time.FULL.repeats})")
  parser.add_argument("--steps", type=int, help="timed steps per block "
                      f"(default {step_time.FULL.steps})")
  parser.add_argument("--budget", type=float, help="seconds of timed steps "
                      "after which an optimizer stops taking turns (default "
                      f"{step_time.FULL.budget:g})")
  parser.add_argument("--first-step-rounds", type=int, help="rounds of the "
                      "time to first step (default "
                      f"{step_time.FULL.first_step_rounds})")
  parser.add_argument("--out", type=pathlib.Path, help="where the JSON and "
                      "figures go (default benchmarks/results/speed, or "
                      "benchmarks/results/tmp/speed with --quick or --tiny)")
  args = parser.parse_args(argv)
  settings = (step_time.TINY if args.tiny else step_time.QUICK if args.quick
              else step_time.FULL)
  split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())
  chosen = args.workloads and split(args.workloads)
  settings = settings._replace(**{k: v for k, v in {
      "workloads": chosen,
      "first_step_workloads": chosen and tuple(
          w for w in chosen if w != "sweep"),
      "dtypes": args.dtypes and split(args.dtypes),
      "sizes": args.sizes and tuple(int(float(x)) for x in split(args.sizes)),
      "repeats": args.repeats, "steps": args.steps, "budget": args.budget,
      "first_step_rounds": args.first_step_rounds,
  }.items() if v is not None})
  optimizers = list(split(args.optimizers))
  parts = split(args.only)
  unknown = set(optimizers) - set(step_time.JAX_OPTIMIZERS)
  unknown -= set(step_time.TORCH_PEERS)
  unknown |= set(settings.workloads) - set(step_time.WORKLOADS)
  unknown |= set(parts) - set(PARTS)
  if unknown:
    parser.error(f"unknown optimizers, workloads or parts: {sorted(unknown)}")
  default_out = report.RESULTS / ("tmp/speed" if args.quick or args.tiny
                                else "speed")
  return settings, optimizers, parts, args.out or default_out


def main(argv: list[str] | None = None) -> dict[str, Any]:
  settings, optimizers, parts, out = _parse(argv)
  out.mkdir(parents=True, exist_ok=True)
  peers = None
  if "step_time" in parts:
    peers = step_time.torch_peers()
    if peers is None:
      print("torch, adabound or pytorch_optimizer is not installed: no "
            'PyTorch peers (pip install ".[reference]").')
  total = (step_time.progress_steps(settings, optimizers, peers)
           if "step_time" in parts else 0)
  if "first_step" in parts:
    total += first_step.progress_steps(settings, optimizers)
  print(f"load average before: {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} cores")
  started = time.perf_counter()
  result: dict[str, Any] = {}
  tables = []
  with tqdm(total=total, desc="speed") as progress:
    if "step_time" in parts:
      result.update(step_time.run(settings, optimizers, peers, out, progress))
      tables.append(result["table"])
    if "first_step" in parts:
      first = first_step.run(settings, optimizers, progress)
      first["json"] = report.write_json(out / "first_step.json", {
          "settings": settings._asdict(), **first})
      first_step.plot(first, out / "first_step.png")
      first["png"] = out / "first_step.png"
      result["first_step"] = first
      tables.append(first_step.table(first))
  print("\n\n".join(tables))
  files = [str(p) for part in (result, result.get("first_step", {}))
           for p in (part.get("json"), part.get("png")) if p]
  print(f"\n{(time.perf_counter() - started) / 60:.1f} min; load average "
        f"after: {os.getloadavg()[0]:.2f}. Written: {', '.join(files)}")
  return result


if __name__ == "__main__":
  main()
