"""The evaluate stage: metrics, plots, and the MLflow run shared with training."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from painter_id.core.errors import PipelineError
from painter_id.evaluation import plots, scores
from testkit.checks import read_rows
from testkit.images import make_resized_dataset
from testkit.project import run_stage, setup_project, stage_main

# The headline and what it was scored on: results only (no counts or settings).
EVAL_KEYS = {"scored_on", "accuracy", "top5_accuracy", "balanced_accuracy", "macro_f1"}


def test_evaluate_scores_the_test_split_and_logs_into_the_training_run(tmp_path, resized_dataset, monkeypatch):
    db = setup_project(tmp_path, monkeypatch, {})
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-owl")
    stage_main("features", "train")
    stage_main("evaluate")

    metrics = json.loads(Path("metrics/eval.json").read_text())
    assert set(metrics) == EVAL_KEYS and metrics["scored_on"] == "9 test paintings"
    assert all(0 <= value <= 1 for key, value in metrics.items() if key != "scored_on")
    assert metrics["top5_accuracy"] == 1.0  # 3 artists: the true one is always among the top 5
    per_artist = read_rows(Path("metrics/per_artist.csv"))
    assert [row["artist"] for row in per_artist] == ["Ann", "Bob", "Cy"]
    assert sum(int(row["support"]) for row in per_artist) == 9
    confusion = read_rows(Path("metrics/confusion.csv"))
    assert len(confusion) == 9 and [row["actual"] for row in confusion[:3]] == ["Ann", "Bob", "Cy"]
    hits = sum(row["actual"] == row["predicted"] for row in confusion)
    assert metrics["accuracy"] == pytest.approx(hits / 9)
    for name in ("confusion.png", "misclassified.png"):
        with Image.open(Path("metrics") / name) as image:
            assert image.format == "PNG" and image.width > 300

    run_info = json.loads(Path("models/run.json").read_text())
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    run = client.get_run(run_info["run_id"])
    assert run.info.run_name == "tiny-owl" and run.info.status == "FINISHED"
    assert run.data.params["model.backbone"] == "simple_cnn" and run.data.params["model.frozen_layers"] == "0"
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.backbone_layers"] == "6"
    assert run.data.tags["dvc.exp_name"] == "tiny-owl"
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert run.data.metrics["test_accuracy"] == run.data.metrics["accuracy"] == metrics["accuracy"]
    assert run.data.tags["scored_on"] == "9 test paintings"
    [dataset] = run.inputs.dataset_inputs  # the paintings it trained on, as an MLflow dataset input
    assert json.loads(dataset.dataset.profile) == {"paintings": 33, "artists": 3, "train_rows": 24, "test_rows": 9}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"params.yaml", "confusion.png", "per_artist.csv", "misclassified.png", "eval.json"} <= artifacts
    # The model is an MLflow Model of the run (stored under the experiment), not a loose artifact.
    assert "model.keras" not in artifacts
    [logged] = client.search_logged_models([run.info.experiment_id])
    assert logged.source_run_id == run.info.run_id
    assert {m.key: m.value for m in logged.metrics}["test_accuracy"] == metrics["accuracy"]


def test_score_on_known_predictions():
    probs = np.array([
        [0.7, 0.1, 0.1, 0.05, 0.03, 0.02],  # true 0, predicted 0
        [0.6, 0.3, 0.05, 0.03, 0.01, 0.01],  # true 1, predicted 0, second guess
        [0.01, 0.02, 0.03, 0.04, 0.4, 0.5],  # true 0, ranked last: outside the top 5
        [0.1, 0.1, 0.6, 0.1, 0.05, 0.05],  # true 2, predicted 2
    ])
    y_true = np.array([0, 1, 0, 2])

    metrics = scores.score(y_true, probs)

    assert metrics["accuracy"] == 0.5 and metrics["top5_accuracy"] == 0.75 and metrics["n_test"] == 4
    # recall per class: 0 -> 1/2, 1 -> 0, 2 -> 1 (classes 3..5 have no test rows)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    rows = scores.per_artist(y_true, probs.argmax(axis=1), list("abcdef"))
    assert rows[0] == ["a", 0.5, 0.5, 0.5, 2] and rows[2] == ["c", 1.0, 1.0, 1.0, 1]


@pytest.mark.parametrize("seed", range(12))
def test_scores_are_scikit_learn_s_with_artists_missing_from_the_test_rows_or_the_predictions(seed):
    from sklearn import metrics as sk
    from sklearn.utils.class_weight import compute_class_weight

    from painter_id.model.balance import class_weights

    rng = np.random.default_rng(seed)
    n_classes, rows = int(rng.integers(2, 9)), int(rng.integers(1, 40))
    present = rng.choice(n_classes, size=int(rng.integers(1, n_classes + 1)), replace=False)
    y_true = rng.choice(present, size=rows)
    probs = rng.dirichlet(np.ones(n_classes) * 0.3, size=rows)
    y_pred = probs.argmax(axis=1)
    labels = np.arange(n_classes)

    metrics = scores.score(y_true, probs)

    assert metrics["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    with warnings.catch_warnings():  # sklearn warns when a predicted artist has no test row
        warnings.simplefilter("ignore", UserWarning)
        assert metrics["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(
        sk.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    expected = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    table = scores.per_artist(y_true, y_pred, [f"artist {c}" for c in labels])
    np.testing.assert_allclose(np.array([row[1:] for row in table]).T, np.array(expected), atol=1e-12)
    np.testing.assert_array_equal(scores.confusion(y_true, y_pred, n_classes),
                                  sk.confusion_matrix(y_true, y_pred, labels=labels))
    weights = class_weights(y_true, n_classes, "balanced")
    classes = np.unique(y_true)
    expected_weights = compute_class_weight("balanced", classes=classes, y=y_true)
    assert [weights[int(c)] for c in classes] == pytest.approx(list(expected_weights))
    assert all(weights[c] == 1.0 for c in range(n_classes) if c not in classes)


def test_confusion_figure_grows_with_the_number_of_artists(tmp_path):
    rng = np.random.default_rng(0)
    sizes = {}
    for n in (3, 30):
        y = rng.integers(0, n, 200)
        plots.plot_confusion(y, rng.integers(0, n, 200), [f"Painter number {i}" for i in range(n)],
                                tmp_path / f"c{n}.png")
        with Image.open(tmp_path / f"c{n}.png") as image:
            sizes[n] = image.size
    assert sizes[30][0] > sizes[3][0] * 1.5 and sizes[30][1] > sizes[3][1] * 1.5


def test_gallery_with_nothing_misclassified_says_so(tmp_path):
    images = np.zeros((2, 8, 8, 3), np.uint8)
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    plots.plot_misclassified(images, np.array([0, 1]), probs, ["A", "B"], 12, tmp_path / "none.png")
    plots.plot_misclassified(images, np.array([1, 0]), probs, ["A", "B"], 12, tmp_path / "two.png")
    with Image.open(tmp_path / "none.png") as none, Image.open(tmp_path / "two.png") as two:
        assert none.size != two.size and none.height < two.height


@pytest.mark.slow
def test_missing_training_run_goes_to_an_evaluation_only_run(tmp_path, resized_dataset, monkeypatch):
    db = setup_project(tmp_path, monkeypatch, {"train": {"epochs": 1}, "mlflow": {"log_model": False}})
    stage_main("features", "train")
    run_file = Path("models/run.json")
    old = json.loads(run_file.read_text())
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    assert old["model_id"] is None and not client.search_logged_models([old["experiment_id"]])
    run_file.write_text(json.dumps({**old, "run_id": "0" * 32}))

    proc = run_stage("evaluate", tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})

    assert "is not in" in proc.stderr and "evaluation-only" in proc.stderr
    runs = client.search_runs([old["experiment_id"]], "tags.evaluation_only = 'true'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["test_accuracy"] == json.loads(Path("metrics/eval.json").read_text())["accuracy"]


def test_model_for_other_image_size_is_rejected(tmp_path, monkeypatch):

    make_resized_dataset(tmp_path, size=32)
    setup_project(tmp_path, monkeypatch, {"train": {"epochs": 1}})
    stage_main("features", "train")
    make_resized_dataset(tmp_path, size=40)
    with pytest.raises(PipelineError, match="takes images of shape"):
        stage_main("evaluate")
