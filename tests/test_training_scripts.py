"""The README's Flax training scripts run end to end and report what they trained."""

import json

import pytest

from benchmarks.flax_training import linen as linen_script
from benchmarks.flax_training import nnx as nnx_script

# Each test trains a model for an epoch through a script's main().
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script,model,optimizer", [
    (nnx_script, "mlp", "amsbound"), (linen_script, "cnn", "adabound")])
def test_training_script_trains_and_saves_its_table(
    script, model, optimizer, tmp_path, capsys):
  out = tmp_path / "result.json"
  script.main(["--epochs", "1", "--models", model, "--optimizers", optimizer,
               "--out", str(out)])
  saved = json.loads(out.read_text())
  (run,) = saved["runs"]
  assert (run["model"], run["optimizer"]) == (model, optimizer)
  # One epoch (22 steps) already classifies most of the 360 test digits.
  assert run["test_accuracy"] > 0.8
  # The bound after the epoch's last step (22): lower(22) = 0.18, upper(22)
  # = 5.55 at the scripts' final_lr 1.0 and gamma 0.01.
  (bound,) = run["bound"]
  assert bound["step"] == 22
  assert bound["lower"] == pytest.approx(1 - 1 / 1.22, rel=1e-6)
  assert bound["upper"] == pytest.approx(1 + 1 / 0.22, rel=1e-6)
  assert "band [0.18, 5.55] at lower" in saved["table"]
  assert saved["table"] in capsys.readouterr().out
  assert saved["machine"]["cores"] >= 1
