"""The train stage: outputs, frozen layers, ImageNet weights (file, cache, offline), validation split."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.data import resized
from painter_id.model import model_files, network
from painter_id.model.backbones import build_backbone
from painter_id.model.datasets import make_dataset
from painter_id.model.registry import BACKBONES
from painter_id.model.training import HISTORY_COLUMNS
from testkit.project import run_stage, setup_project, stage_main, write_params

# Results only: the model's sizes are MLflow params, its time an MLflow metric.
TRAIN_KEYS = {"best_epoch", "epochs_run", "best_val_accuracy", "best_val_loss"}
MOBILENET = {"model": {"backbone": "MobileNet", "alpha": 0.25, "weights": "random"}, "train": {"epochs": 1}}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run_params(db: Path) -> dict[str, str]:
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{db}").search_runs(["1"])[0].data.params


def test_tiny_backbone_trains_end_to_end(tmp_path, resized_dataset, monkeypatch, caplog):
    db = setup_project(tmp_path, monkeypatch, {})
    caplog.set_level(logging.INFO, logger="painter_id.model.progress")

    stage_main("features", "train")

    summary = json.loads(Path("metrics/train.json").read_text())
    assert set(summary) == TRAIN_KEYS
    assert 0 <= summary["best_val_accuracy"] <= 1 and summary["best_val_loss"] > 0
    params = run_params(db)
    assert (params["model.backbone_layers"], params["model.frozen_layers_resolved"], params["model.frozen_params"]) \
        == ("6", "0", "0")
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"] == 2
    history = read_rows(Path("metrics/history.csv"))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert list(history[0]) == HISTORY_COLUMNS
    assert all(0 <= float(row["val_accuracy"]) <= 1 and float(row["learning_rate"]) > 0 for row in history)
    assert json.loads(Path("models/labels.json").read_text()) == ["Ann", "Bob", "Cy"]
    run = json.loads(Path("models/run.json").read_text())
    assert set(run) == {"run_id", "experiment_id", "tracking_uri", "model_id"}
    assert run["tracking_uri"].endswith("mlflow.db") and run["model_id"].startswith("m-")  # mlflow.log_model: true
    model = keras.models.load_model("models/model.keras")
    assert model.predict(np.zeros((1, 32, 32, 3), np.uint8), verbose=0).shape == (1, 3)
    assert not [p for p in Path("models").iterdir() if p.name.startswith(".")]  # no temporaries left
    progress = [r.getMessage() for r in caplog.records if r.name == "painter_id.model.progress"]
    assert [line.split(":")[0] for line in progress if "batch 1/" in line] == ["epoch 1/2", "epoch 2/2"]
    assert len([line for line in progress if " - val_accuracy " in line]) == 2  # the per-epoch lines


def test_validation_split_zero_trains_on_every_row_and_stops_on_training_loss(tmp_path, resized_dataset,
                                                                              monkeypatch):
    db = setup_project(tmp_path, monkeypatch, {"train": {"epochs": 3, "validation_split": 0}})
    stage_main("features", "train")

    summary = json.loads(Path("metrics/train.json").read_text())
    assert summary["best_val_accuracy"] is None and summary["best_val_loss"] is None
    history = read_rows(Path("metrics/history.csv"))
    losses = [float(row["loss"]) for row in history]
    assert summary["best_epoch"] == 1 + losses.index(min(losses)) and summary["epochs_run"] == 3
    assert all(row["val_loss"] == "nan" for row in history)
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    run = client.search_runs(["1"])[0]
    assert "val_loss" not in run.data.metrics and "train.best_val_loss" not in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 3
    split = resized.load_split("train")
    train_idx, val_idx = resized.validation_split(split, 0, seed=1)
    assert sorted(train_idx) == list(range(len(split.paths))) and len(val_idx) == 0


def test_same_seed_trains_the_same_model(tmp_path, resized_dataset, monkeypatch):
    setup_project(tmp_path, monkeypatch, {"train": {"epochs": 1}})
    stage_main("features", "train")
    first = Path("metrics/history.csv").read_text()
    stage_main("features", "train")
    assert Path("metrics/history.csv").read_text() == first


@pytest.mark.slow
def test_frozen_layers_keep_their_weights_and_batchnorm_statistics(tmp_path, resized_dataset, monkeypatch,
                                                                    mobilenet_weights):
    db = setup_project(tmp_path, monkeypatch, {
        "model": {**MOBILENET["model"], "weights": "file", "weights_file": str(mobilenet_weights), "frozen_layers": 40,
                  "batch_norm": "trainable"},
        "train": {"epochs": 1, "learning_rate": 0.01, "backbone_learning_rate_scale": 1.0}})
    stage_main("features", "train")

    params = run_params(db)
    assert params["model.backbone_layers"] == "86" and params["model.frozen_layers_resolved"] == "40"
    model = keras.models.load_model("models/model.keras")
    trained = next(layer for layer in model.layers if layer.name.startswith("mobilenet"))
    original = build_backbone(BACKBONES["MobileNet"], 32, str(mobilenet_weights), alpha=0.25)
    changed = [
        any(not np.array_equal(a, b) for a, b in zip(new.get_weights(), old.get_weights()))
        for new, old in zip(trained.layers, original.layers)
    ]
    with_weights = [bool(layer.weights) for layer in original.layers]
    assert not any(changed[:40])  # kernels, BN gamma/beta and moving mean/variance
    assert all(c for c, w in zip(changed[40:], with_weights[40:]) if w)  # the rest learned
    bn_after = [i for i, layer in enumerate(original.layers) if isinstance(layer, keras.layers.BatchNormalization)]
    assert any(i < 40 for i in bn_after) and any(changed[i] for i in bn_after if i >= 40)


def test_pooled_layers_and_l2_shape_the_head_and_are_recorded(tmp_path, resized_dataset, monkeypatch,
                                                              mobilenet_weights):
    pooled = ["conv_pw_5_relu", "conv_pw_11_relu"]
    db = setup_project(tmp_path, monkeypatch, {
        "model": {**MOBILENET["model"], "weights": "file", "weights_file": str(mobilenet_weights),
                  "frozen_layers": "all", "pooled_layers": pooled, "l2": 0.01},
        "train": {"epochs": 2, "flip": False}})
    stage_main("features", "train")

    # A frozen backbone without augmentation: the head was solved on the features, and the model
    # is their extractor plus the head, assembled into one Keras model on load.
    assert Path("models/head.npz").is_file() and not Path("models/model.keras").exists()
    model = model_files.load_model("models")
    # MobileNet alpha 0.25: 256 channels at the end, 64 after block 5, 128 after block 11
    assert model.get_layer("pool").output.shape[-1] == 256 + 64 + 128
    probabilities = model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    params = run_params(db)
    assert params["model.pooled_layers"] == "[conv_pw_5_relu, conv_pw_11_relu]" and params["model.l2"] == "0.01"
    assert params["model.trainable_params"] == str((256 + 64 + 128) * 3 + 3)  # the head alone


@pytest.mark.slow
def test_unknown_pooled_layer_exits_2_with_a_suggestion(tmp_path, resized_dataset):
    write_params(tmp_path, {**MOBILENET, "model": {**MOBILENET["model"], "pooled_layers": ["conv_pw_11_rel"]},
                            "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    run_stage("features", tmp_path)
    proc = run_stage("train", tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "model.pooled_layers names 'conv_pw_11_rel'" in last and "did you mean conv_pw_11_relu?" in last
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "models" / "model.keras").exists()


@pytest.mark.slow
def test_frozen_layers_beyond_the_backbone_exit_2_naming_the_count(tmp_path, resized_dataset):
    write_params(tmp_path, {**MOBILENET, "model": {**MOBILENET["model"], "frozen_layers": 100},
                            "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})

    run_stage("features", tmp_path)  # not "all": features says not used, without TensorFlow
    proc = run_stage("train", tmp_path, check=False)

    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: train:")]
    assert len(errors) == 1 and "model.frozen_layers is 100" in errors[0] and "86 layers" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "models" / "model.keras").exists()


@pytest.mark.slow
def test_imagenet_weights_from_the_keras_cache(tmp_path, resized_dataset, mobilenet_weights):
    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    (cache / mobilenet_weights.name).write_bytes(mobilenet_weights.read_bytes())
    write_params(tmp_path, {**MOBILENET, "model": {**MOBILENET["model"], "weights": "imagenet",
                                                   "frozen_layers": "all"},
                            "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})

    for stage in ("features", "train"):
        run_stage(stage, tmp_path, env={"KERAS_HOME": str(tmp_path / "keras_home")})

    model = keras.models.load_model(tmp_path / "models" / "model.keras")  # flip is on: trained from the pixels
    backbone = next(layer for layer in model.layers if layer.name.startswith("mobilenet"))
    with h5py.File(mobilenet_weights, "r") as weights:
        np.testing.assert_array_equal(backbone.get_layer("conv1").kernel.numpy(), weights["conv1/conv1/kernel:0"][()])
    assert run_params(tmp_path / "mlflow.db")["model.frozen_layers_resolved"] == "86"


@pytest.mark.slow
def test_imagenet_weights_offline_is_one_line_saying_how_to_provide_them(tmp_path, resized_dataset):
    write_params(tmp_path, {"model": {"backbone": "MobileNetV2", "alpha": 0.35, "weights": "imagenet"},
                            "train": {"epochs": 1}, "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    # An empty cache and a proxy that refuses connections: offline even where the internet is reachable.
    dead = "http://127.0.0.1:9"
    env = {"KERAS_HOME": str(tmp_path / "empty"), "HTTPS_PROXY": dead, "https_proxy": dead,
           "HTTP_PROXY": dead, "http_proxy": dead}

    run_stage("features", tmp_path, env=env)
    proc = run_stage("train", tmp_path, check=False, env=env)

    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: train:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "KERAS_HOME" in errors[0] and "model.weights" in errors[0]
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5" in errors[0]


def test_unusable_store_stops_before_training(tmp_path, resized_dataset, monkeypatch):
    setup_project(tmp_path, monkeypatch, {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")
    built = []
    monkeypatch.setattr(network, "build_model", lambda *args, **kwargs: built.append(args))

    with pytest.raises(PipelineError, match="does not exist"):
        stage_main("features", "train")
    assert built == [] and not Path("models/model.keras").exists()


def test_image_size_below_backbone_minimum_is_reported(tmp_path, resized_dataset, monkeypatch):
    setup_project(tmp_path, monkeypatch, {"model": {"backbone": "InceptionV3"}})
    with pytest.raises(PipelineError, match="resize.image_size is 32 .* at least 75"):
        stage_main("features", "train")


def _split(paths, artists, sources) -> resized.Split:
    return resized.Split(np.zeros((len(paths), 2, 2, 3), np.uint8), list(paths), list(artists), list(sources))


def test_validation_split_keeps_copies_with_their_original_and_is_stratified():
    paths, artists, sources = [], [], []
    for artist, originals in (("A", 20), ("B", 10), ("C", 1)):
        for n in range(originals):
            original = f"data/raw/images/{artist}/{n}.jpg"
            paths.append(original), artists.append(artist), sources.append("")
            for k in range(2):  # two oversampled copies of each
                paths.append(f"data/oversampled/images/{artist}/{n}_aug{k}.jpg")
                artists.append(artist), sources.append(original)
    split = _split(paths, artists, sources)

    train_idx, val_idx = resized.validation_split(split, 0.2, seed=3)

    groups = split.groups()
    assert not {groups[i] for i in train_idx} & {groups[i] for i in val_idx}
    assert sorted([*train_idx, *val_idx]) == list(range(len(paths)))
    val_originals = [paths[i] for i in val_idx if not sources[i]]
    assert sum("/A/" in p for p in val_originals) == 4 and sum("/B/" in p for p in val_originals) == 2
    assert not any("/C/" in p for p in val_originals)  # a single original stays in training
    assert np.array_equal(resized.validation_split(split, 0.2, seed=3)[1], val_idx)
    assert not np.array_equal(resized.validation_split(split, 0.2, seed=4)[1], val_idx)


def test_streamed_and_in_memory_pipelines_give_the_same_rows():
    images = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    labels = np.arange(10, dtype=np.int64)
    indices = np.array([1, 3, 4, 7, 9])
    in_memory = make_dataset(images, labels, indices, 2, seed=1)
    streamed = make_dataset(images, labels, indices, 2, seed=1, max_in_memory_bytes=0)
    for pipeline in (in_memory, streamed):
        epochs = [np.concatenate([y.numpy() for _, y in pipeline]) for _ in range(2)]
        assert sorted(epochs[0]) == sorted(epochs[1]) == list(indices)
        assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch
        x, y = next(iter(pipeline))
        np.testing.assert_array_equal(x.numpy(), images[y.numpy()])
    ordered = make_dataset(images, None, None, 4, max_in_memory_bytes=0)
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x in ordered]), images)


def test_arrays_and_tables_that_disagree_are_rejected(tmp_path, resized_dataset):
    np.save(resized_dataset / "train.npy", np.zeros((5, 32, 32, 3), np.uint8))
    with pytest.raises(PipelineError, match="holds 5 images but .* lists 24"):
        resized.load_split("train", resized_dataset)
    os.remove(resized_dataset / "test.npy")
    with pytest.raises(PipelineError, match="test.npy: not found"):
        resized.load_split("test", resized_dataset)
