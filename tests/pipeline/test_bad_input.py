"""Hostile and broken input: odd images end to end, bad archives, bad params, secrets, interruptions.

Cases already covered elsewhere are not repeated here (see the README table "bad input");
each test below fails without the handling it names.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import stages.download
import stages.oversample
import stages.resize
import stages.split
from painter_id import archives, urls
from painter_id.errors import PipelineError
from painter_id.params import MlflowParams
from painter_id.tracking import prepare_store
from tests import badfiles
from tests.badfiles import BLUE, DURER_NFD, ODD_IMAGES, RED, ROTATED, SIDE
from tests.conftest import (REPO_ROOT, QuietHandler, make_raw_dataset, make_resized_dataset, painting, run_stage,
                            serve_folder, write_params)

DURER_NFC = unicodedata.normalize("NFC", DURER_NFD)
# absl's "WARNING: All log messages before absl::InitializeLog()..." and glog lines "I0000 00:00:...".
TF_NATIVE_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:\d\d:\d\d)")
TINY_TRAIN = {"model": {"backbone": "simple_cnn", "weights": None, "frozen_layers": 0},
              "train": {"epochs": 1, "batch_size": 8}}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_one_line_error(proc: subprocess.CompletedProcess, stage: str, *fragments: str, strict: bool = True) -> str:
    """Exit 2, no traceback, one ``error: <stage>:`` line holding ``fragments``; return it.

    ``strict``: that line is all the stage printed (the error came before any log line);
    TensorFlow's own C++ start-up lines, which no setting silences, are not the stage's.
    """
    lines = [line for line in proc.stderr.strip().splitlines() if not TF_NATIVE_LOG.match(line)]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith(f"error: {stage}: ")
    if strict:
        assert lines == errors, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), to prove outputs are byte-identical."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary names the stages use (``.x.tmp-*``, ``.download-*``, ``*.part``) still under ``folder``."""
    return sorted(p.name for p in folder.rglob(".*") if ".tmp-" in p.name or p.name.startswith((".download-", ".write-probe")))


# --- images ----------------------------------------------------------------------------


def hostile_source(root: Path) -> Path:
    """A flat Kaggle-layout folder full of odd, broken and clutter files, odd names and an empty artist."""
    monet = root / "images" / "Claude Monet"  # a space in the folder name
    badfiles.save_odd_images(monet)
    badfiles.save_broken_images(monet)
    badfiles.save_clutter(monet)
    durer = root / "images" / DURER_NFD
    durer.mkdir()
    for n in range(3):  # NFD folder and file names, with spaces
        painting(np.random.default_rng(n), 1, (30, 24)).save(durer / f"{DURER_NFD} Selbstbildnis {n}.jpg")
    (root / "images" / "Solo").mkdir()
    painting(np.random.default_rng(9), 2, (30, 24)).save(root / "images" / "Solo" / "only one.jpg")
    (root / "images" / "Empty_Artist").mkdir()
    return root


def test_odd_images_go_through_download_split_oversample_resize(tmp_path, monkeypatch):
    src = hostile_source(tmp_path / "src")
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, {"data": {"source": "path", "path": str(src)}, "split": {"test_size": 0.3},
                           "oversample": {"min_count": 3}, "resize": {"image_size": SIDE, "mode": "pad", "workers": 1}})
    monkeypatch.chdir(project)
    for stage in (stages.download, stages.split, stages.oversample, stages.resize):
        stage.main()

    raw = project / "data" / "raw"
    assert sorted(p.name for p in (raw / "images").iterdir()) == sorted([DURER_NFC, "Claude_Monet", "Solo"])
    assert {r["name"]: r["paintings"] for r in read_rows(raw / "artists.csv")} == {
        "Albrecht Dürer": "3", "Claude Monet": str(len(ODD_IMAGES) + 1), "Solo": "1"}
    manifest = {r["path"]: r for r in read_rows(raw / "manifest.csv")}
    assert f"images/{DURER_NFC}/{DURER_NFC} Selbstbildnis 0.jpg" in manifest
    modes = {Path(p).name: r["mode"] for p, r in manifest.items()}
    assert modes["cmyk.jpg"] == "CMYK" and modes["sixteen.png"].startswith("I") and modes["onebit.png"] == "1"
    assert modes["palette_alpha.png"] == "P" and modes["rgba.png"] == "RGBA" and modes["png_named.jpg"] == "RGB"
    assert (manifest[f"images/Claude_Monet/{ROTATED}"]["width"], manifest[f"images/Claude_Monet/{ROTATED}"]["height"]) == ("40", "20")
    rejected = {Path(r["path"]).name: r["reason"] for r in read_rows(raw / "rejected.csv")}
    assert set(rejected) == {*badfiles.BROKEN_IMAGES, badfiles.BOMB}  # hidden files and notes: skipped silently
    for name, reason in badfiles.BROKEN_IMAGES.items():
        assert rejected[name].startswith(reason)
    assert rejected[badfiles.BOMB] == "too large: 100000x100000 pixels exceeds data.max_pixels=40000000"

    arrays, rows = [], []
    for split in ("train", "test"):
        arrays.append(np.load(project / "data" / "resized" / f"{split}.npy"))
        rows += read_rows(project / "data" / "resized" / f"{split}.csv")
    images = np.concatenate(arrays)
    assert images.dtype == np.uint8 and images.shape == (len(rows), SIDE, SIDE, 3)
    by_name = {Path(r["path"]).name: images[i].astype(int) for i, r in enumerate(rows) if not r["source"]}
    assert sum(r["artist"] == "Solo" for r in rows) == 3  # the single image, and two oversampled copies
    for name, (left, right) in ODD_IMAGES.items():
        assert np.abs(by_name[name][:, :10] - left).max() <= 10, name
        assert np.abs(by_name[name][:, 14:] - right).max() <= 10, name
    rotated = by_name[ROTATED]  # upright it is portrait, red above blue: black pad bars left and right
    assert rotated[:, :5].max() <= 10 and rotated[:, -5:].max() <= 10
    assert np.abs(rotated[2:10, 8:16] - RED).max() <= 10 and np.abs(rotated[14:22, 8:16] - BLUE).max() <= 10


# --- archives --------------------------------------------------------------------------


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


@pytest.mark.parametrize("source, name, members, expected", [
    ("path", "bomb.zip", {**badfiles.kaggle_members(), "images/images/Bob/x.jpg": bytes(3 << 20)}, "times its compressed size"),
    ("url", "slip.tar.gz", {**badfiles.kaggle_members(), "../../outside.jpg": b"x"}, "points outside the archive folder"),
    ("url", "abs.zip", {**badfiles.kaggle_members(), "/tmp/hostile-abs.jpg": b"x"}, "absolute path"),
])
def test_hostile_archive_through_the_stage_keeps_previous_data(tmp_path, private_web, source, name, members, expected):
    www, host, password = private_web
    make_raw_dataset(tmp_path, {"Old One": 3, "Old Two": 3})
    before = snapshot(tmp_path / "data")
    location = badfiles.write_archive((www if source == "url" else tmp_path) / name, members)
    data = {"source": "path", "path": str(location)} if source == "path" else \
        {"source": "url", "url": f"http://art:{password}@{host}/{name}", "timeout": 10}
    write_params(tmp_path, {"data": data})
    proc = run_stage("download", tmp_path, check=False)
    assert_one_line_error(proc, "download", name, expected, strict=False)
    assert password not in proc.stderr + proc.stdout
    assert snapshot(tmp_path / "data") == before and leftovers(tmp_path) == []
    assert not list(tmp_path.rglob("outside.jpg")) and not Path("/tmp/hostile-abs.jpg").exists()


# --- params ----------------------------------------------------------------------------


PARAM_CASES = {
    # id: (stage, overrides, fragments of the one error line, error before any log line).
    # Elsewhere: a typo (tests/test_params.py), frozen_layers beyond the backbone (tests/test_train.py).
    "wrong-type": ("resize", {"resize": {"image_size": "large"}}, ["resize.image_size is 'large'", "must be an integer"], True),
    "test-size": ("split", {"split": {"test_size": 1.0}}, ["split.test_size is 1.0", "[0, 1)"], True),
    "negative-epochs": ("train", {"train": {"epochs": -2}}, ["train.epochs is -2"], True),
    "below-minimum": ("train", {"model": {"backbone": "InceptionResNetV2"}},
                      ["resize.image_size is 32", "InceptionResNetV2 needs at least 75"], True),
    "backbone": ("train", {"model": {"backbone": "ResNet51"}}, ["model.backbone is 'ResNet51'", "ResNet50", "MobileNet", "simple_cnn"], True),
    "missing-path": ("download", {"data": {"source": "path", "path": "no/such/folder"}},
                     ["data.path", "no/such/folder", "no such folder or archive"], False),
}


@pytest.fixture(scope="module")
def param_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every bad-params case through its real stage subprocess, run two at a time (TensorFlow imports are slow)."""
    def one(case: str) -> tuple[subprocess.CompletedProcess, Path]:
        stage, overrides, _, _ = PARAM_CASES[case]
        root = tmp_path_factory.mktemp(case)
        make_resized_dataset(root)
        write_params(root, {"mlflow": {"tracking_uri": "sqlite:///mlflow.db"}, **overrides})
        return run_stage(stage, root, check=False), root

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(PARAM_CASES, pool.map(one, PARAM_CASES)))


@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_bad_param_is_one_line_from_the_real_stage(param_runs, case):
    stage, _, fragments, strict = PARAM_CASES[case]
    proc, root = param_runs[case]
    assert_one_line_error(proc, stage, "params.yaml" if case != "missing-path" else "data.path", *fragments, strict=strict)
    assert not (root / "models" / "model.keras").exists() and not (root / "data" / "raw").exists()
    if strict:  # stopped before touching anything, the MLflow store included
        assert not (root / "mlflow.db").exists()


# --- services and secrets --------------------------------------------------------------


def test_locked_mlflow_store_is_one_line_not_a_hang(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_store(MlflowParams(tracking_uri=uri))
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    try:
        start = time.monotonic()
        with pytest.raises(PipelineError) as info:
            prepare_store(MlflowParams(tracking_uri=uri))
        assert time.monotonic() - start < 60
    finally:
        holder.rollback()
        holder.close()
    message = str(info.value)
    assert "\n" not in message and "locked by another process" in message and "mlflow.db" in message


def test_secrets_never_reach_logs_outputs_or_mlflow(tmp_path, private_web):
    www, host, password = private_web
    kaggle_key = secrets.token_hex(16)
    src = hostile_source(tmp_path / "src")
    badfiles.write_zip(www / "art.zip", {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()})
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, {**TINY_TRAIN, "data": {"source": "url", "url": f"http://art:{password}@{host}/art.zip?sig={password}"},
                           "split": {"test_size": 0.3}, "oversample": {"min_count": 3},
                           "resize": {"image_size": 16, "workers": 1}, "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    env = {"KAGGLE_USERNAME": "art", "KAGGLE_KEY": kaggle_key}
    outputs = [run_stage(stage, project, env=env) for stage in ("download", "split", "oversample", "resize", "train")]

    assert "holds a password" in outputs[0].stderr  # the user is told to move it out of params.yaml
    assert len(read_rows(project / "data" / "raw" / "manifest.csv")) == len(ODD_IMAGES) + 5
    written = [p for p in project.rglob("*") if p.is_file() and p != project / "params.yaml"]
    assert project / "mlflow.db" in written and any(p.name == "params.yaml" for p in (project / "mlartifacts").rglob("*"))
    for secret in (password, kaggle_key):
        for path in written:
            assert secret.encode() not in path.read_bytes(), path
        for proc in outputs:
            assert secret not in proc.stdout + proc.stderr


def test_url_password_comes_from_netrc_and_an_env_reference_is_one_line(tmp_path, monkeypatch, private_web):
    www, host, password = private_web
    badfiles.write_zip(www / "art.zip", badfiles.kaggle_members())
    monkeypatch.chdir(tmp_path)
    # DVC checks data.url itself (a dependency of download) and cannot expand ${NAME}.
    write_params(tmp_path, {"data": {"source": "url", "url": f"http://art:${{ART_TOKEN}}@{host}/art.zip"}})
    with pytest.raises(PipelineError, match=r"data\.url holds \$\{ART_TOKEN\}, .* put them in ~/\.netrc"):
        stages.download.main()
    write_params(tmp_path, {"data": {"source": "url", "url": f"http://{host}/art.zip"}})
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    with pytest.raises(PipelineError, match=r"HTTP 401 .*; check data\.url and its login in ~/\.netrc \(\$NETRC\)$"):
        stages.download.main()
    (tmp_path / "netrc").write_text(f"machine 127.0.0.1 login art password {password}\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    stages.download.main()
    assert len(read_rows(tmp_path / "data" / "raw" / "manifest.csv")) == 4
    assert password not in (tmp_path / "params.yaml").read_text()


def test_a_broken_netrc_is_one_line_naming_it(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("default\n  bogus s3cret-token\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(PipelineError, match=rf"{netrc}: cannot read it \(NetrcParseError\); fix or remove") as caught:
        urls.authorized_request("http://127.0.0.1:9/a.zip")
    assert "s3cret" not in str(caught.value)


# --- interruptions and unwritable outputs ---------------------------------------------


def interrupt(project: Path, stage: str, sig: signal.Signals, started) -> subprocess.CompletedProcess:
    """Start ``python -m stages.<stage>``, send ``sig`` once ``started()`` is true, and wait for it."""
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    deadline = time.monotonic() + 60
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the work
    assert proc.poll() is None, "the stage finished before it could be interrupted: give it more work"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def assert_interrupted(proc: subprocess.CompletedProcess, stage: str) -> None:
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {stage}: interrupted; its previous outputs were left as they were, run it again")


def test_sigterm_during_download_keeps_previous_data_and_a_rerun_works(tmp_path):
    write_params(tmp_path, {"data": {"source": "synthetic", "synthetic_artists": 2, "synthetic_images": 20}})
    run_stage("download", tmp_path)
    before = snapshot(tmp_path / "data")
    write_params(tmp_path, {"data": {"source": "synthetic", "synthetic_artists": 3, "synthetic_images": 400}})

    proc = interrupt(tmp_path, "download", signal.SIGTERM,
                     lambda: any(p.name.startswith(".download-") for p in (tmp_path / "data").iterdir()))

    assert_interrupted(proc, "download")
    assert snapshot(tmp_path / "data") == before and leftovers(tmp_path) == []
    write_params(tmp_path, {"data": {"source": "synthetic", "synthetic_artists": 3, "synthetic_images": 30}})
    run_stage("download", tmp_path)
    assert len(read_rows(tmp_path / "data" / "raw" / "manifest.csv")) == 30 and leftovers(tmp_path) == []


def test_sigint_during_resize_keeps_previous_arrays_and_a_rerun_works(tmp_path):
    make_raw_dataset(tmp_path, {"Ann": 6, "Bob": 6}, size=(400, 300))
    write_params(tmp_path, {"oversample": {"strategy": "none"}, "resize": {"image_size": 64, "workers": 1}})
    for stage in ("split", "oversample", "resize"):
        run_stage(stage, tmp_path)
    before = snapshot(tmp_path / "data" / "resized")
    small = (tmp_path / "data" / "oversampled" / "train.csv").read_text(encoding="utf-8")
    header, *lines = small.splitlines(keepends=True)
    (tmp_path / "data" / "oversampled" / "train.csv").write_text(header + "".join(lines * 400), encoding="utf-8")

    proc = interrupt(tmp_path, "resize", signal.SIGINT, lambda: any((tmp_path / "data").glob(".resized.tmp-*")))

    assert_interrupted(proc, "resize")
    assert snapshot(tmp_path / "data" / "resized") == before and leftovers(tmp_path) == []
    (tmp_path / "data" / "oversampled" / "train.csv").write_text(small, encoding="utf-8")
    run_stage("resize", tmp_path)
    assert snapshot(tmp_path / "data" / "resized") == before and leftovers(tmp_path) == []


def test_a_file_where_the_data_folder_should_be_stops_download_before_work(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    write_params(tmp_path, {"data": {"source": "synthetic", "synthetic_artists": 2, "synthetic_images": 20}})
    proc = run_stage("download", tmp_path, check=False)
    assert_one_line_error(proc, "download", str(tmp_path / "data"), "cannot write outputs there")
    assert (tmp_path / "data").read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["data", "params.yaml"]
