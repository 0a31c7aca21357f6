"""Stage ``resize``: every training and test image as an ``image_size`` x ``image_size`` RGB array.

Reads ``data/oversampled/train.csv``, ``data/split/test.csv``, the images they list and
``params.yaml:resize``; writes ``data/resized/{train,test}.npy`` (uint8, ``N x image_size x image_size x 3``),
``data/resized/{train,test}.csv`` (``path,artist,source``) with rows in the arrays' order, and
``data/resized/format.json`` (``size``, ``mode``): how the images were made, for train.
"""

from __future__ import annotations

import logging

from painter_id.core.atomic import atomic_dir, write_csv
from painter_id.core.parallel import open_workers, worker_count
from painter_id.core.params import load_section
from painter_id.core.paths import OVERSAMPLED_TRAIN, RESIZED_DIR, SPLIT_TEST
from painter_id.core.runner import run_stage
from painter_id.data import resized
from painter_id.data.inputs import read_csv
from painter_id.data.report import log_train_test_counts

log = logging.getLogger(__name__)

def main() -> None:
    """Resize the oversampled training split and the test split into ``data/resized``."""
    params = load_section("resize")
    splits = {
        "train": read_csv(OVERSAMPLED_TRAIN, ["path", "artist", "sha256"],
                          "run `dvc repro oversample` to rebuild data/oversampled"),
        # Empty with split.test_size 0: every painting trains.
        "test": read_csv(SPLIT_TEST, ["path", "artist", "sha256"], "run `dvc repro split` to rebuild data/split",
                         allow_empty=True),
    }
    size = worker_count(max(len(rows) for rows in splits.values()), load_section("runtime").workers)
    log.info("resizing to %dx%d (%s) with %d workers", params.image_size, params.image_size, params.mode, size)
    with atomic_dir(RESIZED_DIR) as tmp, open_workers(size) as workers:
        for name, rows in splits.items():
            resized.resize_to_npy([(row["path"], row["sha256"]) for row in rows], resized.array_path(name, tmp),
                                  params, workers, f"resize {name}")
            # The test split has no copies: its source column is empty (and absent from test.csv).
            out = [[row["path"], row["artist"], row.get("source") or "", row["sha256"]] for row in rows]
            write_csv(resized.table_path(name, tmp), resized.COLUMNS, out)
        resized.write_format(tmp, params.image_size, params.mode)
    log_train_test_counts(log, (row["artist"] for row in splits["train"]), (row["artist"] for row in splits["test"]))


if __name__ == "__main__":
    run_stage("resize", main)
