"""Augmented copies of minority artists' training paintings: which to make, and making them.

Copies are planned evenly over each artist's originals and drawn from generators seeded by
``oversample.seed`` and the copy's path, so the result depends neither on order nor on
which process makes a copy. The test split is never read.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from painter_id.core.errors import PipelineError
from painter_id.core.parallel import open_workers, worker_count
from painter_id.core.params import OversampleParams
from painter_id.core.paths import OVERSAMPLED_DIR
from painter_id.data.images import ImageRejected, load_rgb, sha256_file
from painter_id.data.inputs import read_listed_image

COLUMNS = ["path", "artist", "sha256", "source"]


JPEG_QUALITY = 90


# Copies are capped at this side (the largest resize.image_size): full-size copies of huge scans
# would only cost disk and time, since resize shrinks them anyway.
MAX_SIDE = 1024


@dataclass(frozen=True)
class Copy:
    """One augmented copy to write: paths relative to the project root."""

    source: str
    path: str
    artist: str
    source_sha256: str  # as data/split/train.csv lists it: checked when the source is read


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``key``, so results don't depend on order or process."""
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def targets(counts: dict[str, int], params: OversampleParams) -> dict[str, int]:
    """How many training images each artist has after oversampling (never fewer than now)."""
    if params.strategy == "none":
        floor = 0
    elif params.strategy == "min_count":
        floor = params.min_count
    else:
        # round() first: 0.3 * 10 is 3.0000000000000004 in floating point, which must stay 3.
        floor = math.ceil(round(params.fraction * max(counts.values()), 9))
    return {artist: max(n, floor) for artist, n in counts.items()}


def plan_copies(rows: list[dict[str, str]], params: OversampleParams) -> list[Copy]:
    """The copies to make, cycling evenly over each artist's originals.

    Every original gets its k-th copy before any gets its (k+1)-th; a seeded shuffle decides
    which originals get one more when the numbers don't divide evenly.
    """
    by_artist: dict[str, list[str]] = defaultdict(list)
    digests = {row["path"]: row["sha256"] for row in rows}
    for row in rows:
        by_artist[row["artist"]].append(row["path"])
    wanted = targets({artist: len(paths) for artist, paths in by_artist.items()}, params)
    copies: list[Copy] = []
    taken: set[tuple[str, str]] = set()
    for artist in sorted(by_artist):
        originals = sorted(by_artist[artist])
        order = rng_for(params.seed, artist).permutation(len(originals))
        for j in range(wanted[artist] - len(originals)):
            original = originals[order[j % len(originals)]]
            source = Path(original)
            k = j // len(originals) + 1
            name = f"{source.stem}_aug{k}.jpg"
            if (source.parent.name, name) in taken:  # a.jpg and a.png in one folder
                name = f"{source.stem}_{source.suffix.lstrip('.')}_aug{k}.jpg"
            taken.add((source.parent.name, name))
            copies.append(Copy(source.as_posix(), (OVERSAMPLED_DIR / "images" / source.parent.name / name).as_posix(), artist,
                               digests[original]))
    return copies


def augment(img: Image.Image, rng: np.random.Generator, params: OversampleParams) -> Image.Image:
    """A random rotation, zoom, shift and flips of ``img``, with the borders filled by reflection.

    Like Keras' ``ImageDataGenerator``: angle in ``[-rotation_degrees, rotation_degrees]``,
    scale in ``[1 - zoom_fraction, 1 + zoom_fraction]``, shift up to ``shift_fraction`` of the
    width/height, each flip with probability 1/2 when enabled.
    """
    w, h = img.size
    angle = math.radians(rng.uniform(-params.rotation_degrees, params.rotation_degrees))
    scale = rng.uniform(1 - params.zoom_fraction, 1 + params.zoom_fraction)
    shift = rng.uniform(-params.shift_fraction, params.shift_fraction, size=2) * (w, h)
    flip_h = params.horizontal_flip and rng.random() < 0.5
    flip_v = params.vertical_flip and rng.random() < 0.5

    # Pillow's affine maps each output pixel back to the input: q = M p + offset, the inverse
    # of "rotate and scale about the centre, then shift".
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    matrix = np.array([[cos, sin], [-sin, cos]])
    centre = np.array([w / 2, h / 2])
    offset = centre - matrix @ (centre + shift)
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]]) @ matrix.T + offset
    # Reflect the painting around itself far enough that no output pixel falls outside it
    # (at most one image size each way), instead of filling the corners with black.
    left, top = np.clip(np.ceil(-corners.min(axis=0)) + 1, 0, (w, h)).astype(int)
    right, bottom = np.clip(np.ceil(corners.max(axis=0) - (w, h)) + 1, 0, (w, h)).astype(int)
    padded = np.pad(np.asarray(img), ((top, bottom), (left, right), (0, 0)), mode="symmetric")
    data = (matrix[0, 0], matrix[0, 1], offset[0] + left, matrix[1, 0], matrix[1, 1], offset[1] + top)
    out = Image.fromarray(padded).transform((w, h), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
    if flip_h:
        out = ImageOps.mirror(out)
    if flip_v:
        out = ImageOps.flip(out)
    return out


def write_copy(job: tuple[Copy, Path, OversampleParams]) -> str:
    """Write one augmented copy to ``dest`` as JPEG and return its sha256."""
    copy, dest, params = job
    try:
        img = load_rgb(read_listed_image(copy.source, copy.source_sha256), draft_size=MAX_SIDE)
    except ImageRejected as exc:
        raise PipelineError(f"{copy.source}: cannot be decoded ({exc}); run `dvc repro download` again") from None
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    augment(img, rng_for(params.seed, copy.path), params).save(dest, "JPEG", quality=JPEG_QUALITY)
    return sha256_file(dest)


def write_copies(copies: list[Copy], root: Path, params: OversampleParams, workers: int = 0) -> list[str]:
    """Write ``copies`` under ``root`` (the future ``data/oversampled``), in parallel; their sha256s in order."""
    jobs = [(copy, root / Path(copy.path).relative_to(OVERSAMPLED_DIR), params) for copy in copies]
    with open_workers(worker_count(len(jobs), workers)) as pool:
        return list(pool.map(write_copy, jobs, desc="oversample"))
