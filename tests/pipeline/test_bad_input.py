"""Hostile and broken input: odd images end to end, bad archives, bad params, secrets, interruptions.

Cases already covered elsewhere are not repeated here (see docs/bad-input.md);
each test below fails without the handling it names.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from painter_id.core.errors import PipelineError
from painter_id.data import resized
from painter_id.model import model_files
from testkit import badfiles
from testkit.badfiles import BLUE, DURER_NFC, DURER_NFD, ODD_IMAGES, RED, ROTATED, SIDE
from testkit.checks import assert_one_line_error, leftovers, read_rows, snapshot
from testkit.images import make_raw_dataset, make_resized_dataset, painting
from testkit.project import dvc, make_project, run_stage, stage_main, write_params

TINY_TRAIN = {"model": {"backbone": "simple_cnn", "weights": "random", "frozen_layers": 0},
              "train": {"epochs": 1, "batch_size": 8}}


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
                           "oversample": {"min_count": 3}, "resize": {"image_size": SIDE, "mode": "pad"},
                           "runtime": {"workers": 1}})
    monkeypatch.chdir(project)
    for stage in ("download", "split", "oversample", "resize"):
        stage_main(stage)

    raw = project / "data" / "raw"
    assert sorted(p.name for p in (raw / "images").iterdir()) == sorted([DURER_NFC, "Claude_Monet", "Solo"])
    assert {r["name"]: r["paintings"] for r in read_rows(raw / "artists.csv")} == {
        "Albrecht Dürer": "3", "Claude Monet": str(len(ODD_IMAGES) + 1), "Solo": "1"}
    manifest = {r["path"]: r for r in read_rows(raw / "manifest.csv")}
    assert f"images/{DURER_NFC}/{DURER_NFC} Selbstbildnis 0.jpg" in manifest
    modes = {Path(p).name: r["mode"] for p, r in manifest.items()}
    assert modes["cmyk.jpg"] == "CMYK" and modes["sixteen.png"].startswith("I") and modes["onebit.png"] == "1"
    assert modes["palette_alpha.png"] == "P" and modes["rgba.png"] == "RGBA" and modes["png_named.jpg"] == "RGB"
    rotated = manifest[f"images/Claude_Monet/{ROTATED}"]
    assert (rotated["width"], rotated["height"]) == ("40", "20")
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
    "below-minimum": ("features", {"model": {"backbone": "InceptionResNetV2"}},
                      ["resize.image_size is 32", "InceptionResNetV2 needs at least 75"], True),
    "backbone": ("features", {"model": {"backbone": "ResNet51"}},
                 ["model.backbone is 'ResNet51'", "ResNet50", "MobileNet", "simple_cnn"], True),
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


@pytest.mark.slow
@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_bad_param_is_one_line_from_the_real_stage(param_runs, case):
    stage, _, fragments, strict = PARAM_CASES[case]
    proc, root = param_runs[case]
    assert_one_line_error(proc, stage, "params.yaml" if case != "missing-path" else "data.path", *fragments, strict=strict)
    assert not (root / "models" / "model.keras").exists() and not (root / "data" / "raw").exists()
    if strict:  # stopped before touching anything, the MLflow store included
        assert not (root / "mlflow.db").exists()


# --- services and secrets --------------------------------------------------------------


# --- interruptions and unwritable outputs ---------------------------------------------


def test_a_file_where_the_data_folder_should_be_stops_download_before_work(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    write_params(tmp_path, {"data": {"source": "synthetic", "synthetic_artists": 2, "synthetic_images": 20}})
    proc = run_stage("download", tmp_path, check=False)
    assert_one_line_error(proc, "download", str(tmp_path / "data"), "is a file where painter-id keeps a folder; move it away")
    assert (tmp_path / "data").read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "params.yaml"]


def named_source(root: Path, outside: Path) -> Path:
    """Artist folders with hostile names: not UTF-8, blank once normalised, a formula, a link out."""
    images = root / "images"
    for index, folder in enumerate(["Ann", "=cmd|' -C calc'!A0", "Bob"]):
        (images / folder).mkdir(parents=True)
        for n in range(3):
            painting(np.random.default_rng(10 * index + n), index, (30, 24)).save(images / folder / f"{n}.jpg")
    painting(np.random.default_rng(99), 0, (30, 24)).save(os.fsencode(images / "Bob") + b"/bad\xff.jpg")
    for blank in ("_ _", b"Cy\xfe"):
        folder = os.fsencode(images) + b"/" + (blank if isinstance(blank, bytes) else blank.encode())
        os.mkdir(folder)
        painting(np.random.default_rng(7), 1, (30, 24)).save(folder + b"/x.jpg")
    painting(np.random.default_rng(5), 2, (30, 24)).save(outside)
    (images / "Ann" / "linked.jpg").symlink_to(outside)
    (images / "Linked").symlink_to(images / "Ann", target_is_directory=True)
    return root


def test_odd_names_and_links_are_rejected_one_by_one_and_split_runs(tmp_path, monkeypatch):
    src = named_source(tmp_path / "src", tmp_path / "secret.jpg")
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, {"data": {"source": "path", "path": str(src)}, "split": {"test_size": 0.4}})
    monkeypatch.chdir(project)
    stage_main("download")
    stage_main("split")  # a blank artist used to pass download and stop split, asking to rerun download

    raw = project / "data" / "raw"
    rejected = {r["path"]: r["reason"] for r in read_rows(raw / "rejected.csv")}
    assert rejected["images/Bob/bad\\xff.jpg"].startswith("name is not valid UTF-8 (bad\\xff.jpg)")
    assert rejected["images/Cy\\xfe/x.jpg"].startswith("artist folder name is not valid UTF-8")
    assert "is blank once underscores" in rejected["images/_ _/x.jpg"]
    assert rejected["images/Ann/linked.jpg"].startswith("symbolic link: links are not followed")
    manifest = read_rows(raw / "manifest.csv")
    assert {r["artist"] for r in manifest} == {"Ann", "Bob", "=cmd|' -C calc'!A0"}
    assert len(manifest) == 9 and not any("linked" in r["path"] or "Linked" in r["path"] for r in manifest)
    assert not any(p.name == "linked.jpg" for p in raw.rglob("*"))


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe", b"[1, 2]", b"null"])
def test_damaged_model_and_data_files_are_one_line(tmp_path, content):
    readers = {"labels.json": model_files.read_labels, "preprocessing.json": model_files.read_preprocessing,
               "run.json": model_files.read_run, "format.json": resized.read_format,
               "model.keras": model_files.load_model}
    for name, read in readers.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(PipelineError, match=rf"{name}: .*run `dvc repro"):
            read(tmp_path / name)


@pytest.mark.slow
def test_secrets_never_reach_logs_outputs_or_mlflow(tmp_path, private_web):
    www, host, password = private_web
    kaggle_key = secrets.token_hex(16)
    src = hostile_source(tmp_path / "src")
    badfiles.write_zip(www / "art.zip", {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()})
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, {**TINY_TRAIN, "data": {"source": "url", "url": f"http://art:{password}@{host}/art.zip?sig={password}"},
                           "split": {"test_size": 0.3}, "oversample": {"min_count": 3},
                           "resize": {"image_size": 16}, "runtime": {"workers": 1}, "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    env = {"KAGGLE_USERNAME": "art", "KAGGLE_KEY": kaggle_key}
    outputs = [run_stage(stage, project, env=env)
               for stage in ("download", "split", "oversample", "resize", "features", "train")]

    assert "holds a password" in outputs[0].stderr  # the user is told to move it out of params.yaml
    assert len(read_rows(project / "data" / "raw" / "manifest.csv")) == len(ODD_IMAGES) + 5
    written = [p for p in project.rglob("*") if p.is_file() and p != project / "params.yaml"]
    assert project / "mlflow.db" in written and any(p.name == "params.yaml" for p in (project / "mlartifacts").rglob("*"))
    for secret in (password, kaggle_key):
        for path in written:
            assert secret.encode() not in path.read_bytes(), path
        for proc in outputs:
            assert secret not in proc.stdout + proc.stderr


def test_a_bad_param_stops_dvc_before_any_stage_loses_its_outputs(tmp_path):
    data = {"source": "synthetic", "synthetic_artists": 2, "synthetic_images": 20}
    project = make_project(tmp_path / "project", {"data": data})
    dvc(project, "repro", "split")
    before = snapshot(project / "data")
    write_params(project, {"data": data, "split": {"test_size": "lots"}})

    proc = dvc(project, "repro", "split", check=False)

    # The first stage of every run checks all of params.yaml; DVC had not yet removed data/split
    # to rerun split, and source's own output persists.
    assert proc.returncode != 0 and "error: source: params.yaml: split.test_size is 'lots'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert snapshot(project / "data") == before
