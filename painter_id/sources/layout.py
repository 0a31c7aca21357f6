"""The Kaggle layout inside a source folder: which folders are artists, where ``artists.csv`` is."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from painter_id.core.errors import PipelineError
from painter_id.data.images import is_image_name

# Folders archivers and file managers add beside the data; never artists.
IGNORED_DIRS = {"__macosx"}


def nfc(text: str) -> str:
    """Unicode NFC form: the real archive spells Dürer decomposed (NFD), artists.csv composed."""
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class Layout:
    """What was found in a source folder: the artist folders and the artists table, if any."""

    root: Path
    artist_dirs: tuple[Path, ...]
    artists_csv: Optional[Path]


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        p for p in entries
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name.lower() not in IGNORED_DIRS
    ]


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and is_image_name(p) for p in folder.iterdir())


def find_layout(root: Path) -> Layout:
    """Find the artist folders (``images/<Artist>/`` or nested ``images/images/<Artist>/``) under ``root``.

    The parent of the artist folders is the folder whose sub-folders hold images, preferring
    one named ``images`` and then the one with the most such sub-folders; that is how the
    real archive's flat ``resized/resized/`` copy is left out. ``artists.csv`` is the
    shallowest file of that name.
    """
    candidates = []  # (not named images, -number of artist folders, depth, folder, artist folders)
    csvs = []
    stack = [root]
    while stack:
        folder = stack.pop()
        children = _visible_dirs(folder)
        stack.extend(children)
        csvs.extend(p for p in folder.glob("*") if p.name.lower() == "artists.csv" and p.is_file())
        artist_dirs = [c for c in children if _has_images(c)]
        if artist_dirs:
            depth = len(folder.relative_to(root).parts)
            candidates.append((folder.name.lower() != "images", -len(artist_dirs), depth, str(folder), artist_dirs))
    if not candidates:
        raise PipelineError(
            f"{root}: no artist folders found; expected the Kaggle layout images/<Artist>/<Artist>_<n>.jpg"
        )
    best = min(candidates, key=lambda c: c[:4])
    csv_path = min(csvs, key=lambda p: (len(p.relative_to(root).parts), str(p))) if csvs else None
    return Layout(root=root, artist_dirs=tuple(best[4]), artists_csv=csv_path)
