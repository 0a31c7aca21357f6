"""Stage ``resize``: every training and test image as a ``size`` x ``size`` RGB array.

Reads ``data/oversampled/train.csv``, ``data/split/test.csv``, the images they list and
``params.yaml:resize``; writes ``data/resized/{train,test}.npy`` (uint8, ``N x size x size x 3``)
and ``data/resized/{train,test}.csv`` (``path,artist,source``) with rows in the arrays' order.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections import Counter
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Optional

import numpy as np
from numpy.lib.format import write_array_header_1_0
from tqdm import tqdm

from stages.errors import PipelineError, run_stage
from stages.files import atomic_dir, read_csv, write_csv
from stages.images import ImageRejected, load_square
from stages.params import ResizeParams, load_section

log = logging.getLogger(__name__)

TRAIN = Path("data/oversampled/train.csv")
TEST = Path("data/split/test.csv")
OUT = Path("data/resized")
COLUMNS = ["path", "artist", "source"]


def load_one(job: tuple[str, int, str]) -> np.ndarray:
    """Decode one image into a ``(size, size, 3)`` uint8 array, or fail naming the file."""
    path, size, mode = job
    try:
        return load_square(path, size, mode)
    except ImageRejected as exc:
        raise PipelineError(
            f"{path}: cannot be decoded ({exc}); download should have rejected it, run `dvc repro download` again"
        ) from None


def worker_count(params: ResizeParams, jobs: int) -> int:
    """``resize.workers`` (0: every core), never more processes than images."""
    return max(1, min(params.workers or os.cpu_count() or 1, jobs))


def resize_to_npy(paths: list[str], dest: Path, params: ResizeParams, pool: Optional[Pool], desc: str) -> None:
    """Write the images at ``paths`` to ``dest`` as one ``.npy`` array, in order.

    Results are appended to the file as they arrive (``imap`` keeps their order), so memory
    does not grow with the number of images: plain writes, not a memory map, whose dirty
    pages would count towards this process's memory until the end. ``pool``'s workers (if
    any) decode and resize; this process only writes.
    """
    shape = (len(paths), params.size, params.size, 3)
    jobs = [(path, params.size, params.mode) for path in paths]
    if pool is None:
        results = map(load_one, jobs)
    else:
        chunk = max(1, min(64, len(jobs) // (4 * worker_count(params, len(jobs)))))
        results = pool.imap(load_one, jobs, chunksize=chunk)
    with open(dest, "wb") as handle:
        write_array_header_1_0(handle, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape})
        for image in tqdm(results, total=len(jobs), desc=desc, unit="img"):
            handle.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())


def main() -> None:
    """Resize the oversampled training split and the test split into ``data/resized``."""
    params = load_section("resize")
    splits = {
        "train": read_csv(TRAIN, ["path", "artist"], "run `dvc repro oversample` to rebuild data/oversampled"),
        "test": read_csv(TEST, ["path", "artist"], "run `dvc repro split` to rebuild data/split"),
    }
    workers = worker_count(params, max(len(rows) for rows in splits.values()))
    log.info("resizing to %dx%d (%s) with %d workers", params.size, params.size, params.mode, workers)
    with atomic_dir(OUT) as tmp, contextlib.ExitStack() as stack:
        # spawn: workers start clean (no threads inherited by fork) and in this process's cwd.
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers)) if workers > 1 else None
        for name, rows in splits.items():
            resize_to_npy([row["path"] for row in rows], tmp / f"{name}.npy", params, pool, f"resize {name}")
            # The test split has no copies: its source column is empty (and absent from test.csv).
            out = [[row["path"], row["artist"], row.get("source") or ""] for row in rows]
            write_csv(tmp / f"{name}.csv", COLUMNS, out)
    train_counts = Counter(row["artist"] for row in splits["train"])
    test_counts = Counter(row["artist"] for row in splits["test"])
    for artist in sorted(train_counts | test_counts):
        log.info("%s: %d train, %d test", artist, train_counts[artist], test_counts[artist])


if __name__ == "__main__":
    run_stage("resize", main)
