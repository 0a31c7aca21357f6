"""The full-batch L-BFGS head: the objective Keras minimises, and its use by the train stage."""

from __future__ import annotations

import csv
import json

import keras
import mlflow
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from painter_id.core.errors import PipelineError
from painter_id.core.params import parse_section
from painter_id.model import head_fit, model_files
from testkit.images import make_resized_dataset
from testkit.project import setup_frozen as setup
from testkit.project import stage_main

# A frozen backbone without augmentation: the head is solved on the features, with this penalty.
SOLVED = {"model": {"dropout": 0.0, "l2": 0.01}}


def problem(seed: int = 0, n: int = 60, width: int = 8, classes: int = 3):
    """Overlapping Gaussian classes, imbalanced (half the rows in class 0), with balanced class weights."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    y[: n // 2] = 0
    x = (rng.normal(0, 1, (classes, width))[y] + rng.normal(0, 1.5, (n, width))).astype(np.float32)
    weights = compute_class_weight("balanced", classes=np.arange(classes), y=y)
    return x, y, weights[y]


def test_gradient_matches_finite_differences():
    x, y, w = problem(n=20, width=4)
    rng = np.random.default_rng(1)
    kernel, bias = rng.normal(0, 0.5, (4, 3)), rng.normal(0, 0.5, 3)
    _, d_kernel, d_bias = head_fit.objective(kernel, bias, x.astype(float), y, w, 0.05)
    eps = 1e-6
    for i, j in [(0, 0), (3, 2), (1, 1)]:
        step = np.zeros_like(kernel)
        step[i, j] = eps
        up = head_fit.objective(kernel + step, bias, x.astype(float), y, w, 0.05)[0]
        down = head_fit.objective(kernel - step, bias, x.astype(float), y, w, 0.05)[0]
        assert d_kernel[i, j] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)
    shift = np.array([eps, 0, 0])
    up = head_fit.objective(kernel, bias + shift, x.astype(float), y, w, 0.05)[0]
    down = head_fit.objective(kernel, bias - shift, x.astype(float), y, w, 0.05)[0]
    assert d_bias[0] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_solver_finds_what_a_long_keras_fit_converges_to():
    """Same predictions as Keras fitting the same layer (class weights, L2) for 1500 full-batch Adam steps.

    Tolerance: 1e-3 on every probability and 1e-5 on the objective (measured: 4e-5 and 1e-9).
    """
    x, y, w = problem()
    l2 = 0.01
    solution = head_fit.solve(x, y, 3, l2, w)
    assert solution.converged and len(solution.losses) == solution.iterations

    keras.utils.set_random_seed(0)
    inputs = keras.Input((x.shape[1],))
    dense = keras.layers.Dense(3, activation="softmax", kernel_regularizer=keras.regularizers.L2(l2))
    model = keras.Model(inputs, dense(inputs))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", steps_per_execution=100)
    # The rows repeated, one full batch per step and no shuffle: 1500 steps of full-batch Adam in one epoch.
    steps = 1500
    class_weight = {int(c): float(w[y == c][0]) for c in np.unique(y)}
    model.fit(np.tile(x, (steps, 1)), np.tile(y, steps), batch_size=len(x), epochs=1, shuffle=False,
              class_weight=class_weight, verbose=0)

    np.testing.assert_allclose(head_fit.predict(solution.kernel, solution.bias, x), model.predict(x, verbose=0),
                               atol=1e-3)
    kernel, bias = (v.astype(np.float64) for v in dense.get_weights())
    keras_loss = head_fit.objective(kernel, bias, x.astype(float), y, w, l2)[0]
    assert solution.losses[-1] == pytest.approx(keras_loss, abs=1e-5)
    # Not a trivial optimum: the penalty matters (a 10x larger one gives other predictions).
    stronger = head_fit.solve(x, y, 3, 10 * l2, w)
    assert np.abs(head_fit.predict(stronger.kernel, stronger.bias, x)
                  - head_fit.predict(solution.kernel, solution.bias, x)).max() > 0.01


def test_train_stage_saves_the_solved_head_and_records_its_iterations(tmp_path, monkeypatch, mobilenet_weights):
    make_resized_dataset(tmp_path)
    # ImageNet weights: a random MobileNet's pooled features are ~1e-17, nothing to fit.
    setup(tmp_path, monkeypatch, {"model": {**SOLVED["model"], "weights": "file", "weights_file": str(mobilenet_weights)},
                                  "train": {"validation_split": 0.3}})
    stage_main("features", "train")

    features = np.load(tmp_path / "data" / "features" / "train.npy")
    kernel, bias, _ = model_files.read_head(tmp_path / "models" / "head.npz")
    model = model_files.load_model(tmp_path / "models")
    # The pixels through the assembled model give the solved head's probabilities of the features.
    pixels = np.load(tmp_path / "data" / "resized" / "train.npy")
    np.testing.assert_allclose(model.predict(pixels, verbose=0), head_fit.predict(kernel, bias, features), atol=1e-4)
    summary = json.loads((tmp_path / "metrics" / "train.json").read_text())
    with open(tmp_path / "metrics" / "history.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["iterations"] > 1
    losses = [float(row["loss"]) for row in rows]
    assert losses == sorted(losses, reverse=True)  # L-BFGS' line search never goes uphill
    assert 0 <= float(rows[-1]["val_accuracy"]) <= 1 and summary["best_val_loss"] == pytest.approx(
        float(rows[-1]["val_loss"]))
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs(["1"])[0]
    assert run.data.params["model.trainable_params"] == str(kernel.size + bias.size)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == list(range(1, len(rows) + 1))


def test_a_zero_penalty_warns_and_stops_at_the_cap(caplog):
    x = np.array([[0.0], [1.0]] * 5)  # separable: without a penalty the weights grow for ever
    y = np.array([0, 1] * 5)
    solution, rows = head_fit.fit_head(x, y, (np.arange(10), np.array([], int)), 2, 0.0, "none")
    assert "model.l2 is 0" in caplog.text and len(rows) == solution.iterations
    assert all(np.isnan(row["val_loss"]) for row in rows)


@pytest.mark.parametrize("key, value, message", [
    ("head_solver", "lbfgs", "train.head_solver was removed: a head on frozen features is always solved exactly"),
    ("cv_folds", 1, "train.cv_folds is 1; use 0 (no cross-validation) or 2 or more folds"),
    ("cv_folds", -3, "train.cv_folds is -3; use 0"),
])
def test_solver_and_fold_params_are_validated(key, value, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_section("train", {key: value})


def test_solution_weights_fit_the_head_layer_shapes():
    x, y, w = problem(width=5, classes=4)
    solution = head_fit.solve(x, y, 4, 0.1, w)
    assert solution.kernel.shape == (5, 4) and solution.bias.shape == (4,)
    assert solution.kernel.dtype == np.float32 and abs(float(solution.bias.sum())) < 1e-5
