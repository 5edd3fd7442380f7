"""What every benchmark and experiment script reports: the machine, a table, raw JSON.

Each script prints a table at the end and saves its raw numbers as JSON next to
its figures, with the machine and date that produced them, so that every number
in the README can be traced to a run.
"""

import datetime
import json
import os
import pathlib
import platform
from typing import Any
from typing import Sequence

import numpy as np

# benchmarks/results/: one folder per purpose (study, flax_training, speed).
RESULTS = pathlib.Path(__file__).parents[1] / "results"


def machine() -> dict[str, Any]:
  """The machine, software versions and date of this run."""
  import jax
  import jaxlib
  import optax

  cpu = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  devices = jax.devices()
  return {
      "date": datetime.datetime.now(datetime.UTC).isoformat(
          timespec="seconds"),
      "cpu": cpu,
      "cores": os.cpu_count(),
      "backend": jax.default_backend(),
      "device": devices[0].device_kind if devices else None,
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "optax": optax.__version__,
  }


def write_json(path: pathlib.Path, payload: dict[str, Any]) -> pathlib.Path:
  """Saves ``payload`` with the machine it ran on; returns the path."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"machine": machine(), **payload}, indent=1,
                             default=float) + "\n")
  return path


def save_figure(fig: Any, path: pathlib.Path, dpi: int) -> pathlib.Path:
  """Lays out a Matplotlib figure, saves it as ``path`` and frees it."""
  import matplotlib.pyplot as plt  # Only the scripts that draw need it.

  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A Markdown table (it reads in a terminal and pastes into the README)."""

  def cell(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)

  def line(cells: Sequence[str]) -> str:
    padded = (c.ljust(w) for c, w in zip(cells, widths, strict=True))
    return "| " + " | ".join(padded) + " |"

  body = [[cell(x) for x in row] for row in rows]
  header = [str(h) for h in headers]
  columns = zip(header, *body, strict=True)
  widths = [max(len(c) for c in column) for column in columns]
  rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
  return "\n".join([line(header), rule, *(line(r) for r in body)])


def ratio_summary(per_round: Sequence[float]) -> dict[str, float]:
  """The median of per-round ratios, with its spread: how timings are compared.

  On a shared machine the speed drifts from round to round by more than two
  optimizers differ, so a comparison takes one ratio per round, of two
  measurements made seconds apart, and reports their median, quartiles and
  range. A quotient of two optimizers' own medians would mix rounds, and can
  differ from it by more than the difference it measures.
  """
  x = np.asarray(per_round, dtype=float)
  q25, median, q75 = np.percentile(x, [25, 50, 75])
  return {"median": float(median), "q25": float(q25), "q75": float(q75),
          "min": float(x.min()), "max": float(x.max()), "rounds": int(x.size)}


def format_ratio(r: dict[str, float], of: str = "") -> str:
  """``0.998 x {of} (IQR 0.953-1.111, range 0.863-1.178, 10 rounds)``."""
  return (f"{r['median']:.3f}{f' x {of}' if of else ''} (IQR {r['q25']:.3f}-"
          f"{r['q75']:.3f}, range {r['min']:.3f}-{r['max']:.3f}, "
          f"{r['rounds']} rounds)")
