"""Scores of predicted probabilities: what ``metrics/eval.json`` reports and cross-validation averages.

Computed with NumPy from the confusion matrix, as scikit-learn defines them (the tests compare
the two), so that ``evaluate`` and a head-only ``train`` do not import scikit-learn: a second of
every sweep point's processes on 2 cores.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from painter_id.core.errors import PipelineError
from painter_id.core.paths import CV_FILE
from painter_id.data.inputs import read_json


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (actual, predicted) class pairs: row = actual class, column = predicted."""
    pairs = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def per_class(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support of every class of the confusion matrix ``counts`` (0 where undefined)."""
    hits = np.diag(counts).astype(float)
    support, predicted = counts.sum(axis=1), counts.sum(axis=0)
    f1 = _ratio(2 * hits, (support + predicted).astype(float))
    return _ratio(hits, predicted), _ratio(hits, support), f1, support


def score(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The headline figures of ``probs``: accuracy, top-5 accuracy, balanced accuracy and macro F1 (and ``n_test``).

    Balanced accuracy is the mean recall over the artists the scored paintings hold; macro F1
    weighs every artist of the model alike (0 for one neither present nor predicted);
    ``metrics/per_artist.csv`` has each artist's precision, recall and F1.
    """
    n_classes = probs.shape[1]
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    counts = confusion(y_true, y_pred, n_classes)
    _, recall, f1, support = per_class(counts)
    # By hand rather than sklearn's top_k_accuracy_score, which reads 2 columns as a binary score.
    top_k = np.argsort(-probs, axis=1, kind="stable")[:, :min(5, n_classes)]
    top5 = (top_k == y_true[:, None]).any(axis=1).mean()
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "top5_accuracy": float(top5),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "macro_f1": float(f1.mean()),
        "n_test": int(len(y_true)),
    }


def per_artist(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> list[list]:
    """Rows ``artist, precision, recall, f1, support`` of ``metrics/per_artist.csv``."""
    precision, recall, f1, support = per_class(confusion(y_true, y_pred, len(labels)))
    return [[name, float(p), float(r), float(f), int(s)]
            for name, p, r, f, s in zip(labels, precision, recall, f1, support)]


def cv_only_metrics(cv: dict) -> dict:
    """``eval.json`` without a test split: the cross-validated means are the headline, said so in ``scored_on``."""
    if not cv:
        raise PipelineError("data/resized/test.csv has no paintings (split.test_size is 0) and train.cv_folds is 0: "
                            "nothing scores the model; set train.cv_folds to 5, or split.test_size above 0")
    means = {key[:-len("_mean")]: value for key, value in cv.items() if key.endswith("_mean")}
    return {"scored_on": cv["scored_on"], **means}


def read_cv() -> dict:
    """``metrics/cv.json`` as train wrote it (``{}`` without cross-validation)."""
    cv = read_json(CV_FILE, "run `dvc repro train` to write it")
    if not isinstance(cv, dict) or (cv and not isinstance(cv.get("scored_on"), str)):
        raise PipelineError(f"{CV_FILE}: not a cross-validation summary; run `dvc repro train` to write it again")
    return cv
