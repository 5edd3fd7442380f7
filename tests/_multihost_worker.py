"""One of two processes of a multi-host FSDP run of optax_bound, on CPU.

``tests/test_multihost.py`` starts two of these on 127.0.0.1, each with two
CPU devices; ``jax.distributed.initialize`` joins them into one run of four
devices, with cross-process CPU collectives over gloo:

  XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
      python tests/_multihost_worker.py PORT PROCESS_ID OUT_DIR {train,resume}

The code is the README's FSDP recipe ("Sharding: FSDP-style, and multi-host"):
a ``data x model`` mesh of 2 x 2 spanning both processes, each weight sharded
over both axes, and each process passing its own half of every global batch
to ``jax.make_array_from_process_local_data``.

``train`` runs ``SAVE_AT`` steps, saves params and optimizer state with Orbax
(both processes, one directory), then runs on to ``TOTAL``. ``resume``, in
fresh processes, restores the checkpoint into an abstract target with the
same shardings and runs from ``SAVE_AT`` to ``TOTAL``. Each process writes a
snapshot, ``OUT_DIR/{snapshot}_{PROCESS_ID}.npz``, of the run as saved, at
the end of the uninterrupted run, and at the end of the resumed one; per leaf:

- ``gathered/<path>``: the global array, gathered to this process with
  ``multihost_utils.process_allgather``;
- ``local/<path>`` and ``held/<path>``: the shards this process holds itself,
  at their place in the global array, and the mask of that place. Gathering
  sends one copy of each shard to every process, so equal gathered arrays do
  not show that both processes hold the same values where both hold a replica
  (a bias split over ``model`` only, the scalar step count); these do.

The test process imports this module for the same model, data and optimizer,
and runs them on its one device as the single-process reference.
"""

import functools
import pathlib
import sys

import jax
from jax.experimental import multihost_utils
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import orbax.checkpoint as ocp

import optax_bound

NUM_PROCESSES, LOCAL_DEVICES = 2, 2
MESH_SHAPE, AXES = (2, 2), ("data", "model")
SPECS = {
    "w1": P("data", "model"),  # Each weight over both axes.
    "b1": P("model"),
    "w2": P("model", "data"),
    "b2": P(),  # 10 output biases: replicated.
}
BATCH, SAVE_AT, TOTAL = 32, 5, 8


def make_tx():
  return optax.chain(
      optax.clip_by_global_norm(1.0),
      optax_bound.amsbound(learning_rate=1e-2, final_lr=0.1),
  )


def host_params():
  rng = np.random.default_rng(0)
  return {
      "w1": rng.normal(0, 0.125, (64, 128)).astype(np.float32),
      "b1": np.zeros(128, np.float32),
      "w2": rng.normal(0, 0.09, (128, 10)).astype(np.float32),
      "b2": np.zeros(10, np.float32),
  }


def global_batch(t):
  """The global batch of step ``t``: every process can build all of it."""
  rng = np.random.default_rng([1, t])
  return (rng.random((BATCH, 64), np.float32),
          rng.integers(0, 10, BATCH).astype(np.int32))


def loss(p, x, y):
  logits = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@functools.cache
def step_fn():
  tx = make_tx()

  @jax.jit
  def step(p, opt_state, x, y):
    updates, opt_state = tx.update(jax.grad(loss)(p, x, y), opt_state, p)
    return optax.apply_updates(p, updates), opt_state
  return step


def flat(tree):
  """``{'w1': leaf, ..., '1/inner_state/nu_max/w1': leaf, ...}`` of a pytree."""
  return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def train_single_device(stop):
  """The reference: ``stop`` steps on the global batches, on one device."""
  params = jax.device_put(host_params(), jax.devices()[0])
  opt_state = make_tx().init(params)
  for t in range(stop):
    params, opt_state = step_fn()(params, opt_state, *global_batch(t))
  return params, opt_state


def _local_rows(batch_sharding):
  """The rows of the global batch that this process's devices hold."""
  rows = {index[0].indices(BATCH)[:2] for index in
          batch_sharding.addressable_devices_indices_map((BATCH, 64)).values()}
  start, stop = min(r[0] for r in rows), max(r[1] for r in rows)
  assert stop - start == BATCH // NUM_PROCESSES, rows  # Its half, in one piece.
  return slice(start, stop)


def _train(mesh, params, opt_state, start, stop):
  batch_sharding = NamedSharding(mesh, P("data"))
  rows = _local_rows(batch_sharding)
  with jax.set_mesh(mesh):
    for t in range(start, stop):
      x, y = global_batch(t)
      params, opt_state = step_fn()(
          params, opt_state,
          jax.make_array_from_process_local_data(batch_sharding, x[rows]),
          jax.make_array_from_process_local_data(batch_sharding, y[rows]))
  return params, opt_state


def _write(out_dir, snapshot, run):
  gathered = multihost_utils.process_allgather(run, tiled=True)
  arrays = {f"gathered/{k}": np.asarray(v) for k, v in flat(gathered).items()}
  for key, leaf in flat(run).items():
    local = np.zeros(leaf.shape, leaf.dtype)
    held = np.zeros(leaf.shape, bool)
    for shard in leaf.addressable_shards:
      local[shard.index] = np.asarray(shard.data)
      held[shard.index] = True
    arrays[f"local/{key}"], arrays[f"held/{key}"] = local, held
  np.savez(out_dir / f"{snapshot}_{jax.process_index()}.npz", **arrays)


def main(port, process_id, out_dir, mode):
  # gloo is jax 0.10's default for CPU collectives across processes; named
  # here so that a change of default cannot turn this run into another one.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=f"127.0.0.1:{port}",
      coordinator_bind_address=f"127.0.0.1:{port}",  # Loopback only.
      num_processes=NUM_PROCESSES, process_id=int(process_id),
      initialization_timeout=60)
  assert jax.process_count() == NUM_PROCESSES
  assert jax.local_device_count() == LOCAL_DEVICES
  assert jax.device_count() == NUM_PROCESSES * LOCAL_DEVICES

  out_dir = pathlib.Path(out_dir)
  mesh = jax.make_mesh(MESH_SHAPE, AXES, axis_types=(AxisType.Auto,) * 2)
  param_sharding = jax.tree.map(lambda spec: NamedSharding(mesh, spec), SPECS)
  tx = make_tx()
  abstract_params = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      host_params(), param_sharding)
  state_sharding = optax.tree_map_params(
      tx, lambda _, sharding: sharding, jax.eval_shape(tx.init, abstract_params),
      param_sharding, transform_non_params=lambda _: NamedSharding(mesh, P()))
  checkpoint = out_dir / "checkpoint"
  checkpointer = ocp.StandardCheckpointer()

  if mode == "train":
    # Every process passes the same host values; each keeps its own shards.
    params = jax.device_put(host_params(), param_sharding)
    opt_state = jax.jit(tx.init, out_shardings=state_sharding)(params)
    params, opt_state = _train(mesh, params, opt_state, 0, SAVE_AT)
    _write(out_dir, "saved", {"params": params, "opt_state": opt_state})
    checkpointer.save(checkpoint, {"params": params, "opt_state": opt_state})
    checkpointer.wait_until_finished()
    params, opt_state = _train(mesh, params, opt_state, SAVE_AT, TOTAL)
    _write(out_dir, "uninterrupted", {"params": params, "opt_state": opt_state})
  else:
    abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        jax.eval_shape(tx.init, abstract_params), state_sharding)
    run = checkpointer.restore(
        checkpoint, {"params": abstract_params, "opt_state": abstract_state})
    for key, leaf in flat(run).items():  # The shardings asked for.
      want = flat({"params": param_sharding, "opt_state": state_sharding})[key]
      assert leaf.sharding.is_equivalent_to(want, leaf.ndim), key
    params, opt_state = _train(
        mesh, run["params"], run["opt_state"], SAVE_AT, TOTAL)
    _write(out_dir, "resumed", {"params": params, "opt_state": opt_state})
  checkpointer.close()
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:])
