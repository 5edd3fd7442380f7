"""Benchmarks and experiments: scripts run as `python -m benchmarks.<name>`."""
