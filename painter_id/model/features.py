"""The frozen backbone's features: whether they apply, the extractor that makes them, and computing them.

With the whole backbone frozen (``model.frozen_layers: all``) and no augmentation layer on,
nothing before the head changes while training: the pooled backbone output of every
painting (the ``pool`` layer, every scale, pooled and Gram layers) is the same in every epoch
and in every run that shares the feature params. The ``features`` stage computes it once, with
the extractor (pixels in, features out) saved beside it, and DVC caches both; ``train`` then
solves the head on them with NumPy (:mod:`painter_id.model.head_fit`) and ``evaluate`` scores
with NumPy, neither starting TensorFlow.

:func:`why_not_used` decides from the params alone, so the stage says "not used" in a second
without TensorFlow when the backbone trains. Layers that are random while training
(EfficientNet's stochastic depth) are frozen here too: the features are the backbone's
inference output, as at prediction.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Optional

import numpy as np

from painter_id.core.params import Params

if TYPE_CHECKING:
    import keras

    from painter_id.model.network import Network

log = logging.getLogger(__name__)

POOL_LAYER = "pool"


def why_not_used(params: Params) -> Optional[str]:
    """Why the head cannot be solved on precomputed features for these params, or ``None`` when it can."""
    if params.model.frozen_layers != "all":
        # The same words whatever the number: data/features then hashes the same, and `dvc exp show
        # --only-changed` shows no change of it between two fine-tuning experiments.
        return ("model.frozen_layers is not all, so the backbone trains: train learns from the pixels "
                "(set it to all to solve the head on the frozen backbone's features)")
    augmentation = [name for name, on in (("flip", params.train.flip), ("rotation_turns", params.train.rotation_turns),
                                          ("zoom_fraction", params.train.zoom_fraction),
                                          ("contrast", params.train.contrast),
                                          ("crop_fraction", params.train.crop_fraction)) if on]
    if augmentation:
        return (f"train.{augmentation[0]} is on: augmentation changes what the backbone sees every epoch, so "
                "train learns from the pixels (turn it off to solve the head on features)")
    return None


def feature_network(params: Params, size: int, n_classes: int) -> Network:
    """The network whose frozen backbone computes the features, built for this one process.

    Whatever ``train.strategy`` says: the features are the same on one device or many.
    """
    from painter_id.model.network import build_network  # TensorFlow: only when there are features to compute

    single = dataclasses.replace(params, train=dataclasses.replace(params.train, strategy="auto"))
    return build_network(single, size, n_classes)


def extractor_model(model: keras.Model) -> keras.Model:
    """``model`` up to its pooled backbone output: pixels in, the head's input out."""
    import keras

    name = model.name.removesuffix("_painter")
    return keras.Model(model.inputs, model.get_layer(POOL_LAYER).output, name=f"{name}_features")


def forward(extractor: keras.Model):
    """One compiled function of the extractor, to run over several arrays without tracing it again."""
    import tensorflow as tf

    # Any batch length in one signature: traced once, where each new length (an array's last,
    # shorter batch) would trace the whole network again, about half a second each.
    spec = tf.TensorSpec(extractor.input_shape, tf.float32)
    return tf.function(lambda x: extractor(x, training=False), input_signature=[spec])


def compute(run, images: np.ndarray, batch_size: int, width: int, desc: str = "features") -> np.ndarray:
    """``run`` (:func:`forward`) over every row of ``images`` (raw pixels, possibly memory-mapped), as float32.

    Fed batch by batch: memory holds one batch of pixels at a time.
    """
    import keras
    from tqdm import tqdm

    out = np.empty((len(images), width), dtype=np.float32)
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=len(starts) < 2):
        batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
        out[start:start + len(batch)] = keras.ops.convert_to_numpy(run(batch)).astype(np.float32)
    return out


def mirrored(images: np.ndarray) -> np.ndarray:
    """``images`` (N, height, width, 3) mirrored left to right: the view ``evaluate.tta: flip`` adds."""
    return images[:, :, ::-1]
