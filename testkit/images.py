"""Real images and data sets on disk, generated at test time: paintings, sources, raw and resized sets."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image


def painting(rng: np.random.Generator, hue: int, size=(48, 40)) -> Image.Image:
    """A small random image whose colours lean towards ``hue`` (0..2), so classes differ."""
    arr = rng.integers(0, 120, size=(size[1], size[0], 3), dtype=np.uint8)
    arr[..., hue % 3] = np.clip(arr[..., hue % 3].astype(int) + 120, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def make_raw_dataset(root: Path, counts: dict[str, int], seed: int = 0, size=(48, 40)) -> Path:
    """Write ``root/data/raw`` as the download stage does: images/<Folder>/, artists.csv, manifest.csv."""
    from painter_id.data.images import sha256_file

    rng = np.random.default_rng(seed)
    raw = root / "data" / "raw"
    rows = []
    for index, (artist, count) in enumerate(counts.items()):
        folder = artist.replace(" ", "_")
        (raw / "images" / folder).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            rel = f"images/{folder}/{folder}_{n + 1}.jpg"
            painting(rng, index, size).save(raw / rel, quality=90)
            rows.append([rel, artist, sha256_file(raw / rel), size[0], size[1], "RGB"])
    with open(raw / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "artist", "sha256", "width", "height", "mode"])
        writer.writerows(rows)
    with open(raw / "artists.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "paintings"])
        for index, (artist, count) in enumerate(counts.items()):
            writer.writerow([index, artist, count])
    (raw / "rejected.csv").write_text("path,reason\n", encoding="utf-8")
    return raw


def make_resized_dataset(root: Path, artists=("Ann", "Bob", "Cy"), n_train=24, n_test=9, size=32, seed=0,
                         mode: str = "pad") -> Path:
    """Write ``root/data/resized`` as the resize stage does: {train,test}.npy + .csv in the same order, format.json."""
    rng = np.random.default_rng(seed)
    out = root / "data" / "resized"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = [artists[i % len(artists)] for i in range(n)]
        images = np.stack(
            [np.asarray(painting(rng, artists.index(a), (size, size)), dtype=np.uint8) for a in labels]
        )
        np.save(out / f"{split}.npy", images)
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "artist", "source", "sha256"])
            for i, artist in enumerate(labels):
                writer.writerow([f"data/raw/images/{artist}/{artist}_{i}.jpg", artist, "",
                                 hashlib.sha256(images[i].tobytes()).hexdigest()])
    (out / "format.json").write_text(json.dumps({"size": size, "mode": mode}), encoding="utf-8")
    return out


def jpeg(path: Path, seed: int = 0, size=(30, 20)) -> Path:
    """A small real JPEG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    painting(np.random.default_rng(seed), seed, size).save(path, quality=85)
    return path


def make_source(root: Path, folders: dict[str, int], names: list[str] | None = None, nested: bool = True) -> Path:
    """A source folder in the Kaggle layout: (images/)images/<Folder>/<Folder>_<n>.jpg and artists.csv."""
    images = root / "images" / "images" if nested else root / "images"
    for index, (folder, count) in enumerate(folders.items()):
        for n in range(count):
            jpeg(images / folder / f"{folder}_{n + 1}.jpg", seed=index * 1000 + n)
    if names is not None:
        with open(root / "artists.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "name", "years", "paintings"])
            writer.writerows([i, name, "1800 - 1900", 999] for i, name in enumerate(names))
    return root
