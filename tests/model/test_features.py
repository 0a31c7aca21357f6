"""The frozen backbone's features: when they apply, the stage that writes them, the head solved on them.

One small project (MobileNet alpha 0.25, random weights frozen whole, 32 px, no augmentation)
runs features, train and evaluate once for the module; the tests read what they wrote.
"""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.core.params import Params, parse_section
from painter_id.data import resized
from painter_id.model import features, model_files, tta
from painter_id.model.network import build_model
from painter_id.model.registry import get_backbone
from testkit.images import make_resized_dataset
from testkit.project import FROZEN, REPO_ROOT, run, setup_project, stage_main, write_params

HEAD = {"model": {"dropout": 0.0, "l2": 0.01}, "evaluate": {"tta": "flip"}}


@pytest.fixture(scope="module")
def solved(tmp_path_factory) -> Path:
    """A project whose head was solved on the frozen features and scored on them (tta flip)."""
    root = tmp_path_factory.mktemp("solved")
    make_resized_dataset(root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        setup_project(root, monkeypatch, HEAD, FROZEN)
        stage_main("features", "train", "evaluate")
    return root


def frozen_params(**train) -> Params:
    return Params(model=parse_section("model", {"frozen_layers": "all"}), train=parse_section("train", train))


@pytest.mark.parametrize("model, train, reason", [
    ({"frozen_layers": 0}, {"flip": False}, "model.frozen_layers is not all"),
    ({"frozen_layers": 600}, {"flip": False}, "model.frozen_layers is not all"),
    ({"frozen_layers": "all"}, {"flip": True}, "train.flip is on"),
    ({"frozen_layers": "all"}, {"flip": False, "zoom_fraction": 0.1}, "train.zoom_fraction is on"),
    ({"frozen_layers": "all"}, {"flip": False}, None),
])
def test_features_apply_to_a_frozen_backbone_without_augmentation(model, train, reason):
    found = features.why_not_used(Params(model=parse_section("model", model), train=parse_section("train", train)))
    assert found == reason if reason is None else found.startswith(reason)
    # The same words for every number: data/features hashes alike for every fine-tuning experiment.
    if "frozen_layers" in model and model["frozen_layers"] != "all":
        assert "600" not in found


def test_the_stage_writes_every_painting_s_features_and_the_extractor(solved):
    info = json.loads((solved / "data/features/info.json").read_text())
    assert info["used"] is True and info["backbone"] == "MobileNet" and info["width"] == 256
    assert (info["train_rows"], info["test_rows"], info["backbone_layers"]) == (24, 9, 86)
    train, test = (np.load(solved / f"data/features/{name}.npy") for name in ("train", "test"))
    assert train.shape == (24, 256) and test.shape == (9, 256) and train.dtype == np.float32
    extractor = model_files.load_model(solved / "data/features/extractor.keras")
    images = resized.load_split("test", solved / "data/resized").images
    np.testing.assert_allclose(extractor.predict(images.astype("float32"), verbose=0), test, atol=1e-5)
    mirrored = np.load(solved / "data/features/test_flip.npy")
    np.testing.assert_allclose(extractor.predict(features.mirrored(images).astype("float32"), verbose=0), mirrored,
                               atol=1e-5)


def test_a_backbone_that_trains_gets_a_note_in_a_second_and_no_tensorflow(tmp_path):
    make_resized_dataset(tmp_path)
    write_params(tmp_path, {"model": {"frozen_layers": 0}})
    script = "import importlib, sys\nimportlib.import_module('stages.features').main()\nprint('tensorflow' in sys.modules)"
    proc = run([sys.executable, "-c", script], tmp_path, env={"PYTHONPATH": str(REPO_ROOT)})
    assert proc.stdout.strip() == "False"
    assert [p.name for p in (tmp_path / "data/features").iterdir()] == ["info.json"]
    info = json.loads((tmp_path / "data/features/info.json").read_text())
    assert info["used"] is False and "model.frozen_layers is not all" in info["reason"]


def test_the_model_of_a_solved_head_predicts_as_the_full_network_with_its_weights(solved, monkeypatch):
    # Today's model is one Keras network; a solved head is the extractor plus the head, assembled.
    monkeypatch.chdir(solved)
    assembled = model_files.load_model("models")
    kernel, bias, _ = model_files.read_head("models/head.npz")
    params = Params(model=parse_section("model", {**FROZEN["model"], **HEAD["model"]}),
                    train=parse_section("train", FROZEN["train"]))
    full, _, _ = build_model(get_backbone("MobileNet"), 32, 3, params.model, params.train, root=solved)
    extractor = model_files.load_model("data/features/extractor.keras")
    for layer in extractor.layers:
        if layer.weights:
            full.get_layer(layer.name).set_weights(layer.get_weights())
    full.get_layer("artist").set_weights([kernel, bias])
    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(assembled.predict(pixels, verbose=0), full.predict(pixels, verbose=0), atol=1e-5)


def test_evaluate_scored_the_head_on_features_as_the_model_predicts_the_pixels(solved, monkeypatch):
    monkeypatch.chdir(solved)
    model = model_files.load_model("models")
    test = resized.load_split("test")
    probs = tta.predict_probs(model, test.images, 4, "flip")
    with open("metrics/confusion.csv", newline="", encoding="utf-8") as handle:
        predicted = [row["predicted"] for row in csv.DictReader(handle)]
    assert predicted == [model_files.read_labels()[i] for i in probs.argmax(axis=1)]
    metrics = json.loads(Path("metrics/eval.json").read_text())
    labels = model_files.read_labels()
    truth = np.array([labels.index(a) for a in test.artists])
    assert metrics["accuracy"] == pytest.approx(float(np.mean(probs.argmax(axis=1) == truth)))
    summary = json.loads(Path("metrics/train.json").read_text())
    assert set(summary) == {"iterations", "best_val_accuracy", "best_val_loss"} and summary["iterations"] >= 1


def test_head_only_train_and_evaluate_start_no_tensorflow_nor_scikit_learn(solved, tmp_path):
    project = tmp_path / "project"
    for name in ("data", "params.yaml"):
        src = solved / name
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            import shutil

            shutil.copytree(src, project / name)
        else:
            (project / name).write_bytes(src.read_bytes())
    write_params(project, {**HEAD, "model": {**HEAD["model"], "l2": 0.1}, "mlflow": {"tracking_uri": "sqlite:///m.db"}})
    script = textwrap.dedent("""
        import importlib, sys
        for stage in ("train", "evaluate"):
            importlib.import_module(f"stages.{stage}").main()
            print(stage, sorted(name for name in ("tensorflow", "keras", "sklearn") if name in sys.modules))
    """)
    proc = run([sys.executable, "-c", script], project, env={"PYTHONPATH": str(REPO_ROOT), "MLFLOW_TRACKING_URI": None})
    assert proc.stdout.split("\n")[:2] == ["train []", "evaluate []"]
    assert (project / "models/head.npz").is_file() and (project / "models/extractor.keras").is_file()


def test_a_head_solved_for_another_extractor_is_one_line(solved, tmp_path):
    head = tmp_path / "head.npz"
    kernel, bias, _ = model_files.read_head(solved / "models/head.npz")
    model_files.save_head(head, kernel, bias, "0" * 64)
    with pytest.raises(PipelineError, match="was solved on the features of another extractor"):
        model_files.load_model(solved / "models/extractor.keras", head=head)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY garbage", b"PK\x03\x04 not a zip"])
def test_a_damaged_head_file_is_one_line_saying_to_retrain(tmp_path, content):
    (tmp_path / "head.npz").write_bytes(content)
    with pytest.raises(PipelineError) as info:
        model_files.read_head(tmp_path / "head.npz")
    assert "head.npz: cannot be read" in str(info.value) and "dvc repro train" in str(info.value)


@pytest.mark.parametrize("content", ["{}", '{"format": 1}', "[1, 2]", "not json"])
def test_damaged_features_info_is_one_line_saying_to_rerun_features(tmp_path, monkeypatch, content):
    from painter_id.data.inputs import read_features_info

    (tmp_path / "info.json").write_text(content, encoding="utf-8")
    with pytest.raises(PipelineError) as info:
        read_features_info(tmp_path / "info.json")
    assert "dvc repro features" in str(info.value) and "\n" not in str(info.value)


def test_the_extractor_is_the_network_up_to_its_pooled_features():
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name=features.POOL_LAYER)(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="artist")(pooled), name="Tiny_painter")
    extractor = features.extractor_model(model)
    assert extractor.name == "Tiny_features" and extractor.output.shape[-1] == 4
    assert [layer.name for layer in extractor.layers][-1] == features.POOL_LAYER


@pytest.mark.parametrize("name, content, stage, expected", [
    ("train.npy", b"garbage", "train", "not a NumPy array file, or a damaged one"),
    ("train.npy", b"", "train", "not a NumPy array file, or a damaged one"),
    ("test.npy", "rows", "evaluate", "holds (3, 4) float32 where 9 rows of features belong"),
    ("test_flip.npy", "nan", "evaluate", "holds values that are not finite numbers"),
])
def test_damaged_features_are_one_line_saying_to_rerun_features(solved, tmp_path, monkeypatch, name, content,
                                                                  stage, expected):
    import shutil

    project = tmp_path / "project"
    shutil.copytree(solved, project)
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    target = project / "data" / "features" / name
    if content == "rows":
        np.save(target, np.zeros((3, 4), np.float32))
    elif content == "nan":
        broken = np.load(target)
        broken[0, 0] = np.nan
        np.save(target, broken)
    else:
        target.write_bytes(content)
    with pytest.raises(PipelineError) as info:
        stage_main(stage)
    assert str(info.value) == f"data/features/{name}: {expected}; run `dvc repro features` to write it again"


def test_forward_traces_the_extractor_once_for_every_batch_length_and_matches_it():
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name=features.POOL_LAYER)(keras.layers.Conv2D(4, 3)(inputs))
    extractor = keras.Model(inputs, pooled)
    run = features.forward(extractor)
    images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 3)).astype(np.uint8)
    out = features.compute(run, images, 3, 4)  # batches of 3, 3 and 1
    assert run.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(extractor(images.astype(np.float32))), atol=1e-6)
