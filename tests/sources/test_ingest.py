"""The download stage end to end: every source, name normalization, rejects, filters, failures."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.sources.ingest import select_artists
from painter_id.sources.names import artist_key
from testkit.badfiles import DURER_NFC, DURER_NFD
from testkit.checks import read_rows
from testkit.images import jpeg, make_raw_dataset, make_source, painting
from testkit.project import download, run_stage, write_params


def test_nested_nfd_layout_comes_out_nfc_and_matched(tmp_path, monkeypatch, caplog):
    src = make_source(tmp_path / "src", {DURER_NFD: 3, "Claude_Monet": 2, "Jane_Doe": 2},
                      names=["Albrecht Dürer", "Claude Monet", "Nobody Here"])
    for n in range(2):  # the real archive's flat copy must be ignored
        jpeg(src / "resized" / "resized" / f"{DURER_NFD}_{n + 1}.jpg", seed=50 + n)
    (src / "images" / "images" / "Claude_Monet" / ".DS_Store").write_bytes(b"\0\1")
    jpeg(src / "images" / "images" / "Claude_Monet" / "._Claude_Monet_1.jpg", seed=77)
    (src / "images" / "images" / "Claude_Monet" / "notes.txt").write_text("not a painting")
    (tmp_path / "proj").mkdir()

    raw = download(tmp_path / "proj", monkeypatch, source="path", path="../src")  # relative to the project root

    manifest = read_rows(raw / "manifest.csv")
    assert [r["path"] for r in manifest] == sorted(r["path"] for r in manifest)
    durer = [r for r in manifest if r["artist"] == "Albrecht Dürer"]
    assert [r["path"] for r in durer] == [f"images/{DURER_NFC}/{DURER_NFC}_{n}.jpg" for n in (1, 2, 3)]
    assert all((raw / r["path"]).is_file() for r in manifest)
    assert sorted(p.name for p in (raw / "images").iterdir()) == sorted([DURER_NFC, "Claude_Monet", "Jane_Doe"])
    assert len(manifest) == 7  # nothing from resized/, no hidden or .txt files
    assert {(r["width"], r["height"], r["mode"]) for r in manifest} == {("30", "20", "RGB")}
    assert read_rows(raw / "rejected.csv") == []
    artists = {r["name"]: r for r in read_rows(raw / "artists.csv")}
    assert set(artists) == {"Albrecht Dürer", "Claude Monet", "Jane Doe"}  # the row without images is dropped
    assert artists["Albrecht Dürer"]["paintings"] == "3" and artists["Albrecht Dürer"]["years"] == "1800 - 1900"
    assert artists["Jane Doe"]["paintings"] == "2" and artists["Jane Doe"]["id"] == ""
    assert "Jane_Doe matches no artists.csv row" in caplog.text
    # byte-for-byte copies, not re-encoded
    first = src / "images" / "images" / DURER_NFD / f"{DURER_NFD}_1.jpg"
    assert (raw / durer[0]["path"]).read_bytes() == first.read_bytes()
    assert durer[0]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert [p.name for p in (tmp_path / "proj" / "data").iterdir()] == ["raw"]  # temporaries removed


def test_artists_csv_built_from_folders_when_absent(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Ann_Lee": 2, "Bob": 3}, names=None, nested=False)
    raw = download(tmp_path, monkeypatch, source="path", path=str(src))
    assert read_rows(raw / "artists.csv") == [{"name": "Ann Lee", "paintings": "2"}, {"name": "Bob", "paintings": "3"}]


def test_artist_key_matches_spellings():
    assert artist_key("Albrecht_Durer") == artist_key(DURER_NFD) == artist_key("Albrecht Dürer") == "albrecht durer"
    assert artist_key("Claude Monet") != artist_key("Claude Manet")


def test_broken_and_oversized_images_are_rejected(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Ann": 3, "Bob": 3}, names=["Ann", "Bob"])
    ann = src / "images" / "images" / "Ann"
    good = jpeg(tmp_path / "big.jpg", seed=8, size=(30, 30)).read_bytes()
    (ann / "truncated.jpg").write_bytes(good[: len(good) * 3 // 4])  # header intact, pixels cut
    (ann / "empty.jpg").write_bytes(b"")
    (ann / "text.jpg").write_text("this is not a jpeg")
    jpeg(ann / "huge.jpg", seed=9, size=(60, 50))  # 3000 pixels > max_pixels
    painting(np.random.default_rng(3), 1, (30, 20)).convert("L").save(ann / "gray.png")

    raw = download(tmp_path, monkeypatch, source="path", path=str(src), max_pixels=1000)

    rejected = {r["path"]: r["reason"] for r in read_rows(raw / "rejected.csv")}
    assert set(rejected) == {f"images/images/Ann/{n}" for n in ("truncated.jpg", "empty.jpg", "text.jpg", "huge.jpg")}
    assert rejected["images/images/Ann/empty.jpg"] == "empty file"
    assert rejected["images/images/Ann/text.jpg"].startswith("not an image")
    assert rejected["images/images/Ann/truncated.jpg"].startswith("corrupt or truncated")
    assert "max_pixels" in rejected["images/images/Ann/huge.jpg"]
    manifest = {r["path"]: r for r in read_rows(raw / "manifest.csv")}
    assert len(manifest) == 7 and not any(Path(p).name in {"truncated.jpg", "huge.jpg"} for p in manifest)
    assert manifest["images/Ann/gray.png"]["mode"] == "L"
    assert not (raw / "images" / "Ann" / "text.jpg").exists()


def test_duplicates_keep_first_in_sorted_order(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Ann": 2, "Bob": 2}, names=["Ann", "Bob"])
    shutil.copyfile(src / "images/images/Ann/Ann_1.jpg", src / "images/images/Bob/copy.jpg")
    shutil.copyfile(src / "images/images/Ann/Ann_1.jpg", src / "images/images/Ann/Ann_9.jpg")
    raw = download(tmp_path, monkeypatch, source="path", path=str(src))
    rejected = {r["path"]: r["reason"] for r in read_rows(raw / "rejected.csv")}
    assert rejected == {
        "images/images/Ann/Ann_9.jpg": "duplicate of images/images/Ann/Ann_1.jpg",
        "images/images/Bob/copy.jpg": "duplicate of images/images/Ann/Ann_1.jpg under another artist",
    }
    assert len({r["sha256"] for r in read_rows(raw / "manifest.csv")}) == 4


def test_spellings_of_one_artist_merge_and_name_clashes_are_rejected(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Albrecht_Durer": 1, DURER_NFD: 1, "Bob": 2}, names=["Albrecht Dürer", "Bob"])
    folder = src / "images" / "images" / DURER_NFD
    jpeg(folder / "Ren\u00e9.jpg", seed=5)
    jpeg(folder / "Rene\u0301.jpg", seed=6)  # the same name once normalized, other pixels
    raw = download(tmp_path, monkeypatch, source="path", path=str(src))
    assert sorted(p.name for p in (raw / "images").iterdir()) == ["Albrecht_Dürer", "Bob"]
    durer = [r for r in read_rows(raw / "manifest.csv") if r["artist"] == "Albrecht Dürer"]
    assert len(durer) == 3 and (raw / "images" / DURER_NFC / "Ren\u00e9.jpg").is_file()
    [reject] = read_rows(raw / "rejected.csv")
    assert reject["reason"] == (f"name clash after Unicode normalization: images/{DURER_NFC}/Ren\u00e9.jpg "
                                f"is already {reject['path']}")


def test_min_images_and_top_n(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Ann": 5, "Cy": 4, "Bob": 4, "Dee": 2}, names=["Ann", "Bob", "Cy", "Dee"])
    raw = download(tmp_path, monkeypatch, source="path", path=str(src), min_images=3)
    assert sorted(r["name"] for r in read_rows(raw / "artists.csv")) == ["Ann", "Bob", "Cy"]
    raw = download(tmp_path, monkeypatch, source="path", path=str(src), min_images=3, top_n=2)
    assert sorted({r["artist"] for r in read_rows(raw / "manifest.csv")}) == ["Ann", "Bob"]  # Bob beats Cy on the tie
    assert sorted(p.name for p in (raw / "images").iterdir()) == ["Ann", "Bob"]


def test_select_artists_ties_are_deterministic():
    from collections import Counter

    assert select_artists(Counter({"b": 3, "a": 3, "c": 3, "d": 9}), 1, 3) == ["a", "b", "d"]


def test_fewer_than_two_artists_fails_with_one_line_and_keeps_previous(tmp_path):
    make_raw_dataset(tmp_path, {"Old One": 3, "Old Two": 3})
    before = (tmp_path / "data/raw/manifest.csv").read_bytes()
    src = make_source(tmp_path / "src", {"Ann": 5, "Bob": 2}, names=["Ann", "Bob"])
    write_params(tmp_path, {"data": {"source": "path", "path": "src", "min_images": 3}})
    proc = run_stage("download", tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: download: ") and "at least 2" in lines[-1]
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "data/raw/manifest.csv").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]
    assert src.exists()


def test_path_source_may_be_an_archive(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Ann": 2, "Bob": 2}, names=["Ann", "Bob"])
    archive = shutil.make_archive(str(tmp_path / "art"), "tar", root_dir=src)
    raw = download(tmp_path, monkeypatch, source="path", path=Path(archive).name)
    assert sorted(r["path"] for r in read_rows(raw / "manifest.csv")) == [
        "images/Ann/Ann_1.jpg", "images/Ann/Ann_2.jpg", "images/Bob/Bob_1.jpg", "images/Bob/Bob_2.jpg"
    ]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["raw"]


def test_missing_path_names_it(tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match="no/such/folder: no such folder or archive"):
        download(tmp_path, monkeypatch, source="path", path="no/such/folder")


def test_shared_sample(tmp_path, monkeypatch, shared_sample):
    raw = download(tmp_path, monkeypatch, source="path", path=str(shared_sample))
    manifest = read_rows(raw / "manifest.csv")
    rejected = read_rows(raw / "rejected.csv")
    assert len(manifest) + len(rejected) == 431 and len(manifest) >= 425
    assert len({r["artist"] for r in manifest}) == 11
    artists = {r["name"]: r for r in read_rows(raw / "artists.csv")}
    assert len(artists) == 11 and artists["Albrecht Dürer"]["nationality"] == "German"
    assert int(artists["Albrecht Dürer"]["paintings"]) == sum(r["artist"] == "Albrecht Dürer" for r in manifest) > 0
    assert (raw / "images" / DURER_NFC).is_dir() and not (raw / "images" / "Albrecht_Durer").exists()


