"""The backbones ``model.backbone`` can name, and the preprocessing each one expects.

Every entry wraps a ``keras.applications`` constructor (or the small from-scratch
``simple_cnn``) and knows its input preprocessing and minimum image size. The
preprocessing is a layer *inside* the saved model (:class:`Preprocess`), so the model takes
raw 0..255 RGB pixels and evaluate/predict need no preprocessing code of their own.
Importing this module registers that layer with Keras: import it before
``keras.models.load_model``.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from pathlib import Path
from typing import Optional, Sequence, Union

import keras

from painter_id.core.atomic import owned_folder
from painter_id.core.errors import PipelineError, first_line
from painter_id.model.registry import SIMPLE_CNN, Backbone, check_size

log = logging.getLogger(__name__)

# ImageNet statistics of the "torch" and "caffe" conventions of keras.applications.
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

PREPROCESS_MODES = ("tf", "torch", "caffe", "none", "unit")
SCRATCH_BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="painter_id")
class Preprocess(keras.layers.Layer):
    """Raw 0..255 RGB pixels to what a backbone was trained on.

    Modes: ``tf`` scales to [-1, 1]; ``torch`` scales to [0, 1] then standardises with the
    ImageNet mean/std; ``caffe`` reorders to BGR and subtracts the ImageNet BGR mean;
    ``none`` passes pixels through (EfficientNet rescales inside the network); ``unit``
    scales to [0, 1] (``simple_cnn``).
    """

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; use one of {PREPROCESS_MODES}")
        self.mode = mode

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "torch":
            mean = keras.ops.convert_to_tensor(_TORCH_MEAN, dtype=self.compute_dtype)
            std = keras.ops.convert_to_tensor(_TORCH_STD, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = keras.ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)
            return keras.ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["mode"] = self.mode
        return config


# Models saved before the library moved out of ``stages/`` name the layer "stages>Preprocess";
# the same class under its old name keeps them loading.
keras.saving.get_custom_objects()["stages>Preprocess"] = Preprocess






# The filters of simple_cnn's Conv2D + MaxPooling2D blocks, as in the seed notebooks.
SIMPLE_CNN_FILTERS = (32, 64, 128)


def keras_cache_dir() -> Path:
    """Where Keras looks for downloaded ImageNet weights: ``$KERAS_HOME/models`` (default ~/.keras)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def resolve_weights(weights: str, weights_file: str, root: Path) -> Optional[str]:
    """``model.weights`` as Keras takes it: ``None`` (random), ``"imagenet"`` or the absolute path of ``model.weights_file``."""
    if weights == "random":
        return None
    if weights == "imagenet":
        return weights
    path = Path(weights_file).expanduser()
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise PipelineError(
            f"params.yaml: model.weights_file is {weights_file!r} but {path} does not exist; "
            "give the path of a .h5 / .weights.h5 file (relative to the project root)"
        )
    if path.suffix != ".h5":
        raise PipelineError(
            f"params.yaml: model.weights_file is {weights_file!r}; Keras loads backbone weights from .h5 or "
            ".weights.h5 files only"
        )
    return str(path)


def _simple_cnn(input_shape: tuple[int, int, int]) -> keras.Model:
    blocks = []
    for filters in SIMPLE_CNN_FILTERS:
        blocks += [
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
        ]
    # Sequential, so ``.layers`` is exactly the conv blocks' layers (no InputLayer).
    return keras.Sequential([keras.Input(input_shape), *blocks], name=SIMPLE_CNN)


def _download_failure(entry: Backbone, exc: Exception) -> PipelineError:
    origin = re.search(r"URL fetch failure on (\S+):\s", str(exc))
    wanted = origin.group(1).rsplit("/", 1)[-1] if origin else f"the ImageNet weights file of {entry.name}"
    return PipelineError(
        f"params.yaml: model.weights is 'imagenet' but the ImageNet weights of {entry.name} could not "
        f"be downloaded (offline?); put {wanted} into $KERAS_HOME/models/ (now {keras_cache_dir()}) "
        "or set model.weights: file and model.weights_file to a local weights file"
    )


def build_backbone(entry: Backbone, size: int, weights: Optional[str], alpha: float = 1.0,
                   any_size: bool = False) -> keras.Model:
    """The backbone without its classifier top, for ``size`` x ``size`` RGB input.

    ``weights`` is the output of :func:`resolve_weights`. Every failure a user can fix
    (image too small, weights not downloadable, weights that don't fit) is a one-line
    :class:`PipelineError`. ``any_size``: built for any height and width, so the very same
    layers can see the painting at several scales (``model.scales``).
    """
    check_size(entry, size)
    input_shape = (None, None, 3) if any_size else (size, size, 3)
    if entry.name == SIMPLE_CNN:
        if weights == "imagenet":
            raise PipelineError(
                "params.yaml: model.weights is 'imagenet' but simple_cnn is trained from scratch; "
                "set model.weights: random, or file with model.weights_file saved from a simple_cnn"
            )
        backbone = _simple_cnn(input_shape)
        if weights:
            _load_weights(backbone, entry, weights)
        return backbone

    kwargs = {"include_top": False, "weights": weights, "input_shape": input_shape}
    if entry.takes_alpha:
        kwargs["alpha"] = alpha
    build = getattr(keras.applications, entry.name)
    if weights == "imagenet":
        owned_folder(keras_cache_dir())
    try:
        backbone = build(**kwargs)
    except ValueError as exc:
        what = f"model.weights {weights}" if weights not in (None, "imagenet") else "these params"
        raise PipelineError(
            f"params.yaml: {entry.name} cannot be built with {what} (size {size}, alpha {alpha}): "
            f"{first_line(exc)}"
        ) from None
    except Exception as exc:
        # keras.utils.get_file raises a bare Exception when the download fails.
        if weights == "imagenet" and ("URL fetch failure" in str(exc) or isinstance(exc, OSError)):
            raise _download_failure(entry, exc) from None
        if isinstance(exc, OSError):
            raise PipelineError(f"params.yaml: model.weights {weights} cannot be read: {first_line(exc)}") from None
        raise
    if weights is None:
        _track_batch_statistics(backbone)
    return backbone


def _track_batch_statistics(backbone: keras.Model) -> None:
    # From random weights, a short run is a few dozen steps: with Keras' default momentum of
    # 0.99 the BatchNormalization moving statistics are still mostly their initial 0 and 1
    # when training stops, and the model collapses to one class in inference mode (seen:
    # 93% training, 8% validation accuracy). Pretrained statistics keep the default.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = SCRATCH_BN_MOMENTUM


def _load_weights(backbone: keras.Model, entry: Backbone, weights: str) -> None:
    try:
        backbone.load_weights(weights)
    except (ValueError, OSError) as exc:
        raise PipelineError(
            f"params.yaml: model.weights {weights} does not fit {entry.name}: {first_line(exc)}"
        ) from None


def freeze(backbone: keras.Model, frozen_layers: Union[int, str]) -> int:
    """Freeze the first ``frozen_layers`` layers of ``backbone`` (``"all"``: every one).

    Returns the number frozen. Frozen BatchNormalization layers run in inference mode (Keras
    3 ties that to ``trainable=False``), so their moving statistics stay as loaded.
    """
    count = len(backbone.layers)
    if frozen_layers == "all":
        backbone.trainable = False
        return count
    if frozen_layers > count:
        raise PipelineError(
            f"params.yaml: model.frozen_layers is {frozen_layers} but {backbone.name} has {count} layers; "
            f"use at most {count}, or 'all'"
            # The seed notebooks' 600 is meant for InceptionResNetV2, which is no longer the default.
            + ("; with model.backbone=InceptionResNetV2 (780 layers, the seed notebooks freeze 600) it fits"
               if frozen_layers <= 780 else "")
        )
    for layer in backbone.layers[:frozen_layers]:
        layer.trainable = False
    return frozen_layers


def with_pooled_layers(backbone: keras.Model, names: Sequence[str]) -> keras.Model:
    """``backbone`` with the outputs of the layers ``names`` as extra outputs (same layers, same weights).

    A painter's hand shows in textures and strokes as much as in objects: mid-level feature
    maps carry that, and the head pools them beside the last one (``model.pooled_layers``).
    """
    if not names:
        return backbone
    outputs = [backbone.output] + [feature_map(backbone, name) for name in names]
    return keras.Model(backbone.inputs, outputs, name=backbone.name)


def feature_map(backbone: keras.Model, name: str, param: str = "model.pooled_layers"):
    """The output of ``backbone``'s layer ``name``, or a one-line error naming ``param`` when it has none or it is no map."""
    known = [layer.name for layer in backbone.layers]
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"its last layers are {', '.join(known[-3:])}"
        raise PipelineError(f"params.yaml: {param} names {name!r}, which {backbone.name} does not have; {hint}")
    output = backbone.get_layer(name).output
    if len(output.shape) != 4:
        raise PipelineError(f"params.yaml: {param}: {backbone.name} layer {name!r} does not output a "
                            "feature map (height, width, channels); pick a convolution or activation layer")
    return output
