"""Test-time augmentation: the views, their averaged predictions, and evaluate.tta."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import keras
import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.core.params import parse_section
from painter_id.data import resized
from painter_id.model import model_files, tta
from testkit.project import setup_project, stage_main


def batch(n: int = 5, size: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def tiny_model(size: int = 20, n_classes: int = 3) -> keras.Model:
    """A real, untrained Keras model whose output depends on where pixels are (so a mirror changes it)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))


def test_views_of_each_mode():
    x = batch()
    assert len(tta.views(x, "none")) == 1 and tta.views(x, "none")[0] is x
    original, mirror = tta.views(x, "flip")
    assert np.array_equal(mirror[:, :, 0], x[:, :, -1]) and np.array_equal(mirror[:, :, ::-1], original)
    four = tta.views(x, "flip_crops")
    assert len(four) == 4 and all(view.shape == x.shape for view in four)
    zoom = four[2]
    assert not np.allclose(zoom, x) and np.array_equal(four[3], zoom[:, :, ::-1])
    # A 1 px white frame on black: the 90% centre crop of 20 px drops it, and the zoom is all black.
    framed = np.full((2, 20, 20, 3), 255, np.uint8)
    framed[:, 1:-1, 1:-1] = 0
    assert tta.centre_zoom(framed).max() < 1 and np.allclose(tta.centre_zoom(framed * 0 + 77), 77)
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        tta.views(x, "rotate")


def test_flip_averages_the_model_on_the_original_and_mirrored_images():
    model, x = tiny_model(), batch()
    plain = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    assert np.abs(plain - mirrored).max() > 1e-3  # the mirror really changes the prediction

    flip = tta.predict_probs(model, x, batch_size=2, mode="flip")

    np.testing.assert_allclose(flip, (plain + mirrored) / 2, atol=1e-6)
    np.testing.assert_allclose(tta.predict_probs(model, x, 5, "none"), plain, atol=1e-6)
    crops = tta.predict_probs(model, x, 3, "flip_crops")
    np.testing.assert_allclose(crops.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(crops, tta.predict_probs(model, x, 5, "flip_crops"), atol=1e-6)


def test_evaluate_tta_param_is_validated():
    assert parse_section("evaluate", {}).tta == "none"
    assert parse_section("evaluate", {"tta": "flip_crops"}).tta == "flip_crops"
    with pytest.raises(PipelineError, match="evaluate.tta is 'flips'; use one of none, flip, flip_crops"):
        parse_section("evaluate", {"tta": "flips"})


def test_evaluate_with_tta_scores_the_averaged_predictions(tmp_path, resized_dataset, monkeypatch, caplog):
    setup_project(tmp_path, monkeypatch, {"train": {"epochs": 1}, "evaluate": {"tta": "flip_crops"}})
    stage_main("features", "train")
    caplog.set_level(logging.INFO, logger="stages.evaluate")

    stage_main("evaluate")

    assert "test-time augmentation: flip_crops" in caplog.text
    metrics = json.loads(Path("metrics/eval.json").read_text())
    assert set(metrics) == {"scored_on", "accuracy", "top5_accuracy", "balanced_accuracy", "macro_f1"}
    assert metrics["scored_on"] == "9 test paintings"
    test = resized.load_split("test")
    labels = model_files.read_labels()
    probs = tta.predict_probs(model_files.load_model(), test.images, 4, "flip_crops")
    with open("metrics/confusion.csv", newline="", encoding="utf-8") as handle:
        predicted = [row["predicted"] for row in csv.DictReader(handle)]
    assert predicted == [labels[i] for i in probs.argmax(axis=1)]
    assert metrics["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == resized.encode(
        test.artists, labels, "test")))
