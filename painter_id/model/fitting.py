"""How the train stage fits a model: the head on a frozen backbone's features, or the network from the pixels.

:func:`on_features` solves the head with NumPy and SciPy (:mod:`painter_id.model.head_fit`),
starting no TensorFlow; :func:`from_pixels` trains with Keras (:mod:`painter_id.model.training`).
Either returns a :class:`Fitted`: the history, what picked the kept epoch, the model's sizes
(MLflow params), and how the model writes itself into ``models/``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from painter_id.core.params import Params
from painter_id.core.paths import EXTRACTOR, EXTRACTOR_FILE, HEAD_FILE, MODEL_FILE, TRAIN_FEATURES
from painter_id.data import resized
from painter_id.data.inputs import read_features
from painter_id.model import crossval, head_fit
from painter_id.model.model_files import save_head


@dataclass
class Fitted:
    """A trained model: its history, what picked its kept epoch, its sizes, and how it writes itself into a folder."""

    rows: list
    monitor: Optional[str]  # None: a solver, whose last iterate is kept
    sizes: dict
    write: Callable[[Path], None]


def on_features(params: Params, y: np.ndarray, split: tuple, n_classes: int, info: dict, on_rows: Callable) -> Fitted:
    """The head solved on the frozen backbone's features: NumPy and SciPy, no TensorFlow."""
    x = read_features(TRAIN_FEATURES, len(y))
    solution, rows = head_fit.fit_head(x, y, split, n_classes, params.model.l2, params.train.class_weight, on_rows)

    def write(folder: Path) -> None:
        shutil.copyfile(EXTRACTOR, folder / EXTRACTOR_FILE.name)
        save_head(folder / HEAD_FILE.name, solution.kernel, solution.bias, info["extractor_sha256"])

    sizes = {"backbone_layers": info["backbone_layers"], "frozen_layers_resolved": info["backbone_layers"],
             "trainable_params": int(solution.kernel.size + solution.bias.size), "frozen_params": info["backbone_params"]}
    return Fitted(rows, None, sizes, write)


def from_pixels(params: Params, data: resized.Split, y: np.ndarray, split: tuple, n_classes: int,
                on_rows: Callable) -> Fitted:
    """The network trained from the pixels with Keras (TensorFlow starts here)."""
    from painter_id.model import training
    from painter_id.model.network import save_model

    epoch_log = training.EpochLog(on_rows)
    net, monitor = training.train_network(params, data.images, y, split, n_classes, epoch_log)
    return Fitted(epoch_log.rows, monitor, net.sizes(), lambda folder: save_model(net.model, folder / MODEL_FILE.name))


def cross_validate(params: Params, data: resized.Split, y: np.ndarray, n_classes: int, info: dict) -> dict:
    """``metrics/cv.json``: k folds solved on the features, or trained from the pixels; ``{}`` when off."""
    if not params.train.cv_folds:
        return {}
    if not info["used"]:
        from painter_id.model import training

        return training.cross_validate(params, data, y, n_classes)
    x = read_features(TRAIN_FEATURES, len(y))

    def fit_and_predict(split: tuple, scored: np.ndarray) -> np.ndarray:
        solution, _ = head_fit.fit_head(x, y, split, n_classes, params.model.l2, params.train.class_weight)
        return head_fit.predict(solution.kernel, solution.bias, x[scored])

    return crossval.cross_validate(params, data, y, fit_and_predict)
