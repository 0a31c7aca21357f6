"""The trained model as an MLflow Model: a pyfunc that takes image files and returns the top-k painters.

``mlflow.pyfunc.load_model(uri).predict(frame)`` needs nothing but the model: its Keras file,
labels, image size, resize mode and test-time augmentation travel with it, and so does the
``painter_id`` package itself (``code_paths``), which decodes the images with
:func:`painter_id.data.images.load_square` and averages views with :mod:`painter_id.model.tta` exactly as
``painter-predict`` and the ``evaluate`` stage do.

Input: a DataFrame with a string column ``image``, the base64 of each raw file (any format
and size Pillow reads; ``bytes`` values work too). Params: ``top_k`` (default 5) and ``tta``
(``none``, ``flip`` or ``flip_crops``, as ``evaluate.tta``; default ``none``).
Output: one row per image and rank: ``index, rank, artist, probability``. An unreadable image
is an ``INVALID_PARAMETER_VALUE`` error naming its row (HTTP 400 under ``mlflow models serve``).

Logged as "models from code" (no pickle): MLflow runs a two-line file that builds
:class:`PainterModel`, so loading works wherever the pinned requirements are installed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib.metadata
import io
import logging
from pathlib import Path
from typing import Any, Iterator, Optional

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from PIL import Image

from painter_id.core.atomic import temporary_dir
from painter_id.core.compat import log_pyfunc_model, mlflow_tracking_uri
from painter_id.core.errors import PipelineError, first_line
from painter_id.core.params import TTA_MODES, DataParams
from painter_id.core.paths import EXTRACTOR_FILE, HEAD_FILE, LABELS_FILE, MODEL_FILE, MODEL_TEMP, PREPROCESSING_FILE, TEMP_PARENT
from painter_id.data.images import ImageRejected, load_square
from painter_id.model import model_files

log = logging.getLogger(__name__)

NAME = "model"  # the logged model's name inside the run
DEFAULT_TOP_K = 5
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # painter_id/, copied into every logged model
# MLflow executes this file when it loads the model; it must call set_model.
MODEL_CODE = ("import mlflow\nfrom painter_id.tracking.mlflow_model import PainterModel\n\n"
              "mlflow.models.set_model(PainterModel())\n")
# Pinned from what is installed: MLflow's own inference takes ~20 s and misses keras and pillow.
REQUIREMENTS = ("mlflow", "tensorflow", "keras", "pillow", "numpy", "pandas", "tqdm")
OUTPUT_COLUMNS = ["index", "rank", "artist", "probability"]


def signature() -> ModelSignature:
    """Base64 image column in, ranked painters out; ``top_k`` and ``tta`` as request params."""
    return ModelSignature(
        inputs=Schema([ColSpec("string", "image")]),
        outputs=Schema([ColSpec("long", "index"), ColSpec("long", "rank"), ColSpec("string", "artist"),
                        ColSpec("double", "probability")]),
        params=ParamSchema([ParamSpec("top_k", "long", DEFAULT_TOP_K), ParamSpec("tta", "string", "none")]),
    )


def requirements() -> list[str]:
    """``pip`` pins of the packages the model needs, at the versions that trained it."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def to_base64(data: bytes) -> str:
    """The ``image`` column's encoding of a file's bytes."""
    return base64.b64encode(data).decode("ascii")


def frame(images: list[bytes]) -> pd.DataFrame:
    """The model's input for the raw bytes of image files."""
    return pd.DataFrame({"image": [to_base64(data) for data in images]})


class PainterModel(PythonModel):
    """Raw image files in, each one's most likely painters out (see the module docstring)."""

    def load_context(self, context) -> None:
        """Load the model (one Keras file, or an extractor and a solved head), its labels and image format."""
        artifacts = context.artifacts
        self.model = (model_files.load_model(artifacts["model"]) if "model" in artifacts
                      else model_files.load_model(artifacts["extractor"], head=artifacts["head"]))
        self.labels = model_files.read_labels(context.artifacts["labels"])
        image_format = model_files.read_preprocessing(context.artifacts["preprocessing"])
        self.size, self.mode = int(image_format["size"]), image_format["mode"]
        self.max_pixels = DataParams().max_pixels  # the download stage's guard against decompression bombs
        self.batch_size = 32

    def decode(self, value: Any, row: int) -> np.ndarray:
        """One ``image`` cell (base64 text or bytes) as the model's square uint8 input."""
        if isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise MlflowException.invalid_parameter_value(f"row {row}: 'image' is not valid base64") from None
        if not isinstance(value, (bytes, bytearray)):
            raise MlflowException.invalid_parameter_value(f"row {row}: 'image' must be base64 text or bytes")
        try:
            return load_square(bytes(value), self.size, self.mode, max_pixels=self.max_pixels)
        except ImageRejected as exc:
            raise MlflowException.invalid_parameter_value(f"row {row}: {exc}") from None

    def probabilities(self, images: list, mode: str = "none") -> np.ndarray:
        """Class probabilities of the ``image`` cells, averaged over the ``mode`` views (:mod:`painter_id.model.tta`)."""
        from painter_id.model import tta  # TensorFlow: only where a model predicts

        batch = np.stack([self.decode(value, row) for row, value in enumerate(images)])
        return tta.predict_probs(self.model, batch, self.batch_size, mode)

    def predict(self, context, model_input: pd.DataFrame, params: Optional[dict] = None) -> pd.DataFrame:
        """The ``top_k`` most likely painters of every image, most likely first.

        A DataFrame (MLflow infers no schema from that hint, so the model checks its own input,
        row by row, with messages a user can act on).
        """
        params = params or {}
        mode = params.get("tta") or "none"
        if mode not in TTA_MODES:
            raise MlflowException.invalid_parameter_value(f"tta {mode!r}: use one of {', '.join(TTA_MODES)}")
        values = (model_input["image"].tolist() if isinstance(model_input, pd.DataFrame)
                  else list(np.asarray(model_input, dtype=object).ravel()))
        if not values:
            return pd.DataFrame(columns=OUTPUT_COLUMNS)
        probs = self.probabilities(values, mode)
        k = max(1, min(int(params.get("top_k", DEFAULT_TOP_K)), probs.shape[1]))
        rows = [(i, rank, self.labels[c], float(p[c]))
                for i, p in enumerate(probs)
                for rank, c in enumerate(np.argsort(-p, kind="stable")[:k], start=1)]
        return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)



def example_image(images: np.ndarray, side: int = 16) -> bytes:
    """A small PNG of the first training image: the logged input example (stored twice, as base64)."""
    with Image.fromarray(np.asarray(images[0], dtype=np.uint8)) as img, io.BytesIO() as out:
        img.resize((side, side)).save(out, format="PNG")
        return out.getvalue()


@contextlib.contextmanager
def _active_run(uri: str, run_id: str) -> Iterator[None]:
    with mlflow_tracking_uri(uri), mlflow.start_run(run_id=run_id, log_system_metrics=False):
        yield


def model_artifacts() -> dict[str, str]:
    """The files of ``models/`` the MLflow Model carries: one Keras file, or the extractor and the solved head."""
    model = ({"model": str(MODEL_FILE)} if MODEL_FILE.is_file()
             else {"extractor": str(EXTRACTOR_FILE), "head": str(HEAD_FILE)})
    return {**model, "labels": str(LABELS_FILE), "preprocessing": str(PREPROCESSING_FILE)}


def log_model(uri: str, run_id: str, example: bytes) -> str:
    """Log ``models/`` (model, labels, image format) as a pyfunc MLflow Model of run ``run_id``; return its model id.

    The run's params and the metrics logged so far are copied onto the model by MLflow;
    ``evaluate`` links the test metrics to it through the id (``models/run.json``). The
    signature and input example are logged; the example is not predicted at logging time
    (:func:`painter_id.core.compat.log_pyfunc_model`): the tests load every kind of model and
    predict with it as users do.
    """
    artifacts = model_artifacts()
    with temporary_dir(TEMP_PARENT, MODEL_TEMP) as folder, _active_run(uri, run_id):
        code = folder / "painter_model.py"
        code.write_text(MODEL_CODE, encoding="utf-8")
        info = log_pyfunc_model(
            name=NAME, python_model=str(code), code_paths=[str(PACKAGE_DIR)], artifacts=artifacts,
            signature=signature(), input_example=(frame([example]), {"top_k": 3}),
            pip_requirements=requirements(),
        )
    log.info("MLflow: model logged as %s", info.model_uri)
    return info.model_id


def log_model_or_warn(uri: str, run_id: str, images: np.ndarray) -> Optional[str]:
    """:func:`log_model` with the first training image as the example; ``None`` (with a warning) if the store fails.

    The trained model is in ``models/`` already: a busy or broken store must not cost the training.
    """
    try:
        return log_model(uri, run_id, example_image(images))
    except Exception as exc:  # MLflow, SQLAlchemy, requests and boto3 all raise their own types
        log.warning("MLflow: model not logged (%s); the models/ folder has it", first_line(exc)[:300])
        return None


def project_store() -> str:
    """The store the train stage writes: params.yaml's ``mlflow`` section here, else the default.

    ``$MLFLOW_TRACKING_URI`` wins, as in the stages.
    """
    from painter_id.core.params import MlflowParams, load_section
    from painter_id.core.paths import PARAMS_FILE
    from painter_id.tracking import store

    return store.resolve_tracking_uri(load_section("mlflow") if Path(PARAMS_FILE).exists() else MlflowParams())


def load(uri: str, tracking_uri: Optional[str] = None) -> mlflow.pyfunc.PyFuncModel:
    """``mlflow.pyfunc.load_model`` from the store ``tracking_uri``, with a one-line error for a URI that names no model."""
    try:
        with mlflow_tracking_uri(tracking_uri):
            return mlflow.pyfunc.load_model(uri)
    except Exception as exc:  # MLflow raises many types for a missing alias, version or store
        raise PipelineError(f"cannot load MLflow model {uri}: {first_line(exc)[:300]}") from None


def painter_model(model: mlflow.pyfunc.PyFuncModel, uri: str) -> PainterModel:
    """The :class:`PainterModel` inside a loaded pyfunc, or a one-line error for another kind of model."""
    try:
        inner = model.unwrap_python_model()
    except MlflowException:
        inner = None
    # Duck-typed: the class may come from the model's own copy of painter_id (code_paths).
    if not hasattr(inner, "probabilities"):
        raise PipelineError(f"{uri}: not a painter-id model (logged by the train stage)")
    return inner
