"""A fresh process that restores an optax_bound run and resumes it.

``tests/test_checkpointing.py`` trains ``TOTAL`` steps, saving params and
optimizer state after ``SAVE_AT`` of them, with Orbax and with
``flax.serialization``. This script, run as its own process, builds the
restore target from nothing but the code (``jax.eval_shape`` for Orbax, a
fresh ``tx.init`` for msgpack), restores both checkpoints, trains the
remaining steps and writes the final params and state of each to an ``.npz``:

  python tests/_checkpoint_worker.py ORBAX_DIR MSGPACK_FILE OUT_NPZ
"""

import functools
import sys

from flax import serialization
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

import optax_bound

SAVE_AT, TOTAL = 10, 20
BATCH = 64


def decay_mask(params):
  return jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == "kernel", params)


def make_tx():
  """AMSBound with a schedule, masked decay and bounds that close in the run.

  The schedule makes the resumed steps depend on the restored ``count``,
  ``initial_lr`` and ``peak_lr``; the moments on ``mu``, ``nu`` and ``nu_max``.
  """
  return optax_bound.amsbound(
      learning_rate=optax.cosine_decay_schedule(1e-2, TOTAL),
      final_lr=0.1, gamma=0.1, weight_decay=1e-4, mask=decay_mask)


def init_params():
  rng = np.random.default_rng(0)

  def dense(fan_in, fan_out):
    kernel = rng.normal(0, fan_in ** -0.5, (fan_in, fan_out))
    return {"kernel": jnp.asarray(kernel, jnp.float32),
            "bias": jnp.zeros(fan_out, jnp.float32)}
  return {"Dense_0": dense(64, 32), "Dense_1": dense(32, 10)}


def init_run():
  """Params and optimizer state at step 0: the layout of a checkpoint."""
  params = init_params()
  return {"params": params, "opt_state": make_tx().init(params)}


def _loss(params, x, y):
  h = jax.nn.relu(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
  logits = h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@functools.cache
def _step():
  tx = make_tx()

  @jax.jit
  def step(run, x, y):
    grads = jax.grad(_loss)(run["params"], x, y)
    updates, opt_state = tx.update(grads, run["opt_state"], run["params"])
    return {"params": optax.apply_updates(run["params"], updates),
            "opt_state": opt_state}
  return step


def train(run, start, stop):
  """Steps ``start`` to ``stop`` (exclusive) from the run dict ``run``."""
  for t in range(start, stop):
    # Random 64-pixel inputs and labels: scikit-learn would double the
    # start-up time of the fresh process, and the numbers need no meaning.
    rng = np.random.default_rng([2, t])
    x = rng.random((BATCH, 64), np.float32)
    y = rng.integers(0, 10, BATCH, np.int32)
    run = _step()(run, x, y)
  return run


def flat(run):
  """``{'params/Dense_0/kernel': array, 'opt_state/1/inner_state/mu/...': ...}``."""
  return {key: np.asarray(value) for key, value in traverse_util.flatten_dict(
      serialization.to_state_dict(run), sep="/").items()}


def main(orbax_dir, msgpack_file, out_npz):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      jax.eval_shape(init_run))
  from_orbax = ocp.StandardCheckpointer().restore(orbax_dir, abstract)
  with open(msgpack_file, "rb") as f:
    from_msgpack = serialization.from_bytes(init_run(), f.read())
  results = {}
  for name, run in (("orbax", from_orbax), ("msgpack", from_msgpack)):
    # The restored step counts (the estimator's, the decay's) are the ones
    # saved: the schedule resumes there.
    counts = optax.tree.get_all_with_path(run["opt_state"], "count")
    assert {int(count) for _, count in counts} == {SAVE_AT}
    for key, value in flat(train(run, SAVE_AT, TOTAL)).items():
      results[f"{name}/{key}"] = value
  np.savez(out_npz, **results)


if __name__ == "__main__":
  main(*sys.argv[1:])
