"""Scores of predicted probabilities: what ``metrics/eval.json`` reports and cross-validation averages."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support

from painter_id.core.errors import PipelineError
from painter_id.core.paths import CV_FILE
from painter_id.data.inputs import read_json


def score(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The headline figures of ``probs``: accuracy, top-5 accuracy, balanced accuracy and macro F1 (and ``n_test``).

    Balanced accuracy and macro F1 weigh every artist alike, over all the model's classes;
    ``metrics/per_artist.csv`` has each artist's precision, recall and F1.
    """
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    average = {"labels": np.arange(n_classes), "zero_division": 0}
    # By hand rather than sklearn's top_k_accuracy_score, which reads 2 columns as a binary score.
    top_k = np.argsort(-probs, axis=1, kind="stable")[:, :min(5, n_classes)]
    top5 = (top_k == y_true[:, None]).any(axis=1).mean()
    with warnings.catch_warnings():  # a fold may lack an artist: its recall is then 0 by definition
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y_true, y_pred)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "top5_accuracy": float(top5),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", **average)),
        "n_test": int(len(y_true)),
    }


def per_artist(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> list[list]:
    """Rows ``artist, precision, recall, f1, support`` of ``metrics/per_artist.csv``."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(labels)), zero_division=0
    )
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
