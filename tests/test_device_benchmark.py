"""The GPU run (``python -m benchmarks.speed.device``), end to end on the CPU.

A GPU is at hand rarely and briefly, so the command must not fail there on a
typo: here it runs at a tiny size, and what it writes is checked, not how fast
anything is. The PyTorch peers race where torch is installed (on the CPU
here), and are skipped with their reason where it is not.
"""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks.speed import _workloads
from benchmarks.speed import device
from benchmarks.speed import step_time

ROOT = pathlib.Path(__file__).parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_ADABOUND = HAS_TORCH and importlib.util.find_spec("adabound") is not None
CPU_ONLY = {"tests/test_sharding.py", "tests/test_multihost.py",
            "tests/test_checkpointing.py"}


def _positive(x) -> bool:
  return isinstance(x, float) and math.isfinite(x) and x > 0


def _ratios(saved) -> dict[tuple[str, str, str, str], dict]:
  return {(r["workload"], r["dtype"], r["numerator"], r["denominator"]): r
          for r in saved["stages"]["step_time"]["ratios"]}


def test_device_run_writes_every_stage_at_the_smallest_size(tmp_path,
                                                            monkeypatch):
  # As on a machine without torch and adabound: their peers are skipped, with
  # the reason, and the rest runs. (The slow test races them where torch is
  # installed: its first optimizer costs seconds of imports.)
  monkeypatch.setitem(sys.modules, "torch", None)
  monkeypatch.setitem(sys.modules, "adabound", None)
  optimizers = ["adabound", "optax.adam", "torch Adam (fused)",
                "authors' AdaBound"]
  result = device.main([
      "--tiny", "--out", str(tmp_path), "--workloads", "gpt2,sweep",
      "--sizes", "1e4", "--dtypes", "float32", "--optimizers",
      ",".join(optimizers), "--first-step-workloads", "gpt2"])
  saved = json.loads((tmp_path / "device.json").read_text())
  assert saved["stages"].keys() == result["stages"].keys() == set(
      device.STAGES)
  for name, stage in saved["stages"].items():
    assert stage["status"] == "done" and stage["seconds"] > 0, name
  env = saved["environment"]
  assert env["backend"] == "cpu" and env["versions"]["jax"] == jax.__version__
  assert env["driver"] and env["versions"]["optax_bound"]
  assert env["torch_device"] is None and saved["machine"]["date"]
  assert (tmp_path / "device.png").stat().st_size > 0
  skipped = {s["what"]: s["reason"] for s in saved["skipped"]}
  assert "torch is not importable" in skipped["torch Adam (fused)"]
  assert "adabound is not importable" in skipped["authors' AdaBound"]
  assert len(skipped) == 2  # Nothing else was skipped.

  tests = saved["stages"]["tests"]
  assert tests["counts"]["passed"] == 2 and tests["ran"] == 2
  assert tests["returncode"] == 0 and not tests["timed_out"]
  assert tests["failures"] == [] and "2 passed" in tests["summary"]
  assert CPU_ONLY <= {c["file"] for c in tests["cpu_only"]}
  assert "PASSED" in (tmp_path / "device_tests.log").read_text()

  copy = saved["stages"]["copy"]["result"]
  assert copy["bytes_per_call"] == 2 * 4 * 10**5
  assert _positive(copy["gb_per_s"])
  assert copy["gb_per_s_min"] <= copy["gb_per_s"] <= copy["gb_per_s_max"]

  step = saved["stages"]["step_time"]
  records = {r["label"]: r for r in step["records"]}
  assert set(records) == {"GPT-2 small", "buffer 1e+04"}
  for record in records.values():
    assert set(record["runs"]) == {"adabound", "optax.adam"}
    for run in record["runs"].values():
      assert len(run["times"]) == 2 and "error" not in run
      assert _positive(run["summary"]["median_ms"])
      assert _positive(run["summary"]["fraction_of_copy"])
  ratios = _ratios(saved)
  for label in records:
    ours = ratios[label, "float32", "adabound", "optax.adam"]
    assert _positive(ours["median"]) and ours["rounds"] == 2
    assert ours["min"] <= ours["q25"] <= ours["median"] <= ours["q75"] <= (
        ours["max"])
    fused = ratios[label, "float32", "adabound", "torch Adam (fused)"]
    assert "median" not in fused and "not importable" in fused["missing"]
  authors = ratios["GPT-2 small", "float32", "authors' AdaBound", "adabound"]
  assert "adabound is not importable" in authors["missing"]
  targets = {(t["workload"], t["numerator"], t["denominator"])
             for t in step["targets"]}
  assert targets == {("GPT-2 small", "adabound", "optax.adam")}
  (bandwidth,) = step["bandwidth_targets"]  # --tiny: from 1e4 parameters
  assert bandwidth["optimizer"] == "adabound"
  assert _positive(bandwidth["fraction_of_copy"])

  (tree,) = saved["stages"]["first_step"]["result"]["trees"]
  assert tree["label"] == "GPT-2 small"
  assert set(tree["runs"]) == {"adabound", "optax.adam"}
  assert all(_positive(run["median_s"]["total"])
             for run in tree["runs"].values())


@pytest.mark.slow  # a second in-process run; the first stays in the fast loop
def test_a_spent_budget_skips_each_stage_with_its_reason(tmp_path):
  result = device.main(["--tiny", "--out", str(tmp_path), "--stages",
                        "tests,copy", "--max-seconds", "0"])
  stages = json.loads((tmp_path / "device.json").read_text())["stages"]
  assert stages == result["stages"]
  for name in ("tests", "copy"):
    assert stages[name]["status"] == "skipped"
    assert "--max-seconds 0" in stages[name]["reason"]
  for name in ("step_time", "first_step"):
    assert stages[name] == {"status": "skipped",
                            "reason": "not chosen (--stages)"}
  assert {s["what"] for s in result["skipped"]} >= {
      f"stage {name}" for name in device.STAGES}
  assert (tmp_path / "device.png").stat().st_size > 0
  assert not (tmp_path / "device_tests.log").exists()


def test_help_lists_the_budget_and_the_tiny_mode(capsys):
  with pytest.raises(SystemExit) as exit_:
    device.main(["--help"])
  assert exit_.value.code == 0
  text = capsys.readouterr().out
  assert "--max-seconds" in text and "--tiny" in text and "--out" in text


def test_unknown_names_are_refused_before_anything_runs(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_:
    device.main(["--out", str(tmp_path), "--optimizers", "adabound,adamm"])
  assert exit_.value.code == 2
  assert "adamm" in capsys.readouterr().err
  assert not (tmp_path / "device.json").exists()


def test_cpu_only_test_files_are_found_by_reading_tests():
  found = {c["file"]: c["reasons"] for c in device.cpu_only_tests()}
  assert CPU_ONLY <= set(found)
  assert all(found.values())
  assert not set(device.DEVICE_TESTS) & set(found)
  assert all((ROOT / f).exists() for f in device.DEVICE_TESTS)


def test_pytest_outcomes_and_failure_reasons_are_read_from_its_output(
    tmp_path):
  (tmp_path / "test_sample.py").write_text(
      "import pytest\n\n"
      "def test_ok():\n  pass\n\n"
      "def test_wrong():\n  assert 1 == 2, 'one is not two'\n\n"
      "@pytest.mark.skip(reason='not here')\n"
      "def test_skipped():\n  pass\n")
  out = subprocess.run(
      [sys.executable, "-m", "pytest", "test_sample.py", "-v", "-rfE",
       "-p", "no:cacheprovider"], cwd=tmp_path, capture_output=True,
      text=True, timeout=120).stdout
  parsed = device.parse_pytest(out)
  assert parsed["counts"] == {"passed": 1, "failed": 1, "error": 0,
                              "skipped": 1, "xfail": 0, "xpass": 0}
  (failure,) = parsed["failures"]
  assert failure["test"] == "test_sample.py::test_wrong"
  assert "one is not two" in failure["reason"]
  assert "1 failed, 1 passed, 1 skipped" in parsed["summary"]
  # Cut short (killed at the timeout): what ran is still counted.
  cut = device.parse_pytest(out.split("test_skipped")[0])
  assert cut["counts"]["passed"] == 1 and cut["summary"] is None


def test_tests_cut_at_their_timeout_say_so(tmp_path):
  tests = device.run_tests(device.TINY.tests, timeout=0.2,
                           log=tmp_path / "log")
  assert tests["timed_out"] and tests["returncode"] is None
  assert tests["files"] == list(device.TINY.tests)


def test_missing_torch_and_adabound_are_skipped_with_reasons(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)
  monkeypatch.setitem(sys.modules, "adabound", None)
  peers, torch_device, skipped = device.torch_lineup("gpu")
  assert peers == {} and torch_device is None
  assert set(skipped) == set(device.TORCH_PEERS)
  assert "torch is not importable" in skipped["torch Adam (fused)"]
  assert "adabound is not importable" in skipped["authors' AdaBound"]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_races_on_the_cpu_and_not_against_a_gpu_without_cuda(
    monkeypatch):
  monkeypatch.setitem(sys.modules, "adabound", None)
  peers, torch_device, skipped = device.torch_lineup("cpu")
  assert torch_device == "cpu"
  assert set(peers) == {"torch Adam (fused)", "torch Adam (foreach)"}
  assert "adabound" in skipped["authors' AdaBound"]
  import torch

  if not torch.cuda.is_available():
    peers, torch_device, skipped = device.torch_lineup("gpu")
    assert peers == {} and torch_device is None
    assert "has no CUDA device" in skipped["torch Adam (fused)"]


def test_the_driver_is_read_from_nvidia_smi_or_unknown(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))
  assert device.nvidia_smi()["driver"] == "unknown"
  fake = tmp_path / "nvidia-smi"
  fake.write_text("#!/bin/sh\necho 'NVIDIA H200, 580.159.04, 143771 MiB'\n")
  fake.chmod(0o755)
  assert device.nvidia_smi() == {
      "driver": "580.159.04",
      "nvidia_smi": "NVIDIA H200, 580.159.04, 143771 MiB"}


def test_device_draws_have_the_trees_shapes_dtypes_and_scales():
  tree = _workloads.gpt2(d_model=16, n_layer=1, vocab=64, n_ctx=16)
  params, grads = _workloads.device_params_and_grads(tree, "bfloat16")
  for drawn, scale in ((params, _workloads.PARAM_SCALE),
                       (grads, _workloads.GRAD_SCALE)):
    leaves = jax.tree.leaves(drawn)
    assert [x.shape for x in leaves] == _workloads.leaf_shapes(tree)
    assert all(x.dtype == "bfloat16" for x in leaves)
    flat = np.concatenate([np.ravel(np.asarray(x, np.float32))
                           for x in leaves])
    assert np.all(flat != 0)
    np.testing.assert_allclose(flat.std(), scale, rtol=0.05)
  # The two leaves of one shape are drawn apart, not alike.
  block = params["h"]["0"]
  assert not np.array_equal(block["ln_1"]["scale"], block["ln_2"]["scale"])


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_leaves_keep_the_values_dtype_and_gradients():
  import torch

  tree = _workloads.single_buffer(5)
  params, grads = _workloads.params_and_grads(tree, "bfloat16")
  (leaf,) = step_time.torch_params(params, grads, "cpu")
  assert leaf.dtype == leaf.grad.dtype == torch.bfloat16
  np.testing.assert_array_equal(leaf.detach().float().numpy(),
                                np.asarray(params["w"], np.float32))
  np.testing.assert_array_equal(leaf.grad.float().numpy(),
                                np.asarray(grads["w"], np.float32))
  leaf.data.zero_()  # A copy: JAX's buffer keeps its values.
  assert np.all(np.asarray(params["w"], np.float32) != 0)


class _Progress:
  def update(self):
    pass


def test_an_optimizer_that_raises_is_recorded_and_the_others_go_on():
  calls = []

  def fine():
    return step_time.Block(lambda: calls.append(1), lambda: 8)

  def broken():
    raise MemoryError("out of device memory")

  settings = step_time.TINY
  runs = step_time._time_blocks({"fine": fine, "broken": broken}, settings,
                                _Progress())
  assert runs["broken"]["error"] == "MemoryError: out of device memory"
  assert runs["broken"]["rounds"] == []
  assert runs["fine"]["rounds"] == list(range(settings.repeats))
  assert len(calls) == settings.repeats * (1 + settings.steps)
  stopped = step_time._time_blocks({"fine": fine}, settings, _Progress(),
                                   deadline=0.0)
  assert stopped["fine"]["rounds"] == []
  assert "time budget spent" in stopped["fine"]["stopped"]


@pytest.mark.slow  # 1-2 minutes on 2 cores: every optimizer, both dtypes
def test_device_command_runs_end_to_end_at_tiny_size(tmp_path):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  done = subprocess.run(
      [sys.executable, "-m", "benchmarks.speed.device", "--help"], cwd=ROOT,
      capture_output=True, text=True, timeout=120, env=env)
  assert done.returncode == 0 and "--max-seconds" in done.stdout
  done = subprocess.run(
      [sys.executable, "-m", "benchmarks.speed.device", "--tiny", "--out",
       str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  for k, name in enumerate(device.STAGES, 1):
    assert f"[{k}/4] {name}: " in done.stdout
  assert "Step-time ratios" in done.stdout and "Written:" in done.stdout
  saved = json.loads((tmp_path / "device.json").read_text())
  assert all(s["status"] == "done" for s in saved["stages"].values())
  assert saved["seconds"] < device.TINY.max_seconds
  assert (tmp_path / "device.png").stat().st_size > 0
  records = saved["stages"]["step_time"]["records"]
  assert {(r["label"], r["dtype"]) for r in records} == {
      (label, dtype) for label in ("GPT-2 small", "buffer 1e+03",
                                   "buffer 1e+04")
      for dtype in ("float32", "bfloat16")}
  for record in records:
    for name, run in record["runs"].items():
      assert "error" not in run, (record["label"], name, run.get("error"))
      assert _positive(run["summary"]["fraction_of_copy"])
  ratios = _ratios(saved)
  for label in ("GPT-2 small", "buffer 1e+04"):
    for dtype in ("float32", "bfloat16"):
      pool = (device.SWEEP_OPTIMIZERS if label.startswith("buffer")
              else device.TREE_OPTIMIZERS)
      for numerator, denominator in device.RATIOS:
        if not {numerator, denominator} <= set(pool):
          assert (label, dtype, numerator, denominator) not in ratios
          continue
        r = ratios[label, dtype, numerator, denominator]
        torch_side = {numerator, denominator} & set(device.TORCH_PEERS)
        absent = (not HAS_TORCH if torch_side - {"authors' AdaBound"}
                  else not HAS_ADABOUND if torch_side else False)
        if absent:
          assert "missing" in r and "not importable" in r["missing"]
        else:
          assert _positive(r["median"]), (label, dtype, numerator)
  skipped = {s["what"]: s["reason"] for s in saved["skipped"]}
  assert ("authors' AdaBound" in skipped) == (not HAS_ADABOUND)
  (tree,) = saved["stages"]["first_step"]["result"]["trees"]
  assert set(tree["runs"]) == set(device.first_step.OPTIMIZERS)
  assert {r["numerator"] for r in tree["ratios"]} == set(
      step_time.OPTAX_COUNTERPART)
