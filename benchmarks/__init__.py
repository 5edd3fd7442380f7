"""Benchmarks and experiments for optax_bound: scripts run as `python -m benchmarks.<name>`."""
