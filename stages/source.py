"""Stage ``source``: fingerprint where the paintings come from, so ``download`` reruns when they change.

DVC cannot look at a folder outside the repository, a web server or Kaggle by itself, so
this cheap stage (``always_changed: true`` in ``dvc.yaml``) runs on every ``dvc repro``
and writes ``data/source.json``, a dependency of ``download``. The file changes only when
the source does:

- ``path``, a folder: every file's relative name, size and modification time (the way
  DVC's own state database notices changes, without reading the images), so a painting
  added, removed or rewritten in place changes it;
- ``path``, an archive: its size and modification time;
- ``url``: the server's ``ETag`` / ``Last-Modified`` / ``Content-Length``, or, when it
  sends neither validator, the SHA-256 of the bytes themselves;
- ``kaggle``: the dataset's current version number (``download`` then fetches exactly it);
- ``synthetic``: nothing beyond the ``data`` params, which ``download`` depends on anyway.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from painter_id.atomic import ensure_writable_dir, write_json
from painter_id.downloads import SOURCE_FILE, fetch_url, kaggle_version, url_validators
from painter_id.errors import PipelineError
from painter_id.images import sha256_file
from painter_id.params import DataParams, load_section
from painter_id.runner import run_stage
from painter_id.urls import expand_env, redact_url
from painter_id.workspace import user_path

log = logging.getLogger(__name__)


def folder_listing(root: Path) -> tuple[int, int, str]:
    """``(files, bytes, sha256)`` of every non-hidden file's relative path, size and mtime under ``root``.

    Only ``stat`` calls: 8,446 paintings take a fraction of a second. Hidden files and
    folders (``.DS_Store``, ``.git``) are left out, as ``download`` skips them too.
    """
    digest, files, total = hashlib.sha256(), 0, 0
    stack = [root]
    entries = []
    while stack:
        with os.scandir(stack.pop()) as found:
            for entry in found:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=True):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=True):
                    info = entry.stat(follow_symlinks=True)
                    entries.append((Path(entry.path).relative_to(root).as_posix(), info.st_size, info.st_mtime_ns))
    for rel, size, mtime_ns in sorted(entries):
        digest.update(f"{rel}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
        files, total = files + 1, total + size
    return files, total, digest.hexdigest()


def path_fingerprint(params: DataParams) -> dict:
    """What identifies the ``data.path`` folder or archive as it is now."""
    path = user_path(params.path)
    if path.is_dir():
        files, total, listing = folder_listing(path)
        log.info("source: %s, a folder of %d files (%d bytes)", path, files, total)
        return {"kind": "folder", "files": files, "bytes": total, "listing_sha256": listing}
    if path.is_file():
        info = path.stat()
        log.info("source: %s, an archive of %d bytes", path, info.st_size)
        return {"kind": "archive", "bytes": info.st_size, "mtime_ns": info.st_mtime_ns}
    raise PipelineError(f"data.path {params.path}: no such folder or archive; "
                        "set data.path to the Kaggle-layout folder or .zip/.tar.gz")


def url_fingerprint(params: DataParams) -> dict:
    """What identifies the bytes at ``data.url`` now: the server's validators, or their SHA-256."""
    url = expand_env(params.url)
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
        # As written, not resolved: the same folder in another clone gives the same file.
        found.update(path=params.path, **path_fingerprint(params))
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
