"""Smoke tests of the speed and memory benchmarks, at a tiny size.

They check that each script runs end to end and writes what the README shows,
not how fast anything is: timings belong to ``python -m benchmarks.speed``.
The memory script's XLA measure is exact, though, so one property is held
here: a donated step of ours allocates nothing param-sized beyond its inputs.
"""

import importlib.util
import json

import pytest

from benchmarks.speed import _workloads
from benchmarks.speed import memory
from benchmarks.speed import step_time

HAS_PEERS = all(importlib.util.find_spec(name) is not None
                for name in ("torch", "adabound", "pytorch_optimizer"))


@pytest.mark.parametrize("tree, leaves, params", [
    (_workloads.resnet34(), 110, 21_282_122),
    (_workloads.gpt2(), 148, 124_439_808),
    (_workloads.single_buffer(1e8), 1, 100_000_000),
])
def test_trees_have_the_models_leaves_and_parameter_counts(tree, leaves,
                                                           params):
  assert len(_workloads.leaf_shapes(tree)) == leaves
  assert _workloads.num_params(tree) == params


def test_resnet34_kernels_are_hwio():
  tree = _workloads.resnet34()
  assert tree["conv_init"]["kernel"] == (3, 3, 3, 64)
  assert tree["ResNetBlock_3"]["conv_proj"]["kernel"] == (1, 1, 64, 128)
  assert tree["Dense_0"]["kernel"] == (512, 10)


@pytest.mark.slow
def test_speed_script_runs_at_tiny_size(tmp_path):
  optimizers = ["adabound", "optax.adam"]
  if HAS_PEERS:
    optimizers.append("torch Adam (fused)")
  result = step_time.main([
      "--tiny", "--workloads", "gpt2,sweep", "--sizes", "1e3",
      "--dtypes", "float32,bfloat16", "--optimizers", ",".join(optimizers),
      "--out", str(tmp_path)])
  assert (tmp_path / "speed.png").stat().st_size > 0
  saved = json.loads((tmp_path / "speed.json").read_text())
  assert saved["machine"]["cores"] >= 1
  records = {(r["label"], r["dtype"]): r for r in saved["records"]}
  assert set(records) == {(label, dtype) for label in ("GPT-2 small",
                                                       "buffer 1e+03")
                          for dtype in ("float32", "bfloat16")}
  for (_, dtype), record in records.items():
    ran = set(record["runs"])
    # The PyTorch peers race in float32 only.
    assert ran == set(optimizers if dtype == "float32" else optimizers[:2])
    for run in record["runs"].values():
      assert len(run["times"]) == 2  # --tiny: 2 rounds of 2 timed steps
      assert all(len(t) == 2 for t in run["times"])
      assert run["summary"]["median_ms"] > 0
  # The ideal traffic of AdaBound: 28 bytes per float32 parameter, 14 in bf16.
  adabound = records[("GPT-2 small", "float32")]["runs"]["adabound"]
  assert adabound["summary"]["ideal_bytes_per_param"] == 28
  adabound = records[("GPT-2 small", "bfloat16")]["runs"]["adabound"]
  assert adabound["summary"]["ideal_bytes_per_param"] == 14
  targets = {(t["numerator"], t["denominator"]) for t in result["targets"]}
  assert ("adabound", "optax.adam") in targets
  assert (("adabound", "torch Adam (fused)") in targets) == HAS_PEERS


@pytest.mark.slow
def test_memory_script_runs_and_a_donated_step_allocates_nothing_param_sized(
    tmp_path):
  optimizers = ["adabound", "amsbound", "adaboundw", "optax.adam"]
  if HAS_PEERS:
    optimizers.append("authors' AMSBound")
  result = memory.main([
      "--tiny", "--workloads", "gpt2", "--dtypes", "float32",
      "--optimizers", ",".join(optimizers), "--out", str(tmp_path)])
  assert (tmp_path / "memory.json").exists()
  (tree,) = result["trees"]
  records = tree["optimizers"]
  assert set(records) == set(optimizers)
  buffers = {"adabound": 2, "amsbound": 3, "adaboundw": 2, "optax.adam": 2,
             "authors' AMSBound": 3}
  for name, record in records.items():
    assert record["param_sized_buffers"] == buffers[name], name
    assert record["state_bytes_per_param"] >= 4 * buffers[name], name
  for name in ("adabound", "amsbound", "adaboundw"):
    xla = records[name]["xla"]
    # Beyond its inputs, only a few scalars: no temporary copy of a moment.
    assert xla["extra_donated"] < 0.5 * tree["param_bytes"] / 4, name
    assert xla["temps"] < tree["param_bytes"] / 8, name
