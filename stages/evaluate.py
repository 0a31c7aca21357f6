"""Stage ``evaluate``: score the trained model on the held-out test split.

Reads ``models/``, ``metrics/cv.json``, ``data/resized/test.{npy,csv}``, ``data/features/``
and ``params.yaml:evaluate``; writes ``metrics/eval.json`` (the headline figures and what they
were scored on), ``metrics/per_artist.csv``, ``metrics/confusion.csv``,
``metrics/confusion.png`` and ``metrics/misclassified.png``, and logs them into the MLflow run
of the training. A head solved on features is scored from the test paintings' features with
NumPy (``evaluate.tta: flip`` averages the mirrored ones in); a model trained from the
pixels, or ``flip_crops``, runs the Keras model. Without a test split (``split.test_size: 0``)
the cross-validated figures of ``metrics/cv.json`` are the headline, and ``scored_on`` says so.
"""

from __future__ import annotations

import logging

import numpy as np

from painter_id.core.atomic import ensure_writable_dir, write_csv, write_json
from painter_id.core.params import EvaluateParams, load_section
from painter_id.core.paths import (
    CONFUSION_CSV,
    CONFUSION_PNG,
    EVAL,
    HEAD_FILE,
    MISCLASSIFIED_PNG,
    MODELS_DIR,
    PER_ARTIST,
    TEST_FEATURES,
    TEST_FLIP_FEATURES,
)
from painter_id.core.runner import run_stage
from painter_id.data import resized
from painter_id.data.inputs import read_features, read_features_info
from painter_id.evaluation import plots
from painter_id.evaluation.scores import cv_only_metrics, per_artist, read_cv, score
from painter_id.model import model_files
from painter_id.model.head_fit import predict
from painter_id.tracking import runs, store

log = logging.getLogger(__name__)


def probabilities(params: EvaluateParams, test: resized.Split, labels: list[str], batch_size: int) -> np.ndarray:
    """The model's class probabilities for the test split, averaged over the ``evaluate.tta`` views."""
    info = read_features_info()
    if HEAD_FILE.is_file() and info["used"] and params.tta != "flip_crops":
        kernel, bias, digest = model_files.read_head(HEAD_FILE)
        if digest != info["extractor_sha256"] or kernel.shape[1] != len(labels):
            raise model_files.mismatch(HEAD_FILE, "data/features")
        views = [TEST_FEATURES, TEST_FLIP_FEATURES][:2 if params.tta == "flip" else 1]
        return sum(predict(kernel, bias, read_features(view, len(test.paths))) for view in views) / len(views)
    from painter_id.model import tta  # TensorFlow: a model trained from the pixels, or flip_crops

    model = model_files.load_model(MODELS_DIR)
    model_files.check_input(model, test.images.shape[1:], resized.array_path("test"))
    model_files.check_classes(model, labels)
    return tta.predict_probs(model, test.images, batch_size, params.tta)


def score_test_split(params: EvaluateParams, test: resized.Split, labels: list[str], batch_size: int) -> dict:
    """Predict the test split, write the per-artist table and figures, and return its metrics."""
    y_true = resized.encode(test.artists, labels, str(resized.table_path("test")))
    log.info("test-time augmentation: %s", params.tta)
    probs = np.asarray(probabilities(params, test, labels, batch_size), dtype=np.float32)
    y_pred = probs.argmax(axis=1)
    metrics = score(y_true, probs)
    log.info("test: accuracy %.3f, top-5 %.3f, balanced accuracy %.3f, macro F1 %.3f (%d paintings)",
             metrics["accuracy"], metrics["top5_accuracy"], metrics["balanced_accuracy"],
             metrics["macro_f1"], metrics.pop("n_test"))
    write_csv(PER_ARTIST, ["artist", "precision", "recall", "f1", "support"], per_artist(y_true, y_pred, labels))
    write_csv(CONFUSION_CSV, ["actual", "predicted"], ([labels[a], labels[p]] for a, p in zip(y_true, y_pred)))
    plots.plot_confusion(y_true, y_pred, labels, CONFUSION_PNG)
    plots.plot_misclassified(test.images, y_true, probs, labels, params.misclassified, MISCLASSIFIED_PNG)
    return metrics


def main() -> None:
    params = load_section("evaluate")
    labels = model_files.read_labels()
    run = model_files.read_run()
    cv = read_cv()
    test = resized.load_split("test", allow_empty=True)
    if not test.paths:
        metrics = cv_only_metrics(cv)
    ensure_writable_dir(EVAL)
    uri, experiment_id = store.prepare_store(load_section("mlflow"))

    if test.paths:
        batch_size = load_section("runtime").predict_batch_size
        metrics = {"scored_on": f"{len(test.paths)} test paintings",
                   **score_test_split(params, test, labels, batch_size)}
    else:
        log.info("no test split: %s, accuracy %.3f +- %.3f (standard error), macro F1 %.3f", metrics["scored_on"],
                 cv["accuracy_mean"], cv["accuracy_sem"], cv["macro_f1_mean"])
        plots.write_no_test_outputs(metrics)
    write_json(EVAL, metrics)
    # The headline (accuracy, macro_f1...) is what eval.json holds: the test split's figures, or
    # without one the cross-validated means; test_* only when a test split scored them.
    numbers = {key: value for key, value in metrics.items() if isinstance(value, (int, float))}
    if test.paths:
        numbers.update({f"test_{key}": value for key, value in list(numbers.items())})
    runs.log_to_mlflow(uri, experiment_id, run, numbers, metrics["scored_on"],
                       [EVAL, CONFUSION_PNG, PER_ARTIST, MISCLASSIFIED_PNG])


if __name__ == "__main__":
    run_stage("evaluate", main)
