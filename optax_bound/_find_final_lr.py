r"""Range tests that pick ``final_lr``: a sixth of where AdaBound's SGD diverges.

Once its band has closed, AdaBound (and AMSBound, AdaBoundW) is SGD with
momentum dampened by ``b1`` at ``final_lr`` (Savarese, 2019), and a
``final_lr`` above the problem's stability limit diverges there, however well
the Adam phase went. On a quadratic of largest curvature :math:`L` that method
is the heavy ball with step :math:`\eta (1 - \beta_1)` and momentum
:math:`\beta_1`, stable if and only if

.. math::

  \eta \, L < 2 \, \frac{1 + \beta_1}{1 - \beta_1}

(38 / L at ``b1 = 0.9``). :func:`find_final_lr` finds that limit by trying
the method, as learning-rate finders do for SGD (Smith, 2017), five times on
successive batches, and returns a sixth of the median reading.

What was measured (``benchmarks/study/final_lr.py``; the constants below
were chosen on range tests of seeds 0 to 9, 100 to 104 and 200 to 204, then
held against a grid of ``final_lr`` on calls from seeds 300 to 304):

* The loss reads the limit sharply at ``b1 = 0.9``: on quadratics the test
  sees it rise at 1.0 to 1.4 times the limit. At ``b1 = 0`` the loss hides
  the stiffest directions (plain steps zero them near lr = 1 / L) and rose
  only at 5 to 6 times the limit; at ``b1 = 0.95`` the momentum's own
  oscillations made it rise at as little as 0.3% of the limit. So the test
  always runs at ``b1 = 0.9``, and the limit is carried to the caller's
  ``b1`` by the quadratic's ratio :math:`(1 + \beta_1) / (1 - \beta_1)`.
* On minibatches one test's reading is noisy: within one call, tests from
  the same parameters on different batches read points up to 13 times
  apart (a spike of the loss ends one early). A fifth of a single reading
  missed our target (within a point of the grid's best accuracy) on two of
  four small networks, its worst suggestions 1.05 and 5.9 points below the
  best. The median of five readings varied 1.4 to 2.1 times from call to
  call on those networks, and a sixth of it sat in the middle of the window
  of fractions (about 1/7 to 1/5) that kept every setup within the target,
  in a sweep over the recorded curves of the choosing seeds.
* Held against the grid: no run at a suggestion diverged (0 of 125), the
  worst suggestion was within 0.44 points of the grid's best accuracy on
  the four networks (digits and MNIST-1D, 1200 to 1500 steps), and within
  7.1 times the best final loss on a stiff quadratic (curvatures 1 to 2e4).
* Half the divergence point diverged runs on three of the four networks.
  The steepest descent of the loss, the other usual rule, was 2 to 250
  times below the limit on quadratics, and from 1e-6 to 7 from call to call
  on the networks.
"""

import itertools
import math
from typing import Any
from typing import Callable
from typing import Iterable
from typing import NamedTuple
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from optax_bound import _validation

# The share of the divergence point that is suggested (module docstring).
_FRACTION = 1 / 6
# The momentum the test runs at, whose divergence the loss shows soonest.
_PROBE_B1 = 0.9
# Steps per compiled call: the test runs at most this many steps past the one
# where it sees the loss diverge.
_CHUNK = 16
# The average of the loss that divergence is read from: an exponential moving
# average over about 1 / (1 - _SMOOTHING) = 10 steps, debiased.
_SMOOTHING = 0.9
# The loss has diverged where its average is this many times its lowest ...
_RATIO = 1.25
# ... once the average covers this many steps: before, one noisy minibatch
# moves it by as much (a NaN or infinite loss ends a test at once).
_WARMUP = 10
_MIN_STEPS = 20


def _stability_ratio(b1: float) -> float:
  """The quadratic's limit lr * L at ``b1``, over 2: (1 + b1) / (1 - b1)."""
  return (1 + b1) / (1 - b1)


class RangeTestCurve(NamedTuple):
  """One range test of :func:`find_final_lr`: the curve it read."""

  #: The learning rate whose step the test saw the loss diverge after, at
  #: ``b1 = 0.9``; None if it never did up to ``max_lr``.
  divergence_lr: float | None
  #: The learning rate of each step taken, rising geometrically.
  lrs: np.ndarray
  #: The loss after each step, ``losses[i]`` after the one at ``lrs[i]``, read
  #: on the next batch.
  losses: np.ndarray
  #: The debiased moving average of ``losses`` that divergence is read from.
  smoothed_losses: np.ndarray


class FinalLrRangeTest(NamedTuple):
  """What :func:`find_final_lr` measured, and the ``final_lr`` it suggests.

  ``divergence_lr``, ``lrs``, ``losses`` and ``smoothed_losses`` are those
  of the median test, the one the suggestion is read from; ``curves`` holds
  every test's.
  """

  #: The suggestion to pass as ``final_lr``; at ``b1 = 0.9`` a sixth of
  #: ``divergence_lr`` (or of ``max_lr`` where the loss never diverged).
  final_lr: float
  #: The median of the tests' divergence points (the lower one of an even
  #: count), at ``b1 = 0.9``; None if the median test never diverged up to
  #: ``max_lr``.
  divergence_lr: float | None
  #: The learning rate of each step the median test took, rising
  #: geometrically.
  lrs: np.ndarray
  #: The median test's loss after each step, ``losses[i]`` after the one at
  #: ``lrs[i]``, read on the next batch.
  losses: np.ndarray
  #: The debiased moving average of ``losses`` that divergence is read from.
  smoothed_losses: np.ndarray
  #: The loss at the given parameters, on the first batch.
  initial_loss: float
  #: Every test's curve, in the order they ran (one where every batch is the
  #: same object: the others would repeat it).
  curves: tuple[RangeTestCurve, ...] = ()

  def plot(self, ax: Any = None) -> Any:
    """Draws the loss against the learning rate, and the suggestion on it.

    Needs Matplotlib, which ``optax_bound`` does not depend on.

    Args:
      ax: The Matplotlib axes to draw on; a new figure's if None.

    Returns:
      The axes.
    """
    import matplotlib.pyplot as plt  # Only a caller who draws needs it.

    if ax is None:
      _, ax = plt.subplots(figsize=(6, 4))
    for curve in self.curves:
      if curve.lrs is not self.lrs:
        ax.plot(curve.lrs, curve.smoothed_losses, color="C0", lw=0.8,
                alpha=0.3)
    ax.plot(self.lrs, self.losses, color="0.6", lw=1, label="loss")
    ax.plot(self.lrs, self.smoothed_losses, color="C0", lw=2,
            label="moving average" + (
                ", median test (faint: the others)" if len(self.curves) > 1
                else ""))
    if self.divergence_lr is not None:
      ax.axvline(self.divergence_lr, color="C3", ls=":",
                 label=f"divergence, lr = {self.divergence_lr:.3g}")
    ax.axvline(self.final_lr, color="C2", ls="--")
    at = np.interp(np.log(self.final_lr), np.log(self.lrs),
                   self.smoothed_losses)
    ax.plot([self.final_lr], [at], "o", color="C2", ms=8,
            label=f"final_lr = {self.final_lr:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="learning rate",
           ylabel="loss")
    ax.legend(fontsize=8)
    return ax


def _check_options(b1, min_lr, max_lr, num_steps, num_tests):
  for name, value in (("b1", b1), ("min_lr", min_lr), ("max_lr", max_lr)):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
      raise TypeError(f"`{name}` must be a real number, got {value!r}.")
  if not 0 <= b1 < 1:
    raise ValueError(f"`b1` must be in [0, 1), got {b1}.")
  if not (math.isfinite(min_lr) and math.isfinite(max_lr) and 0 < min_lr < max_lr):
    raise ValueError(
        "`min_lr` and `max_lr` must be finite with 0 < min_lr < max_lr, got "
        f"min_lr={min_lr}, max_lr={max_lr}.")
  if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
    raise TypeError(f"`num_steps` must be an integer, got {num_steps!r}.")
  if num_steps < _MIN_STEPS:
    raise ValueError(
        f"`num_steps` must be at least {_MIN_STEPS}: the loss is averaged over "
        f"about 10 steps to read its divergence; got {num_steps}.")
  if isinstance(num_tests, bool) or not isinstance(num_tests, (int, np.integer)):
    raise TypeError(f"`num_tests` must be an integer, got {num_tests!r}.")
  if num_tests < 1:
    raise ValueError(f"`num_tests` must be at least 1, got {num_tests}.")


def _stack(batches: list[Any]) -> Any:
  try:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
  except (ValueError, TypeError) as error:
    raise ValueError(
        "Every batch must have the tree structure and shapes of the first, as "
        f"one compiled step runs on all of them: {error}") from error


def find_final_lr(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    batches: Iterable[Any],
    *,
    b1: float = 0.9,
    min_lr: float = 1e-6,
    max_lr: float = 1e3,
    num_steps: int = 225,
    num_tests: int = 5,
) -> FinalLrRangeTest:
  r"""Suggest AdaBound's ``final_lr`` by a range test of the SGD it ends as.

  Runs, from a copy of ``params``, the method AdaBound converges to, SGD with
  dampened momentum, with a learning rate :math:`\eta_k` rising geometrically
  from ``min_lr`` to ``max_lr`` over ``num_steps`` steps, one batch each:

  .. math::

    \eta_k &= \eta_{\min} \, (\eta_{\max} / \eta_{\min})^{k / (n - 1)} \\
    m_k &= 0.9 \, m_{k-1} + 0.1 \, \nabla f(p_{k-1}; b_k) \\
    p_k &= p_{k-1} - \eta_k m_k

  A test stops once the loss diverges: it is NaN or infinite, or its moving
  average (over about 10 steps) has risen to 1.25 times its lowest since
  its first 10 steps. On
  minibatches one test's reading is noisy (a spike of the loss ends it early,
  a lucky order late), so ``num_tests`` tests run one after another, each from
  ``params`` on the next batches, and the median of their divergence points
  :math:`\eta_d` is kept. At the momentum 0.9 the divergence shows soonest in
  the loss; the suggestion carries :math:`\eta_d` to ``b1`` by the stability
  limit of a quadratic (module docstring) and keeps a sixth of it:

  .. math::

    \text{final\_lr} = \frac{\eta_d}{6} \cdot
      \frac{(1 + \beta_1) / (1 - \beta_1)}{(1 + 0.9) / (1 - 0.9)}

  which is :math:`\eta_d / 6` at the default ``b1 = 0.9``. Where the median
  test never diverges, :math:`\eta_{\max}` stands for :math:`\eta_d`, with
  a warning.

  Cost: at most ``num_tests * (num_steps + 1)`` evaluations of the loss and
  its gradient, usually fewer (a test stops at divergence: the defaults take
  25 steps per decade of learning rate, 85 to 180 a test on the networks
  measured), and one compilation per call: ``loss_fn`` is traced once,
  inside a ``jax.lax.scan`` of 16 steps that runs on each chunk of 16
  batches of every test. Where every batch is the same object (a full-batch
  loss, ``itertools.repeat(batch)``), one test runs: the others would repeat
  it step for step. The caller's ``params`` are copied, never changed or
  donated.

  Args:
    loss_fn: ``loss_fn(params, batch)``, a positive real scalar (a
      cross-entropy, a squared error), differentiable in ``params``.
    params: The initial parameters, a tree of float arrays.
    batches: An iterable of batches, one per step, each with the structure
      and shapes of the first; ``itertools.repeat(batch)`` for a full-batch
      loss, ``itertools.cycle(batches)`` to reuse a few. Losses read on
      minibatches suggest the ``final_lr`` of training on those minibatches.
    b1: The ``b1`` of the optimizer the suggestion is for (the test itself
      runs at 0.9).
    min_lr: The first learning rate, well below the limit.
    max_lr: The last learning rate, above the limit.
    num_steps: Steps from ``min_lr`` to ``max_lr``. The divergence point is
      read to within a few steps, so more steps per decade read it more
      finely; the rule was measured at the defaults' 25 per decade, and
      on a network every step also trains it.
    num_tests: Range tests whose median divergence point is kept; each takes
      its own batches, up to ``num_steps + 1``. The rule was measured at 5.

  Returns:
    The suggested ``final_lr``, the median divergence point and the curves
    read, with a ``plot`` method, in a :class:`FinalLrRangeTest`.

  Raises:
    ValueError: Where ``batches`` is empty or runs out before the test ends,
      the loss is not finite or not positive at the initial parameters (or
      negative later), or an option is out of range.
    TypeError: Where ``loss_fn`` does not return a real scalar, or
      ``params`` holds a leaf that is not float.

  Examples:
    >>> import itertools, jax.numpy as jnp, optax_bound
    >>> # Curvatures 1 to 100: dampened SGDM at b1 = 0.9 is stable for
    >>> # lr < 2 (1 + b1) / ((1 - b1) 100) = 0.38.
    >>> curvatures = jnp.array([1.0, 10.0, 100.0])
    >>> loss = lambda p, batch: 0.5 * jnp.sum(curvatures * p ** 2)
    >>> test = optax_bound.find_final_lr(
    ...     loss, jnp.ones(3), itertools.repeat(None))
    >>> print(f"diverged at {test.divergence_lr:.2f}, final_lr {test.final_lr:.3f}")
    diverged at 0.42, final_lr 0.070
    >>> tx = optax_bound.adabound(learning_rate=1e-2, final_lr=test.final_lr)

  References:
    Smith, `Cyclical Learning Rates for Training Neural Networks
    <https://arxiv.org/abs/1506.01186>`_, 2017 (the range test)

    Savarese, `On the Convergence of AdaBound and its Connection to SGD
    <https://arxiv.org/abs/1908.04457>`_, 2019 (AdaBound's limit)
  """
  if not callable(loss_fn):
    raise TypeError(f"`loss_fn` must be callable, got {loss_fn!r}.")
  _check_options(b1, min_lr, max_lr, num_steps, num_tests)
  _validation.check_inexact_leaves(params)
  try:
    iterator = iter(batches)
  except TypeError:
    raise TypeError(
        "`batches` must be an iterable of batches, e.g. "
        f"itertools.repeat(batch); got {type(batches).__name__}.") from None

  lrs = min_lr * (max_lr / min_lr) ** (np.arange(num_steps) / (num_steps - 1))

  def checked_loss(p, batch):
    loss = loss_fn(p, batch)
    shape, dtype = jnp.shape(loss), jnp.result_type(loss)
    if shape != () or not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          "`loss_fn` must return a real float scalar, got an array of shape "
          f"{shape} and dtype {dtype}.")
    return loss

  def chunk(carry, chunk_lrs, chunk_batches):
    def step(carry, lr_and_batch):
      p, m = carry
      lr, batch = lr_and_batch
      loss, g = jax.value_and_grad(checked_loss)(p, batch)
      m = jax.tree.map(
          lambda m, g: (_PROBE_B1 * m + (1 - _PROBE_B1) * g).astype(m.dtype),
          m, g)
      p = jax.tree.map(lambda p, m: (p - lr * m).astype(p.dtype), p, m)
      return (p, m), loss

    return jax.lax.scan(step, carry, (chunk_lrs, chunk_batches))

  # One compiled program for every chunk of every test. The carry is a copy:
  # donating it reuses the copy's buffers, not the caller's.
  run = jax.jit(chunk, donate_argnums=0)
  curves: list[RangeTestCurve] = []
  initial, taken = math.nan, 0
  for index in range(num_tests):
    curve, first_loss, one_batch, took = _one_test(run, params, iterator, lrs,
                                                   taken)
    if not index:
      initial = first_loss
    curves.append(curve)
    taken += took
    if one_batch:
      break  # Every batch is one object: the other tests would repeat this.

  # The median test's divergence (the lower one of an even count); a test
  # that never diverged ranks above every one that did.
  order = sorted(range(len(curves)), key=lambda i: (
      curves[i].divergence_lr is None, curves[i].divergence_lr or 0.0))
  median = curves[order[(len(curves) - 1) // 2]]
  divergence_lr = median.divergence_lr
  # From the test's b1 to the caller's: exact on a quadratic.
  scale = _FRACTION * _stability_ratio(b1) / _stability_ratio(_PROBE_B1)
  if divergence_lr is None:
    warnings.warn(
        f"The loss did not diverge up to max_lr={max_lr}: final_lr is what it "
        "would be had it diverged there, below what the test would suggest. "
        "Raise max_lr to find the divergence.", stacklevel=2)
    final_lr = scale * max_lr
  else:
    final_lr = scale * divergence_lr
    if len(median.lrs) <= num_steps // 10:
      warnings.warn(
          f"The loss diverged within the first {len(median.lrs)} steps, at lr "
          f"{divergence_lr:.3g}: lower min_lr to see it descend first.",
          stacklevel=2)
  return FinalLrRangeTest(
      final_lr=float(final_lr),
      divergence_lr=divergence_lr,
      lrs=median.lrs,
      losses=median.losses,
      smoothed_losses=median.smoothed_losses,
      initial_loss=float(initial),
      curves=tuple(curves),
  )


def _one_test(
    run: Callable[..., Any],
    params: Any,
    iterator: Any,
    lrs: np.ndarray,
    read_before: int,
) -> tuple[RangeTestCurve, float, bool, int]:
  """One range test from ``params``.

  Args:
    run: The compiled chunk of steps.
    params: The parameters to copy and start from.
    iterator: The batches, shared by the tests.
    lrs: The learning rate of each step.
    read_before: Batches the tests before this one took, for the error
      where the batches run out.

  Returns:
    Its curve, its first loss, whether every batch it took was one object,
    and how many batches it took.
  """
  num_steps = len(lrs)
  # Pass k reads the loss at the parameters before its step: one more pass,
  # at lr 0, reads the loss after the last one.
  schedule = np.concatenate([lrs, [0.0]])
  copy = jax.tree.map(lambda x: jnp.array(x, copy=True), params)
  carry = (copy, jax.tree.map(jnp.zeros_like, copy))
  read: list[float] = []
  smoothed: list[float] = []
  diverged, one_batch, took = False, True, 0
  average, best, initial, first = 0.0, math.inf, math.nan, None
  for start in range(0, len(schedule), _CHUNK):
    needed = min(_CHUNK, len(schedule) - start)
    got = list(itertools.islice(iterator, needed))
    if not got and not start and not read_before:
      raise ValueError(
          "`batches` is empty: the range test takes one batch per step; pass "
          "itertools.repeat(batch) for a full-batch loss.")
    if len(got) < needed:
      raise ValueError(
          f"`batches` ran out after {read_before + start + len(got)} batches; "
          f"each range test takes up to num_steps + 1 = {num_steps + 1}: pass "
          "itertools.cycle(batches) to reuse them.")
    took += len(got)
    if first is None:
      first = got[0]
    one_batch = one_batch and all(batch is first for batch in got)
    chunk_lrs = np.zeros(_CHUNK, np.float32)
    chunk_lrs[:needed] = schedule[start:start + needed]
    # A short last chunk is padded with its last batch at lr 0: the same
    # shapes, so the same compiled program.
    got += got[-1:] * (_CHUNK - needed)
    carry, losses = run(carry, jnp.asarray(chunk_lrs), _stack(got))
    values = np.asarray(losses[:needed], np.float64).tolist()
    if not start:
      initial = values.pop(0)
      if not (math.isfinite(initial) and initial > 0):
        raise ValueError(
            "`loss_fn` must be finite and positive at the initial params: "
            f"got {initial} on the first batch. The test compares losses by "
            "their ratio: add a constant to a loss that can be negative.")
    for loss in values:
      if loss < 0:
        raise ValueError(
            f"`loss_fn` returned {loss}, below 0: the test compares losses "
            "by their ratio; add a constant to a loss that can be negative.")
      read.append(loss)
      if not math.isfinite(loss):
        smoothed.append(math.nan)
        diverged = True
        break
      average = _SMOOTHING * average + (1 - _SMOOTHING) * loss
      level = average / (1 - _SMOOTHING ** len(read))
      smoothed.append(level)
      if len(read) <= _WARMUP:
        continue
      if level > _RATIO * best:
        diverged = True
        break
      best = min(best, level)
    if diverged:
      break
  curve = RangeTestCurve(
      divergence_lr=float(lrs[len(read) - 1]) if diverged else None,
      lrs=lrs[:len(read)],
      losses=np.asarray(read),
      smoothed_losses=np.asarray(smoothed))
  return curve, initial, one_batch, took
