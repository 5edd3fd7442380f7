"""The SGD with momentum that AdaBound ends as: the baseline of every comparison.

Once its bounds have closed on ``final_lr``, AdaBound's update is
``final_lr * m_t``, with ``m_t`` the average of the gradients dampened by
``b1`` (Savarese, 2019, arXiv 1908.04457). The fair SGD to race it against is
that method at ``lr = final_lr``, written here once for the study and the Flax
training scripts.
"""

import optax


def dampened_sgdm(
    learning_rate: optax.ScalarOrSchedule, b1: float = 0.9
) -> optax.GradientTransformation:
  """SGD with momentum dampened by ``b1``: ``m = b1 m + (1 - b1) g``, ``p -= lr m``.

  PyTorch's ``SGD(momentum=b1)`` and ``optax.sgd(lr * (1 - b1), momentum=b1)``
  take the same steps at ``lr * (1 - b1)``, up to rounding.

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler; AdaBound's ``final_lr`` to match it.
    b1: The momentum, AdaBound's ``b1``.

  Returns:
    The transformation.
  """
  return optax.chain(optax.ema(b1, debias=False),
                     optax.scale_by_learning_rate(learning_rate))
