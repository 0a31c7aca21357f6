"""Stage ``split``: hold out a test split, stratified by artist, identical images on one side.

Reads ``data/raw/manifest.csv`` and ``params.yaml:split``; writes ``data/split/train.csv`` and
``data/split/test.csv`` (``path,artist,sha256``, paths relative to the project root).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

from sklearn.model_selection import train_test_split

from painter_id.atomic import atomic_dir, write_csv
from painter_id.errors import PipelineError
from painter_id.inputs import read_csv
from painter_id.params import SplitParams, load_section
from painter_id.report import log_train_test_counts
from painter_id.runner import run_stage

log = logging.getLogger(__name__)

RAW = Path("data/raw")
MANIFEST = RAW / "manifest.csv"
OUT = Path("data/split")
COLUMNS = ["path", "artist", "sha256"]

Row = dict[str, str]


def group_label(rows: list[Row]) -> str:
    """The artist most files of a group of identical files are labelled with (ties: first by name)."""
    votes = Counter(row["artist"] for row in rows)
    return max(sorted(votes), key=votes.__getitem__)


def stratified_keys(keys: list[str], label: dict[str, str], params: SplitParams) -> tuple[list[str], list[str]]:
    """``keys`` split into ``(train, test)`` stratified by ``label``; artists with one distinct image train only."""
    distinct = Counter(label.values())
    for artist in sorted(a for a, n in distinct.items() if n < 2):
        log.warning(
            "%s has fewer than 2 distinct images: train only, never tested (raise data.min_images to drop it)", artist
        )
    splittable = [key for key in keys if distinct[label[key]] >= 2]
    if not splittable:
        raise PipelineError(f"{MANIFEST}: no artist has 2 distinct images, nothing to test on; add images")
    try:
        train_keys, test_keys = train_test_split(
            splittable,
            test_size=params.test_size,
            random_state=params.seed,
            stratify=[label[key] for key in splittable],
        )
    except ValueError:
        raise PipelineError(
            f"{MANIFEST}: {len(splittable)} distinct images of {len(distinct)} artists are too few to hold out "
            f"split.test_size={params.test_size} of every artist; change split.test_size or add images"
        ) from None
    return train_keys + [key for key in keys if distinct[label[key]] < 2], test_keys


def split_rows(rows: list[Row], params: SplitParams) -> tuple[list[Row], list[Row]]:
    """Split manifest rows into ``(train, test)`` rows, stratified by artist.

    The unit of the split is a group of identical files (same sha256), so a painting stored
    twice is never learned in train and scored in test. An artist with fewer than 2
    distinct images cannot be stratified: it goes to train only, with a warning.
    Paths in the result are relative to the project root (``data/raw/images/...``).
    """
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row["sha256"]].append(row)
    # Sorted by content hash, the split depends on the images and the seed, not on manifest order.
    keys = sorted(groups)
    label = {key: group_label(groups[key]) for key in keys}
    mixed = sum(len({row["artist"] for row in groups[key]}) > 1 for key in keys)
    if mixed:
        log.warning("%d identical images are labelled with different artists; each stays on one side", mixed)

    if params.test_size == 0:  # the final model: every painting trains, none is held out
        train_keys, test_keys = list(keys), []
    else:
        train_keys, test_keys = stratified_keys(keys, label, params)

    def expand(chosen: list[str]) -> list[Row]:
        out = [{**row, "path": (RAW / row["path"]).as_posix()} for key in chosen for row in groups[key]]
        return sorted(out, key=lambda row: row["path"])

    return expand(train_keys), expand(test_keys)


def main() -> None:
    """Split ``data/raw/manifest.csv`` into ``data/split/{train,test}.csv``."""
    params = load_section("split")
    rows = read_csv(MANIFEST, COLUMNS, "run `dvc repro download` to rebuild data/raw")
    train, test = split_rows(rows, params)
    with atomic_dir(OUT) as tmp:
        for name, part in (("train", train), ("test", test)):
            write_csv(tmp / f"{name}.csv", COLUMNS, ([row[c] for c in COLUMNS] for row in part))
    log_train_test_counts(log, (row["artist"] for row in train), (row["artist"] for row in test))
    log.info("wrote %s: %d train and %d test images", OUT, len(train), len(test))


if __name__ == "__main__":
    run_stage("split", main)
