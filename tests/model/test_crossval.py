"""Cross-validation in the pipeline: folds over originals, metrics/cv.json, a final model on every painting."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.data import resized
from painter_id.model import crossval
from testkit.images import make_raw_dataset, make_resized_dataset
from testkit.project import setup_frozen as setup
from testkit.project import setup_project, stage_main


def split_with_copies() -> resized.Split:
    """Originals of three artists (20, 9, 4) and, for the two smaller ones, oversampled copies."""
    paths, artists, sources = [], [], []
    for artist, n, copies in (("Ann", 20, 0), ("Bob", 9, 1), ("Cy", 4, 3)):
        for i in range(n):
            original = f"data/raw/images/{artist}/{artist}_{i}.jpg"
            paths.append(original), artists.append(artist), sources.append("")
            for c in range(copies):
                paths.append(f"data/oversampled/images/{artist}/{artist}_{i}_aug{c}.jpg")
                artists.append(artist), sources.append(original)
    return resized.Split(np.zeros((len(paths), 1, 1, 3), np.uint8), paths, artists, sources)


def test_folds_are_stratified_and_keep_copies_with_their_original():
    data = split_with_copies()
    folds = crossval.fold_rows(data, 3, seed=7)
    groups = data.groups()
    scored = [i for _, held in folds for i in held]
    assert sorted(scored) == [i for i, source in enumerate(data.sources) if not source]  # each original once
    for train_rows, held in folds:
        held_groups = {groups[i] for i in held}
        assert not held_groups & {groups[i] for i in train_rows}  # no copy of a scored painting trains
        # Every row is in training or belongs to a scored original of this fold (its copies sit out).
        assert set(train_rows) | {i for i, g in enumerate(groups) if g in held_groups} == set(range(len(groups)))
    per_fold = [Counter(data.artists[i] for i in held) for _, held in folds]
    for artist in ("Ann", "Bob", "Cy"):
        counts = [c[artist] for c in per_fold]
        assert max(counts) - min(counts) <= 1, (artist, counts)
    assert crossval.fold_rows(data, 3, seed=7)[0][1].tolist() == folds[0][1].tolist()  # seeded
    assert crossval.fold_rows(data, 3, seed=8)[0][1].tolist() != folds[0][1].tolist()


def test_more_folds_than_paintings_is_one_line():
    data = split_with_copies()
    with pytest.raises(PipelineError, match=r"train.cv_folds is 40 but .* has only 33 original paintings"):
        crossval.fold_rows(data, 40, seed=0)


def test_fold_summary_has_mean_spread_and_standard_error():
    scores = [{"accuracy": a, "macro_f1": a - 0.1, "top5_accuracy": 1.0, "balanced_accuracy": a, "n_test": 10}
              for a in (0.6, 0.7, 0.8)]
    summary = crossval.summarize_folds(scores)
    assert summary["scored_on"] == "3-fold cross-validation over 30 paintings"
    assert summary["accuracy_mean"] == pytest.approx(0.7) and summary["accuracy_std"] == pytest.approx(0.1)
    assert summary["accuracy_sem"] == pytest.approx(0.1 / math.sqrt(3))
    assert summary["top5_accuracy_std"] == 0 and summary["macro_f1_mean"] == pytest.approx(0.6)


def test_test_size_zero_puts_every_painting_in_train_and_resize_writes_an_empty_test_split(tmp_path, monkeypatch):
    make_raw_dataset(tmp_path, {"Claude Monet": 12, "Albrecht Dürer": 6, "Titian": 3})
    monkeypatch.chdir(tmp_path)
    setup(tmp_path, monkeypatch, {"split": {"test_size": 0}, "oversample": {"min_count": 6},
                                  "resize": {"image_size": 32}, "runtime": {"workers": 1}})
    stage_main("split")
    stage_main("oversample")
    stage_main("resize")

    train_split = resized.load_split("train")
    test_split = resized.load_split("test", allow_empty=True)
    assert sum(not s for s in train_split.sources) == 21 and len(train_split.paths) == 21 + 3  # Titian: 3 copies
    assert test_split.paths == [] and test_split.images.shape == (0, 32, 32, 3)
    with pytest.raises(PipelineError, match="test.csv: has no rows"):
        resized.load_split("test")  # where a test split is required, empty stays an error


def read_json(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def empty_test_split(root: Path) -> None:
    """Replace ``data/resized/test.*`` by the empty split of ``split.test_size: 0``."""
    folder = root / "data" / "resized"
    np.save(folder / "test.npy", np.zeros((0, 32, 32, 3), np.uint8))
    (folder / "test.csv").write_text("path,artist,source,sha256\n", encoding="utf-8")


def test_cross_validated_head_then_the_final_model_on_every_row(tmp_path, monkeypatch, mobilenet_weights):
    make_resized_dataset(tmp_path, n_train=30)
    setup(tmp_path, monkeypatch, {"model": {"weights": "file", "weights_file": str(mobilenet_weights),
                                            "dropout": 0.0, "l2": 0.01},
                                  "train": {"cv_folds": 3, "validation_split": 0}})
    stage_main("features", "train")
    cv = read_json("metrics/cv.json")
    assert cv["scored_on"] == "3-fold cross-validation over 30 paintings"
    for name in crossval.CV_METRICS:
        assert 0 <= cv[f"{name}_mean"] <= 1 and 0 <= cv[f"{name}_sem"] <= cv[f"{name}_std"]
    assert cv["accuracy_mean"] > 0.5  # three colour-leaning classes: far above chance (1/3)

    stage_main("evaluate")  # with a test split: the headline is its figures (cv.json keeps the folds')
    with_test = read_json("metrics/eval.json")
    assert with_test["scored_on"] == "9 test paintings" and "cv" not in with_test and "n_test" not in with_test

    empty_test_split(tmp_path)  # split.test_size 0: the cross-validated figures are the model's
    stage_main("evaluate")
    metrics = read_json("metrics/eval.json")
    assert metrics["scored_on"] == "3-fold cross-validation over 30 paintings"
    assert metrics["accuracy"] == cv["accuracy_mean"] and metrics["macro_f1"] == cv["macro_f1_mean"]
    with open("metrics/confusion.csv", newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [["actual", "predicted"]]
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(["1"])[0]
    # One name per figure: the fold summary as cv_*, the headline the last evaluate scored.
    assert run.data.metrics["cv_accuracy_mean"] == cv["accuracy_mean"] and "cv.accuracy_mean" not in run.data.metrics
    assert run.data.metrics["accuracy"] == cv["accuracy_mean"] and run.data.tags["scored_on"] == metrics["scored_on"]


def test_no_test_split_and_no_cross_validation_is_one_line(tmp_path, resized_dataset, monkeypatch):
    setup_project(tmp_path, monkeypatch, {"train": {"epochs": 1}})
    stage_main("features", "train")
    assert read_json("metrics/cv.json") == {}
    empty_test_split(tmp_path)
    with pytest.raises(PipelineError, match="split.test_size is 0.*train.cv_folds is 0: nothing scores"):
        stage_main("evaluate")


@pytest.mark.slow
def test_folds_of_a_trained_backbone_leave_the_final_model_as_without_them(tmp_path, resized_dataset, monkeypatch):
    """Each fold builds fresh, seeded weights: the final model is the one a run without folds trains."""
    histories = {}
    for folds in (0, 2):
        setup_project(tmp_path, monkeypatch, {"train": {"epochs": 1, "cv_folds": folds}})
        stage_main("features", "train")
        histories[folds] = Path("metrics/history.csv").read_text()
    assert histories[2] == histories[0]
    cv = read_json("metrics/cv.json")
    assert cv["scored_on"] == "2-fold cross-validation over 24 paintings" and 0 <= cv["accuracy_mean"] <= 1
