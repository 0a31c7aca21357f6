"""Scores of predicted probabilities, and k-fold cross-validation over the training originals.

:func:`score` is what ``metrics/eval.json`` reports for a test split; :func:`fold_rows`
cuts ``data/resized/train`` into k stratified folds of original paintings (an oversampled
copy always sits in the fold of its original, and only originals are scored), and
:func:`summarize_folds` turns the folds' scores into the mean, standard deviation and
standard error of ``metrics/cv.json``.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold

from painter_id.errors import PipelineError
from painter_id.resized import Split

# The metrics cross-validation summarises (mean, std, sem each).
CV_METRICS = ("accuracy", "macro_f1", "top5_accuracy", "balanced_accuracy")


def score(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, top-5, balanced accuracy, macro/weighted F1 and macro precision/recall of ``probs``.

    Macro averages weigh every artist alike, over all the model's classes.
    """
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    classes = np.arange(n_classes)
    average = {"labels": classes, "zero_division": 0}
    precision, recall, _, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", **average)
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
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", **average)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "n_test": int(len(y_true)),
    }


def fold_rows(split: Split, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` pairs of row indices ``(train, scored)``, folds stratified by artist over original paintings.

    Every row belongs to the fold of its original (``split.groups()``), so a painting and its
    oversampled copies are never on both sides; ``scored`` holds the fold's originals only (a
    copy is not a painting of its own).
    """
    groups = split.groups()
    artist_of: dict[str, str] = {}
    for group, artist in zip(groups, split.artists):
        artist_of.setdefault(group, artist)
    originals = sorted(artist_of)
    if len(originals) < k:
        raise PipelineError(f"params.yaml: train.cv_folds is {k} but data/resized/train.csv has only "
                            f"{len(originals)} original paintings; use fewer folds")
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    fold_of: dict[str, int] = {}
    with warnings.catch_warnings():  # an artist with fewer than k paintings is simply absent from some folds
        warnings.simplefilter("ignore", UserWarning)
        try:
            for fold, (_, held) in enumerate(folds.split(originals, [artist_of[g] for g in originals])):
                fold_of.update((originals[i], fold) for i in held)
        except ValueError:
            raise PipelineError(f"params.yaml: train.cv_folds is {k} but every artist has fewer original "
                                "paintings than that; use fewer folds") from None
    row_fold = np.array([fold_of[g] for g in groups])
    is_original = np.array([not source for source in split.sources])
    return [(np.flatnonzero(row_fold != fold), np.flatnonzero((row_fold == fold) & is_original))
            for fold in range(k)]


def summarize_folds(scores: Sequence[dict[str, float]]) -> dict[str, float]:
    """``metrics/cv.json``: the folds, paintings scored, and mean, std (n-1) and standard error per metric."""
    k = len(scores)
    out: dict[str, float] = {"folds": k, "paintings": int(sum(s["n_test"] for s in scores))}
    for name in CV_METRICS:
        values = np.array([s[name] for s in scores], dtype=float)
        std = float(values.std(ddof=1)) if k > 1 else 0.0
        out[f"{name}_mean"] = float(values.mean())
        out[f"{name}_std"] = std
        out[f"{name}_sem"] = std / math.sqrt(k)
    return out
