"""Train an MLP and a CNN on digits with Flax Linen and optax_bound.

  python -m benchmarks.flax_training.linen   # about a minute on 2 cores
  python -m benchmarks.flax_training.linen --seeds 3 --epochs 20 --optimizers adabound

Each run is the canonical Linen loop, ``TrainState.create(..., tx=tx)`` and
``state.apply_gradients(grads=grads)`` under ``jax.jit``, with ``tx`` one of
AMSBound, AdaBound, Adam and the SGD with momentum that AdaBound ends as. It
prints a table of test accuracy and final training loss (mean +- std over
seeds) and saves the raw numbers to ``benchmarks/results/flax_training/linen.json``.
The models and data are in ``_digits.py``;
``nnx.py`` is the same study in Flax NNX.
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
