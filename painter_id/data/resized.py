"""The resized data set (``data/resized``): writing and reading its arrays, labels and image format.

``data/resized/{split}.npy`` is written image by image as workers decode and resize, and read
memory-mapped (:mod:`painter_id.model.datasets` turns it into ``tf.data``).
``data/resized/format.json`` says how the images were made (``size``, ``mode``), so later
steps take that from the data, not from params.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from numpy.lib.format import write_array_header_1_0

from painter_id.core import paths
from painter_id.core.atomic import write_json
from painter_id.core.errors import PipelineError
from painter_id.core.parallel import Workers
from painter_id.core.params import ResizeParams
from painter_id.data.images import ImageRejected, load_square
from painter_id.data.inputs import read_csv, read_image_format, read_listed_image

RESIZED_DIR = paths.RESIZED_DIR
FORMAT_FILE = paths.RESIZED_FORMAT
RESIZE_HINT = "run `dvc repro resize` to rebuild data/resized"
# data/resized/{train,test}.csv: one row per image of the array, in its order.
COLUMNS = ["path", "artist", "source", "sha256"]



@dataclass(frozen=True)
class Split:
    """One split of ``data/resized``: memory-mapped images and the CSV rows in the same order."""

    images: np.ndarray
    paths: list[str]
    artists: list[str]
    sources: list[str]
    digests: list[str] = field(default_factory=list)  # the SHA-256 of each row's image file

    @property
    def size(self) -> int:
        """Side of the square images, in pixels."""
        return int(self.images.shape[1])

    def groups(self) -> list[str]:
        """The original each row comes from: its ``source`` for an oversampled copy, else its path."""
        return [source or path for path, source in zip(self.paths, self.sources)]


def table_path(name: str, root: os.PathLike | str = RESIZED_DIR) -> Path:
    """``data/resized/<name>.csv``: the rows of a split, in the order of its array."""
    return Path(root) / f"{name}.csv"


def array_path(name: str, root: os.PathLike | str = RESIZED_DIR) -> Path:
    """``data/resized/<name>.npy``: the images of a split."""
    return Path(root) / f"{name}.npy"


def load_split(name: str, root: os.PathLike | str = RESIZED_DIR, allow_empty: bool = False) -> Split:
    """Open ``<root>/<name>.npy`` and ``<root>/<name>.csv`` and check that they belong together.

    ``allow_empty``: a split without rows is valid (the test split of ``split.test_size: 0``).
    """
    arrays, table = array_path(name, root), table_path(name, root)
    # "source" is empty for an original painting: required as a column, not as a value.
    rows = read_csv(table, ["path", "artist", "sha256"], RESIZE_HINT, allow_empty)
    if rows and "source" not in rows[0]:
        raise PipelineError(f"{table}: missing column(s) source; {RESIZE_HINT}")
    try:
        images = np.load(arrays, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise PipelineError(f"{arrays}: not found; {RESIZE_HINT}") from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{arrays}: not a readable .npy array ({exc}); {RESIZE_HINT}") from None
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3 or images.dtype != np.uint8:
        raise PipelineError(
            f"{arrays}: expected uint8 images of shape (N, size, size, 3), found {images.dtype} "
            f"{images.shape}; {RESIZE_HINT}"
        )
    if len(images) != len(rows):
        raise PipelineError(
            f"{arrays} holds {len(images)} images but {table} lists {len(rows)}; {RESIZE_HINT}"
        )
    return Split(
        images=images,
        paths=[row["path"] for row in rows],
        artists=[row["artist"] for row in rows],
        sources=[row.get("source") or "" for row in rows],
        digests=[row["sha256"] for row in rows],
    )


def write_format(folder: os.PathLike | str, size: int, mode: str) -> None:
    """Record how the images of ``folder`` (the future ``data/resized``) were made: ``format.json``."""
    write_json(Path(folder) / FORMAT_FILE.name, {"size": size, "mode": mode})


def read_format(path: os.PathLike | str = FORMAT_FILE) -> dict:
    """``data/resized/format.json``: the ``size`` and resize ``mode`` of the images."""
    return read_image_format(path, RESIZE_HINT)


def class_names(artists: Sequence[str]) -> list[str]:
    """The sorted artist names; a name's index is its class id."""
    return sorted(set(artists))


def encode(artists: Sequence[str], labels: Sequence[str], where: str) -> np.ndarray:
    """Class ids of ``artists``; an artist missing from ``labels`` is a one-line error naming ``where``."""
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(artists) - set(index))
    if unknown:
        raise PipelineError(
            f"{where}: artist(s) the model was not trained on: {', '.join(unknown[:5])}; "
            "retrain on the current data: `dvc repro train`"
        )
    return np.array([index[a] for a in artists], dtype=np.int64)


def validation_split(split: Split, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, validation)``: ``fraction`` of each artist's originals held out.

    Rows are grouped by original (``source or path``), so an oversampled copy always sits on
    the same side as the painting it was made from. Artists with a single original keep it
    for training. ``fraction`` 0 holds nothing out (every row trains).
    """
    if fraction == 0:
        return np.arange(len(split.paths)), np.array([], dtype=np.int64)
    groups = split.groups()
    artist_of: dict[str, str] = {}
    for group, artist in zip(groups, split.artists):
        artist_of.setdefault(group, artist)
    rng = np.random.default_rng(seed)
    held_out: set[str] = set()
    for artist in sorted(set(artist_of.values())):
        originals = sorted(g for g, a in artist_of.items() if a == artist)
        if len(originals) < 2:
            continue
        n_val = min(len(originals) - 1, max(1, round(len(originals) * fraction)))
        held_out.update(originals[i] for i in rng.permutation(len(originals))[:n_val])
    if not held_out:
        raise PipelineError(
            "data/resized/train.csv: no artist has two original paintings, so nothing can be held out "
            "for validation; add images or lower data.min_images"
        )
    is_val = np.array([g in held_out for g in groups])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)






def load_one(job: tuple[str, str, int, str]) -> np.ndarray:
    """Decode one image (checked against its listed SHA-256) into a ``(size, size, 3)`` uint8 array, or fail naming the file."""
    path, sha256, size, mode = job
    data = read_listed_image(path, sha256)
    try:
        return load_square(data, size, mode)
    except ImageRejected as exc:
        raise PipelineError(
            f"{path}: cannot be decoded ({exc}); download should have rejected it, run `dvc repro download` again"
        ) from None


def resize_to_npy(files: list[tuple[str, str]], dest: Path, params: ResizeParams, workers: Workers, desc: str) -> None:
    """Write the images ``files`` names as ``(path, sha256)`` to ``dest`` as one ``.npy`` array, in order.

    Results are appended to the file as they arrive (in order), so memory does not grow
    with the number of images: plain writes, not a memory map, whose dirty pages would
    count towards this process's memory until the end. The ``workers`` decode and resize;
    this process only writes.
    """
    shape = (len(files), params.image_size, params.image_size, 3)
    jobs = [(path, digest, params.image_size, params.mode) for path, digest in files]
    with open(dest, "wb") as handle:
        write_array_header_1_0(handle, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape})
        for image in workers.map(load_one, jobs, desc=desc):
            handle.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())


def dataset(train: Split, test: Split, source: str) -> dict:
    """What MLflow records as a run's dataset: the original paintings (not the oversampled copies).

    ``digest``: a hash of the SHA-256 of every original painting of both splits, whatever the
    split, its seed or the image size; two runs with the same digest saw the same paintings.
    """
    originals = sorted({digest for split in (train, test) for digest, copy in zip(split.digests, split.sources)
                        if not copy})
    artists = {artist for split in (train, test) for artist in split.artists}
    digest = hashlib.sha256("\n".join(originals).encode("ascii")).hexdigest()[:16]
    return {"name": f"paintings-{digest[:8]}", "digest": digest, "source": source,
            "profile": {"paintings": len(originals), "artists": len(artists),
                        "train_rows": len(train.paths), "test_rows": len(test.paths)}}
