"""The Kaggle layout inside a source folder: which folders are artists, where artists.csv is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.sources.layout import find_layout
from testkit.images import painting


def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    painting(np.random.default_rng(0), 0, (8, 8)).save(path)



def test_find_layout_nested_ignores_resized_and_macosx(tmp_path):
    root = tmp_path / "best-artworks"
    for artist in ("Ann", "Bob"):
        _jpeg(root / "images" / "images" / artist / f"{artist}_1.jpg")
    for n in range(5):
        _jpeg(root / "resized" / "resized" / f"Ann_{n}.jpg")
    _jpeg(root / "__MACOSX" / "images" / "images" / "Cy" / "._Cy_1.jpg")
    (root / "artists.csv").write_text("name\nAnn\n")
    (root / "images" / "artists.csv").write_text("name\nWrong\n")
    layout = find_layout(tmp_path)
    assert [p.name for p in layout.artist_dirs] == ["Ann", "Bob"]
    assert layout.artists_csv == root / "artists.csv"


def test_find_layout_flat_and_missing(tmp_path):
    for artist in ("Ann", "Bob", "Cy"):
        _jpeg(tmp_path / "src" / "images" / artist / "x.jpg")
    layout = find_layout(tmp_path / "src")
    assert [p.name for p in layout.artist_dirs] == ["Ann", "Bob", "Cy"] and layout.artists_csv is None
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "readme.txt").write_text("no images")
    with pytest.raises(PipelineError, match="bare: no artist folders found"):
        find_layout(tmp_path / "bare")
