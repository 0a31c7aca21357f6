"""The oversample stage: augmented copies of the training split only, seeded and evenly cycled."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from painter_id.core import parallel
from painter_id.core.errors import PipelineError
from painter_id.core.params import OversampleParams
from painter_id.data import oversampling
from painter_id.data.images import sha256_file
from testkit.project import stage_main, write_params


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def project(raw_dataset, monkeypatch):
    """A project folder (the cwd) with data/raw (30, 12, 6 images) and data/split."""
    root = raw_dataset.parents[1]
    monkeypatch.chdir(root)
    write_params(root, {})
    stage_main("split")
    return root


def run(root, **params) -> list[dict[str, str]]:
    """Run the stage in-process with ``params``; return data/oversampled/train.csv."""
    write_params(root, {"oversample": params})
    stage_main("oversample")
    return rows(root / "data/oversampled/train.csv")


def train_counts(root) -> Counter:
    return Counter(row["artist"] for row in rows(root / "data/split/train.csv"))


def test_min_count_reaches_exactly_the_floor(project):
    before = train_counts(project)
    test_csv = project / "data/split/test.csv"
    test_state = (test_csv.read_bytes(), test_csv.stat().st_mtime_ns)
    out = run(project, strategy="min_count", min_count=10)
    assert (test_csv.read_bytes(), test_csv.stat().st_mtime_ns) == test_state
    after = Counter(row["artist"] for row in out)
    assert after == {artist: max(n, 10) for artist, n in before.items()}
    assert after["Claude Monet"] == before["Claude Monet"] > 10  # the largest gets no copies


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_match_largest_reaches_the_fraction_of_the_largest(project, fraction):
    before = train_counts(project)
    floor = math.ceil(round(fraction * max(before.values()), 9))
    after = Counter(row["artist"] for row in run(project, strategy="match_largest", fraction=fraction))
    assert after == {artist: max(n, floor) for artist, n in before.items()}
    assert after != before


def test_none_copies_nothing(project):
    out = run(project, strategy="none")
    split_train = rows(project / "data/split/train.csv")
    assert [(r["path"], r["artist"], r["sha256"]) for r in out] == [(r["path"], r["artist"], r["sha256"]) for r in split_train]
    assert all(r["source"] == "" for r in out)
    assert not list((project / "data/oversampled").rglob("*.jpg"))


def test_copies_come_from_train_only_and_are_real_images(project):
    test_csv = project / "data/split/test.csv"
    test_bytes = test_csv.read_bytes()
    test_paths = {r["path"] for r in rows(test_csv)}
    train_paths = {r["path"] for r in rows(project / "data/split/train.csv")}
    # The test split is never read: the stage works with it and its images gone.
    test_csv.unlink()
    for path in test_paths:
        (project / path).unlink()

    out = run(project, min_count=20)
    copies = [r for r in out if r["source"]]
    assert len(copies) == sum(max(0, 20 - n) for n in train_counts(project).values()) > 0
    assert {r["source"] for r in copies} <= train_paths
    assert not {r["source"] for r in copies} & test_paths
    for row in copies:
        path = project / row["path"]
        assert row["path"].startswith("data/oversampled/images/")
        assert path.name.rsplit("_aug", 1)[0] == (project / row["source"]).stem
        assert sha256_file(path) == row["sha256"]
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert img.size == Image.open(project / row["source"]).size
        assert row["artist"] == next(r["artist"] for r in out if r["path"] == row["source"])
    # Originals are cycled evenly: per artist, no original has two copies more than another.
    for artist in {r["artist"] for r in copies}:
        per_source = Counter(r["source"] for r in copies if r["artist"] == artist)
        originals = [r["path"] for r in out if r["artist"] == artist and not r["source"]]
        uses = [per_source[p] for p in originals]
        assert max(uses) - min(uses) <= 1, artist
    test_csv.write_bytes(test_bytes)


def test_same_seed_same_copies_other_seed_other_copies(project):
    first = run(project, seed=3)
    first_bytes = {r["path"]: (project / r["path"]).read_bytes() for r in first if r["source"]}
    assert run(project, seed=3) == first
    assert {r["path"]: (project / r["path"]).read_bytes() for r in first if r["source"]} == first_bytes
    other = run(project, seed=4)
    assert {r["sha256"] for r in other if r["source"]} != {r["sha256"] for r in first if r["source"]}


def test_parallel_writes_the_same_copies(project, monkeypatch):
    serial = run(project, min_count=16)
    monkeypatch.setattr(parallel, "JOBS_PER_WORKER", 1)
    assert parallel.worker_count(18) == min(2, parallel.available_cores())
    assert run(project, min_count=16) == serial


def test_augment_fills_borders_by_reflection_not_black():
    img = Image.new("RGB", (40, 30), (200, 120, 60))
    params = OversampleParams(rotation_degrees=45, shift_fraction=0.3, zoom_fraction=0.5)
    for seed in range(5):
        out = np.asarray(oversampling.augment(img, np.random.default_rng(seed), params)).astype(int)
        assert out.shape == (30, 40, 3)
        assert np.abs(out - (200, 120, 60)).max() <= 2


def test_augment_without_randomness_is_the_identity_or_a_mirror():
    arr = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    still = OversampleParams(rotation_degrees=0, shift_fraction=0, zoom_fraction=0, horizontal_flip=False)
    assert np.array_equal(np.asarray(oversampling.augment(img, np.random.default_rng(0), still)), arr)
    flip = OversampleParams(rotation_degrees=0, shift_fraction=0, zoom_fraction=0, horizontal_flip=True)
    results = {np.asarray(oversampling.augment(img, np.random.default_rng(s), flip)).tobytes() for s in range(8)}
    assert results == {arr.tobytes(), arr[:, ::-1].tobytes()}


def test_corrupt_source_names_the_file_and_keeps_previous_output(project):
    run(project, min_count=10)
    before = (project / "data/oversampled/train.csv").read_bytes()
    titian = next(r["path"] for r in rows(project / "data/split/train.csv") if r["artist"] == "Titian")
    (project / titian).write_bytes(b"not a jpeg")
    # oversample depends on data/split/train.csv (which hashes each image), not on data/raw: it checks the bytes.
    with pytest.raises(PipelineError, match=rf"^{re.escape(titian)}: changed since"):
        run(project, min_count=12)
    assert (project / "data/oversampled/train.csv").read_bytes() == before

