"""Sharding over a 2-D device mesh (data x model), FSDP-style, on 8 CPU devices.

The measurements run once, in a subprocess started with
``--xla_force_host_platform_device_count=8`` (``tests/_sharding_worker.py``),
so that this process and the rest of the suite keep their single device.
Each test asserts on one property of what the worker measured, on an Auto
mesh (shardings propagated by the compiler) and on an Explicit one
(shardings in the types: ``jax.make_mesh``'s default in current JAX).
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

# Every test reads what one subprocess measured.
pytestmark = pytest.mark.slow

WORKER = pathlib.Path(__file__).with_name("_sharding_worker.py")
MODES = ("auto", "explicit")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
  out = tmp_path_factory.mktemp("sharding") / "measured.json"
  flags = os.environ.get("XLA_FLAGS", "")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"{flags} --xla_force_host_platform_device_count=8"))
  subprocess.run([sys.executable, str(WORKER), str(out)], check=True,
                 timeout=300, env=env)
  report = json.loads(out.read_text())
  assert report["device_count"] == 8
  return report


@pytest.mark.parametrize("mode", MODES)
def test_init_puts_every_moment_with_its_parameter_sharding(measured, mode):
  # mu, nu and nu_max of each weight and bias: eagerly as optax.adam does,
  # and under jit where the mesh is Explicit. The paths listed are the
  # moments that came out with another sharding (replicated).
  assert measured[f"{mode}/eager_init"] == []
  if mode == "explicit":
    assert measured[f"{mode}/jit_init"] == []


@pytest.mark.parametrize("mode", MODES)
def test_eval_shape_of_init_works_on_abstract_sharded_params(measured, mode):
  assert measured[f"{mode}/eval_shape_matches_init"] is True
  if mode == "explicit":  # Abstract values carry shardings on Explicit meshes.
    assert measured[f"{mode}/eval_shape"] == []
  # The README's recipe: state shardings from eval_shape and the params'
  # shardings, then jit(tx.init, out_shardings=...).
  assert measured[f"{mode}/recipe_init"] == []


@pytest.mark.parametrize("mode", MODES)
def test_update_keeps_shardings_and_gathers_nothing(measured, mode):
  assert measured[f"{mode}/update_params"] == []
  assert measured[f"{mode}/update_state"] == []
  # The update is elementwise: its only collectives are the all-reduces of
  # clip_by_global_norm's scalar partial norms. No gather, no all-to-all.
  collectives = measured[f"{mode}/update_collectives"]
  assert collectives, "clip_by_global_norm needs one all-reduce at least"
  for op, shapes in collectives:
    assert op == "all-reduce", (op, shapes)
    assert all(shape == [] for shape in shapes), shapes


def test_training_step_gathers_no_full_parameter(measured):
  params = measured["param_shapes"]  # [[128], [64, 128], [10], [128, 10]]
  gathered = [shape for op, shapes in measured["step_collectives"]
              if op in ("all-gather", "all-to-all") for shape in shapes]
  # The forward pass gathers each weight over `data` only, FSDP-style: a
  # quarter of it, still split over the 4 `model` devices.
  assert gathered == [[64, 32], [32, 10]]
  assert not [shape for shape in gathered if shape in params]
  assert measured["step_params"] == []
  assert measured["step_state"] == []
  # 64 x 128 split 2 x 4: each device holds a 32 x 32 block of nu_max.
  assert measured["nu_max_shard_shape"] == [32, 32]


def test_sharded_step_equals_the_single_device_step(measured):
  # Five steps of forward, backward, clip and amsbound: the parameters moved
  # by 0.04 and agree to float32 round-off (observed 3e-8 and 6e-9; the
  # order of the sharded reductions differs).
  assert measured["moved"] > 1e-2
  assert measured["sharded_vs_single_params"] < 1e-6
  assert measured["sharded_vs_single_state"] < 1e-6


def test_step_compiles_once_from_an_eagerly_initialized_sharded_state(measured):
  # If init left a moment replicated, the first step would return it sharded
  # and the second step would compile again for the new input shardings.
  assert measured["step_compiles"] == 1
