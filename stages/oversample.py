"""Stage ``oversample``: augmented copies of minority artists, from the training split only.

Reads ``data/split/train.csv``, the images it lists and ``params.yaml:oversample``; writes
``data/oversampled/images/<Folder>/<stem>_aug<k>.jpg`` and ``data/oversampled/train.csv``
(``path,artist,sha256,source``: the originals with an empty ``source``, then the copies with
``source`` = the original's path). The test split is never read.
"""

from __future__ import annotations

import logging
from collections import Counter

from painter_id.core.atomic import atomic_dir, write_csv
from painter_id.core.params import load_section
from painter_id.core.paths import OVERSAMPLED_DIR, OVERSAMPLED_TRAIN, SPLIT_TRAIN
from painter_id.core.runner import run_stage
from painter_id.data.inputs import read_csv
from painter_id.data.oversampling import COLUMNS, plan_copies, write_copies

log = logging.getLogger(__name__)


def main() -> None:
    """Write ``data/oversampled``: the training originals plus augmented copies of minority artists."""
    params = load_section("oversample")
    workers = load_section("runtime").workers
    rows = read_csv(SPLIT_TRAIN, ["path", "artist", "sha256"], "run `dvc repro split` to rebuild data/split")
    copies = plan_copies(rows, params)
    log.info("strategy %s: %d copies of %d training images", params.strategy, len(copies), len(rows))
    with atomic_dir(OVERSAMPLED_DIR) as tmp:
        hashes = write_copies(copies, tmp, params, workers)
        out = [[row["path"], row["artist"], row["sha256"], ""] for row in rows]
        out += [[copy.path, copy.artist, digest, copy.source] for copy, digest in zip(copies, hashes)]
        write_csv(tmp / OVERSAMPLED_TRAIN.name, COLUMNS, out)
    originals = Counter(row["artist"] for row in rows)
    added = Counter(copy.artist for copy in copies)
    for artist in sorted(originals):
        log.info("%s: %d originals + %d copies", artist, originals[artist], added[artist])


if __name__ == "__main__":
    run_stage("oversample", main)
