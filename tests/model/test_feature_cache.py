"""Performance features: frozen-feature cache, mirrored strategy, precision, the benchmark runner."""

from __future__ import annotations

import csv
import json
import logging
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from painter_id import feature_cache, model_files, resized, tta
from stages import evaluate, train
from painter_id.errors import PipelineError
from painter_id.backbones import BACKBONES, build_backbone, freeze
from painter_id.params import TrainParams, parse_section
from tests.conftest import REPO_ROOT, make_resized_dataset, run, write_params

# The whole backbone frozen and no augmentation: the case the feature cache serves.
FROZEN = {"model": {"backbone": "MobileNet", "alpha": 0.25, "weights": None, "frozen_layers": "all",
                    "dropout": 0.3},
          "train": {"epochs": 3, "batch_size": 8, "flip": False, "learning_rate": 0.01}}


def setup(root: Path, monkeypatch, overrides: dict) -> None:
    """``root`` as the project dir (cwd) with its own MLflow store and params."""
    monkeypatch.chdir(root)
    for name in ("DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    write_params(root, {section: {**FROZEN.get(section, {}), **overrides.get(section, {})}
                        for section in {*FROZEN, *overrides}})


def history(root: Path) -> np.ndarray:
    with open(root / "metrics" / "history.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([[float(row[key]) for key in train.HISTORY_COLUMNS] for row in rows])


def head_weights(root: Path) -> list[np.ndarray]:
    return keras.models.load_model(root / "models" / "model.keras").get_layer("artist").get_weights()


def cached_files(root: Path) -> list[Path]:
    return sorted((root / feature_cache.CACHE_DIR).glob("*.npy"))


def test_cached_features_train_the_same_head_as_the_full_model(tmp_path, monkeypatch):
    # Dropout stays on (0.3): the head reuses the full model's Dropout layer and seed, so the masks match.
    runs = {}
    for mode in ("off", "auto"):
        root = tmp_path / mode
        make_resized_dataset(root)
        setup(root, monkeypatch, {"train": {"feature_cache": mode}})
        train.main()
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


def test_second_run_hits_the_cache_and_new_data_misses(tmp_path, monkeypatch, caplog):
    make_resized_dataset(tmp_path)
    setup(tmp_path, monkeypatch, {"train": {"epochs": 1}})
    caplog.set_level(logging.INFO, logger="painter_id.feature_cache")
    train.main()
    [stored] = cached_files(tmp_path)
    stamp = stored.stat().st_mtime_ns
    assert "feature cache miss" in caplog.text

    # A head-only change (dropout, learning rate) reuses the features.
    caplog.clear()
    setup(tmp_path, monkeypatch, {"model": {"dropout": 0.5}, "train": {"epochs": 1, "learning_rate": 0.001}})
    train.main()
    assert "feature cache hit" in caplog.text and "feature cache miss" not in caplog.text
    assert cached_files(tmp_path) == [stored] and stored.stat().st_mtime_ns == stamp
    meta = json.loads(stored.with_suffix(".json").read_text())
    assert meta["backbone"] == "MobileNet" and meta["size"] == 32 and meta["frozen_layers"] == 86

    # Other images: another key, computed again.
    caplog.clear()
    make_resized_dataset(tmp_path, seed=1)
    train.main()
    assert "feature cache miss" in caplog.text and len(cached_files(tmp_path)) == 2


def test_evaluate_scores_a_frozen_backbone_from_cached_test_features(tmp_path, monkeypatch, caplog):
    make_resized_dataset(tmp_path)
    setup(tmp_path, monkeypatch, {"train": {"epochs": 1}, "evaluate": {"tta": "flip"}})
    train.main()
    trained = cached_files(tmp_path)
    caplog.set_level(logging.INFO, logger="painter_id.feature_cache")
    evaluate.main()
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
    train.main()
    caplog.clear()
    evaluate.main()
    assert caplog.text.count("feature cache hit") == 2 and "feature cache miss" not in caplog.text
    assert [path.stat().st_mtime_ns for path in views] == stamps

    # Another backbone initialisation is another network: computed again, never served stale.
    setup(tmp_path, monkeypatch, {"train": {"epochs": 1, "seed": 7}, "evaluate": {"tta": "none"}})
    train.main()
    caplog.clear()
    evaluate.main()
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
    augmentation = train.augmentation_layers(TrainParams(flip=flip))
    found = feature_cache.skip_reason(mode, backbone, count, augmentation)
    assert found == reason if reason is None else reason in found


def test_stochastic_depth_backbones_are_not_cached():
    backbone = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dropout(0.2, name="drop")])
    backbone.trainable = False
    assert "random while training (drop" in feature_cache.skip_reason("auto", backbone, len(backbone.layers), [])
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    assert feature_cache.skip_reason("auto", plain, len(plain.layers), []) is None


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    make_resized_dataset(tmp_path)
    write_params(tmp_path, {"model": {"backbone": "simple_cnn", "weights": None},
                            # 18 training and 6 validation rows: every batch splits evenly over 2 replicas.
                            "train": {"epochs": 1, "batch_size": 8, "strategy": "mirrored", "validation_split": 0.25},
                            "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    # The CPU must be split before TensorFlow initialises, so this runs in its own interpreter.
    script = textwrap.dedent("""
        import logging, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from painter_id.runner import run_stage
        from stages.train import main
        run_stage("train", main)
    """)
    proc = run([sys.executable, "-c", script], tmp_path, env={"PYTHONPATH": str(REPO_ROOT)})

    assert "strategy MirroredStrategy: 2 replica(s)" in proc.stderr
    summary = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert summary["epochs_run"] == 1 and np.isfinite(summary["best_val_loss"])
    model = keras.models.load_model(tmp_path / "models" / "model.keras")
    assert model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0).shape == (2, 3)


def test_mixed_precision_trains_in_bfloat16_with_a_float32_softmax(tmp_path, monkeypatch):
    make_resized_dataset(tmp_path)
    setup(tmp_path, monkeypatch, {"model": {"backbone": "simple_cnn", "frozen_layers": 0},
                                  "train": {"epochs": 1, "precision": "mixed_bfloat16", "jit_compile": True}})
    try:
        train.main()
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the policy is per process
    model = keras.models.load_model("models/model.keras")
    conv = next(layer for layer in model.get_layer("simple_cnn").layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.dtype_policy.name == "mixed_bfloat16" and conv.compute_dtype == "bfloat16"
    assert model.get_layer("artist").dtype_policy.name == "float32"
    assert np.isfinite(json.loads(Path("metrics/train.json").read_text())["best_val_loss"])


@pytest.mark.parametrize("key, value, message", [
    ("precision", "float16", "train.precision is 'float16'; use one of float32, mixed_bfloat16, mixed_float16"),
    ("strategy", "tpu", "train.strategy is 'tpu'; use one of auto, mirrored, multi_worker"),
    ("feature_cache", "on", "train.feature_cache is 'on'; use one of auto, off"),
    ("jit_compile", "yes", "train.jit_compile is 'yes'; it must be true or false"),
])
def test_performance_params_are_validated(key, value, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(")):
        parse_section("train", {key: value})


def test_malformed_tf_config_is_one_line(monkeypatch):
    from painter_id import distribute

    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(PipelineError, match="TF_CONFIG: not a valid cluster description"):
        distribute.make_strategy("multi_worker")


def test_benchmark_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "results.json"
    proc = run([sys.executable, "-m", "benchmarks", "--quick", "--images", "12", "--skip", "train,sweep,dvc,memory",
                "--output", str(out)], REPO_ROOT)

    results = json.loads(out.read_text())
    assert {"machine", "versions", "config", "images", "resize", "train", "sweep", "dvc", "memory", "table"} <= set(results)
    assert results["quick"] is True and results["config"]["repeats"] == 1
    assert {"tensorflow", "keras", "dvc"} <= set(results["versions"]) and results["machine"]["cores"] >= 1
    resize = results["resize"]
    assert resize["images"] == 12 and set(resize["images_per_s"]) == {"baseline", "stage", "stage_one_process"}
    assert all(stat["min"] <= stat["median"] <= stat["max"] for stat in resize["images_per_s"].values())
    assert all(results[name] == {"skipped": True} for name in ("train", "sweep", "dvc", "memory"))
    assert "| resize, 12 images" in proc.stdout and results["table"] in proc.stdout
