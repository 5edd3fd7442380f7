"""The study's experiments run at a tiny size, and their outcomes hold.

Each experiment runs as ``python -m benchmarks.study`` runs it, at sizes that
take seconds; the full study lives in benchmarks/, not here.
"""

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks._common import baselines
from benchmarks._common import datasets
from benchmarks.study import __main__ as study
from benchmarks.study import _models
from benchmarks.study import bounds
from benchmarks.study import final_lr
from benchmarks.study import paths
from benchmarks.study import robustness
from benchmarks.study import training
import optax_bound


def _json(path):
  return json.loads(path.read_text())


@pytest.mark.slow
def test_counterexample_adam_ends_at_worst_point_and_amsbound_at_optimum(tmp_path):
  tables = study.main(["--only", "counterexample", "--out", str(tmp_path)])
  assert "AMSBound" in tables["counterexample"]
  assert (tmp_path / "counterexample.png").stat().st_size > 10_000
  settled = _json(tmp_path / "counterexample.json")["mean_x_last_10pct"]
  for problem in ("theorem1", "section5"):
    # Adam settles at the worst point x = +1 ...
    assert settled[f"{problem}/Adam"] > 0.99
    # ... the bounded methods and AMSGrad near the optimum x = -1.
    assert settled[f"{problem}/AMSBound"] < -0.95
    assert settled[f"{problem}/AdaBound"] < -0.95
    assert settled[f"{problem}/AMSGrad"] < -0.95


@pytest.mark.slow
def test_paths_sgd_and_adam_reach_the_quadratic_minimum(tmp_path):
  table = paths.run(paths.Settings(steps=40), 1, tmp_path)
  assert "Rosenbrock".lower() in table
  runs = _json(tmp_path / "paths.json")["runs"]
  # From f = 5725: SGD at lr 0.1 shrinks f by 0.8**2 a step.
  assert runs["quadratic/SGD"]["final_f"] == pytest.approx(
      5725 * 0.64**40, rel=1e-3)
  # Adam at lr 1 moves about 1 per step: 40 steps from x = -75 are not enough.
  assert 100 < runs["quadratic/Adam"]["final_f"] < 5725
  assert runs["quadratic/AdaBound"]["lr"] == 1.0
  for name in ("quadratic", "rosenbrock", "beale"):
    assert (tmp_path / f"paths_{name}.png").exists()


@pytest.mark.slow
def test_bounds_adabound_step_sizes_lie_in_the_band_and_adams_do_not(tmp_path):
  bounds.run(bounds.Settings(steps=50), 1, tmp_path)
  result = _json(tmp_path / "bounds.json")
  lower, upper = np.array(result["lower"]), np.array(result["upper"])
  # The band read from the state by bound_stats is the reference band of
  # each step t, its final_lr following the lr schedule (lr / 10 at 75%).
  t = np.arange(1, 51)
  final_lr = bounds.FINAL_LR * np.where(
      t - 1 < int(training.DECAY_AT * 50), 1.0, 0.1)
  reference = optax_bound.reference_bounds(
      jnp.asarray(t, jnp.float32), jnp.asarray(final_lr, jnp.float32),
      result["gamma"])
  np.testing.assert_allclose(lower, reference[0], rtol=1e-6)
  np.testing.assert_allclose(upper, reference[1], rtol=1e-6)
  for name in ("AdaBound", "AMSBound"):
    q = np.array(result["runs"][name]["quantiles"])
    assert np.all(q[:, 0] >= lower * (1 - 1e-4))
    assert np.all(q[:, -1] <= upper * (1 + 1e-4))
    assert np.array(result["runs"][name]["at_upper"]).max() > 0.2
  adam = np.array(result["runs"]["Adam (gamma = 0)"]["quantiles"])
  assert np.any(adam[:, -1] > 2 * upper)
  assert (tmp_path / "bounds.png").exists()


@pytest.mark.slow
def test_training_trains_every_setup_kind(tmp_path):
  settings = training.Settings(
      {"digits MLP, badly scaled": 40, "MNIST-1D CNN": 20},
      ("AdaBound",), grid=1, n_evals=2)
  tables = training.run(settings, 2, tmp_path)
  assert "AdaBound" in tables and "MNIST-1D CNN" in tables
  results = _json(tmp_path / "training.json")["results"]
  for setup, min_acc in (("digits MLP, badly scaled", 0.6), ("MNIST-1D CNN", 0.15)):
    run = results[setup]["optimizers"]["AdaBound"]
    loss = np.array(run["train_loss"])  # [seeds, points]
    acc = np.array(run["test_acc"])
    assert loss.shape == acc.shape == (2, 3)
    assert np.all(loss[:, -1] < loss[:, 0])
    assert np.all(acc[:, -1] > min_acc)  # 10 classes: chance is 0.1.
  for png in ("training_digits_mlp_badly_scaled.png",
              "training_mnist1d_cnn.png", "training_summary.png"):
    assert (tmp_path / png).exists()


def test_tuning_picks_the_best_validation_accuracy_and_never_a_nan():
  grid = training.lr_grid(1e-3, 7)
  np.testing.assert_allclose(grid[[0, 3, 6]], [10**-4.5, 1e-3, 10**-1.5])

  class Curves:
    eval_acc = np.array([0.9, 0.95, 0.95, 0.99])[:, None, None]
    eval_loss = np.array([0.3, 0.2, 0.1, np.nan])[:, None, None]

  assert training.best_index(Curves) == 2


@pytest.mark.slow
def test_robustness_sweeps_the_grid(tmp_path):
  settings = robustness.Settings(("digits MLP",), 20, (0.1, 1.0),
                                       (1e-3, 1.0), 2)
  table = robustness.run(settings, 1, tmp_path)
  assert "gamma 0.001" in table
  result = _json(tmp_path / "robustness.json")["results"]["digits MLP"]
  grid = np.array(result["AdaBound"]["grid_final_lr_by_gamma"])
  assert grid.shape == (2, 2)
  assert np.all((grid > 0.1) & (grid <= 1.0))
  assert len(result["SGDM"]["test_acc"]) == 2
  assert (tmp_path / "robustness.png").exists()


def test_data_splits_are_disjoint_and_fixed():
  a, b = datasets.digits("flat"), datasets.digits("badly_scaled")
  assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
  np.testing.assert_array_equal(a.y_test, b.y_test)
  ratio = b.x_train.std(0) / np.maximum(a.x_train.std(0), 1e-6)
  live = a.x_train.std(0) > 0.1
  assert ratio[live].max() / ratio[live].min() > 100
  assert _models.n_params(_models.mlp(64, (128, 128))) == 26_122


def test_digits_without_validation_train_on_it_and_keep_the_test_split():
  # The Flax training scripts tune nothing: they train on the study's
  # validation images too, and test on the study's test images.
  held, folded = datasets.digits("image"), datasets.digits(
      "image", validation=False)
  assert (len(folded.y_train), len(folded.y_val), len(folded.y_test)) == (
      1437, 0, 360)
  np.testing.assert_array_equal(folded.x_test, held.x_test)
  np.testing.assert_array_equal(folded.y_test, held.y_test)
  np.testing.assert_array_equal(folded.x_train,
                                np.concatenate([held.x_val, held.x_train]))
  assert folded.x_train.dtype == np.float32 and folded.y_train.dtype == np.int32
  assert folded.x_train.min() == 0.0 and folded.x_train.max() == 1.0


def test_dampened_sgdm_is_optax_sgd_with_momentum_at_lr_times_one_minus_b1():
  dampened = baselines.dampened_sgdm(1.0, b1=0.9)
  pytorch_style = optax.sgd(1.0 * (1 - 0.9), momentum=0.9)
  grads = np.random.default_rng(0).standard_normal((20, 5)).astype(np.float32)
  params = jnp.zeros(5)
  states = [dampened.init(params), pytorch_style.init(params)]
  for g in grads:
    a, states[0] = dampened.update(jnp.asarray(g), states[0])
    b, states[1] = pytorch_style.update(jnp.asarray(g), states[1])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # After 20 steps the momentum is far from a single gradient: the test
  # compares two averages, not two copies of the last gradient.
  assert not np.allclose(a, -0.1 * grads[-1], rtol=0.1)


@pytest.mark.slow
def test_final_lr_compares_find_final_lr_with_a_grid(tmp_path):
  settings = final_lr.Settings({"digits MLP": 20, final_lr.QUADRATIC: 20},
                               (1e-3, 0.1), n_evals=2)
  table = final_lr.run(settings, 1, tmp_path)
  assert "find_final_lr" in table and "steepest descent" in table
  results = _json(tmp_path / "final_lr.json")["results"]
  quadratic = results[final_lr.QUADRATIC]
  # Curvatures up to 2e4: dampened SGDM at b1 = 0.9 is stable below 1.9e-3,
  # and the range test sees the loss diverge near it.
  (test,) = quadratic["range_tests"]
  assert 1.7e-3 < test["divergence_lr"] < 3e-3
  # A full-batch loss: one range test ran, not five.
  assert test["divergence_lrs"] == [test["divergence_lr"]]
  (suggested,) = quadratic["rules"]["find_final_lr"]["final_lr"]
  assert suggested == pytest.approx(test["divergence_lr"] / 6)
  # On minibatches, five; the median is the one kept.
  (mlp_test,) = results["digits MLP"]["range_tests"]
  assert len(mlp_test["divergence_lrs"]) == 5
  assert mlp_test["divergence_lr"] == sorted(mlp_test["divergence_lrs"])[2]
  # The grid's 0.1 diverges there; the suggestion does not.
  assert quadratic["grid"]["diverged"] == [0, 1]
  assert quadratic["rules"]["find_final_lr"]["never_diverged"]
  mlp = results["digits MLP"]["rules"]["find_final_lr"]
  assert len(mlp["score"]) == 1 and 0 < mlp["score"][0] <= 1
  for png in ("final_lr_range_test.png", "final_lr_grid.png"):
    assert (tmp_path / png).stat().st_size > 10_000
