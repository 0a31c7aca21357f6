"""The files a training leaves in ``models/``: the model, its labels, its image format, its MLflow run.

A model trained from the pixels is one Keras file (``model.keras``); one whose head was solved
on a frozen backbone's features is that backbone's extractor (``extractor.keras``) and the
head's weights (``head.npz``), which :func:`load_model` assembles into the same Keras model
(pixels in, probabilities out). Everything that reads them (evaluate, predict, the MLflow
Model) goes through here, so a missing, damaged or mismatched file is always the same one-line
error saying to retrain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from painter_id.core.errors import PipelineError
from painter_id.core.paths import EXTRACTOR_FILE, HEAD_FILE, LABELS_FILE, MODEL_FILE, MODELS_DIR, PREPROCESSING_FILE, RUN_FILE
from painter_id.data.inputs import read_image_format, read_json

RETRAIN_HINT = "run `dvc repro train` to produce it again"

if TYPE_CHECKING:
    import keras


def read_labels(path: os.PathLike | str = LABELS_FILE) -> list[str]:
    """The class names the model was trained with (``models/labels.json``)."""
    labels = read_json(path, RETRAIN_HINT)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise PipelineError(f"{path}: must be a list of artist names; {RETRAIN_HINT}")
    return labels


def read_preprocessing(path: os.PathLike | str = PREPROCESSING_FILE) -> dict:
    """``models/preprocessing.json``: the ``size`` and resize ``mode`` of the training images."""
    return read_image_format(path, RETRAIN_HINT)


def read_run(path: os.PathLike | str = RUN_FILE) -> dict:
    """``models/run.json``: the MLflow run of the training."""
    run = read_json(path, RETRAIN_HINT)
    if not isinstance(run, dict) or not run.get("run_id"):
        raise PipelineError(f"{path}: has no run_id; {RETRAIN_HINT}")
    return run


def folder(path: os.PathLike | str) -> Path:
    """The folder of a model: ``path`` itself, or the folder a ``.keras`` file lies in."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def save_head(path: os.PathLike | str, kernel: np.ndarray, bias: np.ndarray, extractor_sha256: str) -> None:
    """Write a solved head: its kernel and bias, and the SHA-256 of the extractor it was solved for."""
    from painter_id.core.atomic import atomic_path

    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, kernel=np.asarray(kernel, np.float32), bias=np.asarray(bias, np.float32),
                     extractor_sha256=np.array(extractor_sha256))


def read_head(path: os.PathLike | str = HEAD_FILE) -> tuple[np.ndarray, np.ndarray, str]:
    """``(kernel, bias, extractor_sha256)`` of a solved head, or a one-line error saying to retrain."""
    try:
        with np.load(path, allow_pickle=False) as head:
            kernel, bias, digest = head["kernel"], head["bias"], str(head["extractor_sha256"])
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; {RETRAIN_HINT}") from None
    except Exception as exc:  # NumPy raises OSError, ValueError, KeyError, BadZipFile... for a damaged file
        raise PipelineError(f"{path}: cannot be read ({type(exc).__name__}); {RETRAIN_HINT}") from None
    if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
        raise PipelineError(f"{path}: not a head (kernel {kernel.shape}, bias {bias.shape}); {RETRAIN_HINT}")
    return kernel, bias, digest


def mismatch(path: os.PathLike | str, other: str) -> PipelineError:
    """The one-line error for files of two different trainings met together."""
    return PipelineError(f"{path} and {other} come from different trainings; {RETRAIN_HINT}")


def _load_keras(path: Path) -> keras.Model:
    # Imported here: reading labels, runs and heads must not start TensorFlow.
    import keras

    import painter_id.model.backbones  # noqa: F401  (registers the Preprocess layer before load_model)
    import painter_id.model.style  # noqa: F401  (registers the GramPool and MeanStdPool layers before load_model)

    if not path.is_file():
        raise PipelineError(f"{path}: not found; {RETRAIN_HINT}")
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a broken or foreign file
        raise PipelineError(f"{path}: cannot be loaded ({type(exc).__name__}); {RETRAIN_HINT}") from None


def assemble(extractor: keras.Model, kernel: np.ndarray, bias: np.ndarray) -> keras.Model:
    """The full model of a head solved on features: ``extractor`` then the ``artist`` softmax layer."""
    import keras

    layer = keras.layers.Dense(kernel.shape[1], activation="softmax", dtype="float32", name="artist")
    name = extractor.name.removesuffix("_features")
    model = keras.Model(extractor.inputs, layer(extractor.output), name=f"{name}_painter")
    layer.set_weights([kernel, bias])
    return model


def load_model(path: os.PathLike | str = MODELS_DIR, head: Optional[os.PathLike | str] = None) -> keras.Model:
    """The trained model (pixels in, probabilities out), or a one-line error saying how to get one.

    ``path``: a ``.keras`` file, or a folder holding ``model.keras``, or ``extractor.keras`` and
    ``head.npz``; ``head``: the head file beside an extractor named as ``path``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / MODEL_FILE.name).is_file() or not (path / EXTRACTOR_FILE.name).is_file():
            return _load_keras(path / MODEL_FILE.name)
        path, head = path / EXTRACTOR_FILE.name, path / HEAD_FILE.name
    if head is None:
        return _load_keras(path)
    kernel, bias, digest = read_head(head)
    from painter_id.data.images import sha256_file

    if path.is_file() and sha256_file(path) != digest:
        raise PipelineError(f"{head} was solved on the features of another extractor than {path}; {RETRAIN_HINT}")
    return assemble(_load_keras(path), kernel, bias)


def check_classes(model: keras.Model, labels: Sequence[str], model_path: os.PathLike | str = MODEL_FILE,
                  labels_path: os.PathLike | str = LABELS_FILE) -> None:
    """Stop with a one-line error when the model and its labels file come from different trainings."""
    if model.output_shape[-1] != len(labels):
        raise PipelineError(f"{model_path} has {model.output_shape[-1]} classes but {labels_path} "
                            f"lists {len(labels)}; {RETRAIN_HINT}")


def check_input(model: keras.Model, shape: tuple, images_path: os.PathLike | str,
                model_path: os.PathLike | str = MODEL_FILE) -> None:
    """Stop with a one-line error when ``model`` takes images of another shape than ``shape``."""
    expected = tuple(model.input_shape[1:])
    if expected != tuple(shape):
        raise PipelineError(f"{model_path} takes images of shape {expected} but {images_path} holds {tuple(shape)}; "
                            f"{RETRAIN_HINT}")
