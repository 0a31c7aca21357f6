"""The files a training leaves in ``models/``: the Keras model, its labels, its image format, its MLflow run.

Everything that reads them (evaluate, predict) goes through here, so a missing, damaged or
mismatched file is always the same one-line error saying to retrain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from painter_id.core.errors import PipelineError
from painter_id.core.paths import LABELS_FILE, MODEL_FILE, PREPROCESSING_FILE, RUN_FILE
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


def load_model(path: os.PathLike | str = MODEL_FILE) -> keras.Model:
    """The trained model, or a one-line error saying how to get one."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; {RETRAIN_HINT}")
    # Imported here: reading labels and runs must not start TensorFlow (evaluate without a test split needs none).
    import keras

    import painter_id.model.backbones  # noqa: F401  (registers the Preprocess layer before load_model)
    import painter_id.model.style  # noqa: F401  (registers the GramPool and MeanStdPool layers before load_model)

    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a broken or foreign file
        raise PipelineError(f"{path}: cannot be loaded ({type(exc).__name__}); {RETRAIN_HINT}") from None


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
