"""The backbone registry, the in-model preprocessing layer, freezing and weight files."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from painter_id.backbones import (
    BACKBONES,
    SIMPLE_CNN,
    Preprocess,
    build_backbone,
    check_size,
    freeze,
    get_backbone,
    resolve_weights,
    with_pooled_layers,
)
from painter_id.errors import PipelineError

SPEC_NAMES = [
    "InceptionResNetV2", "Xception", "InceptionV3", "ResNet50", "ResNet50V2", "DenseNet121", "DenseNet169",
    "DenseNet201", *(f"EfficientNetB{i}" for i in range(8)), "EfficientNetV2S", "MobileNet", "MobileNetV2",
    "VGG16", SIMPLE_CNN,
]


def test_registry_has_every_backbone_of_the_spec_and_each_exists_in_keras():
    missing = [name for name in SPEC_NAMES if name not in BACKBONES]
    assert not missing
    for name, entry in BACKBONES.items():
        if name != SIMPLE_CNN:
            assert callable(getattr(keras.applications, name)), name
    sizes = {name: BACKBONES[name].min_size for name in ("InceptionResNetV2", "InceptionV3", "Xception",
                                                          "ResNet50", "VGG16", "DenseNet121", "EfficientNetB0",
                                                          "MobileNet")}
    assert sizes == {"InceptionResNetV2": 75, "InceptionV3": 75, "Xception": 71, "ResNet50": 32, "VGG16": 32,
                     "DenseNet121": 32, "EfficientNetB0": 32, "MobileNet": 32}
    assert [n for n, e in BACKBONES.items() if e.takes_alpha] == ["MobileNet", "MobileNetV2"]


def test_unknown_backbone_is_one_line_listing_valid_names():
    with pytest.raises(PipelineError) as info:
        get_backbone("ResNet5O")
    message = str(info.value)
    assert "\n" not in message
    assert "model.backbone" in message and "did you mean ResNet50?" in message
    assert "simple_cnn" in message and "InceptionResNetV2" in message


def test_image_smaller_than_backbone_minimum_names_resize_size():
    check_size(BACKBONES["InceptionResNetV2"], 75)
    with pytest.raises(PipelineError) as info:
        check_size(BACKBONES["InceptionResNetV2"], 64)
    assert "resize.image_size is 64" in str(info.value) and "at least 75" in str(info.value)


@pytest.mark.parametrize("mode, reference", [
    ("tf", keras.applications.mobilenet.preprocess_input),
    ("torch", keras.applications.densenet.preprocess_input),
    ("caffe", keras.applications.resnet50.preprocess_input),
    ("none", keras.applications.efficientnet.preprocess_input),
    ("unit", lambda x: x / 255.0),
])
def test_preprocess_layer_matches_keras_reference(mode, reference):
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 5, 5, 3)).astype("uint8")
    ours = keras.ops.convert_to_numpy(Preprocess(mode)(pixels))
    expected = reference(pixels.astype("float32").copy())
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)


def test_preprocess_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown preprocessing mode"):
        Preprocess("bgr")


def test_model_with_preprocess_survives_save_and_load(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = Preprocess("caffe", name="preprocess")(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, 16, 16, 3)).astype("uint8")
    model.save(tmp_path / "m.keras")

    loaded = keras.models.load_model(tmp_path / "m.keras")

    assert loaded.get_layer("preprocess").mode == "caffe"
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0), rtol=1e-6)


def test_simple_cnn_layers_are_its_conv_blocks_and_freeze_counts_them():
    backbone = build_backbone(BACKBONES[SIMPLE_CNN], 32, None)
    assert [type(layer).__name__ for layer in backbone.layers] == ["Conv2D", "MaxPooling2D"] * 3

    assert freeze(backbone, 2) == 2
    assert [layer.trainable for layer in backbone.layers] == [False, False, True, True, True, True]

    with pytest.raises(PipelineError) as info:
        freeze(backbone, 7)
    assert "model.frozen_layers is 7" in str(info.value) and "has 6 layers" in str(info.value)


def test_freeze_all_freezes_every_weight():
    backbone = build_backbone(BACKBONES[SIMPLE_CNN], 32, None)
    assert freeze(backbone, "all") == 6
    assert backbone.trainable_weights == [] and len(backbone.non_trainable_weights) == 6


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(PipelineError) as info:
        resolve_weights("weights/none.h5", tmp_path)
    assert str(tmp_path / "weights" / "none.h5") in str(info.value)
    assert resolve_weights("imagenet", tmp_path) == "imagenet" and resolve_weights(None, tmp_path) is None


def test_imagenet_weights_for_simple_cnn_are_refused():
    with pytest.raises(PipelineError, match="trained from scratch"):
        build_backbone(BACKBONES[SIMPLE_CNN], 32, "imagenet")


def test_mobilenet_weights_load_from_a_path_relative_to_the_project(tmp_path, mobilenet_weights):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "mn.h5").symlink_to(mobilenet_weights)
    path = resolve_weights("weights/mn.h5", tmp_path)

    backbone = build_backbone(BACKBONES["MobileNet"], 32, path, alpha=0.25)

    assert len(backbone.layers) == 86
    with h5py.File(mobilenet_weights, "r") as weights:
        kernel = weights["conv1/conv1/kernel:0"][()]
        moving_mean = weights["conv1_bn/conv1_bn/moving_mean:0"][()]
    np.testing.assert_array_equal(backbone.get_layer("conv1").kernel.numpy(), kernel)
    np.testing.assert_array_equal(backbone.get_layer("conv1_bn").moving_mean.numpy(), moving_mean)


def test_weights_file_of_another_architecture_is_one_line_error(mobilenet_weights):
    with pytest.raises(PipelineError) as info:
        build_backbone(BACKBONES["MobileNet"], 32, str(mobilenet_weights), alpha=0.5)
    assert "\n" not in str(info.value) and "MobileNet" in str(info.value)


def test_pooled_layers_must_exist_and_output_feature_maps():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    backbone = keras.Model(inputs, keras.layers.Reshape((1, 1, 8), name="last")(x))

    tapped = with_pooled_layers(backbone, ["conv_a"])
    assert [tuple(out.shape[1:]) for out in tapped.outputs] == [(1, 1, 8), (14, 14, 4)]
    assert tapped.get_layer("conv_a") is backbone.get_layer("conv_a")  # the same weights, not a copy
    assert with_pooled_layers(backbone, []) is backbone
    with pytest.raises(PipelineError, match="does not have; did you mean conv_a"):
        with_pooled_layers(backbone, ["conv_aa"])
    with pytest.raises(PipelineError, match="'gap' does not output a feature map"):
        with_pooled_layers(backbone, ["gap"])
