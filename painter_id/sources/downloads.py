"""Downloads: an http(s) link streamed to a file with limits or its validators, and a Kaggle dataset or its version."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

from tqdm import tqdm

from painter_id.core.errors import PipelineError
from painter_id.core.limits import within
from painter_id.core.urls import open_url, redact_url
from painter_id.sources.archives import copy_limited

log = logging.getLogger(__name__)

# The source's fingerprint, written by the `source` stage and read by `download` (a Kaggle version).


@contextlib.contextmanager
def _url_errors(shown: str, timeout: float) -> Iterator[None]:
    """Turn what urllib raises while talking to ``shown`` into one-line :class:`PipelineError`s."""
    try:
        yield
    except urllib.error.HTTPError as exc:
        # The login comes from ~/.netrc, where DVC's own check of the link finds it too (painter_id.core.urls).
        hint = " and its login in ~/.netrc ($NETRC)" if exc.code in (401, 403) else ""
        raise PipelineError(f"{shown}: the server answered HTTP {exc.code} {exc.reason}; check data.url{hint}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            reason = f"no answer within data.timeout={timeout} s"
        else:
            reason = exc.reason if isinstance(exc.reason, str) else getattr(exc.reason, "strerror", None)
        reason = reason or type(exc.reason).__name__
        raise PipelineError(f"{shown}: cannot download ({reason}); check data.url and your connection") from None
    except TimeoutError:
        raise PipelineError(
            f"{shown}: no data for data.timeout={timeout} s; check your connection or raise data.timeout"
        ) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise PipelineError(f"{shown}: download failed ({type(exc).__name__}); check data.url and run again") from None


def _download(url: str, shown: str, part: Path, timeout: float, max_bytes: int) -> int:
    """Stream ``url`` into ``part``; return its size, or raise a one-line error naming ``shown``."""
    too_big = (
        f"{shown}: the download is larger than data.max_archive_bytes={max_bytes}; "
        "raise data.max_archive_bytes if you trust this link"
    )
    with _url_errors(shown, timeout), open_url(url, timeout) as response, open(part, "wb") as out:
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        if total is not None and total > max_bytes:
            raise PipelineError(too_big)
        with tqdm(total=total, unit="B", unit_scale=True, desc="download") as bar:
            received = copy_limited(response, out, 0, max_bytes, too_big, bar)
    if total is not None and received < total:
        raise PipelineError(f"{shown}: the connection closed after {received} of {total} bytes; run the stage again")
    return received


def url_validators(url: str, timeout: float, seconds: float) -> dict[str, str]:
    """``ETag``, ``Last-Modified`` and ``Content-Length`` of ``url`` from a HEAD request (those the server sends).

    Empty when the server sends neither validator or refuses HEAD (HTTP 405/501): the
    caller must then look at the bytes themselves.
    """
    try:
        with within(seconds, _too_slow(redact_url(url), seconds)), _url_errors(redact_url(url), timeout), \
                open_url(url, timeout, "HEAD") as response:
            headers = {name: response.headers.get(name) for name in ("ETag", "Last-Modified", "Content-Length")}
    except PipelineError as exc:
        if " HTTP 405 " in str(exc) or " HTTP 501 " in str(exc):
            return {}
        raise
    if not (headers["ETag"] or headers["Last-Modified"]):
        return {}
    return {name: value for name, value in headers.items() if value}


def _too_slow(shown: str, seconds: float) -> str:
    return (f"{shown}: not done within runtime.download_seconds={seconds:g} s (the server sends too slowly); "
            "raise runtime.download_seconds, or check the link and your connection")


def fetch_url(url: str, dest_dir: Path, timeout: float, max_bytes: int, seconds: float) -> Path:
    """Download ``url`` into ``dest_dir`` and return the file; it appears only once complete.

    ``timeout`` bounds each wait for data and ``seconds`` the whole download; a body larger
    than ``max_bytes`` is abandoned. Errors name the link without credentials or query string.
    """
    shown = redact_url(url)
    name = Path(urllib.parse.urlsplit(url).path).name or "download"
    part, final = dest_dir / f".{name}.part", dest_dir / name
    try:
        with within(seconds, _too_slow(shown, seconds)):
            received = _download(url, shown, part, timeout, max_bytes)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    log.info("downloaded %s (%d bytes)", shown, received)
    return final


KAGGLE_HOW = (
    "set KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json (from kaggle.com > Settings > API) "
    "in ~/.kaggle/ or $KAGGLE_CONFIG_DIR"
)


def _check_kaggle_credentials() -> None:
    """Fail with a one-line error unless kagglehub finds usable credentials."""
    from kagglehub.config import get_kaggle_credentials

    try:
        credentials = get_kaggle_credentials()
    except ValueError:
        raise PipelineError(f"Kaggle: kaggle.json is not valid JSON with 'username' and 'key'; {KAGGLE_HOW}") from None
    if credentials is None:
        raise PipelineError(f"Kaggle: no credentials found; {KAGGLE_HOW}")


@contextlib.contextmanager
def _kaggle_errors(dataset: str, doing: str) -> Iterator[None]:
    """Turn what kagglehub raises while ``doing`` something with ``dataset`` into one-line errors."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:  # kagglehub raises requests, kagglehub and OS errors alike
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if status in (401, 403):
            raise PipelineError(f"Kaggle rejected the credentials (HTTP {status}) for {dataset}; {KAGGLE_HOW}") from None
        if status == 404:
            raise PipelineError(f"Kaggle: dataset {dataset} not found; check data.kaggle_dataset") from None
        # The exception text can quote request details, so only its type is shown.
        raise PipelineError(
            f"Kaggle: {doing} {dataset} failed ({type(exc).__name__}); check your connection, "
            "or use data.source=path with a downloaded copy"
        ) from None


def kaggle_version(dataset: str, seconds: float) -> int:
    """The version number of ``dataset`` that a download would get now (its own, if it names one).

    ``owner/name/versions/N`` is pinned and needs no network; ``owner/name`` is looked up
    on Kaggle, the way kagglehub itself resolves the latest version.
    """
    # Imported here: kagglehub is slow to import and only this source needs it.
    from kagglehub.handle import parse_dataset_handle

    try:
        handle = parse_dataset_handle(dataset)
    except ValueError:
        raise PipelineError(f"data.kaggle_dataset {dataset!r}: not owner/name or owner/name/versions/N") from None
    if handle.is_versioned():
        return int(handle.version)
    _check_kaggle_credentials()
    from kagglehub.clients import build_kaggle_client
    from kagglehub.http_resolver import _get_current_version

    with within(seconds, _too_slow(f"Kaggle dataset {dataset}", seconds)), \
            _kaggle_errors(dataset, "looking up the current version of"), build_kaggle_client() as client:
        return int(_get_current_version(client, handle))


def kaggle_download(dataset: str, version: Optional[int], seconds: float) -> Path:
    """Download (or reuse from kagglehub's cache) the Kaggle dataset and return its folder.

    ``version`` (the one the ``source`` stage recorded) pins it; ``None`` takes the latest.
    ``seconds`` bounds the whole download.

    Credentials are looked up by kagglehub itself (``KAGGLE_USERNAME``/``KAGGLE_KEY``,
    ``KAGGLE_API_TOKEN`` or ``~/.kaggle/kaggle.json``); they are never logged or written.
    """
    import kagglehub
    from kagglehub.handle import parse_dataset_handle

    _check_kaggle_credentials()
    pinned = dataset if version is None else str(parse_dataset_handle(dataset).with_version(version))
    log.info("source: Kaggle dataset %s (through kagglehub)", pinned)
    with within(seconds, _too_slow(f"Kaggle dataset {pinned}", seconds)), _kaggle_errors(dataset, "downloading"):
        return Path(kagglehub.dataset_download(pinned))
