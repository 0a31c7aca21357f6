"""Stage ``evaluate``: score the trained model on the held-out test split.

Reads ``models/model.keras``, ``models/labels.json``, ``models/run.json``,
``data/resized/test.{npy,csv}`` and ``params.yaml:evaluate,mlflow`` (``evaluate.tta``
averages the predictions over flipped and zoomed views, see :mod:`painter_id.tta`); writes
``metrics/eval.json``, ``metrics/per_artist.csv``, ``metrics/confusion.csv``,
``metrics/confusion.png`` and ``metrics/misclassified.png``, and logs the metrics and
pictures into the MLflow run of the training.
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
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from painter_id import model_files, resized, tracking, tta  # noqa: E402
from painter_id.atomic import atomic_file, ensure_writable_dir, write_csv, write_json  # noqa: E402
from painter_id.errors import PipelineError  # noqa: E402
from painter_id.params import load_section  # noqa: E402
from painter_id.runner import run_stage  # noqa: E402

log = logging.getLogger(__name__)

EVAL = Path("metrics/eval.json")
PER_ARTIST = Path("metrics/per_artist.csv")
CONFUSION_CSV = Path("metrics/confusion.csv")
CONFUSION_PNG = Path("metrics/confusion.png")
MISCLASSIFIED_PNG = Path("metrics/misclassified.png")
ANNOTATE_MAX = 20  # beyond this many artists, numbers in the cells become unreadable


def score(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The test metrics of ``metrics/eval.json`` (macro averages weigh every artist alike)."""
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    classes = np.arange(n_classes)
    average = {"labels": classes, "zero_division": 0}
    precision, recall, _, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", **average)
    # By hand rather than sklearn's top_k_accuracy_score, which reads 2 columns as a binary score.
    top_k = np.argsort(-probs, axis=1, kind="stable")[:, :min(5, n_classes)]
    top5 = (top_k == y_true[:, None]).any(axis=1).mean()
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "top5_accuracy": float(top5),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", **average)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", **average)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "n_test": int(len(y_true)),
    }


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
    """Add the test metrics and pictures to the training's run.

    If that run is gone (the store was deleted or replaced), a new run tagged
    ``evaluation_only`` takes them, with a warning, so the numbers are never lost.
    """
    client = mlflow.MlflowClient(uri)
    run_id = run["run_id"]
    # Prefixed: the run's plain ``accuracy``/``loss`` are the per-epoch training curves.
    test_metrics = {f"test_{key}": value for key, value in metrics.items()}
    if run.get("tracking_uri") and run["tracking_uri"] != uri:
        log.warning("models/run.json names store %s, logging into %s", run["tracking_uri"], uri)
    if tracking.find_run(client, run_id):
        # Linked to the run's MLflow Model too (MLflow 3): its page and the registry show them.
        tracking.log_metrics(client, run_id, test_metrics, model_id=run.get("model_id"))
        tracking.log_artifacts(client, run_id, artifacts)
        log.info("MLflow: test metrics logged into run %s", run_id)
        return
    log.warning("MLflow run %s of models/run.json is not in %s; logging into a new evaluation-only run",
                run_id, uri)
    tags = {**tracking.run_tags(), "evaluation_only": "true", "training_run_id": run_id}
    with tracking.start_run(client, experiment_id, f"evaluate-{run_id[:8]}", tags) as new_id:
        tracking.log_metrics(client, new_id, test_metrics)
        tracking.log_artifacts(client, new_id, artifacts)


def main() -> None:
    params = load_section("evaluate")
    mlflow_params = load_section("mlflow")
    labels = model_files.read_labels()
    run = model_files.read_run()
    test = resized.load_split("test")
    y_true = resized.encode(test.artists, labels, str(resized.table_path("test")))
    ensure_writable_dir(EVAL)
    uri, experiment_id = tracking.prepare_store(mlflow_params)

    model = model_files.load_model()
    expected = tuple(model.input_shape[1:])
    if expected != test.images.shape[1:]:
        raise PipelineError(f"{model_files.MODEL_FILE} takes images of shape {expected} but "
                            f"{resized.array_path('test')} holds {test.images.shape[1:]}; {model_files.RETRAIN_HINT}")
    model_files.check_classes(model, labels)
    log.info("test-time augmentation: %s", params.tta)
    probs = tta.predict_probs(model, test.images, params.batch_size, params.tta)
    y_pred = probs.argmax(axis=1)

    metrics = score(y_true, probs)
    log.info("test: accuracy %.3f, top-5 %.3f, balanced accuracy %.3f, macro F1 %.3f (%d paintings)",
             metrics["accuracy"], metrics["top5_accuracy"], metrics["balanced_accuracy"],
             metrics["macro_f1"], metrics["n_test"])
    write_json(EVAL, metrics)
    write_csv(PER_ARTIST, ["artist", "precision", "recall", "f1", "support"], per_artist(y_true, y_pred, labels))
    write_csv(CONFUSION_CSV, ["actual", "predicted"], ([labels[a], labels[p]] for a, p in zip(y_true, y_pred)))
    plot_confusion(y_true, y_pred, labels, CONFUSION_PNG)
    plot_misclassified(test.images, y_true, probs, labels, params.misclassified, MISCLASSIFIED_PNG)
    log_to_mlflow(uri, experiment_id, run, metrics, [EVAL, CONFUSION_PNG, PER_ARTIST, MISCLASSIFIED_PNG])


if __name__ == "__main__":
    run_stage("evaluate", main)
