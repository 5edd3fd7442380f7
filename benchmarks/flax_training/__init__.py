"""Flax NNX and Linen training scripts on digits, with optax_bound."""
