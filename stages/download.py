"""Stage ``download``: fetch the paintings and write the normalised ``data/raw/``.

Reads ``params.yaml:data``, ``data/source.json`` and the source itself (a folder, an archive,
a link, a Kaggle dataset, or the built-in synthetic set); writes ``data/raw/``:
``images/<Folder>/<file>``, ``artists.csv``, ``manifest.csv`` and ``rejected.csv`` (see
:mod:`painter_id.sources.ingest`). ``data/raw`` is replaced atomically, so a failed run leaves it
intact.
"""

from __future__ import annotations

import shutil

from painter_id.core.atomic import atomic_dir, ensure_writable_dir, make_temp_dir
from painter_id.core.params import load_section
from painter_id.core.paths import RAW_DIR
from painter_id.core.runner import run_stage
from painter_id.sources.fetch import prepare_source
from painter_id.sources.ingest import ingest


def main() -> None:
    """Fetch ``data.source`` and write ``data/raw`` (replacing the previous one only on success)."""
    params = load_section("data")
    workers = load_section("runtime").workers
    ensure_writable_dir(RAW_DIR)
    # Downloads and extracted archives live in a temporary folder inside data/, removed afterwards.
    work = make_temp_dir(RAW_DIR.parent, ".download-")
    try:
        root = prepare_source(params, work)
        with atomic_dir(RAW_DIR) as tmp:
            ingest(root, tmp, params, workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_stage("download", main)
