"""The synthetic painters: deterministic, imbalanced, varied, and ingested like a real download."""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painter_id.core.params import DataParams
from painter_id.sources.synthetic import FIELDS, MAX_ARTISTS, STYLES, class_sizes, generate
from testkit.project import run_stage, stage_main, write_params


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_default_synthetic_set_through_the_real_stage(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_params(tmp_path / "a", {})
    run_stage("download", tmp_path / "a")  # python -m stages.download with the project's defaults
    first = rows(tmp_path / "a" / "data" / "raw" / "manifest.csv")

    defaults = DataParams()
    counts = Counter(r["artist"] for r in first)
    assert len(first) == defaults.synthetic_images and len(counts) == defaults.synthetic_artists >= 8
    assert max(counts.values()) >= 10 * min(counts.values())
    assert any(r["mode"] == "L" for r in first) and any(r["mode"] == "RGB" for r in first)
    sizes = {(int(r["width"]), int(r["height"])) for r in first}
    assert len(sizes) > 50 and len({w / h for w, h in sizes}) > 50  # sizes and aspect ratios vary
    assert all(60 <= s <= 160 for size in sizes for s in size)
    assert rows(tmp_path / "a" / "data" / "raw" / "rejected.csv") == []
    artists = rows(tmp_path / "a" / "data" / "raw" / "artists.csv")
    assert list(artists[0]) == FIELDS
    assert {r["name"]: int(r["paintings"]) for r in artists} == dict(counts)

    # Same seed, in-process this time: byte-identical files.
    write_params(tmp_path / "b", {})
    monkeypatch.chdir(tmp_path / "b")
    stage_main("download")
    assert rows(tmp_path / "b" / "data" / "raw" / "manifest.csv") == first


def test_other_seed_gives_other_images(tmp_path):
    def shas(seed: int) -> list[bytes]:
        root = generate(tmp_path / str(seed), n_artists=3, n_images=30, seed=seed)
        return [p.read_bytes() for p in sorted(root.rglob("*.jpg"))]

    same, other = shas(1), shas(2)
    assert len(same) == len(other) == 30
    assert not set(same) & set(other)


def test_kaggle_layout_and_speed(tmp_path):
    start = time.perf_counter()
    root = generate(tmp_path / "src", n_artists=MAX_ARTISTS, n_images=400, seed=0)
    assert time.perf_counter() - start < 20  # a few seconds normally; generous on a busy CI core
    folders = sorted(p.name for p in (root / "images" / "images").iterdir())
    names = [r["name"] for r in rows(root / "artists.csv")]
    assert sorted(n.replace(" ", "_") for n in names) == folders and len(folders) == MAX_ARTISTS
    for folder in folders:
        files = sorted((root / "images" / "images" / folder).iterdir())
        assert all(f.name.startswith(f"{folder}_") and f.suffix == ".jpg" for f in files)


@pytest.mark.parametrize("n_artists, n_images", [(2, 20), (10, 400), (12, 120), (12, 5000), (5, 51)])
def test_class_sizes(n_artists, n_images):
    sizes = class_sizes(n_artists, n_images)
    assert len(sizes) == n_artists and sum(sizes) == n_images and min(sizes) >= 3
    assert sizes == sorted(sizes, reverse=True)
    if n_images >= 40 * n_artists:
        assert sizes[0] >= 10 * sizes[-1]


def test_styles_are_textured_and_palettes_overlap(tmp_path):
    # No painter owns a colour: every palette shares one with another painter.
    for style in STYLES:
        others = {c for s in STYLES if s is not style for c in s.palette}
        assert set(style.palette) & others, style.name
    root = generate(tmp_path / "src", n_artists=MAX_ARTISTS, n_images=MAX_ARTISTS * 10, seed=5)
    for path in sorted(root.rglob("*.jpg")):
        arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        # Texture everywhere: no image is one flat colour, and neighbouring pixels differ.
        assert arr.std() > 4, path.name
        assert np.abs(np.diff(arr, axis=1)).mean() > 1.0, path.name
