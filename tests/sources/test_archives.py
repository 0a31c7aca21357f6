"""Archive extraction safety, Kaggle layout discovery and download errors, on real files and sockets."""

from __future__ import annotations

import io
import stat
import tarfile
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.sources import archives
from painter_id.sources.archives import copy_limited, extract_archive
from testkit import badfiles
from testkit.images import painting

LIMIT = 1_000_000


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def add_tar_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_zip_and_tar_gz_extract_with_unicode_names(tmp_path):
    name = unicodedata.normalize("NFD", "images/images/Albrecht_Dürer/a.jpg")
    archive = make_zip(tmp_path / "a.zip", {name: b"jpeg bytes", "artists.csv": b"name\n"})
    out = extract_archive(archive, tmp_path / "data" / "zip", LIMIT)
    assert files_under(out) == sorted([name, "artists.csv"])
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tf:
        add_tar_file(tf, name, b"jpeg bytes")
    out = extract_archive(tmp_path / "a.tar.gz", tmp_path / "data" / "tar", LIMIT)
    assert (out / name).read_bytes() == b"jpeg bytes"


@pytest.mark.parametrize("member", ["../evil.txt", "images/../../evil.txt", "..\\evil.txt"])
def test_zip_slip_is_refused(tmp_path, member):
    archive = make_zip(tmp_path / "slip.zip", {"images/ok.txt": b"ok", member: b"evil"})
    with pytest.raises(PipelineError, match=r"slip\.zip: member .*evil\.txt.* outside"):
        extract_archive(archive, tmp_path / "data" / "x" / "out", LIMIT)
    assert sorted(p.name for p in tmp_path.rglob("evil.txt")) == []
    assert files_under(tmp_path / "data") == []  # checked before anything is written


@pytest.mark.parametrize("member", ["/tmp/abs-evil.txt", "C:/evil.txt"])
def test_absolute_member_is_refused(tmp_path, member):
    archive = make_zip(tmp_path / "abs.zip", {member: b"evil"})
    with pytest.raises(PipelineError, match="absolute path"):
        extract_archive(archive, tmp_path / "out", LIMIT)
    with tarfile.open(tmp_path / "abs.tar", "w") as tf:
        add_tar_file(tf, member, b"evil")
    with pytest.raises(PipelineError, match="abs.tar: member .* absolute path"):
        extract_archive(tmp_path / "abs.tar", tmp_path / "out2", LIMIT)
    assert not Path("/tmp/abs-evil.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_tar_links_and_devices_are_refused(tmp_path, kind):
    with tarfile.open(tmp_path / "link.tar.gz", "w:gz") as tf:
        add_tar_file(tf, "images/a.txt", b"a")
        info = tarfile.TarInfo("images/link")
        info.type = kind
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(PipelineError, match="member 'images/link' is a link or special file"):
        extract_archive(tmp_path / "link.tar.gz", tmp_path / "out", LIMIT)
    assert not (tmp_path / "out").exists()


def test_zip_symlink_is_refused(tmp_path):
    info = zipfile.ZipInfo("images/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(PipelineError, match="link or special file"):
        extract_archive(tmp_path / "link.zip", tmp_path / "out", LIMIT)
    assert not (tmp_path / "out" / "images" / "link").exists()


def test_archive_over_max_bytes_is_refused(tmp_path):
    data = bytes(5000)  # compresses to almost nothing: a small bomb
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", data)
        zf.writestr("b.bin", data)
    assert (tmp_path / "bomb.zip").stat().st_size < 1000
    with pytest.raises(PipelineError, match=r"bomb\.zip: declares 10000 bytes.*max_archive_bytes=9999"):
        extract_archive(tmp_path / "bomb.zip", tmp_path / "out", 9999)
    assert not (tmp_path / "out").exists()
    assert files_under(extract_archive(tmp_path / "bomb.zip", tmp_path / "ok", 10000)) == ["a.bin", "b.bin"]


def test_zip_whose_headers_understate_sizes_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "liar.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", bytes(50_000))
    raw = bytearray((tmp_path / "liar.zip").read_bytes())
    # Rewrite the uncompressed size (local header offset 22, central directory offset 24) to 10 bytes.
    local = raw.find(b"PK\x03\x04")
    central = raw.find(b"PK\x01\x02")
    raw[local + 22 : local + 26] = (10).to_bytes(4, "little")
    raw[central + 24 : central + 28] = (10).to_bytes(4, "little")
    (tmp_path / "liar.zip").write_bytes(bytes(raw))
    with pytest.raises(PipelineError, match=r"liar\.zip: (corrupted|unpacks to more)"):
        extract_archive(tmp_path / "liar.zip", tmp_path / "out", 1000)
    assert not (tmp_path / "out").exists()  # the partial extraction is removed


def test_bytes_are_counted_while_copying():
    # Whatever the headers declared, the real stream is counted against the limit.
    out = io.BytesIO()
    with pytest.raises(PipelineError, match="^too big$"):
        copy_limited(io.BytesIO(bytes(3000)), out, 0, 1000, "too big")
    assert len(out.getvalue()) <= 1000
    assert copy_limited(io.BytesIO(bytes(300)), io.BytesIO(), 600, 1000, "too big") == 900


def test_corrupt_and_empty_archives_are_refused(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"this is not an archive at all" * 20)
    with pytest.raises(PipelineError, match=r"junk\.zip: not a zip or tar"):
        extract_archive(tmp_path / "junk.zip", tmp_path / "o1", LIMIT)
    make_zip(tmp_path / "empty.zip", {})
    with pytest.raises(PipelineError, match=r"empty\.zip: the archive is empty"):
        extract_archive(tmp_path / "empty.zip", tmp_path / "o2", LIMIT)
    with tarfile.open(tmp_path / "good.tar.gz", "w:gz") as tf:
        add_tar_file(tf, "a.bin", np.random.default_rng(0).bytes(200_000))
    whole = (tmp_path / "good.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PipelineError, match=r"cut\.tar\.gz: (corrupted|not a zip or tar)"):
        extract_archive(tmp_path / "cut.tar.gz", tmp_path / "o3", LIMIT)


def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    painting(np.random.default_rng(0), 0, (8, 8)).save(path)


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_compression_ratio_bomb_is_refused_under_the_byte_limit(tmp_path, suffix):
    members = {**badfiles.kaggle_members(), "images/images/Ann/filler.jpg": bytes(4 << 20)}  # 4 MiB of zeros
    archive = badfiles.write_archive(tmp_path / f"bomb{suffix}", members)
    assert archive.stat().st_size * archives.MAX_COMPRESSION_RATIO < 4 << 20 < 8_000_000_000
    with pytest.raises(PipelineError, match=rf"bomb{suffix}: .* more than {archives.MAX_COMPRESSION_RATIO} times"):
        archives.extract_archive(archive, tmp_path / "out", 8_000_000_000)
    assert not (tmp_path / "out").exists()
    # Paintings and a small, very compressible artists.csv are fine.
    members["artists.csv"] += b"2,Nobody,0\n" * 2000
    del members["images/images/Ann/filler.jpg"]
    good = badfiles.write_archive(tmp_path / f"good{suffix}", members)
    assert len(list(archives.extract_archive(good, tmp_path / "ok", 8_000_000_000).rglob("*.jpg"))) == 4


def test_zip_bomb_whose_header_lies_is_stopped_while_copying(tmp_path):
    archive = badfiles.write_zip(tmp_path / "liar.zip", {"a.bin": bytes(8 << 20)})
    raw = bytearray(archive.read_bytes())
    central = raw.find(b"PK\x01\x02")
    for offset in (raw.find(b"PK\x03\x04") + 22, central + 24):  # uncompressed size: claim 1 KiB
        raw[offset:offset + 4] = (1024).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises(PipelineError, match=r"liar\.zip: (member 'a\.bin' unpacks to more than 100 times|corrupted)"):
        archives.extract_archive(archive, tmp_path / "out", 8_000_000_000)
    assert not (tmp_path / "out").exists()


def test_tar_gz_slip_empty_and_zip_with_damaged_data_are_refused(tmp_path):
    slip = badfiles.write_tar_gz(tmp_path / "slip.tar.gz", {"images/ok.txt": b"ok", "images/../../evil.txt": b"x"})
    with pytest.raises(PipelineError, match=r"slip\.tar\.gz: member 'images/\.\./\.\./evil\.txt' points outside"):
        archives.extract_archive(slip, tmp_path / "a" / "out", 1 << 20)
    assert not list(tmp_path.rglob("evil.txt")) and not (tmp_path / "a" / "out").exists()
    empty = badfiles.write_tar_gz(tmp_path / "empty.tar.gz", {})
    with pytest.raises(PipelineError, match=r"empty\.tar\.gz: the archive is empty"):
        archives.extract_archive(empty, tmp_path / "b", 1 << 20)
    with pytest.raises(PipelineError, match=r"damaged\.zip: corrupted or unsupported archive"):
        archives.extract_archive(badfiles.corrupt_zip(tmp_path / "damaged.zip"), tmp_path / "c", 1 << 20)
    assert not (tmp_path / "c").exists()
