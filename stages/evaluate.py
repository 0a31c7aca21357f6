"""Stage ``evaluate``: score the trained model on the held-out test split.

Reads ``models/model.keras``, ``models/labels.json``, ``models/run.json``,
``data/resized/test.{npy,csv}`` and ``params.yaml:evaluate,mlflow`` (``evaluate.tta``
averages the predictions over flipped and zoomed views, see :mod:`painter_id.tta`; with a
frozen backbone, ``evaluate.feature_cache: auto`` computes the test split's backbone features
once per network and reuses them, as train does, so a sweep over head params runs only the
head here); writes
``metrics/eval.json``, ``metrics/per_artist.csv``, ``metrics/confusion.csv``,
``metrics/confusion.png`` and ``metrics/misclassified.png``, and logs the metrics and
pictures into the MLflow run of the training. Also reads ``metrics/cv.json``: with
``train.cv_folds`` on, ``eval.json`` carries the cross-validated figures beside the test
ones, and with ``split.test_size: 0`` (no test split: the model trained on every painting)
they are its only figures, and ``scored_on`` says so.
"""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # noqa: E402

from painter_id import model_files, resized, tracking  # noqa: E402
from painter_id.atomic import atomic_file, ensure_writable_dir, write_csv, write_json  # noqa: E402
from painter_id.crossval import score  # noqa: E402,F401  (evaluate.score: the test metrics)
from painter_id.inputs import read_json  # noqa: E402
from painter_id.errors import PipelineError  # noqa: E402
from painter_id.params import EvaluateParams, load_section  # noqa: E402
from painter_id.runner import run_stage  # noqa: E402

log = logging.getLogger(__name__)

EVAL = Path("metrics/eval.json")
PER_ARTIST = Path("metrics/per_artist.csv")
CONFUSION_CSV = Path("metrics/confusion.csv")
CONFUSION_PNG = Path("metrics/confusion.png")
MISCLASSIFIED_PNG = Path("metrics/misclassified.png")
CV_FILE = Path("metrics/cv.json")  # train's k-fold summary
ANNOTATE_MAX = 20  # beyond this many artists, numbers in the cells become unreadable


def per_artist(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> list[list]:
    """Rows ``artist, precision, recall, f1, support`` of ``metrics/per_artist.csv``."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(labels)), zero_division=0
    )
    return [[name, float(p), float(r), float(f), int(s)]
            for name, p, r, f, s in zip(labels, precision, recall, f1, support)]


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str], path: Path) -> None:
    """A row-normalised confusion matrix (row = actual artist), artist names on both axes."""
    n = len(labels)
    counts = confusion_matrix(y_true, y_pred, labels=np.arange(n))
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    side = max(5.0, 0.45 * n + 3.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the actual artist's paintings")
    ax.set_xticks(range(n), labels=labels, rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=max(6, 10 - n // 10))
    ax.set_yticks(range(n), labels=labels, fontsize=max(6, 10 - n // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (rows sum to 1)")
    if n <= ANNOTATE_MAX:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    _save(fig, path)


def plot_misclassified(images: np.ndarray, y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                       limit: int, path: Path) -> None:
    """A gallery of up to ``limit`` wrong predictions, the most confident first, with the top 3 guesses."""
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]], kind="stable")][:limit]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        reason = "evaluate.misclassified is 0" if limit == 0 else "every test painting was attributed correctly"
        ax.text(0.5, 0.5, f"No misclassified paintings to show:\n{reason}", ha="center", va="center", fontsize=12)
        _save(fig, path)
        return
    cols = min(4, len(wrong))
    rows = math.ceil(len(wrong) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(np.asarray(images[i]))
        top3 = np.argsort(-probs[i])[:3]
        guesses = "\n".join(f"{k + 1}. {_short(labels[c])} {probs[i, c]:.2f}" for k, c in enumerate(top3))
        ax.set_title(f"actual: {_short(labels[y_true[i]])}\n{guesses}", fontsize=8, loc="left")
    fig.suptitle("Misclassified test paintings (most confident first)")
    fig.tight_layout()
    _save(fig, path)


def _short(name: str) -> str:
    return textwrap.shorten(name, width=28, placeholder="...")


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def log_to_mlflow(uri: str, experiment_id: str, run: dict, metrics: dict, artifacts: list[Path]) -> None:
    """Add the test metrics (already named ``test_*``/``cv_*``) and pictures to the training's run.

    If that run is gone (the store was deleted or replaced), a new run tagged
    ``evaluation_only`` takes them, with a warning, so the numbers are never lost.
    """
    client = mlflow.MlflowClient(uri)
    run_id = run["run_id"]
    if run.get("tracking_uri") and run["tracking_uri"] != uri:
        log.warning("models/run.json names store %s, logging into %s", run["tracking_uri"], uri)
    if tracking.find_run(client, run_id):
        # Linked to the run's MLflow Model too (MLflow 3): its page and the registry show them.
        tracking.log_metrics(client, run_id, metrics, model_id=run.get("model_id"))
        tracking.log_artifacts(client, run_id, artifacts)
        log.info("MLflow: test metrics logged into run %s", run_id)
        return
    log.warning("MLflow run %s of models/run.json is not in %s; logging into a new evaluation-only run",
                run_id, uri)
    tags = {**tracking.run_tags(), "evaluation_only": "true", "training_run_id": run_id}
    with tracking.start_run(client, experiment_id, f"evaluate-{run_id[:8]}", tags) as new_id:
        tracking.log_metrics(client, new_id, metrics)
        tracking.log_artifacts(client, new_id, artifacts)


def read_cv() -> dict:
    """``metrics/cv.json`` as train wrote it (``{"folds": 0}`` without cross-validation)."""
    cv = read_json(CV_FILE, "run `dvc repro train` to write it")
    if not isinstance(cv, dict) or not isinstance(cv.get("folds"), int):
        raise PipelineError(f"{CV_FILE}: not a cross-validation summary; run `dvc repro train` to write it again")
    return cv


def cv_only_metrics(cv: dict) -> dict:
    """``eval.json`` without a test split: the cross-validated means as the figures, said so in ``scored_on``."""
    if not cv["folds"]:
        raise PipelineError("data/resized/test.csv has no paintings (split.test_size is 0) and train.cv_folds is 0: "
                            "nothing scores the model; set train.cv_folds to 5, or split.test_size above 0")
    means = {key[:-len("_mean")]: value for key, value in cv.items() if key.endswith("_mean")}
    return {"scored_on": f"{cv['folds']}-fold cross-validation over {cv['paintings']} paintings",
            **means, "n_test": 0, "cv": cv}


def write_no_test_outputs(metrics: dict) -> None:
    """The per-artist table, confusion matrix and gallery of a model without a test split: empty, saying why."""
    write_csv(PER_ARTIST, ["artist", "precision", "recall", "f1", "support"], [])
    write_csv(CONFUSION_CSV, ["actual", "predicted"], [])
    for path in (CONFUSION_PNG, MISCLASSIFIED_PNG):
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"No test split (split.test_size is 0):\nscored by {metrics['scored_on']}",
                ha="center", va="center", fontsize=11)
        _save(fig, path)


def score_test_split(params: EvaluateParams, test: resized.Split, labels: list[str]) -> dict:
    """Predict the test split, write the per-artist table and figures, and return its metrics."""
    # Imported here: TensorFlow starts only when there is a test split to predict (not for split.test_size 0).
    from painter_id import tta

    y_true = resized.encode(test.artists, labels, str(resized.table_path("test")))
    model = model_files.load_model()
    expected = tuple(model.input_shape[1:])
    if expected != test.images.shape[1:]:
        raise PipelineError(f"{model_files.MODEL_FILE} takes images of shape {expected} but "
                            f"{resized.array_path('test')} holds {test.images.shape[1:]}; {model_files.RETRAIN_HINT}")
    model_files.check_classes(model, labels)
    log.info("test-time augmentation: %s", params.tta)
    probs = None
    if params.feature_cache == "auto":
        sources = [resized.array_path("test"), resized.table_path("test")]
        probs = tta.cached_probs(model, test.images, params.tta, sources)
    if probs is None:
        probs = tta.predict_probs(model, test.images, params.batch_size, params.tta)
    y_pred = probs.argmax(axis=1)

    metrics = score(y_true, probs)
    log.info("test: accuracy %.3f, top-5 %.3f, balanced accuracy %.3f, macro F1 %.3f (%d paintings)",
             metrics["accuracy"], metrics["top5_accuracy"], metrics["balanced_accuracy"],
             metrics["macro_f1"], metrics["n_test"])
    write_csv(PER_ARTIST, ["artist", "precision", "recall", "f1", "support"], per_artist(y_true, y_pred, labels))
    write_csv(CONFUSION_CSV, ["actual", "predicted"], ([labels[a], labels[p]] for a, p in zip(y_true, y_pred)))
    plot_confusion(y_true, y_pred, labels, CONFUSION_PNG)
    plot_misclassified(test.images, y_true, probs, labels, params.misclassified, MISCLASSIFIED_PNG)
    return metrics


def main() -> None:
    params = load_section("evaluate")
    mlflow_params = load_section("mlflow")
    labels = model_files.read_labels()
    run = model_files.read_run()
    cv = read_cv()
    test = resized.load_split("test", allow_empty=True)
    if not test.paths:
        metrics = cv_only_metrics(cv)
    ensure_writable_dir(EVAL)
    uri, experiment_id = tracking.prepare_store(mlflow_params)

    if test.paths:
        metrics = {"scored_on": f"{len(test.paths)} test paintings", **score_test_split(params, test, labels)}
        if cv["folds"]:
            metrics["cv"] = cv
    else:
        log.info("no test split: %s, accuracy %.3f +- %.3f (standard error), macro F1 %.3f", metrics["scored_on"],
                 cv["accuracy_mean"], cv["accuracy_sem"], cv["macro_f1_mean"])
        write_no_test_outputs(metrics)
    write_json(EVAL, metrics)
    # Prefixed: the run's plain ``accuracy``/``loss`` are the per-epoch training curves. Without a
    # test split there are no test_* figures: the cross-validated ones are cv_*.
    numbers = {f"test_{key}": value for key, value in metrics.items()
               if test.paths and isinstance(value, (int, float))}
    numbers.update({f"cv_{key}": value for key, value in metrics.get("cv", {}).items()})
    log_to_mlflow(uri, experiment_id, run, numbers, [EVAL, CONFUSION_PNG, PER_ARTIST, MISCLASSIFIED_PNG])


if __name__ == "__main__":
    run_stage("evaluate", main)
