"""Fine-tuning a pretrained backbone: the layers that train and their rate, batch norm, augmentation, head first."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from painter_id.core.params import SECTIONS, Params, parse_section
from painter_id.model import features, head_fit, model_files, training
from painter_id.model.backbones import build_backbone
from painter_id.model.network import save_model
from painter_id.model.registry import BACKBONES

SIZE = 32
N_CLASSES = 3
# MobileNet 0.25 has 86 layers: from 80 on, the last depthwise block (conv_dw_13 ... conv_pw_13_relu).
LAST_BLOCK = 80


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """Pretrained-looking MobileNet 0.25 weights: random, saved to a file, so ``model.weights: file`` loads them."""
    path = tmp_path_factory.mktemp("weights") / "mobilenet.weights.h5"
    backbone = build_backbone(BACKBONES["MobileNet"], SIZE, None, alpha=0.25)
    # Moving statistics of real activations, as pretrained ones are: with their initial 0 and 1,
    # random filters drive every ReLU6 into saturation in inference mode, and no gradient flows.
    x = np.random.default_rng(1).uniform(-1, 1, (16, SIZE, SIZE, 3)).astype(np.float32)
    for _ in range(40):
        backbone(x, training=True)
    backbone.save_weights(path)
    keras.backend.clear_session()
    return path


def make_params(weights_file: Path, **changes) -> Params:
    raw = {"resize": {"image_size": SIZE},
           "model": {"backbone": "MobileNet", "alpha": 0.25, "weights": "file", "weights_file": str(weights_file),
                     "frozen_layers": LAST_BLOCK, "dropout": 0.0},
           "train": {"optimizer": "sgd", "momentum": 0.0, "learning_rate": 0.1, "flip": False, "batch_size": 8}}
    for key, value in changes.items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    return Params(**{name: parse_section(name, raw.get(name)) for name in SECTIONS})


def images(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8), np.arange(n) % N_CLASSES


def backbone_weights(net) -> list[list[np.ndarray]]:
    return [[np.array(w) for w in layer.get_weights()] for layer in net.backbone.layers]


def one_step(params: Params) -> tuple[list, list, object]:
    """The backbone's weights before and after one SGD step on a fixed batch, and the network."""
    net = training.prepare_fit(params, SIZE, N_CLASSES)
    before = backbone_weights(net)
    x, y = images()
    net.model.train_on_batch(x, y)
    return before, backbone_weights(net), net


def moved(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_one_step_moves_the_unfrozen_backbone_at_the_scaled_rate_and_leaves_frozen_layers(weights_file):
    before, after, net = one_step(make_params(weights_file, **{"train.backbone_learning_rate_scale": 0.1}))
    assert not any(moved(b, a) for b, a in zip(before[:LAST_BLOCK], after[:LAST_BLOCK]))
    conv = [i for i, layer in enumerate(net.backbone.layers) if layer.name in ("conv_dw_13", "conv_pw_13")]
    assert conv and all(moved(before[i], after[i]) for i in conv)
    scaled = [after[i][0] - before[i][0] for i in conv]
    keras.backend.clear_session()

    # The same first step at the head's rate: plain SGD's step is rate x gradient, so exactly 10x.
    _, after_full, _ = one_step(make_params(weights_file, **{"train.backbone_learning_rate_scale": 1.0}))
    for i, step in zip(conv, scaled):
        np.testing.assert_allclose(step * 10, after_full[i][0] - before[i][0], rtol=1e-3, atol=1e-7)


def test_frozen_batch_norm_keeps_statistics_and_scale_while_its_block_trains(weights_file):
    before, after, net = one_step(make_params(weights_file))
    norms = [i for i, layer in enumerate(net.backbone.layers)
             if isinstance(layer, keras.layers.BatchNormalization) and i >= LAST_BLOCK]
    assert norms and not any(moved(before[i], after[i]) for i in norms)
    keras.backend.clear_session()

    before, after, _ = one_step(make_params(weights_file, **{"model.batch_norm": "trainable"}))
    assert all(moved(before[i], after[i]) for i in norms)  # gamma, beta and the moving statistics


def test_augmentation_acts_while_training_only(weights_file):
    params = make_params(weights_file, **{"train.flip": True, "train.crop_fraction": 0.3,
                                          "train.zoom_fraction": 0.2})
    net = training.prepare_fit(params, SIZE, N_CLASSES)
    x, _ = images(4)
    assert {"flip", "zoom", "crop_zoom", "crop_shift"} <= {layer.name for layer in net.model.layers}
    first, second = net.model.predict(x, verbose=0), net.model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, second)
    trained = np.asarray(net.model(x, training=True))
    assert not np.allclose(trained, first, atol=1e-6)  # dropout is 0 and BN frozen: only augmentation differs


def test_crop_makes_the_features_stage_step_aside(weights_file):
    params = make_params(weights_file, **{"model.frozen_layers": "all", "train.crop_fraction": 0.1})
    assert "crop_fraction" in features.why_not_used(params)
    assert features.why_not_used(make_params(weights_file, **{"model.frozen_layers": "all"})) is None


def test_head_first_starts_from_the_head_solved_on_frozen_features(weights_file):
    x, y = images()
    rows = np.arange(9)
    # A rate of ~0: after training, the head is still where head-first put it.
    params = make_params(weights_file, **{"train.learning_rate": 1e-12, "train.epochs": 1, "model.l2": 0.01})
    net, _ = training.train_network(params, x, y, (rows, np.arange(9, 12)), N_CLASSES, training.EpochLog())
    extractor = features.extractor_model(net.model)
    frozen = np.asarray(extractor.predict(x[rows], verbose=0))
    solution, _ = head_fit.fit_head(frozen, y[rows], (np.arange(9), np.arange(0)), N_CLASSES, 0.01, "balanced")
    kernel, bias = net.model.get_layer("artist").get_weights()
    np.testing.assert_allclose(kernel, solution.kernel, atol=1e-4)
    np.testing.assert_allclose(bias, solution.bias, atol=1e-4)
    keras.backend.clear_session()

    net, _ = training.train_network(make_params(weights_file, **{"train.learning_rate": 1e-12, "train.epochs": 1,
                                                                 "model.l2": 0.01, "train.head_first": False}),
                                    x, y, (rows, np.arange(9, 12)), N_CLASSES, training.EpochLog())
    assert not np.allclose(net.model.get_layer("artist").get_weights()[0], solution.kernel, atol=1e-4)


def test_head_first_is_skipped_for_random_weights(weights_file):
    x, y = images()
    net = training.prepare_fit(make_params(weights_file, **{"model.weights": "random"}), SIZE, N_CLASSES)
    assert not training.solve_head_first(net, make_params(weights_file, **{"model.weights": "random"}), x, y,
                                         np.arange(12))


def test_fine_tuned_model_saves_reloads_and_predicts_the_same(weights_file, tmp_path):
    x, y = images()
    params = make_params(weights_file, **{"train.flip": True, "train.crop_fraction": 0.2, "train.epochs": 2})
    net, _ = training.train_network(params, x, y, (np.arange(9), np.arange(9, 12)), N_CLASSES, training.EpochLog())
    save_model(net.model, tmp_path / "model.keras")
    (tmp_path / "labels.json").write_text('["a", "b", "c"]')
    loaded = model_files.load_model(tmp_path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key, value, words", [
    ("model.batch_norm", "moving", "model.batch_norm is 'moving'; use one of frozen, trainable"),
    ("train.backbone_learning_rate_scale", 0, "train.backbone_learning_rate_scale is 0.0; it must lie in (0, 1]"),
    ("train.crop_fraction", 0.5, "train.crop_fraction is 0.5; it must lie in [0, 0.5)"),
])
def test_bad_fine_tuning_params_are_one_line(weights_file, key, value, words):
    from painter_id.core.errors import PipelineError

    with pytest.raises(PipelineError, match="^params.yaml: ") as caught:
        make_params(weights_file, **{key: value})
    assert words in str(caught.value) and "\n" not in str(caught.value)
