"""Smoke tests of the speed and memory benchmarks, at a tiny size.

They check that each script runs end to end and writes what the README shows,
not how fast anything is: timings belong to ``python -m benchmarks.speed``.
The memory script's measures are exact, though, so two properties are held
here: the state keeps the bytes per parameter it should, and a donated step
of ours allocates nothing param-sized beyond its inputs.
"""

import importlib.util
import json

import numpy as np
import pytest

from benchmarks._common import report
from benchmarks.speed import __main__ as speed
from benchmarks.speed import _workloads
from benchmarks.speed import first_step
from benchmarks.speed import memory
from benchmarks.speed import step_time

HAS_PEERS = all(importlib.util.find_spec(name) is not None
                for name in ("torch", "adabound", "pytorch_optimizer"))


@pytest.mark.parametrize("tree, leaves, params", [
    (_workloads.resnet34(), 110, 21_282_122),
    (_workloads.gpt2(), 148, 124_439_808),
    (_workloads.deep_stack(), 1000, 24_720_000),
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


def test_a_step_time_ratio_is_the_median_of_per_round_ratios():
  # The machine is twice as fast in round 1 and slow in round 2: a round's two
  # blocks share its speed, and the quotient of the medians (2.0 / 1.0)
  # would mix the rounds.
  runs = {"a": {"rounds": [0, 1, 2], "times": [[1.0], [2.0], [8.0]]},
          "b": {"rounds": [0, 1, 2], "times": [[1.0], [1.0], [16.0]]}}
  r = step_time.ratio(runs, "a", "b")
  assert r == {"median": 1.0, "q25": 0.75, "q75": 1.5, "min": 0.5, "max": 2.0,
               "rounds": 3}
  assert report.format_ratio(r, "b") == (
      "1.000 x b (IQR 0.750-1.500, range 0.500-2.000, 3 rounds)")
  # Only the rounds both ran count.
  runs["b"] = {"rounds": [1, 2], "times": [[1.0], [16.0]]}
  assert step_time.ratio(runs, "a", "b")["rounds"] == 2


@pytest.mark.slow
def test_speed_script_runs_at_tiny_size(tmp_path):
  optimizers = ["adabound", "optax.adam"]
  if HAS_PEERS:
    optimizers.append("torch Adam (fused)")
  result = speed.main([
      "--tiny", "--only", "step_time", "--workloads", "gpt2,sweep",
      "--sizes", "1e3",
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
  # Every optimizer against its reference, with the spread over rounds.
  (vs_adam,) = [r for r in records[("GPT-2 small", "float32")]["ratios"]
                if r["numerator"] == "adabound"]
  assert vs_adam["denominator"] == "optax.adam" and vs_adam["rounds"] == 2
  assert vs_adam["min"] <= vs_adam["q25"] <= vs_adam["median"] <= vs_adam["max"]
  assert (("adabound", "torch Adam (fused)") in targets) == HAS_PEERS
  # --only step_time: no time to first step.
  assert not (tmp_path / "first_step.json").exists()


@pytest.mark.slow
def test_speed_script_races_adamod_against_adam_with_its_bytes(tmp_path):
  result = speed.main([
      "--tiny", "--only", "step_time", "--workloads", "resnet34",
      "--dtypes", "float32", "--optimizers", "adamod,optax.adam",
      "--out", str(tmp_path)])
  (record,) = json.loads((tmp_path / "speed.json").read_text())["records"]
  runs = record["runs"]
  # AdaMod reads p, g, mu, nu, s and writes p, mu, nu, s: 36 B/param.
  assert runs["adamod"]["summary"]["ideal_bytes_per_param"] == 36
  assert runs["optax.adam"]["summary"]["ideal_bytes_per_param"] == 28
  (target,) = result["targets"]
  assert (target["numerator"], target["denominator"]) == ("adamod",
                                                          "optax.adam")
  assert target["target"] == "<= 1.1" and target["rounds"] == 2
  assert target["median"] > 0 and "36 vs 28 B/param" in target["why"]


@pytest.mark.slow
def test_first_step_times_each_phase_from_empty_caches_and_the_eager_update(
    tmp_path):
  result = speed.main([
      "--tiny", "--only", "first_step", "--workloads", "resnet34",
      "--optimizers", "adamod,optax.adam", "--out", str(tmp_path)])
  assert not (tmp_path / "speed.json").exists()
  assert (tmp_path / "first_step.png").stat().st_size > 0
  saved = json.loads((tmp_path / "first_step.json").read_text())
  assert saved["machine"]["cores"] >= 1
  assert saved["rounds"] == 2  # --tiny
  (tree,) = saved["trees"]
  assert tree["label"] == "ResNet-34"
  assert set(tree["runs"]) == {"adamod", "optax.adam"}
  for run in tree["runs"].values():
    assert sorted(run["rounds"]) == [0, 1]
    for phase in first_step.PHASES:
      assert len(run[phase]) == 2 and min(run[phase]) >= 0, phase
    # Compiling takes time: a phase of 0 would be a cache hit.
    assert min(run["compile"]) > 1e-3 and min(run["lower"]) > 1e-4
    np.testing.assert_allclose(
        run["total"], np.sum([run[p] for p in first_step.PHASES], axis=0),
        rtol=1e-6)
    assert run["median_s"]["total"] == np.median(run["total"])
  ratios = {(r["numerator"], r["denominator"], r["phase"]): r
            for r in tree["ratios"]}
  for phase in (*first_step.PHASES, "total"):
    ratio = ratios["adamod", "optax.adam", phase]
    assert ratio["rounds"] == 2 and ratio["median"] > 0
  eager = saved["eager"]
  for run in eager["runs"].values():
    assert len(run["times"]) == 2
    assert all(len(t) == first_step.EAGER_CALLS for t in run["times"])
    assert run["median_ms"] > 0
  (ratio,) = eager["ratios"]
  assert (ratio["numerator"], ratio["denominator"]) == ("adamod", "optax.adam")
  assert "Eager tx.update" in first_step.table(result["first_step"])


@pytest.mark.slow
def test_memory_script_runs_and_a_donated_step_allocates_nothing_param_sized(
    tmp_path):
  optimizers = ["adabound", "amsbound", "adaboundw", "adamod", "optax.adam",
                "adabound bf16 moments", "amsbound bf16 moments"]
  if HAS_PEERS:
    optimizers.append("authors' AMSBound")
  result = memory.main([
      "--tiny", "--workloads", "gpt2", "--dtypes", "float32",
      "--optimizers", ",".join(optimizers), "--out", str(tmp_path)])
  assert (tmp_path / "memory.json").exists()
  (tree,) = result["trees"]
  records = tree["optimizers"]
  assert set(records) == set(optimizers)
  buffers = {"adabound": 2, "amsbound": 3, "adaboundw": 2, "adamod": 3,
             "optax.adam": 2, "authors' AMSBound": 3,
             # Two and three buffers of half the parameters' width.
             "adabound bf16 moments": 1, "amsbound bf16 moments": 1.5}
  for name, record in records.items():
    assert record["param_sized_buffers"] == buffers[name], name
    assert record["state_bytes_per_param"] >= 4 * buffers[name], name
    # Measured from the state's arrays: 4 bytes per float32 buffer.
    assert record["param_sized_state_bytes_per_param"] == 4 * buffers[name]
  for name in ("adabound", "amsbound", "adaboundw"):
    xla = records[name]["xla"]
    # Beyond its inputs, only a few scalars: no temporary copy of a moment.
    assert xla["extra_donated"] < 0.5 * tree["param_bytes"] / 4, name
    assert xla["temps"] < tree["param_bytes"] / 8, name


# The most param-sized temporaries a donated step keeps, in bytes per float32
# parameter. XLA:CPU fuses no loop with two param-sized outputs, so a value
# that two of them need, and that is too costly to compute twice (a
# division), is kept in memory: AdaMod's step sizes, which both the average
# and the update need (4 B). With bfloat16 moments, what XLA keeps depends on
# its version: 0 (AdaBound) and 2 (AMSBound, a copy of the old second moment)
# with jax 0.10.2, 4 and 6 with jax 0.8.0.
TEMPORARY_BYTES_PER_PARAM = {
    "adabound bf16 moments": 4, "amsbound bf16 moments": 6, "adamod": 4}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TEMPORARY_BYTES_PER_PARAM))
def test_donated_step_keeps_no_more_temporaries_than_we_know(name, tmp_path):
  result = memory.main([
      "--tiny", "--workloads", "gpt2", "--dtypes", "float32",
      "--optimizers", name, "--out", str(tmp_path)])
  (tree,) = result["trees"]
  xla = tree["optimizers"][name]["xla"]
  n_params = tree["param_bytes"] / 4
  assert xla["extra_donated"] < 0.5 * n_params
  # Within a few scalars' bytes of the known temporaries (a KiB on this tiny
  # tree), or fewer.
  assert xla["temps"] / n_params <= TEMPORARY_BYTES_PER_PARAM[name] + 0.25
