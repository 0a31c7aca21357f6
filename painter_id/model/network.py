"""The network the train stage fits: augmentation, preprocessing, backbone, pooled features, head.

``pixels -> augmentation -> Preprocess -> backbone -> pool -> dropout -> artist``: the saved
model takes raw 0..255 RGB pixels, so evaluate, predict and serving need no preprocessing of
their own. The layers named ``pool``, ``dropout`` and ``artist`` are the head, which the
frozen-feature path (:mod:`painter_id.model.features`, the features stage) trains alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import keras

from painter_id.core.params import ModelParams, Params, TrainParams
from painter_id.core.workspace import main_workspace
from painter_id.model import distribute, style
from painter_id.model.backbones import Preprocess, build_backbone, freeze, resolve_weights
from painter_id.model.registry import Backbone, get_backbone

log = logging.getLogger(__name__)


def augmentation_layers(params: TrainParams) -> list[keras.layers.Layer]:
    """The random augmentation layers ``train.*`` switches on; active only while fitting."""
    seed = params.seed
    layers = []
    if params.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="flip"))
    if params.rotation_turns > 0:
        layers.append(keras.layers.RandomRotation(params.rotation_turns, seed=seed + 1, name="rotation"))
    if params.zoom_fraction > 0:
        layers.append(keras.layers.RandomZoom(params.zoom_fraction, seed=seed + 2, name="zoom"))
    if params.contrast > 0:
        layers.append(keras.layers.RandomContrast(params.contrast, seed=seed + 3, name="contrast"))
    if params.crop_fraction > 0:
        # A crop that keeps the painter's hand: zoomed in by up to crop_fraction (a smaller square,
        # scaled back up), then moved by up to half of that, so the square lies anywhere in the
        # painting; the mirrored border only shows where the zoom drew less than the shift. Both
        # layers pass pixels through untouched outside training, unlike RandomCrop, which crops
        # the centre at inference.
        f = params.crop_fraction
        layers.append(keras.layers.RandomZoom((-f, 0.0), seed=seed + 4, fill_mode="reflect", name="crop_zoom"))
        layers.append(keras.layers.RandomTranslation(f / 2, f / 2, seed=seed + 5, fill_mode="reflect",
                                                     name="crop_shift"))
    return layers


def hold_batch_norm(backbone: keras.Model) -> int:
    """Put every BatchNormalization layer of ``backbone`` in inference mode for good; return how many.

    Keras 3 runs a BatchNormalization layer whose ``trainable`` is False in inference mode: its
    moving statistics stay as loaded, and its scale and offset do not train, while the
    convolutions around it still learn (``model.batch_norm: frozen``).
    """
    from painter_id.core.compat import all_layers

    held = [layer for layer in all_layers(backbone) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in held:
        layer.trainable = False
    return len(held)


def build_model(entry: Backbone, size: int, n_classes: int, model_params: ModelParams,
                train_params: TrainParams, root: Optional[Path] = None) -> tuple[keras.Model, keras.Model, int]:
    """Input -> augmentation -> :class:`Preprocess` -> backbone -> pooling, dropout, softmax.

    With ``model.pooled_layers`` the layer named ``pool`` concatenates the pooled outputs of
    those backbone layers and of its last one (``model.pooling``), with ``model.gram_layers``
    their Gram matrices, at each of ``model.scales`` (:mod:`painter_id.model.style`). Returns
    ``(model, backbone, frozen)`` where ``frozen`` is the resolved ``model.frozen_layers``.
    """
    # A relative weights path means the same file in a queued experiment's copy of the repo.
    weights = resolve_weights(model_params.weights, model_params.weights_file, (root or main_workspace()).absolute())
    backbone = build_backbone(entry, size, weights, model_params.alpha, any_size=model_params.scales != (1.0,))
    frozen = freeze(backbone, model_params.frozen_layers)
    # Random weights have no statistics worth keeping: held, they would normalise with 0 and 1.
    if model_params.batch_norm == "frozen" and model_params.weights != "random":
        hold_batch_norm(backbone)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = inputs
    for layer in augmentation_layers(train_params):
        x = layer(x)
    x = Preprocess(entry.preprocess, name="preprocess")(x)
    x = style.pooled_features(backbone, x, model_params, size, entry.min_size)
    x = keras.layers.Dropout(model_params.dropout, seed=train_params.seed, name="dropout")(x)
    l2 = keras.regularizers.L2(model_params.l2) if model_params.l2 else None
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", kernel_regularizer=l2,
                                 name="artist")(x)
    return keras.Model(inputs, outputs, name=f"{entry.name}_painter"), backbone, frozen


def count_params(weights: list) -> int:
    """Number of scalars in a list of Keras variables."""
    return int(sum(math.prod(w.shape) for w in weights))


@dataclass(frozen=True)
class Network:
    """The model being trained, its backbone, the registry entry it was built from, and the layers frozen."""

    entry: Backbone
    model: keras.Model
    backbone: keras.Model
    frozen: int
    strategy: object  # the tf.distribute.Strategy the model was built in

    def sizes(self) -> dict[str, int]:
        """The model's size: backbone layers, layers frozen, trainable and frozen parameters."""
        return {"backbone_layers": len(self.backbone.layers), "frozen_layers_resolved": self.frozen,
                "trainable_params": count_params(self.model.trainable_weights),
                "frozen_params": count_params(self.model.non_trainable_weights)}


def build_network(params: Params, size: int, n_classes: int) -> Network:
    """The distribution strategy, then the model built in its scope, seeded and at ``train.precision``."""
    import tensorflow as tf

    train_params = params.train
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = distribute.make_strategy(train_params.strategy)
    distribute.check_batch_size(strategy, train_params.batch_size)
    keras.utils.set_random_seed(train_params.seed)
    tf.config.experimental.enable_op_determinism()
    # Grappler rewrites every traced graph before its first run: on a 769-layer NASNetMobile on 2
    # CPU cores it took 23 s of the 61 s before the first batch, and its steps ran 20% slower.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not params.runtime.graph_optimizer})
    # Keras keeps the policy per process: set every time, float32 included (the softmax stays float32).
    keras.mixed_precision.set_global_policy(train_params.precision)
    entry = get_backbone(params.model.backbone)
    with strategy.scope():
        model, backbone, frozen = build_model(entry, size, n_classes, params.model, train_params)
    net = Network(entry, model, backbone, frozen, strategy)
    sizes = net.sizes()
    log.info("backbone %s: %d layers, %d frozen; %d trainable / %d frozen params", entry.name,
             sizes["backbone_layers"], frozen, sizes["trainable_params"], sizes["frozen_params"])
    if frozen and params.model.weights == "random":
        log.warning("model.frozen_layers freezes %d layers of randomly initialised weights: they never learn, so "
                    "the model sees through random filters; freeze learnt weights (model.weights: imagenet or file)",
                    frozen)
    return net


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` to ``path`` atomically, without optimizer state."""
    from painter_id.core.atomic import atomic_path

    with atomic_path(path) as tmp:
        # Same layers, not compiled: the file holds no optimizer state (3x the weights with Adam).
        keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)
