"""Train an MLP and a CNN on digits with Flax Linen and optax_bound.

  python -m benchmarks.train_linen                  # about a minute on 2 cores
  python -m benchmarks.train_linen --seeds 3 --epochs 20 --optimizers adabound

Each run is the canonical Linen loop, ``TrainState.create(..., tx=tx)`` and
``state.apply_gradients(grads=grads)`` under ``jax.jit``, with ``tx`` one of
AMSBound, AdaBound, Adam and the SGD with momentum that AdaBound ends as. It
prints a table of test accuracy and final training loss (mean +- std over
seeds) and saves the raw numbers to ``benchmarks/results/train_linen.json``.
The models and data are in ``benchmarks/_flax_digits.py``;
``benchmarks/train_nnx.py`` is the same study in Flax NNX.
"""

from benchmarks import _flax_digits


def fit(model_name, tx, data, **kwargs):
  """One Linen run: a fresh TrainState, initialised with the run's seed."""
  state = _flax_digits.linen_state(
      _flax_digits.linen_model(model_name), tx, kwargs["seed"])
  return _flax_digits.fit_linen(state, data, **kwargs)


def main(argv: list[str] | None = None) -> None:
  _flax_digits.run("train_linen", fit, argv)


if __name__ == "__main__":
  main()
