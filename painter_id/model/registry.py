"""The backbones ``model.backbone`` can name: each one's preprocessing, minimum image size and options.

TensorFlow-free, so a stage checks a name and an image size before it starts TensorFlow
(:mod:`painter_id.model.backbones` builds the networks).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from painter_id.core.errors import PipelineError


@dataclass(frozen=True)
class Backbone:
    """One registry entry: how to build the network and what its input must look like."""

    name: str
    preprocess: str
    min_size: int
    takes_alpha: bool = False

    @property
    def has_imagenet_weights(self) -> bool:
        return self.name != SIMPLE_CNN


SIMPLE_CNN = "simple_cnn"


# Minimum sizes are those keras.applications enforces with include_top=False.
_ENTRIES = [
    Backbone("InceptionResNetV2", "tf", 75),
    Backbone("InceptionV3", "tf", 75),
    Backbone("Xception", "tf", 71),
    Backbone("ResNet50", "caffe", 32),
    Backbone("ResNet101", "caffe", 32),
    Backbone("ResNet152", "caffe", 32),
    Backbone("ResNet50V2", "tf", 32),
    Backbone("ResNet101V2", "tf", 32),
    Backbone("ResNet152V2", "tf", 32),
    Backbone("VGG16", "caffe", 32),
    Backbone("VGG19", "caffe", 32),
    Backbone("DenseNet121", "torch", 32),
    Backbone("DenseNet169", "torch", 32),
    Backbone("DenseNet201", "torch", 32),
    *(Backbone(f"EfficientNetB{i}", "none", 32) for i in range(8)),
    *(Backbone(f"EfficientNetV2{v}", "none", 32) for v in ("B0", "B1", "B2", "B3", "S", "M", "L")),
    Backbone("MobileNet", "tf", 32, takes_alpha=True),
    Backbone("MobileNetV2", "tf", 32, takes_alpha=True),
    # Keras builds MobileNetV3 and ConvNeXt with their preprocessing inside (include_preprocessing
    # defaults to True): a Rescaling to [-1, 1], an ImageNet mean/std Normalization.
    Backbone("MobileNetV3Small", "none", 32, takes_alpha=True),
    Backbone("MobileNetV3Large", "none", 32, takes_alpha=True),
    *(Backbone(f"ConvNeXt{v}", "none", 32) for v in ("Tiny", "Small", "Base", "Large", "XLarge")),
    # Trained at 224 (Mobile) and 331 px (Large); without the classifier top any size from 32 works.
    Backbone("NASNetMobile", "tf", 32),
    Backbone("NASNetLarge", "tf", 32),
    Backbone(SIMPLE_CNN, "unit", 16),
]


BACKBONES: dict[str, Backbone] = {entry.name: entry for entry in _ENTRIES}


def get_backbone(name: str) -> Backbone:
    """The registry entry for ``model.backbone``, or a one-line error listing the valid names."""
    if name in BACKBONES:
        return BACKBONES[name]
    close = difflib.get_close_matches(name, list(BACKBONES), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise PipelineError(f"params.yaml: model.backbone is {name!r}; {hint}use one of {', '.join(BACKBONES)}")


def check_size(entry: Backbone, size: int) -> None:
    """Stop with a one-line error when the images are smaller than the backbone accepts."""
    if size < entry.min_size:
        raise PipelineError(
            f"params.yaml: resize.image_size is {size} (the size of the images in data/resized) but "
            f"{entry.name} needs at least {entry.min_size}; set resize.image_size to {entry.min_size} or more"
        )
