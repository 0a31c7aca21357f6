"""Stage ``split``: hold out a test split, stratified by artist, identical images on one side.

Reads ``data/raw/manifest.csv`` and ``params.yaml:split``; writes ``data/split/train.csv`` and
``data/split/test.csv`` (``path,artist,sha256``, paths relative to the project root).
"""

from __future__ import annotations

import logging

from painter_id.core.atomic import atomic_dir, write_csv
from painter_id.core.params import load_section
from painter_id.core.paths import MANIFEST, SPLIT_DIR, SPLIT_TEST, SPLIT_TRAIN
from painter_id.core.runner import run_stage
from painter_id.data.inputs import read_csv
from painter_id.data.report import log_train_test_counts
from painter_id.data.splitting import COLUMNS, split_rows

log = logging.getLogger(__name__)


def main() -> None:
    """Split ``data/raw/manifest.csv`` into ``data/split/{train,test}.csv``."""
    params = load_section("split")
    rows = read_csv(MANIFEST, COLUMNS, "run `dvc repro download` to rebuild data/raw")
    train, test = split_rows(rows, params)
    with atomic_dir(SPLIT_DIR) as tmp:
        for path, part in ((SPLIT_TRAIN, train), (SPLIT_TEST, test)):
            write_csv(tmp / path.name, COLUMNS, ([row[c] for c in COLUMNS] for row in part))
    log_train_test_counts(log, (row["artist"] for row in train), (row["artist"] for row in test))
    log.info("wrote %s: %d train and %d test images", SPLIT_DIR, len(train), len(test))


if __name__ == "__main__":
    run_stage("split", main)
