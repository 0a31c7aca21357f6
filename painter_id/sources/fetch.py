"""Where the paintings come from: each ``data.source`` fetched to a local folder, and its fingerprint.

:func:`prepare_source` brings the synthetic set, a Kaggle dataset, a URL or a local folder or
archive to a local folder in the Kaggle layout, for ``download``. :func:`fingerprint` says
what identifies the source now, for the ``source`` stage (``data/source.json``), which DVC
cannot see for itself:

- ``path``: where it is and whether it is a folder or an archive, after checking that DVC
  will find it (a one-line error naming the param instead of DVC's bare ``No such file``);
- ``url``: the server's ``ETag`` / ``Last-Modified`` / ``Content-Length``, or, when it
  sends neither validator (DVC then sees only the size), the SHA-256 of the bytes themselves;
- ``kaggle``: the dataset's current version number (``download`` then fetches exactly it);
- ``synthetic``: nothing beyond the ``data`` params, which ``download`` depends on anyway.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from painter_id.core.atomic import temporary_dir
from painter_id.core.errors import PipelineError
from painter_id.core.params import DataParams
from painter_id.core.paths import SOURCE_FILE, SOURCE_TEMP, TEMP_PARENT
from painter_id.core.urls import has_password, redact_url
from painter_id.core.workspace import main_workspace, user_path
from painter_id.data.images import sha256_file
from painter_id.sources import synthetic
from painter_id.sources.archives import extract_archive
from painter_id.sources.downloads import fetch_url, kaggle_download, kaggle_version, url_validators

log = logging.getLogger(__name__)

def recorded_kaggle_version(dataset: str) -> Optional[int]:
    """The version of ``dataset`` that the ``source`` stage found, so the data matches ``dvc.lock``.

    ``None`` (take the latest) when the stage is run on its own, without that file.
    """
    try:
        found = json.loads(SOURCE_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(found, dict) and found.get("dataset") == dataset and isinstance(found.get("version"), int):
        return found["version"]
    return None


def prepare_source(params: DataParams, work: Path, seconds: float) -> Path:
    """Bring ``data.source`` to a local folder in the Kaggle layout (inside ``work`` unless it is local)."""
    if params.source == "synthetic":
        log.info(
            "source: synthetic (%d artists, %d images, seed %d)",
            params.synthetic_artists, params.synthetic_images, params.seed,
        )
        return synthetic.generate(work / "synthetic", params.synthetic_artists, params.synthetic_images, params.seed)
    if params.source == "kaggle":
        return kaggle_download(params.kaggle_dataset, recorded_kaggle_version(params.kaggle_dataset), seconds)
    if params.source == "url":
        log.info("source: %s", redact_url(params.url))
        if has_password(params.url):
            log.warning("data.url holds a password, and DVC copies params and dependencies into dvc.lock: "
                        "remove it from the link and put it in ~/.netrc (machine HOST login USER password PASSWORD)")
        archive = fetch_url(params.url, work, params.timeout, params.max_archive_bytes, seconds)
        return extract_archive(archive, work / "extracted", params.max_archive_bytes)
    path = user_path(params.path)
    log.info("source: %s", path)
    if path.is_dir():
        return path
    if not path.is_file():
        raise PipelineError(f"data.path {params.path}: no such folder or archive; "
                            "set data.path to the Kaggle-layout folder or .zip/.tar.gz")
    return extract_archive(path, work / "extracted", params.max_archive_bytes)


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


def url_fingerprint(params: DataParams, seconds: float) -> dict:
    """What identifies the bytes at ``data.url`` now: the server's validators, or their SHA-256."""
    url = params.url
    validators = url_validators(url, params.timeout, seconds)
    if validators:
        log.info("source: %s (%s)", redact_url(url), ", ".join(f"{k} {v}" for k, v in validators.items()))
        return validators
    log.info("source: %s sends no ETag or Last-Modified; hashing its bytes", redact_url(url))
    with temporary_dir(TEMP_PARENT, SOURCE_TEMP) as work:
        archive = fetch_url(url, work, params.timeout, params.max_archive_bytes, seconds)
        return {"sha256": sha256_file(archive), "bytes": archive.stat().st_size}


def fingerprint(params: DataParams, seconds: float) -> dict:
    """The contents of ``data/source.json`` for ``params``: equal exactly when the source is unchanged."""
    found: dict = {"source": params.source}
    if params.source == "path":
        # Its contents are DVC's to hash (the `${data.path}` dependency): only where it is.
        found.update(path=params.path, **path_kind(params))
    elif params.source == "url":
        # Redacted: dvc.lock and data/source.json must never hold a password.
        found.update(url=redact_url(params.url), **url_fingerprint(params, seconds))
    elif params.source == "kaggle":
        version = kaggle_version(params.kaggle_dataset, seconds)
        log.info("source: Kaggle dataset %s, version %d", params.kaggle_dataset, version)
        found.update(dataset=params.kaggle_dataset, version=version)
    return found
