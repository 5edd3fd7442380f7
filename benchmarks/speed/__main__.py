"""``python -m benchmarks.speed`` runs the step-time benchmark, ``step_time.py``."""

from benchmarks.speed import step_time

if __name__ == "__main__":
  step_time.main()
