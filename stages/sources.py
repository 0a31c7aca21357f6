"""Where the paintings come from: downloads, safe archive extraction, Kaggle layout discovery.

Everything here turns a source (an http(s) link, a local archive or folder, the Kaggle
dataset) into a local folder in the Kaggle layout, and finds the artist folders and the
``artists.csv`` inside it. Archives are unpacked member by member into a temporary folder,
refusing anything that could write outside it or fill the disk.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import re
import shutil
import stat
import tarfile
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator, Optional

from tqdm import tqdm

from stages.errors import PipelineError
from stages.images import is_image_name

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Zip-bomb guard besides data.max_archive_bytes: refuse a zip member, or a whole tar(.gz),
# that unpacks to more than this many times its packed size. Paintings (JPEG) barely
# compress (about 1:1) and text about 10:1; bombs reach 1000:1 and more. Below
# RATIO_FREE_BYTES unpacked the ratio is not checked: a small file of zeros is harmless.
MAX_COMPRESSION_RATIO = 100
RATIO_FREE_BYTES = 1 << 20
# Folders archivers and file managers add beside the data; never artists.
IGNORED_DIRS = {"__macosx"}


def nfc(text: str) -> str:
    """Unicode NFC form: the real archive spells Dürer decomposed (NFD), artists.csv composed."""
    return unicodedata.normalize("NFC", text)


def redact_url(url: str) -> str:
    """``url`` without user, password, query or fragment, safe to show in logs and errors."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(url: str) -> str:
    """Replace each ``${NAME}`` in ``url`` by the environment variable ``NAME``.

    So a password can stay out of ``params.yaml`` (and out of ``dvc.lock`` and git, which
    record params verbatim): ``data.url: https://${ART_USER}:${ART_TOKEN}@host/a.zip``.
    """
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise PipelineError(f"params.yaml: data.url uses ${{{name}}} but {name} is not set; export {name} and run again")
        return urllib.parse.quote(os.environ[name], safe="")

    return ENV_REFERENCE.sub(value, url)


def has_literal_password(url: str) -> bool:
    """True when ``url`` spells out a password rather than a ``${NAME}`` reference."""
    password = urllib.parse.urlsplit(url).password
    return bool(password) and not ENV_REFERENCE.fullmatch(password)


# --- downloads -----------------------------------------------------------------------


def _request(url: str) -> urllib.request.Request:
    """A request for ``url``; ``user:password@`` in the link becomes a Basic auth header."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=host)))
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    return request


def _download(url: str, shown: str, part: Path, timeout: float, max_bytes: int) -> int:
    """Stream ``url`` into ``part``; return its size, or raise a one-line error naming ``shown``."""
    too_big = (
        f"{shown}: the download is larger than data.max_archive_bytes={max_bytes}; "
        "raise data.max_archive_bytes if you trust this link"
    )
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as response, open(part, "wb") as out:
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


# --- archives ------------------------------------------------------------------------


def archive_kind(path: Path) -> Optional[str]:
    """``"zip"`` or ``"tar"`` from the file's content (links need not end in .zip), else None."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, zlib.error, tarfile.TarError):
        return None
    return None


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The path parts of member ``name``, refusing absolute paths and ``..`` escapes."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise PipelineError(f"{archive}: member {name!r} has an absolute path; refusing to extract this archive")
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if ".." in parts:
        raise PipelineError(f"{archive}: member {name!r} points outside the archive folder; refusing to extract it")
    return parts


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    is_dir: bool
    handle: object
    packed: Optional[int] = None  # compressed size of a zip member; tar members have none


def ratio_cap(packed: int) -> int:
    """Most bytes ``packed`` compressed bytes may unpack to (:data:`MAX_COMPRESSION_RATIO`)."""
    return max(RATIO_FREE_BYTES, MAX_COMPRESSION_RATIO * packed)


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise PipelineError(
                f"{archive}: member {info.filename!r} is a link or special file; refusing to extract this archive"
            )
        yield _Member(info.filename, info.file_size, info.is_dir(), info, info.compress_size)


def _tar_members(archive: Path, tf: tarfile.TarFile) -> Iterator[_Member]:
    for info in tf.getmembers():
        if not (info.isfile() or info.isdir()):
            raise PipelineError(
                f"{archive}: member {info.name!r} is a link or special file; refusing to extract this archive"
            )
        yield _Member(info.name, info.size, info.isdir(), info)


def copy_limited(src: BinaryIO, out: BinaryIO, used: int, limit: int, too_big: str, bar: Optional[tqdm] = None) -> int:
    """Copy ``src`` to ``out`` in chunks, counting real bytes (headers can lie) from ``used``.

    Returns the new running total; raises ``PipelineError(too_big)`` once it passes ``limit``.
    """
    for block in iter(lambda: src.read(CHUNK), b""):
        used += len(block)
        if used > limit:
            raise PipelineError(too_big)
        out.write(block)
        if bar is not None:
            bar.update(len(block))
    return used


def _extract(archive: Path, kind: str, root: Path, max_bytes: int) -> int:
    """Check every member, then write them under ``root``; return the bytes written."""
    try:
        with zipfile.ZipFile(archive) if kind == "zip" else tarfile.open(archive, "r:*") as container:
            members = list(_zip_members(archive, container) if kind == "zip" else _tar_members(archive, container))
            if not any(not m.is_dir for m in members):
                raise PipelineError(f"{archive}: the archive is empty; check the file")
            declared = sum(m.size for m in members)
            if declared > max_bytes:
                raise PipelineError(
                    f"{archive}: declares {declared} bytes unpacked, more than data.max_archive_bytes={max_bytes}; "
                    "refusing it, or raise data.max_archive_bytes if you trust it"
                )
            # A tar(.gz) is compressed as one stream: its ratio is the whole archive's.
            whole_cap = None if kind == "zip" else ratio_cap(archive.stat().st_size)
            if whole_cap is not None and declared > whole_cap:
                raise PipelineError(bomb_message(archive))
            for member in members:
                if member.packed is not None and member.size > ratio_cap(member.packed):
                    raise PipelineError(bomb_message(archive, member.name))
            targets = []
            for member in members:
                parts = _member_parts(archive, member.name)
                target = root.joinpath(*parts) if parts else root
                if target != root and root not in target.parents:
                    raise PipelineError(f"{archive}: member {member.name!r} points outside the archive folder")
                targets.append(target)
            used = 0
            opener = container.open if kind == "zip" else container.extractfile
            for member, target in tqdm(list(zip(members, targets)), desc="extract", unit="file"):
                if member.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                too_big = (
                    f"{archive}: unpacks to more than data.max_archive_bytes={max_bytes} (at member {member.name!r}); "
                    "refusing it, or raise data.max_archive_bytes if you trust it"
                )
                # Headers can lie: real bytes are counted against the ratio cap too.
                cap = whole_cap if member.packed is None else used + ratio_cap(member.packed)
                if cap < max_bytes:
                    limit, too_big = cap, bomb_message(archive, None if member.packed is None else member.name)
                else:
                    limit = max_bytes
                with opener(member.handle) as src, open(target, "wb") as out:
                    used = copy_limited(src, out, used, limit, too_big)
            return used
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, RuntimeError, NotImplementedError) as exc:
        raise PipelineError(f"{archive}: corrupted or unsupported archive ({type(exc).__name__}); check the file") from None
    except OSError as exc:
        raise PipelineError(f"{archive}: cannot extract ({exc.strerror or type(exc).__name__}); check the file and free space") from None


def bomb_message(archive: Path, member: Optional[str] = None) -> str:
    """The one-line refusal of an archive (or zip ``member``) whose compression ratio marks a bomb."""
    what = "the archive" if member is None else f"member {member!r}"
    return (
        f"{archive}: {what} unpacks to more than {MAX_COMPRESSION_RATIO} times its compressed size "
        "(a zip bomb?); refusing to extract it"
    )


def extract_archive(archive: Path, dest: Path, max_bytes: int) -> Path:
    """Unpack a zip or tar(.gz) into the new folder ``dest``, member by member, and return it.

    Refused with a one-line error naming the archive and member: absolute paths, ``..``
    escapes, links and device files, a total over ``max_bytes`` and a compression ratio
    over :data:`MAX_COMPRESSION_RATIO` (declared sizes are checked first and real bytes
    counted while extracting). Corrupt or empty archives are
    refused too. Only regular files and folders are ever created, all under ``dest``, and
    ``dest`` is removed again when extraction fails.
    """
    kind = archive_kind(archive)
    if kind is None:
        raise PipelineError(f"{archive}: not a zip or tar(.gz) archive, or corrupted; check the file")
    dest.mkdir(parents=True)
    try:
        used = _extract(archive, kind, dest.resolve(), max_bytes)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)  # nothing half-extracted stays behind
        raise
    log.info("extracted %s (%d bytes)", archive.name, used)
    return dest


# --- Kaggle layout -------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """What was found in a source folder: the artist folders and the artists table, if any."""

    root: Path
    artist_dirs: tuple[Path, ...]
    artists_csv: Optional[Path]


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        p for p in entries
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name.lower() not in IGNORED_DIRS
    ]


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and is_image_name(p) for p in folder.iterdir())


def find_layout(root: Path) -> Layout:
    """Find the artist folders (``images/<Artist>/`` or nested ``images/images/<Artist>/``) under ``root``.

    The parent of the artist folders is the folder whose sub-folders hold images, preferring
    one named ``images`` and then the one with the most such sub-folders; that is how the
    real archive's flat ``resized/resized/`` copy is left out. ``artists.csv`` is the
    shallowest file of that name.
    """
    candidates = []  # (not named images, -number of artist folders, depth, folder, artist folders)
    csvs = []
    stack = [root]
    while stack:
        folder = stack.pop()
        children = _visible_dirs(folder)
        stack.extend(children)
        csvs.extend(p for p in folder.glob("*") if p.name.lower() == "artists.csv" and p.is_file())
        artist_dirs = [c for c in children if _has_images(c)]
        if artist_dirs:
            depth = len(folder.relative_to(root).parts)
            candidates.append((folder.name.lower() != "images", -len(artist_dirs), depth, str(folder), artist_dirs))
    if not candidates:
        raise PipelineError(
            f"{root}: no artist folders found; expected the Kaggle layout images/<Artist>/<Artist>_<n>.jpg"
        )
    best = min(candidates, key=lambda c: c[:4])
    csv_path = min(csvs, key=lambda p: (len(p.relative_to(root).parts), str(p))) if csvs else None
    return Layout(root=root, artist_dirs=tuple(best[4]), artists_csv=csv_path)

