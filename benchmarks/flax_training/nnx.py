"""Train an MLP and a CNN on digits with Flax NNX and optax_bound.

  python -m benchmarks.flax_training.nnx     # about a minute on 2 cores
  python -m benchmarks.flax_training.nnx --seeds 3 --epochs 20 --optimizers amsbound

Each run is the canonical NNX loop, ``nnx.Optimizer(model, tx, wrt=nnx.Param)``
and ``optimizer.update(model, grads)`` under ``nnx.jit``, with ``tx`` one of
AMSBound, AdaBound, Adam and the SGD with momentum that AdaBound ends as. It
prints a table of test accuracy and final training loss (mean +- std over
seeds) and saves the raw numbers to ``benchmarks/results/flax_training/nnx.json``.
The models and data are in ``_digits.py``;
``linen.py`` is the same study in Flax Linen.
"""

from benchmarks.flax_training import _digits


def fit(model_name, tx, data, **kwargs):
  """One NNX run: the model is built here, so its seed is the run's."""
  return _digits.fit_nnx(
      _digits.nnx_model(model_name, kwargs["seed"]), tx, data, **kwargs)


def main(argv: list[str] | None = None) -> None:
  _digits.run("nnx", fit, argv)


if __name__ == "__main__":
  main()
