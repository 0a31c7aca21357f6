"""The split stage: stratified by artist, identical images never on both sides, seeded."""

from __future__ import annotations

import csv
import logging
import math
import shutil
from collections import Counter

import pytest

from painter_id.core.errors import PipelineError
from testkit.images import make_raw_dataset
from testkit.project import run_stage, stage_main, write_params

COUNTS = {"Claude Monet": 30, "Albrecht Dürer": 12, "Titian": 6, "Rembrandt": 17, "Paul Klee": 3}


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def split(tmp_path, monkeypatch, **params) -> tuple[list[dict], list[dict]]:
    """Run the stage in-process in ``tmp_path``; return its (train, test) rows."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"split": params})
    stage_main("split")
    return rows(tmp_path / "data/split/train.csv"), rows(tmp_path / "data/split/test.csv")


def plant_duplicates(raw, pairs: list[tuple[str, str, str]]) -> None:
    """Copy image files to new paths (same bytes) and add them to the manifest."""
    with open(raw / "manifest.csv", newline="", encoding="utf-8") as handle:
        manifest = list(csv.reader(handle))
    by_path = {row[0]: row for row in manifest[1:]}
    for source, dest, artist in pairs:
        (raw / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw / source, raw / dest)
        manifest.append([dest, artist, *by_path[source][2:]])
    with open(raw / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(manifest)


@pytest.mark.parametrize("test_size", [0.2, 0.35])
def test_every_artist_is_split_within_one_image(tmp_path, monkeypatch, test_size):
    make_raw_dataset(tmp_path, COUNTS)
    train, test = split(tmp_path, monkeypatch, test_size=test_size)

    test_counts = Counter(row["artist"] for row in test)
    for artist, n in COUNTS.items():
        assert abs(test_counts[artist] - math.floor(n * test_size + 0.5)) <= 1, artist

    manifest = rows(tmp_path / "data/raw/manifest.csv")
    expected = {(f"data/raw/{row['path']}", row["artist"], row["sha256"]) for row in manifest}
    train_set = {(row["path"], row["artist"], row["sha256"]) for row in train}
    test_set = {(row["path"], row["artist"], row["sha256"]) for row in test}
    assert train_set | test_set == expected
    assert not train_set & test_set
    assert len(train) + len(test) == len(manifest)
    assert all((tmp_path / row["path"]).is_file() for row in train + test)
    assert list(train[0]) == ["path", "artist", "sha256"]


def test_identical_images_never_straddle_train_and_test(tmp_path, monkeypatch):
    raw = make_raw_dataset(tmp_path, COUNTS)
    # Ten paintings stored twice under one artist, two stored again under another artist.
    pairs = [(f"images/Claude_Monet/Claude_Monet_{i}.jpg", f"images/Claude_Monet/copy_{i}.jpg", "Claude Monet")
             for i in range(1, 11)]
    pairs += [(f"images/Rembrandt/Rembrandt_{i}.jpg", f"images/Rembrandt/again_{i}.jpg", "Rembrandt") for i in range(1, 6)]
    pairs += [(f"images/Titian/Titian_{i}.jpg", f"images/Paul_Klee/Titian_{i}.jpg", "Paul Klee") for i in (1, 2)]
    plant_duplicates(raw, pairs)

    for seed in range(5):
        train, test = split(tmp_path, monkeypatch, seed=seed)
        assert not {row["sha256"] for row in train} & {row["sha256"] for row in test}, seed
        assert len(train) + len(test) == sum(COUNTS.values()) + len(pairs)


def test_same_seed_same_split_other_seed_other_split(tmp_path, monkeypatch):
    make_raw_dataset(tmp_path, COUNTS)
    split(tmp_path, monkeypatch, seed=7)
    first = (tmp_path / "data/split/test.csv").read_bytes()

    # Manifest order must not matter either: the split follows the images' content.
    manifest_path = tmp_path / "data/raw/manifest.csv"
    lines = manifest_path.read_text(encoding="utf-8").splitlines(keepends=True)
    manifest_path.write_text(lines[0] + "".join(reversed(lines[1:])), encoding="utf-8")
    split(tmp_path, monkeypatch, seed=7)
    assert (tmp_path / "data/split/test.csv").read_bytes() == first

    split(tmp_path, monkeypatch, seed=8)
    assert (tmp_path / "data/split/test.csv").read_bytes() != first


def test_artist_with_one_image_goes_to_train_only(tmp_path, monkeypatch, caplog):
    make_raw_dataset(tmp_path, {"Claude Monet": 10, "Titian": 8, "Lonely Painter": 1})
    with caplog.at_level(logging.WARNING):
        train, test = split(tmp_path, monkeypatch)
    assert [row["artist"] for row in train].count("Lonely Painter") == 1
    assert "Lonely Painter" not in {row["artist"] for row in test}
    assert any("Lonely Painter" in r.getMessage() and "data.min_images" in r.getMessage() for r in caplog.records)


def test_too_few_images_for_test_size_is_a_one_line_error(tmp_path, monkeypatch):
    # Five artists of two images: holding out 10% would test fewer artists than there are.
    make_raw_dataset(tmp_path, {f"Painter {i}": 2 for i in range(5)})
    with pytest.raises(PipelineError, match=r"split\.test_size"):
        split(tmp_path, monkeypatch, test_size=0.1)


def test_missing_manifest_keeps_previous_split(tmp_path, monkeypatch):
    make_raw_dataset(tmp_path, COUNTS)
    split(tmp_path, monkeypatch)
    before = (tmp_path / "data/split/train.csv").read_bytes()
    (tmp_path / "data/raw/manifest.csv").unlink()
    with pytest.raises(PipelineError, match=r"manifest\.csv: not found; run `dvc repro download`"):
        stage_main("split")
    assert (tmp_path / "data/split/train.csv").read_bytes() == before


def test_manifest_without_sha256_column_is_a_one_line_error(tmp_path, monkeypatch):
    raw = make_raw_dataset(tmp_path, COUNTS)
    (raw / "manifest.csv").write_text("path,artist\nimages/a.jpg,A\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=r"missing column\(s\) sha256"):
        split(tmp_path, monkeypatch)


def test_bad_test_size_exits_2_with_one_line(tmp_path):
    make_raw_dataset(tmp_path, COUNTS)
    write_params(tmp_path, {"split": {"test_size": 1.5}})
    proc = run_stage("split", tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "split.test_size" in lines[0]
    assert not (tmp_path / "data/split").exists()


def test_stage_runs_as_a_module(tmp_path):
    make_raw_dataset(tmp_path, COUNTS)
    write_params(tmp_path, {})
    proc = run_stage("split", tmp_path)
    assert "Claude Monet: 24 train, 6 test" in proc.stderr
    assert len(rows(tmp_path / "data/split/test.csv")) + len(rows(tmp_path / "data/split/train.csv")) == 68
