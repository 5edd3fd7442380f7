"""Flax NNX: ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` trains digits classifiers.

  python -m benchmarks.flax_training.nnx     # under a minute on 2 cores
  python -m benchmarks.flax_training.nnx --seeds 3 --epochs 20 --optimizers amsbound

Every run is the canonical NNX loop, ``optimizer.update(model, grads)`` under
``nnx.jit``, on a model built with the run's seed. The models, the optimizers
and the table it prints are described in this folder's README.md; the raw
numbers go to ``benchmarks/results/flax_training/nnx.json``.
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
