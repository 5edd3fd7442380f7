"""Benchmarks and experiments, one subpackage per purpose; see README.md."""
