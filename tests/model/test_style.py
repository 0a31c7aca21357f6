"""Style statistics in the head: Gram and mean+std pooling layers, their params, save/reload, the feature cache."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.core.params import ModelParams
from painter_id.model import model_files
from painter_id.model.backbones import build_backbone
from painter_id.model.registry import get_backbone
from painter_id.model.style import GramPool, MeanStdPool, pooled_features, projection
from testkit.images import make_resized_dataset
from testkit.project import setup_frozen as frozen_project
from testkit.project import stage_main


def gram_reference(maps: np.ndarray) -> np.ndarray:
    """Upper triangle of the per-position mean Gram, signed square root, L2-normalised, by plain NumPy loops."""
    rows = []
    for m in maps:
        flat = m.reshape(-1, m.shape[-1]).astype(np.float64)
        g = flat.T @ flat / len(flat)
        upper = np.array([g[i, j] for i in range(len(g)) for j in range(i, len(g))])
        signed = np.sign(upper) * np.sqrt(np.abs(upper))
        rows.append(signed / np.linalg.norm(signed))
    return np.array(rows)


def test_gram_of_a_constant_map_is_uniform_and_of_a_known_map_matches_numpy():
    constant = np.full((2, 3, 4, 5), 2.0, np.float32)
    out = np.asarray(GramPool(dim=8)(constant))
    assert out.shape == (2, 15)  # 5 channels <= dim: no projection, 5 * 6 / 2 entries
    np.testing.assert_allclose(out, 1 / np.sqrt(15), rtol=1e-6)
    # Signed: negative products (possible before a ReLU) keep their sign through the square root.
    maps = np.random.default_rng(0).normal(size=(3, 4, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(GramPool(dim=6)(maps)), gram_reference(maps), atol=1e-5)
    # Projected: the Gram of the projected channels.
    layer = GramPool(dim=3, seed=1)
    out = np.asarray(layer(maps))
    assert out.shape == (3, 6) and layer.compute_output_shape((None, 4, 4, 6)) == (None, 6)
    np.testing.assert_allclose(out, gram_reference(maps @ projection(6, 3, 1)), atol=1e-5)
    # A black map (a padded border, a blank canvas) gives zeros, never NaN.
    assert np.all(np.asarray(GramPool()(np.zeros((1, 2, 2, 4), np.float32))) == 0)


def test_mean_std_pool_gives_every_channels_mean_then_standard_deviation():
    maps = np.zeros((1, 2, 2, 2), np.float32)
    maps[0, :, :, 0] = [[1, 3], [1, 3]]  # mean 2, std 1
    maps[0, :, :, 1] = 5  # mean 5, std 0
    out = np.asarray(MeanStdPool()(maps))
    np.testing.assert_allclose(out, [[2, 5, 1, 0]], atol=1e-5)
    assert MeanStdPool().compute_output_shape((None, 7, 7, 3)) == (None, 6)


def test_a_model_with_both_layers_saves_and_reloads_to_the_same_outputs(tmp_path):
    inputs = keras.Input((8, 8, 3))
    maps = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    pooled = keras.layers.Concatenate()([GramPool(4, seed=3, name="gram_0")(maps), MeanStdPool(name="pool_0")(maps)])
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = model_files.load_model(path)
    pixels = np.random.default_rng(1).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0), atol=1e-6)
    assert loaded.get_layer("gram_0").dim == 4 and loaded.get_layer("gram_0").seed == 3
    np.testing.assert_array_equal(loaded.get_layer("gram_0").get_weights()[0], projection(6, 4, 3))


@pytest.fixture(scope="module")
def mobilenet_any_size():
    return build_backbone(get_backbone("MobileNet"), 32, None, 0.25, any_size=True)


def test_pooled_features_concatenate_the_pooled_maps_then_the_grams(mobilenet_any_size):
    x = keras.Input((32, 32, 3))
    params = ModelParams(pooled_layers=("conv_pw_5_relu",), pooling="mean_std",
                         gram_layers=("conv_pw_3_relu", "conv_pw_5_relu"), gram_dim=16)
    model = keras.Model(x, pooled_features(mobilenet_any_size, x, params, 32))
    # mean and std of 256 (last) + 64 (block 5) channels; Grams: block 3 has 32 channels -> 16 projected -> 136,
    # block 5 (64 -> 16) 136 more
    assert model.get_layer("pool").output.shape[-1] == 2 * (256 + 64) + 136 + 136
    assert [layer.name for layer in model.layers[-5:]] == ["pool_0", "pool_1", "gram_0", "gram_1", "pool"]
    plain = keras.Model(x, pooled_features(mobilenet_any_size, x, ModelParams(), 32))
    assert isinstance(plain.get_layer("pool"), keras.layers.GlobalAveragePooling2D)  # the defaults: as before


def test_a_second_scale_runs_the_same_backbone_on_the_resized_painting(mobilenet_any_size):
    x = keras.Input((64, 64, 3))
    model = keras.Model(x, pooled_features(mobilenet_any_size, x, ModelParams(scales=(1.0, 0.5)), 64))
    assert [layer.name for layer in model.layers if layer.name.startswith("pool")] == ["pool_0", "pool_0_s1", "pool"]
    pixels = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    features = model.predict(pixels, verbose=0)
    assert features.shape == (2, 512)
    # The same weights at a fixed 32 px, fed the painting resized to 32 px, give the second half.
    fixed = build_backbone(get_backbone("MobileNet"), 32, None, 0.25)
    fixed.set_weights(mobilenet_any_size.get_weights())
    small = keras.ops.convert_to_numpy(keras.layers.Resizing(32, 32)(pixels))
    expected = fixed.predict(small, verbose=0).mean(axis=(1, 2))
    np.testing.assert_allclose(features[:, 256:], expected, rtol=1e-4, atol=1e-5)
    # One scale other than 1.0: the whole painting at that size only.
    alone = keras.Model(x, pooled_features(mobilenet_any_size, x, ModelParams(scales=(0.5,)), 64))
    np.testing.assert_allclose(alone.predict(pixels, verbose=0), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(PipelineError, match=r"model.scales has 0.25, which makes the 64 px images 16 px, below"):
        pooled_features(mobilenet_any_size, x, ModelParams(scales=(1.0, 0.25)), 64, min_size=32)


def test_unknown_gram_layer_is_one_line_naming_the_param(mobilenet_any_size):
    with pytest.raises(PipelineError, match=r"model.gram_layers names 'conv_pw_5_rel'.*did you mean conv_pw_5_relu\?"):
        pooled_features(mobilenet_any_size, keras.Input((32, 32, 3)), ModelParams(gram_layers=("conv_pw_5_rel",)), 32)


@pytest.mark.slow
def test_the_features_stage_serves_style_heads(tmp_path, monkeypatch):
    make_resized_dataset(tmp_path)
    style = {"pooling": "mean_std", "gram_layers": ["conv_pw_3_relu"], "gram_dim": 8, "scales": [1.0, 1.5],
             "dropout": 0.0, "l2": 0.01}
    frozen_project(tmp_path, monkeypatch, {"model": style, "train": {"epochs": 1}, "mlflow": {"log_model": False}})
    stage_main("features", "train")
    stored = np.load(tmp_path / "data" / "features" / "train.npy")
    assert stored.shape[1] == 2 * (2 * 256 + 36)  # two scales: mean and std of 256 channels, a 8x8 Gram
    # The features are the assembled model's own `pool` output: the head solved on what predict computes.
    model = model_files.load_model(tmp_path / "models")
    pool = keras.Model(model.inputs, model.get_layer("pool").output)
    images = np.load(tmp_path / "data" / "resized" / "train.npy")
    np.testing.assert_allclose(stored, pool.predict(images, verbose=0), rtol=1e-4, atol=1e-5)
