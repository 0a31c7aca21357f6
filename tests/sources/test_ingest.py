"""The download stage end to end: every source, name normalization, rejects, filters, failures."""

from __future__ import annotations

import csv
import hashlib
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import make_raw_dataset, painting, run_stage, serve_folder, write_params

from stages.download import artist_key, main, select_artists
from painter_id.errors import PipelineError

DURER_NFD = unicodedata.normalize("NFD", "Albrecht_Dürer")
DURER_NFC = unicodedata.normalize("NFC", "Albrecht_Dürer")


def jpeg(path: Path, seed: int = 0, size=(30, 20)) -> Path:
    """A small real JPEG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    painting(np.random.default_rng(seed), seed, size).save(path, quality=85)
    return path


def make_source(root: Path, folders: dict[str, int], names: list[str] | None = None, nested: bool = True) -> Path:
    """A source folder in the Kaggle layout: (images/)images/<Folder>/<Folder>_<n>.jpg and artists.csv."""
    images = root / "images" / "images" if nested else root / "images"
    for index, (folder, count) in enumerate(folders.items()):
        for n in range(count):
            jpeg(images / folder / f"{folder}_{n + 1}.jpg", seed=index * 1000 + n)
    if names is not None:
        with open(root / "artists.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "name", "years", "paintings"])
            writer.writerows([i, name, "1800 - 1900", 999] for i, name in enumerate(names))
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def download(project: Path, monkeypatch, **data) -> Path:
    """Run the stage in-process in ``project`` with ``data`` params; return data/raw."""
    write_params(project, {"data": data})
    monkeypatch.chdir(project)
    main()
    return project / "data" / "raw"


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

    manifest = read_csv(raw / "manifest.csv")
    assert [r["path"] for r in manifest] == sorted(r["path"] for r in manifest)
    durer = [r for r in manifest if r["artist"] == "Albrecht Dürer"]
    assert [r["path"] for r in durer] == [f"images/{DURER_NFC}/{DURER_NFC}_{n}.jpg" for n in (1, 2, 3)]
    assert all((raw / r["path"]).is_file() for r in manifest)
    assert sorted(p.name for p in (raw / "images").iterdir()) == sorted([DURER_NFC, "Claude_Monet", "Jane_Doe"])
    assert len(manifest) == 7  # nothing from resized/, no hidden or .txt files
    assert {(r["width"], r["height"], r["mode"]) for r in manifest} == {("30", "20", "RGB")}
    assert read_csv(raw / "rejected.csv") == []
    artists = {r["name"]: r for r in read_csv(raw / "artists.csv")}
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
    assert read_csv(raw / "artists.csv") == [{"name": "Ann Lee", "paintings": "2"}, {"name": "Bob", "paintings": "3"}]


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

    rejected = {r["path"]: r["reason"] for r in read_csv(raw / "rejected.csv")}
    assert set(rejected) == {f"images/images/Ann/{n}" for n in ("truncated.jpg", "empty.jpg", "text.jpg", "huge.jpg")}
    assert rejected["images/images/Ann/empty.jpg"] == "empty file"
    assert rejected["images/images/Ann/text.jpg"].startswith("not an image")
    assert rejected["images/images/Ann/truncated.jpg"].startswith("corrupt or truncated")
    assert "max_pixels" in rejected["images/images/Ann/huge.jpg"]
    manifest = {r["path"]: r for r in read_csv(raw / "manifest.csv")}
    assert len(manifest) == 7 and not any(Path(p).name in {"truncated.jpg", "huge.jpg"} for p in manifest)
    assert manifest["images/Ann/gray.png"]["mode"] == "L"
    assert not (raw / "images" / "Ann" / "text.jpg").exists()


def test_duplicates_keep_first_in_sorted_order(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Ann": 2, "Bob": 2}, names=["Ann", "Bob"])
    shutil.copyfile(src / "images/images/Ann/Ann_1.jpg", src / "images/images/Bob/copy.jpg")
    shutil.copyfile(src / "images/images/Ann/Ann_1.jpg", src / "images/images/Ann/Ann_9.jpg")
    raw = download(tmp_path, monkeypatch, source="path", path=str(src))
    rejected = {r["path"]: r["reason"] for r in read_csv(raw / "rejected.csv")}
    assert rejected == {
        "images/images/Ann/Ann_9.jpg": "duplicate of images/images/Ann/Ann_1.jpg",
        "images/images/Bob/copy.jpg": "duplicate of images/images/Ann/Ann_1.jpg under another artist",
    }
    assert len({r["sha256"] for r in read_csv(raw / "manifest.csv")}) == 4


def test_spellings_of_one_artist_merge_and_name_clashes_are_rejected(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Albrecht_Durer": 1, DURER_NFD: 1, "Bob": 2}, names=["Albrecht Dürer", "Bob"])
    folder = src / "images" / "images" / DURER_NFD
    jpeg(folder / "Ren\u00e9.jpg", seed=5)
    jpeg(folder / "Rene\u0301.jpg", seed=6)  # the same name once normalized, other pixels
    raw = download(tmp_path, monkeypatch, source="path", path=str(src))
    assert sorted(p.name for p in (raw / "images").iterdir()) == ["Albrecht_Dürer", "Bob"]
    durer = [r for r in read_csv(raw / "manifest.csv") if r["artist"] == "Albrecht Dürer"]
    assert len(durer) == 3 and (raw / "images" / DURER_NFC / "Ren\u00e9.jpg").is_file()
    [reject] = read_csv(raw / "rejected.csv")
    assert reject["reason"] == f"name clash after Unicode normalization: images/{DURER_NFC}/Ren\u00e9.jpg is already {reject['path']}"


def test_min_images_and_top_n(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src", {"Ann": 5, "Cy": 4, "Bob": 4, "Dee": 2}, names=["Ann", "Bob", "Cy", "Dee"])
    raw = download(tmp_path, monkeypatch, source="path", path=str(src), min_images=3)
    assert sorted(r["name"] for r in read_csv(raw / "artists.csv")) == ["Ann", "Bob", "Cy"]
    raw = download(tmp_path, monkeypatch, source="path", path=str(src), min_images=3, top_n=2)
    assert sorted({r["artist"] for r in read_csv(raw / "manifest.csv")}) == ["Ann", "Bob"]  # Bob beats Cy on the tie
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
    assert sorted(r["path"] for r in read_csv(raw / "manifest.csv")) == [
        "images/Ann/Ann_1.jpg", "images/Ann/Ann_2.jpg", "images/Bob/Bob_1.jpg", "images/Bob/Bob_2.jpg"
    ]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["raw"]


def test_missing_path_names_it(tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match="no/such/folder: no such folder or archive"):
        download(tmp_path, monkeypatch, source="path", path="no/such/folder")


def test_shared_sample(tmp_path, monkeypatch, shared_sample):
    raw = download(tmp_path, monkeypatch, source="path", path=str(shared_sample))
    manifest = read_csv(raw / "manifest.csv")
    rejected = read_csv(raw / "rejected.csv")
    assert len(manifest) + len(rejected) == 431 and len(manifest) >= 425
    assert len({r["artist"] for r in manifest}) == 11
    artists = {r["name"]: r for r in read_csv(raw / "artists.csv")}
    assert len(artists) == 11 and artists["Albrecht Dürer"]["nationality"] == "German"
    assert int(artists["Albrecht Dürer"]["paintings"]) == sum(r["artist"] == "Albrecht Dürer" for r in manifest) > 0
    assert (raw / "images" / DURER_NFC).is_dir() and not (raw / "images" / "Albrecht_Durer").exists()


@pytest.fixture
def web(tmp_path):
    """A local HTTP server (127.0.0.1, from a thread) serving ``tmp_path/www``; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_folder(root) as server:
        yield root, f"http://127.0.0.1:{server.server_port}"


@pytest.mark.parametrize("fmt, suffix", [("zip", ".zip"), ("gztar", ".tar.gz")])
def test_url_source_zip_and_tar_gz(tmp_path, monkeypatch, web, fmt, suffix):
    www, base = web
    src = make_source(tmp_path / "src", {DURER_NFD: 2, "Claude_Monet": 3}, names=["Albrecht Dürer", "Claude Monet"])
    shutil.make_archive(str(www / "artworks"), fmt, root_dir=src)
    (tmp_path / "proj").mkdir()
    raw = download(tmp_path / "proj", monkeypatch, source="url", url=f"{base}/artworks{suffix}", timeout=10)
    manifest = read_csv(raw / "manifest.csv")
    assert sorted({r["artist"] for r in manifest}) == ["Albrecht Dürer", "Claude Monet"] and len(manifest) == 5
    assert (raw / "images" / DURER_NFC / f"{DURER_NFC}_2.jpg").is_file()
    assert [p.name for p in (tmp_path / "proj" / "data").iterdir()] == ["raw"]  # download + extraction removed


def test_url_404_is_one_line_without_secrets_and_keeps_previous(tmp_path, monkeypatch, web):
    _, base = web
    make_raw_dataset(tmp_path, {"Old One": 3, "Old Two": 3})
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*"))
    url = base.replace("http://", "http://alice:hunter2@") + "/missing.zip?token=SECRET"
    with pytest.raises(PipelineError) as info:
        download(tmp_path, monkeypatch, source="url", url=url, timeout=5)
    message = str(info.value)
    assert "\n" not in message and "HTTP 404" in message and f"{base}/missing.zip".replace("http://", "") in message
    assert "hunter2" not in message and "alice" not in message and "SECRET" not in message
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*")) == before


def test_url_larger_than_max_archive_bytes_is_refused(tmp_path, monkeypatch, web):
    www, base = web
    (www / "big.zip").write_bytes(bytes(5000))
    with pytest.raises(PipelineError, match=r"big\.zip: the download is larger than data\.max_archive_bytes=1000"):
        download(tmp_path, monkeypatch, source="url", url=f"{base}/big.zip", max_archive_bytes=1000)
    assert [p.name for p in (tmp_path / "data").iterdir()] == []


def test_kaggle_without_credentials_is_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "home"
    empty.mkdir()
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    write_params(tmp_path, {"data": {"source": "kaggle"}})
    proc = run_stage("download", tmp_path, check=False, env={"HOME": str(empty), "KAGGLE_CONFIG_DIR": str(empty)})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: download: Kaggle: no credentials") and "KAGGLE_USERNAME" in last and "kaggle.json" in last
    assert not (tmp_path / "data" / "raw").exists()


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


@pytest.mark.parametrize(
    "error, expected",
    [
        (type("KaggleApiHTTPError", (Exception,), {"response": _Response(401)})("401 for user bob key s3cr3tkey"), "rejected the credentials"),
        (ConnectionError("cannot reach kaggle.com with key s3cr3tkey"), "failed (ConnectionError)"),
    ],
)
def test_kaggle_rejected_or_offline_never_shows_the_key(tmp_path, monkeypatch, caplog, error, expected):
    import kagglehub

    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    monkeypatch.setenv("KAGGLE_KEY", "s3cr3tkey")
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)

    def fail(handle, *args, **kwargs):
        raise error

    monkeypatch.setattr(kagglehub, "dataset_download", fail)
    with pytest.raises(PipelineError) as info:
        download(tmp_path, monkeypatch, source="kaggle")
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert "s3cr3tkey" not in message and "s3cr3tkey" not in caplog.text
    assert not (tmp_path / "data" / "raw").exists()
