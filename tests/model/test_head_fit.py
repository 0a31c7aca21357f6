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
from painter_id.core.params import Params, parse_section
from painter_id.model import feature_cache, head_fit, training
from testkit.images import make_resized_dataset
from testkit.project import setup_frozen as setup
from testkit.project import stage_main

# The feature cache's case with no dropout and an L2 penalty: train.head_solver auto picks L-BFGS.
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
    setup(tmp_path, monkeypatch, {"model": {**SOLVED["model"], "weights": str(mobilenet_weights)},
                                  "train": {"validation_split": 0.3}})
    stage_main("train")

    [cached] = sorted((tmp_path / feature_cache.CACHE_DIR).glob("*.npy"))
    features = np.load(cached)
    model = keras.models.load_model(tmp_path / "models" / "model.keras")
    kernel, bias = model.get_layer("artist").get_weights()
    # The pixels through the saved network give the solved head's probabilities of the cached features.
    pixels = np.load(tmp_path / "data" / "resized" / "train.npy")
    np.testing.assert_allclose(model.predict(pixels, verbose=0), head_fit.predict(kernel, bias, features), atol=1e-4)
    summary = json.loads((tmp_path / "metrics" / "train.json").read_text())
    with open(tmp_path / "metrics" / "history.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["epochs_run"] == summary["best_epoch"] > 1
    losses = [float(row["loss"]) for row in rows]
    assert losses == sorted(losses, reverse=True)  # L-BFGS' line search never goes uphill
    assert 0 <= float(rows[-1]["val_accuracy"]) <= 1 and summary["best_val_loss"] == pytest.approx(
        float(rows[-1]["val_loss"]))
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(["1"])[0]
    assert run.data.params["train.head_solver_used"] == "lbfgs"
    assert run.data.params["train.feature_cache_used"] == "miss"
    history = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1, len(rows) + 1))


@pytest.mark.parametrize("model, solver, expected", [
    ({"dropout": 0.0, "l2": 0.01}, "auto", "lbfgs"),
    ({"dropout": 0.0, "l2": 0.0}, "auto", "minibatch"),  # no unique optimum: keep what the epochs do
    ({"dropout": 0.3, "l2": 0.01}, "auto", "minibatch"),
    ({"dropout": 0.0, "l2": 0.0}, "lbfgs", "lbfgs"),
    ({"dropout": 0.0, "l2": 0.01}, "minibatch", "minibatch"),
])
def test_auto_picks_lbfgs_only_where_it_is_exact(model, solver, expected):
    params = Params(model=parse_section("model", model), train=parse_section("train", {"head_solver": solver}))
    assert training.head_solver(params, "hit") == expected
    if solver == "auto":  # the backbone trains (or augmentation is on): the epochs, always
        assert training.head_solver(params, "off") == "minibatch"


@pytest.mark.parametrize("model, cache, message", [
    ({"dropout": 0.3}, "hit", "train.head_solver is lbfgs but model.dropout is 0.3; "),
    ({"dropout": 0.0}, "off", "train.head_solver is lbfgs but the feature cache is not used"),
])
def test_lbfgs_where_it_cannot_run_is_one_line(model, cache, message):
    params = Params(model=parse_section("model", model), train=parse_section("train", {"head_solver": "lbfgs"}))
    with pytest.raises(PipelineError, match=message) as info:
        training.head_solver(params, cache)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key, value, message", [
    ("head_solver", "newton", "train.head_solver is 'newton'; use one of auto, lbfgs, minibatch"),
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
