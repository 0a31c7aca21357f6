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
from painter_id.core.params import load_all
from painter_id.core.paths import SOURCE_FILE
from painter_id.core.runner import run_stage
from painter_id.sources.fetch import fingerprint


def main() -> None:
    """Check every section of ``params.yaml``, then write ``data/source.json`` for the ``data`` params."""
    # This stage runs first in every `dvc repro` and `dvc exp run`, and its output persists, so a
    # bad value anywhere in params.yaml stops the run here, before DVC removes the outputs of
    # the stage that reads it to run that stage again.
    params = load_all()
    ensure_writable_dir(SOURCE_FILE)
    write_json(SOURCE_FILE, fingerprint(params.data, params.runtime.download_seconds))


if __name__ == "__main__":
    run_stage("source", main)
