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

import tqdm

from benchmarks import _flax_digits


def main(argv: list[str] | None = None) -> None:
  args = _flax_digits.parse_args("train_linen", argv)
  data = _flax_digits.load_digits()
  runs = [(model, opt, seed) for model in args.models
          for opt in args.optimizers for seed in range(args.seeds)]
  results = []
  with tqdm.tqdm(total=len(runs) * args.epochs, unit="epoch") as bar:
    for model_name, opt_name, seed in runs:
      bar.set_description(f"{model_name} {opt_name} seed {seed}")
      tx = _flax_digits.optimizer(
          opt_name, args.learning_rate, args.final_lr, args.gamma)
      state = _flax_digits.linen_state(
          _flax_digits.linen_model(model_name), tx, seed)
      _, history = _flax_digits.fit_linen(
          state, data, epochs=args.epochs, batch_size=args.batch_size,
          seed=seed, on_epoch=lambda _, loss: (
              bar.update(), bar.set_postfix(loss=f"{loss:.3f}")))
      results.append({"model": model_name, "optimizer": opt_name,
                      "seed": seed, **history._asdict()})
  _flax_digits.report(args, results)


if __name__ == "__main__":
  main()
