"""Stage ``source``: fingerprint where the paintings come from, so ``download`` reruns when they change.

DVC checks a folder, an archive and a link itself (``${data.path}`` and ``${data.url}`` are
dependencies of ``download`` in ``dvc.yaml``), so a bare ``dvc status`` names ``download``
when they change. What DVC cannot see, this cheap stage (``always_changed: true``) looks at on
every ``dvc repro`` and writes to ``data/source.json``, a dependency of ``download``; the file
changes only when the source does:

- ``path``: where it is and whether it is a folder or an archive, after checking that DVC
  will find it (a one-line error naming the param instead of DVC's bare ``No such file``);
- ``url``: the server's ``ETag`` / ``Last-Modified`` / ``Content-Length``, or, when it
  sends neither validator (DVC then sees only the size), the SHA-256 of the bytes themselves;
- ``kaggle``: the dataset's current version number (``download`` then fetches exactly it);
- ``synthetic``: nothing beyond the ``data`` params, which ``download`` depends on anyway.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from painter_id.atomic import ensure_writable_dir, write_json
from painter_id.downloads import SOURCE_FILE, fetch_url, kaggle_version, url_validators
from painter_id.errors import PipelineError
from painter_id.images import sha256_file
from painter_id.params import DataParams, load_section
from painter_id.runner import run_stage
from painter_id.urls import redact_url
from painter_id.workspace import main_workspace, user_path

log = logging.getLogger(__name__)


def path_kind(params: DataParams) -> dict:
    """``{"kind": "folder" | "archive"}`` of ``data.path``, or a one-line error DVC would not give.

    DVC hashes the path itself as a dependency of ``download`` (``dvc.yaml``), taking a
    relative one from the folder it runs in; this stage runs first, so a path DVC cannot
    find is named here, as a param with what to do, instead of as a bare ``No such file``.
    """
    if str(params.path).startswith("~"):
        raise PipelineError(f"data.path {params.path}: DVC does not expand ~ in a dependency; write the full path")
    if not Path(params.path).is_absolute() and main_workspace().resolve() != Path.cwd().resolve():
        raise PipelineError(f"data.path {params.path} is relative, and this experiment runs in a copy of the "
                            f"repository ({Path.cwd()}) where DVC would look for it; give the absolute path")
    path = user_path(params.path)
    if path.is_dir():
        log.info("source: %s, a folder", path)
        return {"kind": "folder"}
    if path.is_file():
        log.info("source: %s, an archive", path)
        return {"kind": "archive"}
    raise PipelineError(f"data.path {params.path}: no such folder or archive; "
                        "set data.path to the Kaggle-layout folder or .zip/.tar.gz")


def url_fingerprint(params: DataParams) -> dict:
    """What identifies the bytes at ``data.url`` now: the server's validators, or their SHA-256."""
    url = params.url
    validators = url_validators(url, params.timeout)
    if validators:
        log.info("source: %s (%s)", redact_url(url), ", ".join(f"{k} {v}" for k, v in validators.items()))
        return validators
    log.info("source: %s sends no ETag or Last-Modified; hashing its bytes", redact_url(url))
    work = Path(tempfile.mkdtemp(dir=SOURCE_FILE.parent, prefix=".source-"))
    try:
        archive = fetch_url(url, work, params.timeout, params.max_archive_bytes)
        return {"sha256": sha256_file(archive), "bytes": archive.stat().st_size}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fingerprint(params: DataParams) -> dict:
    """The contents of ``data/source.json`` for ``params``: equal exactly when the source is unchanged."""
    found: dict = {"source": params.source}
    if params.source == "path":
        # Its contents are DVC's to hash (the `${data.path}` dependency): only where it is.
        found.update(path=params.path, **path_kind(params))
    elif params.source == "url":
        # Redacted: dvc.lock and data/source.json must never hold a password.
        found.update(url=redact_url(params.url), **url_fingerprint(params))
    elif params.source == "kaggle":
        version = kaggle_version(params.kaggle_dataset)
        log.info("source: Kaggle dataset %s, version %d", params.kaggle_dataset, version)
        found.update(dataset=params.kaggle_dataset, version=version)
    return found


def main() -> None:
    """Write ``data/source.json`` for the current ``data`` params."""
    params = load_section("data")
    ensure_writable_dir(SOURCE_FILE)
    write_json(SOURCE_FILE, fingerprint(params))


if __name__ == "__main__":
    run_stage("source", main)
