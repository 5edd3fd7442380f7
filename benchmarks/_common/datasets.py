"""The benchmarks' data: real or generated offline, never downloaded at run time.

Two sources: scikit-learn's bundled digits (1797 real 8x8 images) and
MNIST-1D, which the `mnist1d` package generates from its templates in a few
seconds (its ``get_dataset`` would download a pickle: we never call it).

Every split is fixed by a data seed independent of the training seeds, so
that the hyperparameters tuned on the validation split are judged on a test
split that no tuning ever saw. Scripts that tune nothing (the Flax training
scripts) train on the validation images too, and test on the same test split.
"""

from typing import NamedTuple

import numpy as np

DATA_SEED = 0


class Split(NamedTuple):
  """Inputs and integer labels of one dataset, in three fixed splits."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


def _split(x: np.ndarray, y: np.ndarray, n_test: int, n_val: int) -> Split:
  order = np.random.default_rng(DATA_SEED).permutation(len(y))
  test, val, train = np.split(order, [n_test, n_test + n_val])
  return Split(x[train], y[train], x[val], y[val], x[test], y[test])


def _standardize(split: Split) -> Split:
  """Zero mean, unit variance per feature, with the training split's stats."""
  mean = split.x_train.mean(0)
  std = split.x_train.std(0) + 1e-6  # Some digit pixels are always 0.
  return split._replace(
      x_train=(split.x_train - mean) / std,
      x_val=(split.x_val - mean) / std,
      x_test=(split.x_test - mean) / std,
  )


def _as_float32(split: Split) -> Split:
  return Split(*(a.astype(np.float32 if a.dtype.kind == "f" else np.int32)
                 for a in split))


def digits(kind: str = "flat", validation: bool = True) -> Split:
  """scikit-learn's digits: 1077 train, 360 validation, 360 test.

  Args:
    kind: ``'flat'``, 64 standardized features (for an MLP); ``'image'``,
      8x8x1 images scaled to [0, 1] (for a CNN); or ``'badly_scaled'``, the
      standardized features each multiplied by a fixed ``10**U(-1.5, 1.5)``:
      the same information, with curvatures spread over six decades, which
      SGD must take at the pace of the steepest feature and Adam does not.
    validation: Whether to hold out a validation split. Without one, its 360
      images join the training split (1437 train, 0 validation) and the test
      split is the same 360 images.

  Returns:
    The three splits, float32 inputs and int32 labels.
  """
  from sklearn.datasets import load_digits

  if kind not in ("flat", "image", "badly_scaled"):
    raise ValueError(f"kind must be 'flat', 'image' or 'badly_scaled', got {kind!r}")
  x, y = load_digits(return_X_y=True)
  n_test, n_val = 360, 360 if validation else 0
  if kind == "image":
    # Pixels are counts 0..16: dividing by 16 puts every pixel on one scale.
    return _as_float32(_split(x.reshape(-1, 8, 8, 1) / 16.0, y, n_test, n_val))
  split = _standardize(_split(x, y, n_test, n_val))
  if kind == "badly_scaled":
    scales = 10.0 ** np.random.default_rng(DATA_SEED).uniform(
        -1.5, 1.5, size=x.shape[1])
    split = split._replace(x_train=split.x_train * scales,
                           x_val=split.x_val * scales,
                           x_test=split.x_test * scales)
  return _as_float32(split)


def mnist1d() -> Split:
  """MNIST-1D generated offline: 3200 train, 800 validation, 1000 test.

  The package's own train/test split is kept (its 1000 test signals); the
  validation split is carved out of its 4000 training signals. Signals have 40
  samples and one channel.
  """
  try:
    from mnist1d.data import get_dataset_args
    from mnist1d.data import make_dataset
  except ImportError as e:
    raise ImportError(
        "MNIST-1D needs the `mnist1d` package: pip install '.[demo]'") from e

  # make_dataset reseeds NumPy's global generator with the dataset's own
  # seed (42): the data is the same on every machine.
  data = make_dataset(get_dataset_args())
  order = np.random.default_rng(DATA_SEED).permutation(len(data["y"]))
  val, train = np.split(order, [800])
  x, y = data["x"][..., None], data["y"]
  return _as_float32(Split(x[train], y[train], x[val], y[val],
                           data["x_test"][..., None], data["y_test"]))
