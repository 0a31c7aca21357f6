"""Style statistics of feature maps, as Keras layers inside the saved model.

A painter's hand shows in how textures and strokes co-occur, which averaging each channel
over the painting (the usual global average pooling) throws away. :class:`GramPool` keeps
the second-order statistics, the Gram matrix of a feature map as in neural style transfer
and bilinear pooling; :class:`MeanStdPool` keeps the cheaper first and second moment of
every channel. Both are registered with Keras, so a ``models/model.keras`` that holds them
loads anywhere this module has been imported (:mod:`painter_id.model.model_files` does).
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from painter_id.core.errors import PipelineError
from painter_id.model.backbones import feature_map, with_pooled_layers

# Floor under norms and variances: a black (all-zero) map gives ~0, never NaN (nor an infinite sqrt gradient).
EPSILON = 1e-12


def projection(channels: int, dim: int, seed: int) -> np.ndarray:
    """A fixed ``channels x dim`` Gaussian projection, variance ``1/dim`` (identity when ``dim >= channels``).

    Projecting the channels first keeps the Gram at ``dim (dim + 1) / 2`` features whatever the
    layer's width (a 256-channel map would give 32,896), and a random projection needs no fitting.
    """
    if dim >= channels:
        return np.eye(channels, dtype=np.float32)
    return (np.random.default_rng(seed).standard_normal((channels, dim)) / np.sqrt(dim)).astype(np.float32)


@keras.saving.register_keras_serializable(package="painter_id")
class GramPool(keras.layers.Layer):
    """Feature map ``(batch, h, w, c)`` -> the upper triangle of its channels' Gram matrix.

    The channels are projected to ``dim`` (see :func:`projection`), the Gram matrix is
    averaged over the positions (so it does not grow with the image size), then the signed
    square root and L2 normalisation of bilinear pooling tame its heavy-tailed entries.
    Output: ``dim (dim + 1) / 2`` features (``c (c + 1) / 2`` when ``c <= dim``).
    """

    def __init__(self, dim: int = 64, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if dim < 1:
            raise ValueError(f"GramPool dim must be at least 1, not {dim}")
        self.dim = int(dim)
        self.seed = int(seed)

    def width(self, channels: int) -> int:
        """The projected channel count for an input of ``channels``."""
        return min(self.dim, channels)

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        # A weight, not a constant: saved with the model, so a reload never depends on NumPy's generator.
        self.project = self.add_weight(name="projection", shape=(channels, self.width(channels)), trainable=False,
                                       initializer=keras.initializers.Constant(projection(channels, self.dim, self.seed)))
        d = self.width(channels)
        rows, cols = np.triu_indices(d)
        self.upper = (rows * d + cols).astype("int32")

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        shape = keras.ops.shape(x)
        flat = keras.ops.reshape(x, (shape[0], shape[1] * shape[2], shape[3]))
        flat = keras.ops.matmul(flat, keras.ops.cast(self.project, self.compute_dtype))
        positions = keras.ops.cast(shape[1] * shape[2], self.compute_dtype)
        gram = keras.ops.matmul(keras.ops.transpose(flat, (0, 2, 1)), flat) / positions
        d = gram.shape[-1]
        upper = keras.ops.take(keras.ops.reshape(gram, (-1, d * d)), self.upper, axis=1)
        signed = keras.ops.sign(upper) * keras.ops.sqrt(keras.ops.abs(upper))
        norm = keras.ops.sqrt(keras.ops.sum(signed * signed, axis=1, keepdims=True))
        return signed / keras.ops.maximum(norm, EPSILON)

    def compute_output_shape(self, input_shape):
        d = self.width(int(input_shape[-1]))
        return (input_shape[0], d * (d + 1) // 2)

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "seed": self.seed}


@keras.saving.register_keras_serializable(package="painter_id")
class MeanStdPool(keras.layers.Layer):
    """Feature map ``(batch, h, w, c)`` -> ``2c`` features: every channel's mean, then its standard deviation."""

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        mean = keras.ops.mean(x, axis=(1, 2))
        variance = keras.ops.mean(keras.ops.square(x), axis=(1, 2)) - keras.ops.square(mean)
        return keras.ops.concatenate([mean, keras.ops.sqrt(keras.ops.maximum(variance, EPSILON))], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * int(input_shape[-1]))


def scaled_views(x, size: int, scales: Sequence[float], min_size: int) -> list:
    """``x`` (``size`` px, preprocessed) resized by each of ``scales`` inside the model; 1.0 is ``x`` itself."""
    views = []
    for k, scale in enumerate(scales):
        side = round(size * scale)
        if side < min_size:
            raise PipelineError(f"params.yaml: model.scales has {scale}, which makes the {size} px images {side} px, "
                                f"below the backbone's minimum of {min_size}; use a scale of at least {min_size / size:.3g}")
        views.append(x if side == size else keras.layers.Resizing(side, side, name=f"scale_{k}")(x))
    return views


def pooled_features(backbone: keras.Model, x, params, size: int, min_size: int = 1):
    """The head's input, the output of the layer named ``pool``, from the preprocessed ``size`` px pixels ``x``.

    ``params`` (:class:`painter_id.core.params.ModelParams`): the last backbone map and those of
    ``pooled_layers`` are pooled by ``pooling`` (``avg``: the mean of every channel; ``mean_std``:
    :class:`MeanStdPool`), the maps of ``gram_layers`` by :class:`GramPool` at ``gram_dim``, for
    the painting at each of ``scales`` (the backbone must then be built for any size); all of it
    concatenated. With the defaults this is the plain global average pooling of the last map,
    named ``pool`` as before.
    """
    pooled_layers, gram_layers = list(params.pooled_layers), list(params.gram_layers)
    extra = [name for name in gram_layers if name not in pooled_layers]
    for name in extra:  # checked first, so a misspelt name is blamed on the param that holds it
        feature_map(backbone, name, "model.gram_layers")
    extractor = with_pooled_layers(backbone, pooled_layers + extra)
    views = scaled_views(x, size, params.scales, min_size)

    def pool(name: str):
        return keras.layers.GlobalAveragePooling2D(name=name) if params.pooling == "avg" else MeanStdPool(name=name)

    parts = []
    for k, view in enumerate(views):
        maps = extractor(view)
        maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
        if len(views) == 1 and len(maps) == 1 and not gram_layers:
            return pool("pool")(maps[0])
        suffix = f"_s{k}" if k else ""  # the first scale keeps the names models had before scales existed
        by_name = dict(zip(pooled_layers + extra, maps[1:]))
        parts += [pool(f"pool_{i}{suffix}")(m) for i, m in enumerate(maps[:1 + len(pooled_layers)])]
        parts += [GramPool(params.gram_dim, name=f"gram_{i}{suffix}")(by_name[name]) for i, name in enumerate(gram_layers)]
    return keras.layers.Concatenate(name="pool")(parts)


def cache_parts(params) -> dict:
    """What ``params``' style settings add to the feature-cache key; nothing at their defaults, so older entries stay valid."""
    parts = {}
    if params.pooling != "avg":
        parts["pooling"] = params.pooling
    if params.gram_layers:
        parts["gram"] = {"layers": list(params.gram_layers), "dim": params.gram_dim}
    if tuple(params.scales) != (1.0,):
        parts["scales"] = list(params.scales)
    return parts
