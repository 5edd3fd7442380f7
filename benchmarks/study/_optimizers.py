"""The comparison set: every optimizer a user would weigh AdaBound against.

Each entry is a default learning rate (the centre of the tuning grid) and a
factory ``make(lr, decay)``: ``lr`` may be traced, so one jitted run can
``vmap`` over a grid of learning rates, and ``decay(count)`` multiplies the
learning rate along the run (the paper's lr/10 late in training). Everything
but AdaBound's family comes from Optax with Optax's defaults.

AdaBound's family scales ``learning_rate`` and ``final_lr`` together
(``final_lr = 100 * lr``, the authors' 0.1 at 1e-3): its one knob is the
overall size of its steps, like every other optimizer's here. The schedule
moves ``final_lr`` with it, as the reference's PyTorch schedulers do.
"""

from typing import Callable
from typing import NamedTuple

import jax
import optax

from benchmarks._common import baselines
import optax_bound

Decay = Callable[[jax.Array], jax.Array]
FINAL_LR_PER_LR = 100.0  # The authors' defaults: final_lr 0.1 at lr 1e-3.
WEIGHT_DECAY = 1e-2  # PyTorch's AdamW default; per step, lr * 1e-2.


class Optimizer(NamedTuple):
  """A default learning rate and ``make(lr, decay) -> transformation``."""

  lr: float
  make: Callable[[jax.typing.ArrayLike, Decay], optax.GradientTransformation]


def _scheduled(lr, decay):
  return lambda count: lr * decay(count)


def comparison(gamma: float) -> dict[str, Optimizer]:
  """The comparison set, with AdaBound's bounds converging at ``gamma``."""

  def bound(constructor, **kwargs):
    return Optimizer(1e-3, lambda lr, decay: constructor(
        learning_rate=_scheduled(lr, decay), final_lr=FINAL_LR_PER_LR * lr,
        gamma=gamma, **kwargs))

  return {
      "SGD": Optimizer(0.1, lambda lr, d: optax.sgd(_scheduled(lr, d))),
      "SGDM": Optimizer(0.03, lambda lr, d: optax.sgd(_scheduled(lr, d),
                                                      momentum=0.9)),
      # Centred on AdaBound's default final_lr, the SGD it ends as.
      "SGDM dampened": Optimizer(
          0.1, lambda lr, d: baselines.dampened_sgdm(_scheduled(lr, d))),
      "Adagrad": Optimizer(0.03, lambda lr, d: optax.adagrad(_scheduled(lr, d))),
      "RMSprop": Optimizer(1e-3, lambda lr, d: optax.rmsprop(_scheduled(lr, d))),
      "Adadelta": Optimizer(1.0, lambda lr, d: optax.adadelta(_scheduled(lr, d))),
      "Adam": Optimizer(1e-3, lambda lr, d: optax.adam(_scheduled(lr, d))),
      "AdamW": Optimizer(1e-3, lambda lr, d: optax.adamw(
          _scheduled(lr, d), weight_decay=WEIGHT_DECAY)),
      "AMSGrad": Optimizer(1e-3, lambda lr, d: optax.amsgrad(_scheduled(lr, d))),
      "LARS": Optimizer(1.0, lambda lr, d: optax.lars(_scheduled(lr, d))),
      "LAMB": Optimizer(1e-2, lambda lr, d: optax.lamb(_scheduled(lr, d))),
      "AdaBound": bound(optax_bound.adabound),
      "AMSBound": bound(optax_bound.amsbound),
      # AdamW's decay per step at lr 1e-3, unscaled by the lr as the authors'
      # AdaBoundW subtracts it.
      "AdaBoundW": bound(optax_bound.adaboundw,
                         weight_decay=WEIGHT_DECAY * 1e-3),
  }


BOUNDED = ("AdaBound", "AMSBound", "AdaBoundW")

_COLORS = {
    "SGD": "#7f7f7f", "SGDM": "#1f77b4", "SGDM dampened": "#17becf",
    "Adagrad": "#bcbd22", "RMSprop": "#8c564b", "Adadelta": "#c5b0d5",
    "Adam": "#2ca02c", "AdamW": "#98df8a", "AMSGrad": "#9467bd",
    "LARS": "#ff9896", "LAMB": "#f7b6d2",
    "AdaBound": "#d62728", "AMSBound": "#ff7f0e", "AdaBoundW": "#8b0000",
}


def style(name: str) -> dict:
  """Matplotlib line style of ``name``: AdaBound's family bold, the rest thin."""
  bold = name in BOUNDED
  return {"color": _COLORS.get(name, "black"), "lw": 2.2 if bold else 1.2,
          "zorder": 3 if bold else 2, "label": name}
