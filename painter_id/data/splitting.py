"""The stratified train/test split of ``data/raw/manifest.csv``, identical images on one side."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from sklearn.model_selection import train_test_split

from painter_id.core.errors import PipelineError
from painter_id.core.params import SplitParams
from painter_id.core.paths import MANIFEST, RAW_DIR

log = logging.getLogger(__name__)

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
        out = [{**row, "path": (RAW_DIR / row["path"]).as_posix()} for key in chosen for row in groups[key]]
        return sorted(out, key=lambda row: row["path"])

    return expand(train_keys), expand(test_keys)
