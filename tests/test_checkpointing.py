"""Checkpoints with Orbax and flax.serialization: resume bitwise, stable names.

The run, its optimizer and the restore live in ``tests/_checkpoint_worker.py``,
which this test also runs as a separate process: the restore there knows
nothing but the code, as after a preemption.
"""

import os
import pathlib
import subprocess
import sys

# tests/ is on sys.path (pytest puts it there): the worker is importable.
import _checkpoint_worker as worker
from _optimizers import UNDER_TEST
from _optimizers import select
import chex
from flax import serialization
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import optax_bound

WORKER = pathlib.Path(worker.__file__)


@pytest.mark.slow  # starts a process
def test_resume_in_a_fresh_process_is_bitwise_equal_to_the_uninterrupted_run(
    tmp_path):
  midway = worker.train(worker.init_run(), 0, worker.SAVE_AT)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "orbax", midway)
  checkpointer.wait_until_finished()
  (tmp_path / "run.msgpack").write_bytes(serialization.to_bytes(midway))
  uninterrupted = worker.flat(
      worker.train(midway, worker.SAVE_AT, worker.TOTAL))

  out = tmp_path / "resumed.npz"
  subprocess.run(
      [sys.executable, str(WORKER), str(tmp_path / "orbax"),
       str(tmp_path / "run.msgpack"), str(out)],
      check=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  resumed = dict(np.load(out))

  # 4 param leaves; the decay's count; count, initial_lr, peak_lr, lower,
  # upper; mu, nu and nu_max of each.
  assert len(uninterrupted) == 4 + 1 + 5 + 3 * 4
  for name in ("orbax", "msgpack"):
    for key, value in uninterrupted.items():
      np.testing.assert_array_equal(resumed.pop(f"{name}/{key}"), value,
                                    err_msg=f"{name}: {key}")
  assert not resumed  # Nothing more, nothing less.
  assert int(uninterrupted["opt_state/1/inner_state/count"]) == worker.TOTAL
  # The resumed half of the run moved the parameters: equality is not
  # the trivial kind.
  moved = np.abs(uninterrupted["params/Dense_0/kernel"]
                 - np.asarray(midway["params"]["Dense_0"]["kernel"]))
  assert moved.max() > 1e-3


_PARAMS = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
_ESTIMATOR = ["count", "mu.bias", "mu.kernel", "nu.bias", "nu.kernel"]
_NU_MAX = ["nu_max.bias", "nu_max.kernel"]


def _momental(prefix, moments):
  return ([f"{prefix}step_size_average.{name}" for name in ("bias", "kernel")]
          + [f"{prefix}inner_state.{name}" for name in moments])


def _bounded(prefix, moments):
  return ([f"{prefix}{name}" for name in ("initial_lr", "peak_lr", "lower",
                                          "upper")]
          + [f"{prefix}inner_state.{name}" for name in moments])


# The array names a checkpoint holds, as Orbax writes them, for every
# optimizer under test and for two wrappers. They are the field names of
# ClipStepSizeByDynamicBoundState (initial_lr, peak_lr, lower, upper,
# inner_state), of ClipStepSizeByMomentalBoundState (step_size_average,
# inner_state) and of Optax's ScaleByAdamState / ScaleByAmsgradState (count,
# mu, nu, nu_max), behind the index of the chain element. Changing one breaks
# every saved checkpoint: this list changes only with a new major version,
# and a new optimizer under test adds its own.
STABLE_NAMES = {
    "adabound": _bounded("1.", _ESTIMATOR),
    "amsbound": _bounded("1.", _ESTIMATOR + _NU_MAX),
    # A weight decay keeps the count its schedule is read at, however the
    # decay is spelled (DecaySchedule).
    "adabound_l2": ["0.count", *_bounded("1.", _ESTIMATOR)],
    "adaboundw": [*_bounded("0.", _ESTIMATOR), "1.count"],
    "adaboundw_lr_scaled_decay": [*_bounded("0.", _ESTIMATOR), "1.count"],
    # The paper's division by sqrt(t) is inside the bound: the same state.
    "adabound_paper": _bounded("1.", _ESTIMATOR),
    "bounded_optax_adam": _bounded("", _ESTIMATOR),
    "adamod": _momental("0.", _ESTIMATOR),
    "adamod_decay": [*_momental("0.", _ESTIMATOR), "1.count"],
    "amsbound_masked_decay": ["0.inner_state.count",
                              *_bounded("1.", _ESTIMATOR + _NU_MAX)],
    "inject_hyperparams_adabound": [
        "count",
        *[f"hyperparams.{h}" for h in ("b1", "b2", "eps", "eps_root",
                                       "final_lr", "gamma", "learning_rate")],
        *_bounded("inner_state.1.", _ESTIMATOR),
    ],
}
_CHECKPOINTED = {
    **{opt.name: opt for opt in UNDER_TEST},
    # A MaskedState with a mask, and the hyperparameters in the state.
    "amsbound_masked_decay": lambda: optax_bound.amsbound(
        weight_decay=1e-4, mask={"kernel": True, "bias": False}),
    "inject_hyperparams_adabound": lambda: optax.inject_hyperparams(
        optax_bound.adabound)(learning_rate=1e-3),
}


@pytest.mark.parametrize("name", list(_CHECKPOINTED))
def test_checkpoint_array_names_are_the_stable_field_names(name, tmp_path):
  state = _CHECKPOINTED[name]().init(_PARAMS)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / name, state)
  checkpointer.wait_until_finished()
  metadata = checkpointer.metadata(tmp_path / name)
  # Recent Orbax wraps the tree: StepMetadata(item_metadata=TreeMetadata).
  metadata = getattr(metadata, "item_metadata", metadata)
  metadata = getattr(metadata, "tree", metadata)
  orbax_names = sorted(array.name for array in jax.tree.leaves(metadata))
  assert orbax_names == sorted(STABLE_NAMES[name])
  # flax.serialization keys its msgpack by the same names.
  msgpack_names = traverse_util.flatten_dict(
      serialization.to_state_dict(state), sep=".")
  assert sorted(msgpack_names) == sorted(STABLE_NAMES[name])


# Every numeric hyperparameter an entry takes, in four spellings.
_SPELLINGS = {
    "python": lambda x: x,
    "numpy": np.float32,
    "jax": lambda x: jnp.asarray(x, jnp.float32),
}
_NUMBERS = dict(learning_rate=1e-3, weight_decay=1e-2, final_lr=0.1, gamma=1e-3,
                b1=0.9, b2=0.999, eps=1e-8)


def _structure(state):
  return jax.tree.structure(state), jax.tree.map(jnp.shape, state)


@pytest.mark.parametrize("opt", select(public=True))
def test_the_state_structure_does_not_depend_on_how_a_number_is_spelled(opt):
  numbers = {k: v for k, v in _NUMBERS.items()
             if opt.accepts(k) and (k != "weight_decay" or opt.needs_params)}
  if opt.needs_params:
    numbers["weight_decay"] = opt.hyperparams["weight_decay"]
  structures = {
      name: _structure(opt(**{k: spell(v) for k, v in numbers.items()}).init(
          _PARAMS))
      for name, spell in _SPELLINGS.items()
  }
  injected = opt.injected(**numbers).init(_PARAMS).inner_state
  structures["injected"] = _structure(injected)
  assert len({repr(s) for s in structures.values()}) == 1, structures


@pytest.mark.parametrize("opt", select(weight_decay="l2"))
@pytest.mark.parametrize("zero", [0, 0.0, np.float32(0), jnp.asarray(0.0)],
                         ids=["int", "float", "numpy", "jax"])
def test_a_zero_weight_decay_of_any_spelling_needs_no_params(opt, zero):
  tx = opt(weight_decay=zero)
  state = tx.init(_PARAMS)
  updates, _ = tx.update(_PARAMS, state)
  plain = opt(weight_decay=None)
  expected, _ = plain.update(_PARAMS, plain.init(_PARAMS))
  chex.assert_trees_all_equal(updates, expected)
