"""k-fold cross-validation over the training originals: the folds, their training, their summary.

:func:`fold_rows` cuts ``data/resized/train`` into k stratified folds of original paintings
(an oversampled copy always sits in the fold of its original, and only originals are
scored); :func:`cross_validate` trains and scores each fold from fresh weights; and
:func:`summarize_folds` turns the folds' scores into the mean, standard deviation and
standard error of ``metrics/cv.json``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Callable, Sequence

import numpy as np

from painter_id.core.errors import PipelineError
from painter_id.core.params import Params, TrainParams
from painter_id.data.resized import Split, validation_split
from painter_id.evaluation.scores import score

log = logging.getLogger(__name__)

# The metrics cross-validation summarises (mean, std, sem each).
CV_METRICS = ("accuracy", "macro_f1", "top5_accuracy", "balanced_accuracy")




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
    from sklearn.model_selection import StratifiedKFold  # a second to import: only when cross-validating

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
    """``metrics/cv.json``: what was scored (folds, paintings), then the mean, std (n-1) and standard error per metric."""
    k = len(scores)
    out: dict = {"scored_on": f"{k}-fold cross-validation over {sum(s['n_test'] for s in scores)} paintings"}
    for name in CV_METRICS:
        values = np.array([s[name] for s in scores], dtype=float)
        std = float(values.std(ddof=1)) if k > 1 else 0.0
        out[f"{name}_mean"] = float(values.mean())
        out[f"{name}_std"] = std
        out[f"{name}_sem"] = std / math.sqrt(k)
    return out


def fold_split(data: Split, rows: np.ndarray, params: TrainParams) -> tuple[np.ndarray, np.ndarray]:
    """``train.validation_split`` applied within a fold's training ``rows``, as the final model applies it to all."""
    subset = Split(data.images, [data.paths[i] for i in rows], [data.artists[i] for i in rows],
                   [data.sources[i] for i in rows])
    train_idx, val_idx = validation_split(subset, params.validation_split, params.seed)
    return rows[train_idx], rows[val_idx]


# How a fold is trained and scored: given its (training rows, validation rows) and the rows to
# score, return the class probabilities of the scored rows.
FitAndPredict = Callable[[tuple[np.ndarray, np.ndarray], np.ndarray], np.ndarray]


def cross_validate(params: Params, data: Split, y: np.ndarray, fit_and_predict: FitAndPredict) -> dict:
    """Train and score ``train.cv_folds`` folds with ``fit_and_predict``; ``{}`` when cross-validation is off.

    Each fold applies ``train.validation_split`` within its training rows, as the final model
    does with all of them, and is scored on its held-out originals.
    """
    k = params.train.cv_folds
    if not k:
        return {}
    scores = []
    for fold, (train_rows, scored) in enumerate(fold_rows(data, k, params.train.seed), 1):
        split = fold_split(data, train_rows, params.train)
        scores.append(score(y[scored], fit_and_predict(split, scored)))
        log.info("fold %d/%d: accuracy %.3f, macro F1 %.3f on %d paintings", fold, k, scores[-1]["accuracy"],
                 scores[-1]["macro_f1"], len(scored))
    summary = summarize_folds(scores)
    log.info("%s: accuracy %.3f +- %.3f (standard error), macro F1 %.3f, top-5 %.3f", summary["scored_on"],
             summary["accuracy_mean"], summary["accuracy_sem"], summary["macro_f1_mean"], summary["top5_accuracy_mean"])
    return summary
