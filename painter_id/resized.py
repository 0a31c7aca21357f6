"""The resized data set (``data/resized``): its arrays, labels and image format, and ``tf.data`` over them.

``data/resized/{split}.npy`` is opened memory-mapped; :func:`make_dataset` turns it into a
``tf.data`` pipeline (in memory when the rows fit, else streamed from the memory map),
shuffled per epoch with a seed and prefetched. ``data/resized/format.json`` says how the
images were made (``size``, ``mode``), so later steps take that from the data, not from params.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import numpy as np

from painter_id.atomic import write_json
from painter_id.errors import PipelineError
from painter_id.inputs import read_csv, read_image_format

if TYPE_CHECKING:
    import tensorflow as tf

RESIZED_DIR = Path("data/resized")
FORMAT_FILE = RESIZED_DIR / "format.json"
RESIZE_HINT = "run `dvc repro resize` to rebuild data/resized"

# Arrays up to this size are copied into memory (fast, simple; TensorFlow also refuses
# constants over 2 GB); larger ones are streamed from the memory map batch by batch.
MAX_IN_MEMORY_BYTES = 1 << 30


@dataclass(frozen=True)
class Split:
    """One split of ``data/resized``: memory-mapped images and the CSV rows in the same order."""

    images: np.ndarray
    paths: list[str]
    artists: list[str]
    sources: list[str]

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
    rows = read_csv(table, ["path", "artist"], RESIZE_HINT, allow_empty)
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


def _streamed(images: np.ndarray, labels: Optional[np.ndarray], indices: np.ndarray, batch_size: int,
              seed: Optional[int]) -> tf.data.Dataset:
    import tensorflow as tf

    # A generator local to this dataset (no global state): each pass draws the next,
    # repeatable order.
    rng = np.random.default_rng(seed)

    def one_epoch() -> Iterator:
        order = rng.permutation(indices) if seed is not None else indices
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            x = np.asarray(images[chunk])
            yield (x, labels[chunk]) if labels is not None else x

    x_spec = tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype))
    signature = (x_spec, tf.TensorSpec((None,), tf.int64)) if labels is not None else x_spec
    return tf.data.Dataset.from_generator(one_epoch, output_signature=signature)


def make_dataset(images: np.ndarray, labels: Optional[np.ndarray], indices: Optional[np.ndarray],
                 batch_size: int, seed: Optional[int] = None,
                 max_in_memory_bytes: int = MAX_IN_MEMORY_BYTES) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data`` pipeline over ``images[indices]`` (and their labels).

    With a ``seed`` the rows are reshuffled every epoch, repeatably; without one they keep
    their order (evaluation, prediction). Pixels stay uint8: the model casts them.
    """
    # Imported here: the stages that only read arrays (resize, evaluate) start without TensorFlow.
    import tensorflow as tf

    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    row_bytes = int(np.prod(images.shape[1:])) * images.itemsize
    if len(indices) * row_bytes > max_in_memory_bytes:
        dataset = _streamed(images, labels, indices, batch_size, seed)
    else:
        x = np.asarray(images[indices])
        dataset = tf.data.Dataset.from_tensor_slices((x, labels[indices]) if labels is not None else x)
        if seed is not None:
            dataset = dataset.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
