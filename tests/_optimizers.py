"""The optimizers under test: one table, and the facts that tests select by.

Every generic test runs over this table, as Optax's tests run over
``_OPTIMIZERS_UNDER_TEST`` in ``optax/_src/alias_test.py``: adding an optimizer
to the suite is one line in ``UNDER_TEST``. An entry is an optimizer as a user
builds it, with the hyperparameters that make it what it is (the decay of
``adabound_l2``, the form of ``adabound_paper``); a test passes its own on top
and picks its entries by what they are, ``select(weight_decay=None)``, never by
a list of names. ``tests/conftest.py`` makes an entry's name its test id.

Tests import this module as ``_optimizers``: pytest puts ``tests/`` on
``sys.path``, as for ``_checkpoint_worker``.
"""

import dataclasses
import functools
import inspect
from typing import Any
from typing import Callable
from typing import Literal
from typing import Optional

import optax

import optax_bound

Decay = Optional[Literal["l2", "decoupled"]]
Bound = Literal["dynamic", "momental"]


# eq=False: entries compare and hash by identity, so that they can be static
# arguments of jax.jit and keys of functools.cache.
@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer:
  """An optimizer under test, and the facts about it that tests branch on.

  Attributes:
    name: The test id.
    constructor: Builds the optimizer from hyperparameters given by keyword.
    hyperparams: The ones that make this entry what it is. A test passes its
      own on top of them, and the test's win.
    public: A public alias (``optax_bound.adabound`` and its siblings), which
      takes every hyperparameter by keyword (``b1``, ``b2``, ``eps``,
      ``weight_decay``, ``mu_dtype``, ``form``, ...) and validates it. False
      for a bound wrapped around an estimator by hand, which takes the bound's
      hyperparameters only (``learning_rate``, ``final_lr``, ``gamma``,
      ``final_lr_coupling``, ``bound_fn``).
    weight_decay: ``'l2'`` (added to the gradient), ``'decoupled'`` (added to
      the update) or None. With either, ``update`` needs ``params`` and a
      zero gradient still moves a parameter.
    nu_max: The state keeps AMSGrad's running maximum ``nu_max``.
    paper_form: The paper's Algorithm 2 (``form='paper'``): the bounded step
      is divided by sqrt(t) inside the bound, whose stored band is divided
      by sqrt(t) too.
    lr_scaled_decay: The decoupled decay is scaled by the learning rate
      (``lambda * lr_t * p``, AdamW's and AdaMod's), not the authors'
      AdaBoundW's ``lambda * p``.
    bound: ``'dynamic'`` (AdaBound's band, which takes ``final_lr``, ``gamma``,
      ``bound_fn`` and ``final_lr_coupling``) or ``'momental'`` (AdaMod's
      average of past step sizes, which takes ``b3`` instead).
    fast_loop: Whether the fast loop (``pytest -m "not slow"``) runs the
      generic tests on this entry. One entry of each bound does: ``adabound``
      (the reference's band) and ``adamod`` (the momental bound). The others
      are one of those with one change each (AMSGrad's maximum, a weight
      decay, the paper's form, Optax's Adam inside) and run in the full suite
      only, marked slow by ``tests/conftest.py``; the tests written for each
      change (its golden data, its decay, its form) stay in the fast loop.
  """

  name: str
  constructor: Callable[..., optax.GradientTransformationExtraArgs]
  hyperparams: dict[str, Any] = dataclasses.field(default_factory=dict)
  public: bool = True
  weight_decay: Decay = None
  nu_max: bool = False
  paper_form: bool = False
  lr_scaled_decay: bool = False
  bound: Bound = "dynamic"
  fast_loop: bool = False

  @property
  def needs_params(self) -> bool:
    """Whether ``update`` needs ``params``: it decays the weights."""
    return self.weight_decay is not None

  @property
  def within_reference_bounds(self) -> bool:
    """Whether every |update| / |mu| lies in ``optax_bound.reference_bounds``.

    Not in the paper's form (the step is divided by sqrt(t)), nor with a
    decoupled decay (added to the update after the bound), nor for the
    momental bound (which has no band).
    """
    return (not self.paper_form and self.weight_decay != "decoupled"
            and self.bound == "dynamic")

  def accepts(self, *arguments: str) -> bool:
    """Whether the constructor takes every one of ``arguments`` by keyword."""
    parameters = inspect.signature(self.constructor).parameters
    return all(argument in parameters for argument in arguments)

  def __call__(self, **hyperparams: Any) -> optax.GradientTransformationExtraArgs:
    """The optimizer, with ``hyperparams`` over the entry's own."""
    return self.constructor(**{**self.hyperparams, **hyperparams})

  def taking(self, **hyperparams: Any) -> optax.GradientTransformationExtraArgs:
    """The optimizer with those of ``hyperparams`` its constructor takes.

    For generic tests that set the dynamic bound (``final_lr``, ``gamma``)
    where the entry has one: the momental bound has neither.
    """
    return self(**{k: v for k, v in hyperparams.items() if self.accepts(k)})

  def injected(
      self, hyperparam_dtype: Any = None, **hyperparams: Any
  ) -> optax.GradientTransformationExtraArgs:
    """The optimizer under ``optax.inject_hyperparams``, as ``self(...)``."""
    return optax.inject_hyperparams(
        self.constructor, hyperparam_dtype=hyperparam_dtype)(
            **{**self.hyperparams, **hyperparams})


UNDER_TEST = (
    Optimizer("adabound", optax_bound.adabound, fast_loop=True),
    Optimizer("amsbound", optax_bound.amsbound, nu_max=True),
    Optimizer("adabound_l2", optax_bound.adabound, dict(weight_decay=1e-3),
              weight_decay="l2"),
    Optimizer("adaboundw", optax_bound.adaboundw, dict(weight_decay=1e-3),
              weight_decay="decoupled"),
    Optimizer("adaboundw_lr_scaled_decay", optax_bound.adaboundw,
              dict(weight_decay=1e-3, lr_scaled_decay=True),
              weight_decay="decoupled", lr_scaled_decay=True),
    Optimizer("adabound_paper", optax_bound.adabound, dict(form="paper"),
              paper_form=True),
    Optimizer("adamod", optax_bound.adamod, bound="momental", fast_loop=True),
    Optimizer("adamod_decay", optax_bound.adamod, dict(weight_decay=1e-3),
              weight_decay="decoupled", lr_scaled_decay=True, bound="momental"),
    # The bound around Optax's own Adam: any estimator with `mu` and `count`.
    Optimizer("bounded_optax_adam", functools.partial(
        optax_bound.clip_step_size_by_dynamic_bound, optax.scale_by_adam()),
              public=False),
)


def select(accepts: tuple[str, ...] = (), **facts: Any) -> tuple[Optimizer, ...]:
  """The entries of ``UNDER_TEST`` with every fact as given.

  ``accepts`` names hyperparameters the test passes: only entries whose
  constructor takes them all are chosen.

  >>> [opt.name for opt in select(nu_max=True)]
  ['amsbound']
  >>> [opt.name for opt in select(accepts=("b3",), weight_decay=None)]
  ['adamod']
  """
  chosen = tuple(
      opt for opt in UNDER_TEST
      if all(getattr(opt, fact) == value for fact, value in facts.items())
      and opt.accepts(*accepts))
  if not chosen:  # a typo in a fact would otherwise run nothing, silently
    raise ValueError(f"No optimizer under test has {facts}.")
  return chosen
