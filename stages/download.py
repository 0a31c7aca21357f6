"""Stage ``download``: fetch the paintings and write the normalised ``data/raw/``.

Reads ``params.yaml:data``, ``data/source.json`` and the source itself (a folder, an archive,
a link, a Kaggle dataset, or the built-in synthetic set); writes ``data/raw/``:
``images/<Folder>/<file>``, ``artists.csv``, ``manifest.csv`` and ``rejected.csv`` (see
:mod:`painter_id.sources.ingest`). ``data/raw`` is replaced atomically, so a failed run leaves it
intact.
"""

from __future__ import annotations

from painter_id.core.atomic import atomic_dir, ensure_writable_dir, temporary_dir
from painter_id.core.params import load_section
from painter_id.core.paths import DOWNLOAD_TEMP, RAW_DIR, TEMP_PARENT
from painter_id.core.runner import run_stage
from painter_id.sources.fetch import prepare_source
from painter_id.sources.ingest import ingest


def main() -> None:
    """Fetch ``data.source`` and write ``data/raw`` (replacing the previous one only on success)."""
    params = load_section("data")
    runtime = load_section("runtime")
    ensure_writable_dir(RAW_DIR)
    # Downloads and extracted archives are temporaries, removed afterwards (or by the next run if killed).
    with temporary_dir(TEMP_PARENT, DOWNLOAD_TEMP) as work:
        root = prepare_source(params, work, runtime.download_seconds)
        with atomic_dir(RAW_DIR) as tmp:
            ingest(root, tmp, params, runtime.workers)


if __name__ == "__main__":
    run_stage("download", main)
