"""The study: what AdaBound and AMSBound do, against every optimizer users weigh.

    python -m benchmarks.study                # quick: a few minutes on 2 cores
    python -m benchmarks.study --full         # the study in the README (~30 min)
    python -m benchmarks.study --only counterexample,bounds

Five experiments, one module each (read them top to bottom):

1. ``counterexample``: Reddi et al.'s problems where Adam goes to the worst
   point and AMSGrad, AdaBound and AMSBound do not;
2. ``paths``: paths on a quadratic, Rosenbrock and Beale;
3. ``bounds``: the step sizes AdaBound actually takes, against its bounds;
4. ``training``: 14 optimizers on digits (MLP, badly scaled MLP, CNN) and
   MNIST-1D, several seeds, learning rates tuned on validation in ``--full``;
5. ``robustness``: AdaBound over final_lr and gamma, against the
   learning-rate sensitivity of SGD with momentum and Adam.

Each writes PNG figures and a JSON of its raw numbers to ``--out`` and a table
at the end. The data come from scikit-learn or are generated (MNIST-1D): nothing
is downloaded.
"""

import argparse
import os
import pathlib
import time

from benchmarks._common import report
from benchmarks.study import bounds
from benchmarks.study import counterexample
from benchmarks.study import paths
from benchmarks.study import robustness
from benchmarks.study import training

EXPERIMENTS = {
    "counterexample": counterexample,
    "paths": paths,
    "bounds": bounds,
    "training": training,
    "robustness": robustness,
}


def main(argv=None) -> dict[str, str]:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.study",
      description=__doc__.split("\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", dest="full", action="store_false",
                    help="small sizes, default learning rates (the default)")
  mode.add_argument("--full", action="store_true",
                    help="the study: full sizes, learning rates tuned")
  parser.set_defaults(full=False)
  parser.add_argument("--seeds", type=int, default=None,
                      help="seeds per configuration (default: 2 quick, 5 full)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help="where figures and JSON go (default: "
                      "benchmarks/results/study with --full, "
                      "benchmarks/results/tmp/study otherwise)")
  parser.add_argument("--only", default=",".join(EXPERIMENTS),
                      help="comma-separated experiments to run, of: "
                      + ", ".join(EXPERIMENTS))
  args = parser.parse_args(argv)
  only = [name.strip() for name in args.only.split(",") if name.strip()]
  unknown = set(only) - set(EXPERIMENTS)
  if unknown:
    parser.error(f"unknown experiments {sorted(unknown)}; choose from "
                 f"{list(EXPERIMENTS)}")
  seeds = args.seeds or (5 if args.full else 2)
  # Quick runs go to a git-ignored folder: they never overwrite the figures of
  # the full run that the README shows.
  out = args.out or (report.RESULTS / ("study" if args.full else "tmp/study"))
  out.mkdir(parents=True, exist_ok=True)

  mode_name = "full" if args.full else "quick"
  print(f"optax_bound study, {mode_name} mode, {seeds} seeds -> {out}")
  print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
  tables, durations = {}, {}
  start = time.perf_counter()
  for name in only:
    module = EXPERIMENTS[name]
    settings = module.FULL if args.full else module.QUICK
    t0 = time.perf_counter()
    tables[name] = module.run(settings, seeds, out)
    durations[name] = time.perf_counter() - t0
  total = time.perf_counter() - start
  load = os.getloadavg()

  print("\n" + "=" * 80)
  for name, text in tables.items():
    print(f"\n## {name} ({durations[name]:.0f} s)\n\n{text}")
  print(f"\nTotal {total:.0f} s; load average (1, 5, 15 min) after: "
        f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on {os.cpu_count()} cores")
  print(f"Figures and JSON in {out}")
  report.write_json(out / f"study_{mode_name}.json", {
      "mode": mode_name, "seeds": seeds, "experiments": only,
      "seconds": durations, "total_seconds": total,
      "load_average_after": load, "tables": tables})
  return tables


if __name__ == "__main__":
  main()
