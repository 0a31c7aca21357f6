"""Performance features: frozen-feature cache, mirrored strategy, precision, the benchmark runner."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import keras
import numpy as np
import pytest

from painter_id.core.params import TrainParams
from painter_id.data import resized
from painter_id.model import feature_cache, model_files, network, tta
from painter_id.model.backbones import BACKBONES, build_backbone, freeze
from painter_id.model.training import HISTORY_COLUMNS
from testkit.images import make_resized_dataset
from testkit.project import cached_files, stage_main
from testkit.project import setup_frozen as setup

# The whole backbone frozen and no augmentation: the case the feature cache serves.
FROZEN = {"model": {"backbone": "MobileNet", "alpha": 0.25, "weights": None, "frozen_layers": "all",
                    "dropout": 0.3},
          "train": {"epochs": 3, "batch_size": 8, "flip": False, "learning_rate": 0.01}}


def history(root: Path) -> np.ndarray:
    with open(root / "metrics" / "history.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([[float(row[key]) for key in HISTORY_COLUMNS] for row in rows])


def head_weights(root: Path) -> list[np.ndarray]:
    return keras.models.load_model(root / "models" / "model.keras").get_layer("artist").get_weights()




@pytest.mark.slow
def test_cached_features_train_the_same_head_as_the_full_model(tmp_path, monkeypatch):
    # Dropout stays on (0.3): the head reuses the full model's Dropout layer and seed, so the masks match.
    runs = {}
    for mode in ("off", "auto"):
        root = tmp_path / mode
        make_resized_dataset(root)
        setup(root, monkeypatch, {"train": {"feature_cache": mode}})
        stage_main("train")
        runs[mode] = root

    assert not cached_files(runs["off"]) and len(cached_files(runs["auto"])) == 1
    np.testing.assert_allclose(history(runs["auto"]), history(runs["off"]), rtol=1e-4, atol=1e-5)
    for cached, full in zip(head_weights(runs["auto"]), head_weights(runs["off"])):
        np.testing.assert_allclose(cached, full, rtol=1e-4, atol=1e-5)
    # The saved model is the whole network either way: same layers, same weights everywhere.
    saved = keras.models.load_model(runs["auto"] / "models" / "model.keras")
    assert any(layer.name.startswith("mobilenet") for layer in saved.layers)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    reference = keras.models.load_model(runs["off"] / "models" / "model.keras")
    np.testing.assert_allclose(saved.predict(pixels, verbose=0), reference.predict(pixels, verbose=0), atol=1e-5)


@pytest.mark.slow
def test_second_run_hits_the_cache_and_new_data_misses(tmp_path, monkeypatch, caplog):
    make_resized_dataset(tmp_path)
    setup(tmp_path, monkeypatch, {"train": {"epochs": 1}})
    caplog.set_level(logging.INFO, logger="painter_id.model.feature_cache")
    stage_main("train")
    [stored] = cached_files(tmp_path)
    stamp = stored.stat().st_mtime_ns
    assert "feature cache miss" in caplog.text

    # A head-only change (dropout, learning rate) reuses the features.
    caplog.clear()
    setup(tmp_path, monkeypatch, {"model": {"dropout": 0.5}, "train": {"epochs": 1, "learning_rate": 0.001}})
    stage_main("train")
    assert "feature cache hit" in caplog.text and "feature cache miss" not in caplog.text
    assert cached_files(tmp_path) == [stored] and stored.stat().st_mtime_ns == stamp
    meta = json.loads(stored.with_suffix(".json").read_text())
    assert meta["backbone"] == "MobileNet" and meta["size"] == 32 and meta["frozen_layers"] == 86

    # Other images: another key, computed again.
    caplog.clear()
    make_resized_dataset(tmp_path, seed=1)
    stage_main("train")
    assert "feature cache miss" in caplog.text and len(cached_files(tmp_path)) == 2


@pytest.mark.slow
def test_evaluate_scores_a_frozen_backbone_from_cached_test_features(tmp_path, monkeypatch, caplog):
    make_resized_dataset(tmp_path)
    setup(tmp_path, monkeypatch, {"train": {"epochs": 1}, "evaluate": {"tta": "flip"}})
    stage_main("train")
    trained = cached_files(tmp_path)
    caplog.set_level(logging.INFO, logger="painter_id.model.feature_cache")
    stage_main("evaluate")
    # One entry per view (the paintings and their mirror images), 9 test rows each.
    views = sorted(set(cached_files(tmp_path)) - set(trained))
    assert len(views) == 2 and caplog.text.count("feature cache miss: computing 9 rows") == 2
    assert all(np.load(path).shape[0] == 9 for path in views)
    model = model_files.load_model()
    test = resized.load_split("test")
    full = tta.predict_probs(model, test.images, 4, "flip")  # the whole network, no cache
    sources = [resized.array_path("test"), resized.table_path("test")]
    cached = tta.cached_probs(model, test.images, "flip", sources, root=tmp_path / "elsewhere")
    np.testing.assert_allclose(cached, full, atol=1e-5)
    with open("metrics/confusion.csv", newline="", encoding="utf-8") as handle:
        predicted = [row["predicted"] for row in csv.DictReader(handle)]
    assert predicted == [model_files.read_labels()[i] for i in full.argmax(axis=1)]

    # A head-only change retrains the head; evaluate reuses both views' features, untouched.
    stamps = [path.stat().st_mtime_ns for path in views]
    setup(tmp_path, monkeypatch, {"train": {"epochs": 2, "learning_rate": 0.05}, "evaluate": {"tta": "flip"}})
    stage_main("train")
    caplog.clear()
    stage_main("evaluate")
    assert caplog.text.count("feature cache hit") == 2 and "feature cache miss" not in caplog.text
    assert [path.stat().st_mtime_ns for path in views] == stamps

    # Another backbone initialisation is another network: computed again, never served stale.
    setup(tmp_path, monkeypatch, {"train": {"epochs": 1, "seed": 7}, "evaluate": {"tta": "none"}})
    stage_main("train")
    caplog.clear()
    stage_main("evaluate")
    assert "feature cache miss: computing 9 rows" in caplog.text and "feature cache hit" not in caplog.text


def test_a_trained_backbone_or_flip_crops_is_predicted_whole():
    size = 32
    backbone = build_backbone(BACKBONES["MobileNet"], size, None, alpha=0.25)
    inputs = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name=feature_cache.POOL_LAYER)(backbone(inputs))
    x = keras.layers.Dropout(0.0, name="dropout")(pooled)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="artist")(x))
    images = np.zeros((2, size, size, 3), np.uint8)
    # Fine-tuned (layers still trainable): its features are its own, nothing to reuse.
    assert feature_cache.frozen_extractor(model) is None
    assert tta.cached_probs(model, images, "none", []) is None
    freeze(backbone, "all")
    assert feature_cache.frozen_extractor(model) is not None
    assert tta.cached_probs(model, images, "flip_crops", []) is None
    # The identity follows the weights: one changed value is another network.
    before = feature_cache.network_identity(feature_cache.extractor_model(model))
    kernel = backbone.weights[0]
    kernel.assign(kernel + 1e-3)
    assert feature_cache.network_identity(feature_cache.extractor_model(model)) != before


@pytest.mark.parametrize("mode, frozen, flip, reason", [
    ("auto", 40, False, "only 40 of 86 backbone layers are frozen"),
    ("auto", "all", True, "augmentation (flip)"),
    ("off", "all", False, "train.feature_cache is off"),
    ("auto", "all", False, None),
])
def test_cache_is_skipped_where_it_would_not_be_exact(mode, frozen, flip, reason):
    backbone = build_backbone(BACKBONES["MobileNet"], 32, None, alpha=0.25)
    count = freeze(backbone, frozen)
    augmentation = network.augmentation_layers(TrainParams(flip=flip))
    found = feature_cache.skip_reason(mode, backbone, count, augmentation)
    assert found == reason if reason is None else reason in found


def test_stochastic_depth_backbones_are_not_cached():
    backbone = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dropout(0.2, name="drop")])
    backbone.trainable = False
    assert "random while training (drop" in feature_cache.skip_reason("auto", backbone, len(backbone.layers), [])
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    assert feature_cache.skip_reason("auto", plain, len(plain.layers), []) is None


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY garbage", "zero-d"])
def test_a_damaged_feature_cache_entry_is_recomputed(tmp_path, content):
    path = tmp_path / "entry.npy"
    if content == "zero-d":
        np.save(path, np.float32(3))
    else:
        path.write_bytes(content)
    assert feature_cache.read_cached(path, 5) is None
    np.save(path, np.zeros((5, 8), np.float32))
    assert feature_cache.read_cached(path, 5).shape == (5, 8)
