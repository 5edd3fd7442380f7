"""Flax Linen: ``TrainState.create(..., tx=tx)`` trains digits classifiers.

  python -m benchmarks.flax_training.linen   # under a minute on 2 cores
  python -m benchmarks.flax_training.linen --seeds 3 --epochs 20 --optimizers adabound

A run is Linen's canonical loop: a fresh ``TrainState`` per seed, stepped by
``state.apply_gradients(grads=grads)`` under ``jax.jit``. See README.md here
for what it trains and prints; ``benchmarks/results/flax_training/linen.json``
keeps every run's numbers.
"""

from benchmarks.flax_training import _digits


def fit(model_name, tx, data, **kwargs):
  """One Linen run: a fresh TrainState, initialised with the run's seed."""
  state = _digits.linen_state(
      _digits.linen_model(model_name), tx, kwargs["seed"])
  return _digits.fit_linen(state, data, **kwargs)


def main(argv: list[str] | None = None) -> None:
  _digits.run("linen", fit, argv)


if __name__ == "__main__":
  main()
