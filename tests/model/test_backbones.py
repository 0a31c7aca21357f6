"""The backbone registry, the in-model preprocessing layer, freezing and weight files."""

from __future__ import annotations

import contextlib
import inspect

import h5py
import keras
import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.core.params import ModelParams, Params, TrainParams
from painter_id.model.backbones import SIMPLE_CNN_FILTERS, Preprocess, build_backbone, freeze, resolve_weights, with_pooled_layers
from painter_id.model.network import build_model
from painter_id.model.registry import BACKBONES, SIMPLE_CNN, check_size, get_backbone

SPEC_NAMES = [
    "InceptionResNetV2", "Xception", "InceptionV3", "ResNet50", "ResNet50V2", "DenseNet121", "DenseNet169",
    "DenseNet201", *(f"EfficientNetB{i}" for i in range(8)), "EfficientNetV2S", "MobileNet", "MobileNetV2",
    "VGG16", SIMPLE_CNN, "NASNetMobile", "NASNetLarge", "MobileNetV3Small", "MobileNetV3Large",
    *(f"ConvNeXt{v}" for v in ("Tiny", "Small", "Base", "Large", "XLarge")),
]
KERAS_NAMES = [name for name in BACKBONES if name != SIMPLE_CNN]


def keras_constructor(name: str):
    return getattr(keras.applications, name)


def keras_preprocess_input(name: str):
    """The ``preprocess_input`` keras.applications documents for backbone ``name`` (its module's)."""
    module = keras_constructor(name).__module__.rsplit(".", 1)[-1]  # keras.src.applications.<module>
    return getattr(keras.applications, module).preprocess_input


def test_registry_has_every_backbone_of_the_spec():
    assert not [name for name in SPEC_NAMES if name not in BACKBONES]


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_entry_matches_keras_minimum_size_alpha_and_preprocessing(name):
    entry, build = BACKBONES[name], keras_constructor(name)
    # Keras checks the size before building anything: one pixel less must be refused by Keras itself.
    below = entry.min_size - 1
    with pytest.raises(ValueError, match="at least"):
        build(include_top=False, weights=None, input_shape=(below, below, 3))
    assert entry.takes_alpha == ("alpha" in inspect.signature(build).parameters)
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 5, 5, 3)).astype("uint8")
    expected = keras_preprocess_input(name)(pixels.astype("float32").copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(Preprocess(entry.preprocess)(pixels)), expected,
                               rtol=1e-5, atol=1e-4)


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
    # The seed notebooks' `-S model.frozen_layers=600` on the small default: the error says where 600 fits.
    with pytest.raises(PipelineError, match=r"simple_cnn has 6 layers.*model\.backbone=InceptionResNetV2 \(780 layers"):
        freeze(backbone, 600)
    with pytest.raises(PipelineError) as info:
        freeze(backbone, 900)
    assert "InceptionResNetV2" not in str(info.value)


def test_freeze_all_freezes_every_weight():
    backbone = build_backbone(BACKBONES[SIMPLE_CNN], 32, None)
    assert freeze(backbone, "all") == 6
    assert backbone.trainable_weights == [] and len(backbone.non_trainable_weights) == 6


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(PipelineError) as info:
        resolve_weights("file", "weights/none.h5", tmp_path)
    assert str(tmp_path / "weights" / "none.h5") in str(info.value) and "model.weights_file" in str(info.value)
    assert resolve_weights("imagenet", "unused.txt", tmp_path) == "imagenet"
    assert resolve_weights("random", "unused.txt", tmp_path) is None


def test_imagenet_weights_for_simple_cnn_are_refused():
    with pytest.raises(PipelineError, match="trained from scratch"):
        build_backbone(BACKBONES[SIMPLE_CNN], 32, "imagenet")


def test_mobilenet_weights_load_from_a_path_relative_to_the_project(tmp_path, mobilenet_weights):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "mn.h5").symlink_to(mobilenet_weights)
    path = resolve_weights("file", "weights/mn.h5", tmp_path)

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


def family(name: str) -> str:
    return SIMPLE_CNN if name == SIMPLE_CNN else keras_constructor(name).__module__


# The full check (a prediction from raw pixels, the training-mode pass) runs on the first registry
# entry of each keras.applications module, the family's smallest; the larger members are marked
# large_backbone and get the cheaper one (built without allocating weights, frozen layers), which
# keeps all 47 in CI: building every entry once already costs minutes on 2 cores. A family shares
# its layer classes, so its smallest member covers their randomness.
FULL_CHECK = {next(n for n in BACKBONES if family(n) == f) for f in {family(n) for n in BACKBONES}}
# Save-and-reload and the comparison with Keras' own build (most of a full check's time) run where
# they check something of ours: the families that normalise inside the network (``preprocess:
# none``: that state must come back with the model), the default real backbone and the small CNN.
# The other families' layers are Keras' to serialise; ours (Preprocess, augmentation, pooling,
# head) are the same around every backbone.
CROSS_CHECK = {n for n in FULL_CHECK if BACKBONES[n].preprocess == "none" or n in ("MobileNet", SIMPLE_CNN)}
N_ARTISTS = 3


def reference_layer_types(name: str, size: int) -> list[str]:
    """The layers of keras.applications' own ``name`` without its top (variables never initialised: fast)."""
    if name == SIMPLE_CNN:
        return ["Conv2D", "MaxPooling2D"] * len(SIMPLE_CNN_FILTERS)
    with keras.StatelessScope():
        reference = keras_constructor(name)(include_top=False, weights=None, input_shape=(size, size, 3))
    return [type(layer).__name__ for layer in reference.layers]


def inner_backbone(model: keras.Model) -> keras.Model:
    (backbone,) = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return backbone


def assert_frozen(model: keras.Model) -> None:
    assert inner_backbone(model).trainable_weights == []
    assert sorted(w.path for w in model.trainable_weights) == ["artist/bias", "artist/kernel"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n if n in FULL_CHECK else pytest.param(n, marks=pytest.mark.large_backbone)
                                  for n in BACKBONES])
def test_every_entry_builds_frozen_at_its_minimum_size_and_predicts_raw_pixels(name, tmp_path):
    """Like timm's test of every registered model: each entry as the train stage builds it."""
    keras.backend.clear_session()
    entry = BACKBONES[name]
    size = entry.min_size
    # A large member is only built and checked frozen: without allocating its weights (a third faster).
    with keras.StatelessScope() if name not in FULL_CHECK else contextlib.nullcontext():
        model, backbone, frozen = build_model(entry, size, N_ARTISTS, ModelParams(backbone=name, frozen_layers="all"),
                                              TrainParams(), root=tmp_path)
    assert frozen == len(backbone.layers)
    if name in CROSS_CHECK:
        # build_backbone calls Keras' own constructor with the same arguments for every entry, so
        # a few of them show that nothing is added or dropped on the way (batch-statistics tracking).
        assert [type(layer).__name__ for layer in backbone.layers] == reference_layer_types(name, size)
    assert_frozen(model)
    if name not in FULL_CHECK:
        return
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, size, size, 3)).astype("uint8")
    probabilities = keras.ops.convert_to_numpy(model(pixels, training=False))
    assert probabilities.shape == (3, N_ARTISTS) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    if name not in CROSS_CHECK:
        return
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert_frozen(loaded)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(pixels, training=False)), probabilities,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, documented", [("ConvNeXtTiny", "torch"), ("MobileNetV3Small", "tf")])
def test_backbones_with_preprocessing_inside_get_raw_pixels_and_normalise_them_as_keras_documents(name, documented):
    # Keras builds them with include_preprocessing=True: the registry's "none" passes raw pixels
    # on, and what their first weighted layer sees is ImageNet mean/std (ConvNeXt) or [-1, 1] scaling.
    entry = BACKBONES[name]
    assert entry.preprocess == "none"
    backbone = build_backbone(entry, entry.min_size, None)
    first = next(layer for layer in backbone.layers if layer.trainable_weights)
    network_input = keras.Model(backbone.inputs, first.input)
    pixels = np.random.default_rng(2).integers(0, 256, size=(2, entry.min_size, entry.min_size, 3)).astype("uint8")
    seen = keras.ops.convert_to_numpy(network_input(Preprocess(entry.preprocess)(pixels)))
    np.testing.assert_allclose(seen, keras.ops.convert_to_numpy(Preprocess(documented)(pixels)), rtol=1e-5, atol=1e-5)


def test_the_default_backbone_has_more_layers_than_the_seed_notebooks_freeze():
    # `dvc exp run -S model.frozen_layers=600` on the defaults freezes most of the backbone, not all
    # of it, as the notebooks' 600 of InceptionResNetV2's 780 layers.
    params = Params()
    entry = BACKBONES[params.model.backbone]
    with keras.StatelessScope():
        backbone = build_backbone(entry, params.resize.image_size, None)
        frozen = freeze(backbone, 600)
    assert frozen == 600 < len(backbone.layers) == 769
    assert any(layer.trainable_weights for layer in backbone.layers[600:])
