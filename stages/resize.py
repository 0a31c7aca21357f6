"""Stage ``resize``: every training and test image as an ``image_size`` x ``image_size`` RGB array.

Reads ``data/oversampled/train.csv``, ``data/split/test.csv``, the images they list and
``params.yaml:resize``; writes ``data/resized/{train,test}.npy`` (uint8, ``N x image_size x image_size x 3``),
``data/resized/{train,test}.csv`` (``path,artist,source``) with rows in the arrays' order, and
``data/resized/format.json`` (``size``, ``mode``): how the images were made, for train.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from numpy.lib.format import write_array_header_1_0

from painter_id import resized
from painter_id.atomic import atomic_dir, write_csv
from painter_id.errors import PipelineError
from painter_id.images import ImageRejected, load_square
from painter_id.inputs import read_csv, read_listed_image
from painter_id.parallel import Workers, open_workers, worker_count
from painter_id.params import ResizeParams, load_section
from painter_id.report import log_train_test_counts
from painter_id.runner import run_stage

log = logging.getLogger(__name__)

TRAIN = Path("data/oversampled/train.csv")
TEST = Path("data/split/test.csv")
OUT = resized.RESIZED_DIR
COLUMNS = ["path", "artist", "source"]


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


def main() -> None:
    """Resize the oversampled training split and the test split into ``data/resized``."""
    params = load_section("resize")
    splits = {
        "train": read_csv(TRAIN, ["path", "artist", "sha256"], "run `dvc repro oversample` to rebuild data/oversampled"),
        # Empty with split.test_size 0: every painting trains.
        "test": read_csv(TEST, ["path", "artist", "sha256"], "run `dvc repro split` to rebuild data/split", allow_empty=True),
    }
    size = worker_count(max(len(rows) for rows in splits.values()), params.workers)
    log.info("resizing to %dx%d (%s) with %d workers", params.image_size, params.image_size, params.mode, size)
    with atomic_dir(OUT) as tmp, open_workers(size) as workers:
        for name, rows in splits.items():
            resize_to_npy([(row["path"], row["sha256"]) for row in rows], resized.array_path(name, tmp), params, workers,
                          f"resize {name}")
            # The test split has no copies: its source column is empty (and absent from test.csv).
            out = [[row["path"], row["artist"], row.get("source") or ""] for row in rows]
            write_csv(resized.table_path(name, tmp), COLUMNS, out)
        resized.write_format(tmp, params.image_size, params.mode)
    log_train_test_counts(log, (row["artist"] for row in splits["train"]), (row["artist"] for row in splits["test"]))


if __name__ == "__main__":
    run_stage("resize", main)
