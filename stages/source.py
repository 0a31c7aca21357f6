"""Stage ``source``: fingerprint where the paintings come from, so ``download`` reruns when they change.

DVC checks a folder, an archive and a link itself (``${data.path}`` and ``${data.url}`` are
dependencies of ``download`` in ``dvc.yaml``), so a bare ``dvc status`` names ``download``
when they change. What DVC cannot see (a Kaggle version, a server without validators), this
cheap stage (``always_changed: true``) looks at on every ``dvc repro`` and writes to
``data/source.json``, a dependency of ``download``; the file changes only when the source
does (see :func:`painter_id.sources.fetch.fingerprint`).
"""

from __future__ import annotations

from painter_id.core.atomic import ensure_writable_dir, write_json
from painter_id.core.params import load_section
from painter_id.core.paths import SOURCE_FILE
from painter_id.core.runner import run_stage
from painter_id.sources.fetch import fingerprint


def main() -> None:
    """Write ``data/source.json`` for the current ``data`` params."""
    params = load_section("data")
    seconds = load_section("runtime").download_seconds
    ensure_writable_dir(SOURCE_FILE)
    write_json(SOURCE_FILE, fingerprint(params, seconds))


if __name__ == "__main__":
    run_stage("source", main)
