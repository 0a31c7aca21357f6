"""Downloads: an http(s) link streamed to a file with limits, and the Kaggle dataset through kagglehub."""

from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from painter_id.archives import copy_limited
from painter_id.errors import PipelineError
from painter_id.urls import authorized_request, redact_url

log = logging.getLogger(__name__)


def _download(url: str, shown: str, part: Path, timeout: float, max_bytes: int) -> int:
    """Stream ``url`` into ``part``; return its size, or raise a one-line error naming ``shown``."""
    too_big = (
        f"{shown}: the download is larger than data.max_archive_bytes={max_bytes}; "
        "raise data.max_archive_bytes if you trust this link"
    )
    try:
        with urllib.request.urlopen(authorized_request(url), timeout=timeout) as response, open(part, "wb") as out:
            declared = response.headers.get("Content-Length")
            total = int(declared) if declared and declared.isdigit() else None
            if total is not None and total > max_bytes:
                raise PipelineError(too_big)
            with tqdm(total=total, unit="B", unit_scale=True, desc="download") as bar:
                received = copy_limited(response, out, 0, max_bytes, too_big, bar)
    except urllib.error.HTTPError as exc:
        raise PipelineError(f"{shown}: the server answered HTTP {exc.code} {exc.reason}; check data.url") from None
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
    if total is not None and received < total:
        raise PipelineError(f"{shown}: the connection closed after {received} of {total} bytes; run the stage again")
    return received


def fetch_url(url: str, dest_dir: Path, timeout: float, max_bytes: int) -> Path:
    """Download ``url`` into ``dest_dir`` and return the file; it appears only once complete.

    ``timeout`` bounds each wait for data; a body larger than ``max_bytes`` is abandoned.
    Errors name the link without credentials or query string.
    """
    shown = redact_url(url)
    name = Path(urllib.parse.urlsplit(url).path).name or "download"
    part, final = dest_dir / f".{name}.part", dest_dir / name
    try:
        received = _download(url, shown, part, timeout, max_bytes)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    log.info("downloaded %s (%d bytes)", shown, received)
    return final


def kaggle_download(dataset: str) -> Path:
    """Download (or reuse from kagglehub's cache) the Kaggle dataset and return its folder.

    Credentials are looked up by kagglehub itself (``KAGGLE_USERNAME``/``KAGGLE_KEY``,
    ``KAGGLE_API_TOKEN`` or ``~/.kaggle/kaggle.json``); they are never logged or written.
    """
    how = (
        "set KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json (from kaggle.com > Settings > API) "
        "in ~/.kaggle/ or $KAGGLE_CONFIG_DIR"
    )
    # Imported here: kagglehub is slow to import and only this source needs it.
    import kagglehub
    from kagglehub.config import get_kaggle_credentials

    try:
        credentials = get_kaggle_credentials()
    except ValueError:
        raise PipelineError(f"Kaggle: kaggle.json is not valid JSON with 'username' and 'key'; {how}") from None
    if credentials is None:
        raise PipelineError(f"Kaggle: no credentials found; {how}")
    log.info("source: Kaggle dataset %s (through kagglehub)", dataset)
    try:
        folder = kagglehub.dataset_download(dataset)
    except Exception as exc:  # kagglehub raises requests, kagglehub and OS errors alike
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if status in (401, 403):
            raise PipelineError(f"Kaggle rejected the credentials (HTTP {status}) for {dataset}; {how}") from None
        if status == 404:
            raise PipelineError(f"Kaggle: dataset {dataset} not found; check data.kaggle_dataset") from None
        # The exception text can quote request details, so only its type is shown.
        raise PipelineError(
            f"Kaggle: downloading {dataset} failed ({type(exc).__name__}); check your connection, "
            "or use data.source=path with a downloaded copy"
        ) from None
    return Path(folder)
