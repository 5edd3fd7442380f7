"""optax_bound on a 2-D device mesh, measured in a process with 8 CPU devices.

Run by ``tests/test_sharding.py`` in a subprocess, because the device count
is fixed when JAX starts; the rest of the test suite keeps its one device. It
writes what it measured to a JSON file, and the test asserts on the numbers:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python tests/_sharding_worker.py OUT_JSON

An MLP (64 -> 128 -> 10) is sharded FSDP-style over a ``data x model`` mesh
of 2 x 4 devices: each weight is split over both axes, the hidden bias over
``model`` (the 10 output biases are replicated), and the batch over ``data``.
The batch goes through ``jax.make_array_from_process_local_data``, which
builds the same global array from each host's share in a multi-host run.
"""

import json
import re
import sys
from typing import Any
from typing import NamedTuple

import jax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

import optax_bound

MESH_SHAPE, AXES = (2, 4), ("data", "model")
SPECS = {
    "hidden": {"kernel": P("data", "model"), "bias": P("model")},
    "out": {"kernel": P("model", "data"), "bias": P()},  # 10: replicated.
}
BATCH, STEPS = 32, 5
COLLECTIVES = ("all-gather", "all-to-all", "all-reduce", "reduce-scatter",
               "collective-permute")


def make_tx():
  return optax.chain(
      optax.clip_by_global_norm(1.0),
      optax_bound.amsbound(learning_rate=1e-2, final_lr=0.1, gamma=1e-2),
  )


def host_params():
  rng = np.random.default_rng(0)

  def dense(fan_in, fan_out):
    return {"kernel": rng.normal(0, fan_in ** -0.5, (fan_in, fan_out)).astype(
        np.float32), "bias": np.zeros(fan_out, np.float32)}
  return {"hidden": dense(64, 128), "out": dense(128, 10)}


def host_batches():
  rng = np.random.default_rng(1)
  return [(rng.random((BATCH, 64), np.float32),
           rng.integers(0, 10, BATCH).astype(np.int32)) for _ in range(STEPS)]


def loss(params, x, y):
  h = jax.nn.relu(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
  logits = h @ params["out"]["kernel"] + params["out"]["bias"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train_step(tx):
  def step(params, state, x, y):
    grads = jax.grad(loss)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  return step


def collectives(hlo_text):
  """``[[op, [result shape, ...]], ...]`` for each collective in the HLO."""
  pattern = re.compile(
      r"=\s*(.*?)\s(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
  found = []
  for line in hlo_text.splitlines():
    match = pattern.search(line)
    if match:
      shapes = [[int(d) for d in dims.split(",") if d]
                for dims in re.findall(r"\w+\[([\d,]*)\]", match.group(1))]
      found.append([match.group(2), shapes])
  return found


class _Pair(NamedTuple):
  """A leaf and the sharding it should have (``is_leaf`` stops at it)."""

  leaf: Any
  sharding: Any


def _mismatched(pairs):
  """Paths whose leaf is not sharded as its paired sharding says.

  An abstract leaf (from ``jax.eval_shape``) lives on an abstract mesh: its
  partition spec is compared instead.
  """
  def same(leaf, sharding):
    if leaf.sharding is None:
      return False
    if isinstance(leaf, jax.ShapeDtypeStruct):
      ndim = len(leaf.shape)
      return (tuple(leaf.sharding.spec) + (None,) * ndim)[:ndim] == (
          tuple(sharding.spec) + (None,) * ndim)[:ndim]
    return leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
  return [jax.tree_util.keystr(path) for path, (leaf, sharding) in pairs
          if not same(leaf, sharding)]


def params_mismatches(params, shardings):
  """Paths of the params not sharded as ``shardings`` says."""
  return _mismatched(
      (path, _Pair(leaf, sharding)) for (path, leaf), sharding in zip(
          jax.tree_util.tree_leaves_with_path(params),
          jax.tree.leaves(shardings), strict=True))


def state_mismatches(tx, state, shardings):
  """Paths of the state's param-shaped leaves not sharded as their param."""
  pairs = optax.tree_map_params(
      tx, _Pair, state, shardings, transform_non_params=lambda _: None)
  return _mismatched(jax.tree_util.tree_leaves_with_path(
      pairs, is_leaf=lambda x: isinstance(x, _Pair)))


def state_shardings(tx, mesh, params, shardings):
  """The FSDP recipe: each param's sharding for its moments, scalars replicated."""
  return optax.tree_map_params(
      tx, lambda _, sharding: sharding, jax.eval_shape(tx.init, params),
      shardings, transform_non_params=lambda _: NamedSharding(mesh, P()))


def measure_mesh(axis_type, tx, report):
  """Init, eval_shape and the update alone, on a mesh of ``axis_type``."""
  mode = axis_type.name.lower()
  mesh = jax.make_mesh(MESH_SHAPE, AXES, axis_types=(axis_type,) * 2)
  shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), SPECS)
  params = jax.device_put(host_params(), shardings)
  with jax.set_mesh(mesh):
    # The state as a user gets it from init. Under jit, only an Explicit
    # mesh carries shardings into outputs that depend on no input (zeros):
    # on an Auto mesh Optax's own Adam comes out replicated too.
    report[f"{mode}/eager_init"] = state_mismatches(
        tx, tx.init(params), shardings)
    if axis_type == AxisType.Explicit:
      report[f"{mode}/jit_init"] = state_mismatches(
          tx, jax.jit(tx.init)(params), shardings)

    # Abstract params in, abstract state out: nothing is allocated.
    abstract_params = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        params)
    abstract = jax.eval_shape(tx.init, abstract_params)
    concrete = tx.init(params)
    report[f"{mode}/eval_shape_matches_init"] = (
        jax.tree.structure(abstract) == jax.tree.structure(concrete)
        and all(a.shape == c.shape and a.dtype == c.dtype for a, c in zip(
            jax.tree.leaves(abstract), jax.tree.leaves(concrete), strict=True)))
    if axis_type == AxisType.Explicit:
      report[f"{mode}/eval_shape"] = state_mismatches(tx, abstract, shardings)

    # The FSDP recipe: init straight into the state's shardings.
    state = jax.jit(
        tx.init, out_shardings=state_shardings(tx, mesh, params, shardings))(
            params)
    report[f"{mode}/recipe_init"] = state_mismatches(tx, state, shardings)

    # The optimizer's update alone, on gradients sharded as the params.
    def update(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state
    update = jax.jit(update).lower(params, state, params).compile()
    report[f"{mode}/update_collectives"] = collectives(update.as_text())
    new_params, new_state = update(params, state, params)
    report[f"{mode}/update_params"] = params_mismatches(new_params, shardings)
    report[f"{mode}/update_state"] = state_mismatches(
        tx, new_state, shardings)


def measure_training(tx, report):
  """FSDP-style training steps on the mesh, against the same on one device."""
  mesh = jax.make_mesh(MESH_SHAPE, AXES, axis_types=(AxisType.Auto,) * 2)
  shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), SPECS)
  data = NamedSharding(mesh, P("data"))
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, duration, **kwargs: compiles.append(event)
      if event == "/jax/core/compile/backend_compile_duration" else None)

  with jax.set_mesh(mesh):
    params = jax.device_put(host_params(), shardings)
    state = tx.init(params)  # Eagerly, as most training loops do.
    step = jax.jit(train_step(tx), donate_argnums=(0, 1))
    compiles.clear()
    for x, y in host_batches():
      params, state = step(params, state,
                           jax.make_array_from_process_local_data(data, x),
                           jax.make_array_from_process_local_data(data, y))
    # A state whose shardings changed after the first step (a moment that
    # init left replicated comes back sharded) makes the second compile again.
    report["step_compiles"] = len(compiles)
    report["step_params"] = params_mismatches(params, shardings)
    report["step_state"] = state_mismatches(tx, state, shardings)
    # Each device holds one shard of each moment: 1/8 of a weight's.
    nu_max = optax.tree.get(state, "nu_max")["hidden"]["kernel"]
    report["nu_max_shard_shape"] = list(
        nu_max.addressable_shards[0].data.shape)
    x, y = host_batches()[0]
    report["step_collectives"] = collectives(step.lower(
        params, state, jax.make_array_from_process_local_data(data, x),
        jax.make_array_from_process_local_data(data, y)).compile().as_text())

  single_params = jax.device_put(host_params(), jax.devices()[0])
  single_state = tx.init(single_params)
  single_step = jax.jit(train_step(tx))
  for x, y in host_batches():
    single_params, single_state = single_step(single_params, single_state, x, y)

  def max_abs_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                               strict=True))
  report["sharded_vs_single_params"] = max_abs_diff(params, single_params)
  report["sharded_vs_single_state"] = max_abs_diff(state, single_state)
  report["moved"] = max_abs_diff(single_params, host_params())


def main(out_json):
  tx = make_tx()
  report = {
      "device_count": jax.device_count(),
      "param_shapes": [list(x.shape) for x in jax.tree.leaves(host_params())],
  }
  for axis_type in (AxisType.Auto, AxisType.Explicit):
    measure_mesh(axis_type, tx, report)
  measure_training(tx, report)
  with open(out_json, "w") as f:
    json.dump(report, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1])
