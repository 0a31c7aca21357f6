"""Frozen-feature cache: with the whole backbone frozen, run it over the images once per sweep.

When ``model.frozen_layers`` freezes the whole backbone and no augmentation layer is on,
nothing before the head changes during training, so the pooled backbone output of every
training row is the same in every epoch and every run that shares the backbone, its
weights, the image size and the data. :func:`features_for` computes those features once
(``.cache/features/<key>.npy`` under the main workspace, so queued ``dvc exp run``
experiments share them) and :func:`head_model` trains only the dropout + softmax head on
them, with the very layer objects of the full model: the saved model is the usual
backbone + head, and evaluate/predict do not know the difference.

Not cached: a partly frozen backbone (its trainable part still changes every step, and
graphs such as InceptionResNetV2's cannot be cut at an arbitrary layer index), any
augmentation (the backbone then sees different pixels every epoch), and backbones with
layers that are random while training (EfficientNet's stochastic depth, made of Dropout
layers), whose training output is not the cached inference output. ConvNeXt's stochastic
depth is off in ``keras.applications`` (``drop_path_rate`` 0: no such layer is built), and
its LayerScale is deterministic; tests/test_backbones.py checks this against the backbones' own
training-mode output.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from painter_id.core.atomic import atomic_path, write_json
from painter_id.core.compat import all_layers
from painter_id.core.workspace import main_workspace
from painter_id.data.images import sha256_file

log = logging.getLogger(__name__)

CACHE_DIR = Path(".cache/features")
# Bump when what is stored changes, so old files are never read as new ones.
CACHE_FORMAT = 1
# Rows per forward pass while computing features: fixed, so the cache does not depend on train.batch_size.
FEATURE_BATCH = 64
POOL_LAYER = "pool"
HEAD_LAYERS = ("dropout", "artist")
_RANDOM_LAYERS = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                  keras.layers.AlphaDropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
                  keras.layers.SpatialDropout3D)


def cache_dir(root: Optional[Path] = None) -> Path:
    """``<main workspace>/.cache/features``: one folder for the workspace and its queued experiments."""
    return (root or main_workspace()) / CACHE_DIR


def skip_reason(mode: str, backbone: keras.Model, frozen: int, augmentation: Sequence[keras.layers.Layer]) -> Optional[str]:
    """Why the features cannot be cached for this run, or ``None`` when they can."""
    if mode == "off":
        return "train.feature_cache is off"
    if frozen < len(backbone.layers):
        return (f"only {frozen} of {len(backbone.layers)} backbone layers are frozen; "
                "set model.frozen_layers to all")
    if augmentation:
        names = ", ".join(layer.name for layer in augmentation)
        return f"augmentation ({names}) changes the backbone's input every epoch; turn it off to cache"
    random = [layer.name for layer in all_layers(backbone)[1:] if isinstance(layer, _RANDOM_LAYERS)]
    if random:
        return f"{backbone.name} has layers that are random while training ({random[0]}, ...)"
    return None


def weights_identity(weights: Optional[str], seed: int) -> str:
    """What fixes the backbone's weights: the file's sha256, ``imagenet``, or the seed of a random init."""
    if weights is None:
        return f"random:{seed}"
    if weights == "imagenet":
        return f"imagenet:keras-{keras.__version__}"
    return f"file:{sha256_file(weights)}"


def cache_key(parts: dict) -> str:
    """A short hash of everything the features depend on (``parts`` is JSON-serialisable)."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def data_identity(paths: Sequence[Path]) -> str:
    """The sha256 of the given files (the resized array and its table), together."""
    return hashlib.sha256("".join(sha256_file(p) for p in paths).encode("ascii")).hexdigest()


def extractor_model(model: keras.Model) -> keras.Model:
    """``model`` up to its pooled backbone output: pixels in, the head's input out."""
    return keras.Model(model.inputs, model.get_layer(POOL_LAYER).output, name="features")


def frozen_extractor(model: keras.Model) -> Optional[keras.Model]:
    """The part of a saved model before its head, when it has this project's head and nothing before it trains.

    Such a part is the same network in every run that froze the same backbone (a sweep over
    head params), so its features of the same images can be cached; ``None`` otherwise
    (a fine-tuned backbone, or another model's layout).
    """
    names = {layer.name for layer in model.layers}
    if POOL_LAYER not in names or not names.issuperset(HEAD_LAYERS):
        return None
    extractor = extractor_model(model)
    return None if extractor.trainable_weights else extractor


def network_identity(network: keras.Model) -> str:
    """The sha256 of a network's architecture and of every weight value.

    Layer names are replaced by their position first: Keras numbers unnamed layers per
    process (``input_layer``, ``input_layer_1``...), and the same network must hash the same
    whichever process built it.
    """
    names = {layer.name: f"layer{i}" for i, layer in enumerate(all_layers(network))}
    config = _renamed(json.loads(network.to_json()), names)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8"))
    for weight in network.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{value.dtype}:{value.shape}".encode("utf-8"))
        digest.update(value.tobytes())
    return digest.hexdigest()


def _renamed(value, names: dict[str, str]):
    if isinstance(value, dict):
        return {key: _renamed(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item, names) for item in value]
    return names.get(value, value) if isinstance(value, str) else value


def compute_features(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The pooled backbone output (the head's input) of every row of ``images``, as float32."""
    extractor = extractor_model(model)
    width = int(extractor.output.shape[-1])
    out = np.empty((len(images), width), dtype=np.float32)
    # One compiled function, fed batch by batch from the memory map: memory holds one batch of pixels.
    forward = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)
    for start in tqdm(range(0, len(images), FEATURE_BATCH), desc="backbone features", unit="batch"):
        batch = np.asarray(images[start:start + FEATURE_BATCH])
        out[start:start + len(batch)] = keras.ops.convert_to_numpy(forward(batch)).astype(np.float32)
    return out


def read_cached(path: Path, rows: int) -> Optional[np.ndarray]:
    """The features stored at ``path`` if it holds ``rows`` float32 rows; ``None`` when absent or damaged.

    A damaged entry (empty, truncated, another shape or type) is recomputed, never trusted.
    """
    if not path.is_file():
        return None
    try:
        cached = np.load(path, allow_pickle=False)
    except Exception as exc:  # NumPy raises OSError, ValueError, EOFError... for a damaged file
        log.warning("feature cache %s unreadable (%s); computing again", path, type(exc).__name__)
        return None
    if cached.ndim != 2 or cached.dtype != np.float32 or cached.shape[0] != rows:
        log.warning("feature cache %s holds %s %s, not %d rows of features; computing again",
                    path, cached.dtype, cached.shape, rows)
        return None
    return cached


def features_for(model: keras.Model, images: np.ndarray, parts: dict, root: Optional[Path] = None) -> tuple[np.ndarray, bool]:
    """The cached features for ``parts`` (see :func:`cache_key`), computed and stored on a miss.

    Returns ``(features, hit)``.
    """
    folder = cache_dir(root)
    key = cache_key(parts)
    path = folder / f"{key}.npy"
    cached = read_cached(path, len(images))
    if cached is not None:
        log.info("feature cache hit: %s", path)
        return cached, True
    log.info("feature cache miss: computing %d rows into %s", len(images), path)
    features = compute_features(model, images)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.save(tmp, features, allow_pickle=False)
    write_json(folder / f"{key}.json", {"format": CACHE_FORMAT, **parts, "shape": list(features.shape)})
    return features, False


def head_model(model: keras.Model) -> keras.Model:
    """Features -> the full model's own dropout and softmax layers: training it trains ``model``'s head."""
    width = int(model.get_layer(POOL_LAYER).output.shape[-1])
    x = inputs = keras.Input((width,), name="features")
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def head_probs(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """``model``'s class probabilities from cached features: its own head, at inference (dropout off)."""
    return np.asarray(head_model(model).predict(features, batch_size=FEATURE_BATCH * 4, verbose=0), dtype=np.float32)
