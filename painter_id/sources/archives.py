"""Safe archive extraction: a zip or tar(.gz) unpacked member by member, refusing what could escape or explode.

Every member is checked before anything is written: no absolute paths, no ``..``, no links
or device files, no more than ``data.max_archive_bytes`` in all and no compression ratio
that marks a bomb. Real bytes are counted while writing, since headers can lie.
"""

from __future__ import annotations

import logging
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator, Optional

from tqdm import tqdm

from painter_id.core.errors import PipelineError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Zip-bomb guard besides data.max_archive_bytes: refuse a zip member, or a whole tar(.gz),
# that unpacks to more than this many times its packed size. Paintings (JPEG) barely
# compress (about 1:1) and text about 10:1; bombs reach 1000:1 and more. Below
# RATIO_FREE_BYTES unpacked the ratio is not checked: a small file of zeros is harmless.
MAX_COMPRESSION_RATIO = 100
RATIO_FREE_BYTES = 1 << 20


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


def _check_sizes(archive: Path, kind: str, members: list[_Member], max_bytes: int) -> Optional[int]:
    """Refuse an empty archive, or one whose declared sizes pass the limits; return the whole-archive cap.

    A tar(.gz) is compressed as one stream, so its ratio cap is the whole archive's (returned);
    a zip's is per member (``None``).
    """
    if not any(not m.is_dir for m in members):
        raise PipelineError(f"{archive}: the archive is empty; check the file")
    declared = sum(m.size for m in members)
    if declared > max_bytes:
        raise PipelineError(
            f"{archive}: declares {declared} bytes unpacked, more than data.max_archive_bytes={max_bytes}; "
            "refusing it, or raise data.max_archive_bytes if you trust it"
        )
    whole_cap = None if kind == "zip" else ratio_cap(archive.stat().st_size)
    if whole_cap is not None and declared > whole_cap:
        raise PipelineError(bomb_message(archive))
    for member in members:
        if member.packed is not None and member.size > ratio_cap(member.packed):
            raise PipelineError(bomb_message(archive, member.name))
    return whole_cap


def _targets(archive: Path, members: list[_Member], root: Path) -> list[Path]:
    """Where each member goes under ``root``; a member that would land outside it is refused."""
    targets = []
    for member in members:
        parts = _member_parts(archive, member.name)
        target = root.joinpath(*parts) if parts else root
        if target != root and root not in target.parents:
            raise PipelineError(f"{archive}: member {member.name!r} points outside the archive folder")
        targets.append(target)
    return targets


def _write_members(archive: Path, container, kind: str, members: list[_Member], targets: list[Path],
                   max_bytes: int, whole_cap: Optional[int]) -> int:
    """Write the checked members to their targets, counting real bytes; return the bytes written."""
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


def _extract(archive: Path, kind: str, root: Path, max_bytes: int) -> int:
    """Check every member, then write them under ``root``; return the bytes written."""
    try:
        with zipfile.ZipFile(archive) if kind == "zip" else tarfile.open(archive, "r:*") as container:
            members = list(_zip_members(archive, container) if kind == "zip" else _tar_members(archive, container))
            whole_cap = _check_sizes(archive, kind, members, max_bytes)
            targets = _targets(archive, members, root)
            return _write_members(archive, container, kind, members, targets, max_bytes, whole_cap)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, RuntimeError, NotImplementedError) as exc:
        raise PipelineError(f"{archive}: corrupted or unsupported archive ({type(exc).__name__}); check the file") from None
    except OSError as exc:
        raise PipelineError(f"{archive}: cannot extract ({exc.strerror or type(exc).__name__}); "
                            "check the file and free space") from None


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
