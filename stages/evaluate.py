"""Stage ``evaluate``: score the trained model on the held-out test split.

Reads ``models/``, ``metrics/cv.json``, ``data/resized/test.{npy,csv}`` and
``params.yaml:evaluate,mlflow``; writes ``metrics/eval.json``, ``metrics/per_artist.csv``,
``metrics/confusion.csv``, ``metrics/confusion.png`` and ``metrics/misclassified.png``, and
logs the metrics and pictures into the MLflow run of the training. ``evaluate.tta`` averages
the predictions over flipped and zoomed views (:mod:`painter_id.model.tta`); with a frozen
backbone, ``evaluate.feature_cache: auto`` reuses the test split's backbone features, so a
sweep over head params runs only the head here. With ``train.cv_folds`` on, ``eval.json``
carries the cross-validated figures beside the test ones, and with ``split.test_size: 0``
(no test split) they are its only figures, and ``scored_on`` says so.
"""

from __future__ import annotations

import logging

from painter_id.core.atomic import ensure_writable_dir, write_csv, write_json
from painter_id.core.params import EvaluateParams, load_section
from painter_id.core.paths import CONFUSION_CSV, CONFUSION_PNG, EVAL, MISCLASSIFIED_PNG, PER_ARTIST
from painter_id.core.runner import run_stage
from painter_id.data import resized
from painter_id.evaluation import plots
from painter_id.evaluation.scores import cv_only_metrics, per_artist, read_cv, score
from painter_id.model import model_files
from painter_id.tracking import runs, store

log = logging.getLogger(__name__)


def score_test_split(params: EvaluateParams, test: resized.Split, labels: list[str]) -> dict:
    """Predict the test split, write the per-artist table and figures, and return its metrics."""
    # Imported here: TensorFlow starts only when there is a test split to predict (not for split.test_size 0).
    from painter_id.model import tta

    y_true = resized.encode(test.artists, labels, str(resized.table_path("test")))
    model = model_files.load_model()
    model_files.check_input(model, test.images.shape[1:], resized.array_path("test"))
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
        metrics = {"scored_on": f"{len(test.paths)} test paintings", **score_test_split(params, test, labels)}
        if cv["folds"]:
            metrics["cv"] = cv
    else:
        log.info("no test split: %s, accuracy %.3f +- %.3f (standard error), macro F1 %.3f", metrics["scored_on"],
                 cv["accuracy_mean"], cv["accuracy_sem"], cv["macro_f1_mean"])
        plots.write_no_test_outputs(metrics)
    write_json(EVAL, metrics)
    # Prefixed: the run's plain ``accuracy``/``loss`` are the per-epoch training curves. Without a
    # test split there are no test_* figures: the cross-validated ones are cv_*.
    numbers = {f"test_{key}": value for key, value in metrics.items()
               if test.paths and isinstance(value, (int, float))}
    numbers.update({f"cv_{key}": value for key, value in metrics.get("cv", {}).items()})
    runs.log_to_mlflow(uri, experiment_id, run, numbers, [EVAL, CONFUSION_PNG, PER_ARTIST, MISCLASSIFIED_PNG])


if __name__ == "__main__":
    run_stage("evaluate", main)
