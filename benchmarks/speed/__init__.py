"""Step time and memory of optax_bound against Optax and the PyTorch peers."""
