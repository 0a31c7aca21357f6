"""Predicting painters with a trained model: a ``.keras`` file or an MLflow Model, image files in.

New images go through the pipeline's own code: :func:`painter_id.data.images.load_square` with
the size of the model's input and the ``resize.mode`` the training images were made with
(``models/preprocessing.json``, written by train), then the model's own Preprocess layer,
averaged over test-time views as ``evaluate.tta`` does (:mod:`painter_id.model.tta`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import keras
import numpy as np

from painter_id.core.errors import PipelineError
from painter_id.core.params import load_section
from painter_id.core.paths import PARAMS_FILE
from painter_id.data.images import ImageRejected, is_image_name, load_square
from painter_id.model import model_files, tta

log = logging.getLogger(__name__)

DEFAULT_MODE = "pad"  # resize.mode's default, for models trained before preprocessing.json existed


def find_images(targets: Sequence[str]) -> list[Path]:
    """The files named, plus every image file under the folders named (recursively, sorted).

    Hidden files and folders are skipped; a named file is kept whatever its suffix, so a
    wrong file gets an error row rather than silence.
    """
    found: list[Path] = []
    for target in targets:
        root = Path(target)
        if not root.is_dir():
            found.append(root)
            continue
        inside = []
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            inside += [Path(folder) / name for name in files if is_image_name(name)]
        if not inside:
            log.warning("%s: no image files in this folder", root)
        found += sorted(inside)
    return found


def resize_mode(model_path: Path, size: int) -> str:
    """The ``resize.mode`` of the model's training images.

    Read from ``preprocessing.json`` beside the model; a model without one (trained before
    it existed) falls back to ``params.yaml`` in the current folder, else ``pad``.
    """
    info_path = model_files.folder(model_path) / model_files.PREPROCESSING_FILE.name
    if info_path.exists():
        info = model_files.read_preprocessing(info_path)
        if info["size"] != size:
            raise PipelineError(f"{info_path} says {info['size']} px but {model_path} takes {size} px: they come "
                                f"from different trainings; {model_files.RETRAIN_HINT}")
        return info["mode"]
    mode = load_section("resize").mode if Path(PARAMS_FILE).exists() else DEFAULT_MODE
    log.warning("%s: not found; resizing images with mode %r (%s)", info_path, mode,
                f"resize.mode of {PARAMS_FILE}" if Path(PARAMS_FILE).exists() else "the default")
    return mode


def ranked(probs: np.ndarray, labels: Sequence[str], top_k: int) -> list[tuple[int, str, str]]:
    """``(rank, artist, probability)`` of the ``top_k`` most likely artists, most likely first."""
    order = np.argsort(-probs, kind="stable")[:top_k]
    return [(rank, labels[c], f"{probs[c]:.6f}") for rank, c in enumerate(order, start=1)]


@dataclass(frozen=True)
class Predictor:
    """A trained model with what it takes to use it: its labels, the resize mode, how to predict."""

    model: keras.Model
    labels: Sequence[str]
    mode: str  # resize mode of the training images (pad, crop, stretch)
    top_k: int = 3
    tta: str = "none"
    batch_size: int = 32

    @property
    def size(self) -> int:
        """Side of the square images the model takes."""
        return int(self.model.input_shape[1])










def mlflow_predictor(uri: str, top_k: int = 3, tta_mode: str = "none", batch_size: int = 32) -> Predictor:
    """A :class:`Predictor` from an MLflow Model (``models:/painter-id@champion``): its labels and resize mode travel with it."""
    from painter_id.tracking import mlflow_model

    inner = mlflow_model.painter_model(mlflow_model.load(uri, mlflow_model.project_store()), uri)
    return Predictor(inner.model, inner.labels, inner.mode, top_k, tta_mode, batch_size)


def file_predictor(model_path: Path, labels_path: Optional[Path] = None, top_k: int = 3, tta_mode: str = "none",
                   batch_size: int = 32) -> Predictor:
    """A :class:`Predictor` from a model folder (``models/``) or ``.keras`` file, with ``labels.json`` (unless named)
    and ``preprocessing.json`` in it or beside it."""
    model = model_files.load_model(model_path)
    labels_path = labels_path or model_files.folder(model_path) / model_files.LABELS_FILE.name
    labels = model_files.read_labels(labels_path)
    model_files.check_classes(model, labels, model_path, labels_path)
    mode = resize_mode(model_path, int(model.input_shape[1]))
    return Predictor(model, labels, mode, top_k, tta_mode, batch_size)


def predict_batch(predictor: Predictor, files: Sequence[Path], max_pixels: int) -> list:
    """For each file, its ranked ``(rank, artist, probability)`` rows, or the reason it cannot be read (a string)."""
    arrays, results = [], []
    for path in files:
        try:
            arrays.append(load_square(path, predictor.size, predictor.mode, max_pixels=max_pixels))
            results.append(None)
        except ImageRejected as exc:
            results.append(str(exc))
    probs = iter(tta.predict_probs(predictor.model, np.stack(arrays), len(arrays), predictor.tta) if arrays else [])
    return [error if error is not None else ranked(next(probs), predictor.labels, predictor.top_k)
            for error in results]
