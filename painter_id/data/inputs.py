"""Reading what an earlier stage wrote (CSV tables, JSON files), with one-line errors that say what to rerun."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from painter_id.core.errors import PipelineError, first_line
from painter_id.core.params import RESIZE_MODES
from painter_id.core.paths import FEATURES_INFO

# Written by the features stage into data/features/info.json; bumped when what it writes changes.
FEATURES_FORMAT = 1


def read_csv(path: os.PathLike | str, columns: Sequence[str], hint: str,
             allow_empty: bool = False) -> list[dict[str, str]]:
    """Read a CSV an earlier stage wrote as a list of rows of strings.

    A missing or unreadable file, a missing column, an empty value in one of ``columns``
    or a file without rows (unless ``allow_empty``: the test split of ``split.test_size: 0``)
    is a one-line :class:`PipelineError` ending with ``hint`` (what to run to produce the file again).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}; {hint}")
            rows = list(reader)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; {hint}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PipelineError(f"{path}: unreadable ({exc}); {hint}") from None
    if not rows and not allow_empty:
        raise PipelineError(f"{path}: has no rows; {hint}")
    for line, row in enumerate(rows, start=2):
        empty = [c for c in columns if not (row.get(c) or "").strip()]
        if empty:
            raise PipelineError(f"{path}: line {line} has no {', '.join(empty)}; {hint}")
    return rows


def read_listed_image(path: os.PathLike | str, sha256: str) -> bytes:
    """The bytes of an image a CSV lists, checked against the SHA-256 written beside it.

    ``oversample`` and ``resize`` depend in ``dvc.yaml`` on the tables that list and hash
    the images, not on the 8,446-file ``data/raw`` folder itself (so ``dvc status`` stays
    fast); this check makes the table's hash a true stand-in for the bytes read: an image
    changed after ``download`` wrote it is a one-line error, never silently used.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PipelineError(f"{path}: unreadable ({exc.strerror or exc}); run `dvc repro` to rebuild it") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PipelineError(f"{path}: changed since the stage that wrote it listed it (SHA-256 differs); "
                            "run `dvc repro` to rebuild it (or `dvc checkout` to restore it)")
    return data


def read_json(path: os.PathLike | str, hint: str) -> object:
    """A JSON file an earlier stage wrote; missing or unreadable is a one-line error ending with ``hint``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; {hint}") from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: unreadable ({exc}); {hint}") from None


def read_image_format(path: os.PathLike | str, hint: str) -> dict:
    """A ``{"size": int, "mode": resize mode}`` file (``data/resized/format.json``, ``models/preprocessing.json``)."""
    info = read_json(path, hint)
    size = info.get("size") if isinstance(info, dict) else None
    if (not isinstance(info, dict) or info.get("mode") not in RESIZE_MODES
            or not isinstance(size, int) or isinstance(size, bool)):
        raise PipelineError(f"{path}: must hold the images' size and resize mode; {hint}")
    return info


def read_features(path: os.PathLike | str, rows: int) -> np.ndarray:
    """A features file of ``data/features``, memory-mapped: ``rows`` finite rows of floats, or one line on how to rebuild it."""
    hint = "run `dvc repro features` to write it again"
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; {hint}") from None
    except (ValueError, EOFError):  # NumPy's words for a file that is not an array ("pickled data") mislead
        raise PipelineError(f"{path}: not a NumPy array file, or a damaged one; {hint}") from None
    except OSError as exc:
        raise PipelineError(f"{path}: unreadable ({exc.strerror or first_line(exc)[:200]}); {hint}") from None
    if x.ndim != 2 or x.dtype.kind != "f" or len(x) != rows:
        raise PipelineError(f"{path}: holds {x.shape} {x.dtype} where {rows} rows of features belong; {hint}")
    if not np.isfinite(x).all():
        raise PipelineError(f"{path}: holds values that are not finite numbers; {hint}")
    return x


def read_features_info(path: os.PathLike | str = FEATURES_INFO) -> dict:
    """``data/features/info.json``: whether the frozen backbone's features apply, and what made them."""
    hint = "run `dvc repro features` to write it again"
    info = read_json(path, hint)
    if not isinstance(info, dict) or info.get("format") != FEATURES_FORMAT or not isinstance(info.get("used"), bool):
        raise PipelineError(f"{path}: not written by this version of the features stage; {hint}")
    return info
