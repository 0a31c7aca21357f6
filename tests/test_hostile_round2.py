"""Hostile input, second round (issue 14): names, links, image depths, params, commands, crashes, full disks.

Each test fails without the handling it names; tests/test_properties.py runs the same
entry points on generated names, values and bytes.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import stages.download
import stages.split
from painter_id import compare, feature_cache, model_files, resized
from painter_id.errors import PipelineError
from painter_id.images import load_rgb
from painter_id.params import MlflowParams, load_all
from painter_id.tracking import PID_TAG, prepare_store
from tests.conftest import REPO_ROOT, make_raw_dataset, painting, run_stage, write_params
from tests.test_hostile import assert_one_line_error, interrupt, leftovers, read_rows, snapshot

# --- names and links -------------------------------------------------------------------


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
    stages.download.main()
    stages.split.main()  # a blank artist used to pass download and stop split, asking to rerun download

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


# --- image modes -----------------------------------------------------------------------


def rgb16_png(path: Path, pixel: tuple[int, int, int]) -> Path:
    """A 4 x 4 PNG of 16 bits per channel (Pillow cannot write one), every pixel ``pixel``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    rows = b"".join(b"\0" + np.array(pixel * 4, dtype=">u2").tobytes() for _ in range(4))
    header = (4).to_bytes(4, "big") * 2 + bytes([16, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("name, array, expected", [
    ("dark16.png", np.full((4, 4), 100, np.uint16), 0),  # dark in 16 bits stays dark (was read as 8-bit 100)
    ("mid16.png", np.full((4, 4), 200 * 257, np.uint16), 200),
    ("half.tif", np.full((4, 4), 0.5, np.float32), 128),  # float TIFF: 0..1 (was black)
    ("over.tif", np.full((4, 4), 7.0, np.float32), 255),
    ("nan.tif", np.full((4, 4), np.nan, np.float32), 0),
])
def test_high_bit_depth_is_scaled_by_its_mode_range(tmp_path, name, array, expected):
    Image.fromarray(array).save(tmp_path / name)
    pixels = np.asarray(load_rgb(tmp_path / name))
    assert pixels.shape == (4, 4, 3) and (pixels == expected).all(), pixels[0, 0]


def test_sixteen_bit_rgb_png_keeps_its_colour(tmp_path):
    pixels = np.asarray(load_rgb(rgb16_png(tmp_path / "rgb16.png", (200 * 257, 10 * 257, 65535))))
    assert (pixels == (200, 10, 255)).all()


# --- params ----------------------------------------------------------------------------


def alias_bomb(levels: int = 6) -> str:
    """A "billion laughs" params.yaml: 9^levels strings in model.pooled_layers from a few hundred bytes."""
    anchors = ["&l0 [x, x, x, x, x, x, x, x, x]"]
    anchors += [f"&l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels + 1)]
    return f"model:\n  pooled_layers: [{', '.join(anchors)}]\n"


PARAMS_FILES = {
    "nan": ("split:\n  test_size: .nan\n", "split.test_size is nan; it must be a finite number"),
    "infinity": ("data:\n  timeout: .inf\n", "data.timeout is inf; it must be a finite number"),
    "huge-int": ("train:\n  epochs: 100000000000000000000000\n", "train.epochs is 1000"),
    "duplicate": ("train:\n  epochs: 1\n  epochs: 2\n", "key 'epochs' appears twice (line 3)"),
    "top-list": ("- train\n- split\n", "must be a mapping of sections"),
    "empty-list": ("[]\n", "must be a mapping of sections"),
    "section-list": ("train: []\n", "section 'train' must be a mapping"),
    "recursive": ("train: &t\n  epochs: *t\n", "once its aliases (*name) are expanded"),
    "alias-bomb": (alias_bomb(), "once its aliases (*name) are expanded"),  # was a message of megabytes
}


@pytest.mark.parametrize("case", list(PARAMS_FILES))
def test_broken_params_file_is_one_short_line(tmp_path, case):
    text, fragment = PARAMS_FILES[case]
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PipelineError) as info:
        load_all(tmp_path / "params.yaml")
    assert fragment in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 300


def test_alias_bomb_latin1_and_a_folder_as_params_through_the_real_stage(tmp_path):
    cases = {
        "bomb": (lambda p: p.write_text(alias_bomb(), encoding="utf-8"), "once its aliases (*name) are expanded"),
        "latin1": (lambda p: p.write_bytes("split:\n  seed: 1  # Dürer\n".encode("latin-1")), "not UTF-8 text"),
        "folder": (lambda p: p.mkdir(), "cannot be read (Is a directory)"),
    }
    for case, (make, fragment) in cases.items():
        root = tmp_path / case
        root.mkdir()
        make(root / "params.yaml")
        proc = run_stage("split", root, check=False)
        line = assert_one_line_error(proc, "split", "params.yaml", fragment)
        assert len(line) < 300, case


# --- commands --------------------------------------------------------------------------


def test_compare_on_a_damaged_store_or_a_dead_server_is_one_line_within_seconds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {})
    (tmp_path / "mlflow.db").write_bytes(b"SQLite format 3\0" + bytes(range(256)) * 8)
    with pytest.raises(PipelineError, match=r"cannot read MLflow store sqlite:///.*mlflow\.db: .*not a database"):
        compare.main(["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(PipelineError, match=rf"cannot read MLflow store http://127\.0\.0\.1:{port}"):
        compare.main(["--tracking-uri", f"http://127.0.0.1:{port}"])
    assert time.monotonic() - start < 30  # MLflow's default retries take minutes


@pytest.mark.parametrize("limit", ["-1", "0", "x"])
def test_compare_limit_must_be_one_or_more(limit, capsys):
    with pytest.raises(SystemExit) as info:
        compare.parse_args(["--limit", limit])
    assert info.value.code == 2 and "--limit" in capsys.readouterr().err


def test_compare_csv_neutralises_formulas(tmp_path):
    out = io.StringIO()
    row = ["=1+2", "@x", "-y", "", "", 0.5, float("nan"), -0.25, 1.0, "FINISHED"]
    cols = [compare.Column(f"c{i}", lambda cells, i=i: cells[i]) for i in range(len(row))]
    compare.write_csv([row], cols, out)
    row = out.getvalue().splitlines()[1]
    assert row == "'=1+2,'@x,'-y,,,0.5,,-0.25,1.0,FINISHED"


# --- crashes, full disks, damaged files ------------------------------------------------


def grow_train_csv(root: Path, times: int) -> None:
    """Repeat the rows of data/oversampled/train.csv, so resize runs long enough to be killed."""
    path = root / "data" / "oversampled" / "train.csv"
    header, *lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(header + "".join(lines * times), encoding="utf-8")


@pytest.fixture
def resize_project(tmp_path) -> Path:
    make_raw_dataset(tmp_path, {"Ann": 6, "Bob": 6}, size=(400, 300))
    write_params(tmp_path, {"oversample": {"strategy": "none"}, "resize": {"image_size": 64, "workers": 1}})
    for stage in ("split", "oversample", "resize"):
        run_stage(stage, tmp_path)
    return tmp_path


def test_kill_9_leftovers_are_removed_by_the_next_run(resize_project):
    root = resize_project
    small = (root / "data" / "oversampled" / "train.csv").read_text(encoding="utf-8")
    grow_train_csv(root, 400)
    proc = interrupt(root, "resize", signal.SIGKILL, lambda: any((root / "data").glob(".resized.tmp-*")))
    assert proc.returncode == -signal.SIGKILL and leftovers(root)  # kill -9: no cleanup could run
    (root / "data" / "oversampled" / "train.csv").write_text(small, encoding="utf-8")
    run_stage("resize", root)
    assert leftovers(root) == []


def test_a_live_runs_temporary_is_left_alone(tmp_path):
    from painter_id.atomic import atomic_dir

    live = tmp_path / f".out.tmp-{os.getppid()}-abc"
    dead = tmp_path / f".out.tmp-{dead_pid()}-abc"
    live.mkdir()
    dead.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("x")
    assert live.exists() and not dead.exists() and (tmp_path / "out" / "x").exists()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_mlflow_run_of_a_killed_process_is_ended_as_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = (
        "import os, signal, mlflow\n"
        "from painter_id.params import MlflowParams\n"
        "from painter_id.tracking import prepare_store, start_run\n"
        f"uri, exp = prepare_store(MlflowParams(tracking_uri={uri!r}))\n"
        "with start_run(mlflow.MlflowClient(uri), exp, 'doomed', {}) as run_id:\n"
        "    print(run_id, os.getpid(), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id, pid = proc.stdout.split()
    import mlflow

    client = mlflow.MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING" and client.get_run(run_id).data.tags[PID_TAG] == pid
    prepare_store(MlflowParams(tracking_uri=uri))
    assert client.get_run(run_id).info.status == "KILLED"


def limited(max_bytes: int):
    """A ``preexec_fn``: files of at most ``max_bytes`` (writing more fails with EFBIG, as a full disk does)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of failing the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def run_limited(stage: str, root: Path, max_bytes: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=root, capture_output=True, text=True,
                          timeout=300, preexec_fn=limited(max_bytes), env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_disk_full_in_resize_is_one_line_and_keeps_previous_outputs(resize_project):
    # No tmpfs needed (mounting needs root): RLIMIT_FSIZE fails writes with EFBIG, which takes the
    # same path as ENOSPC and EDQUOT.
    root = resize_project
    before = snapshot(root / "data" / "resized")
    write_params(root, {"oversample": {"strategy": "none"}, "resize": {"image_size": 128, "workers": 1}})
    proc = run_limited("resize", root, 64 << 10)
    assert_one_line_error(proc, "resize", "no space left", "free disk space", strict=False)
    assert snapshot(root / "data" / "resized") == before and leftovers(root) == []


def test_disk_full_in_download_is_one_line_and_keeps_previous_outputs(tmp_path):
    src = tmp_path / "src" / "images"
    for index, artist in enumerate(("Ann", "Bob")):
        (src / artist).mkdir(parents=True)
        for n in range(2):
            noise = np.random.default_rng(10 * index + n).integers(0, 256, (200, 200, 3), dtype=np.uint8)
            Image.fromarray(noise).save(src / artist / f"{n}.png")  # ~120 kB each, over the limit below
    project = tmp_path / "project"
    make_raw_dataset(project, {"Old One": 2, "Old Two": 2})
    before = snapshot(project / "data")
    write_params(project, {"data": {"source": "path", "path": str(src.parent)}})
    proc = run_limited("download", project, 64 << 10)
    assert_one_line_error(proc, "download", "no space left", strict=False)
    assert snapshot(project / "data") == before and leftovers(project) == []


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY garbage", "zero-d"])
def test_a_damaged_feature_cache_entry_is_recomputed(tmp_path, content):
    path = tmp_path / "entry.npy"
    if content == "zero-d":
        np.save(path, np.float32(3))
    else:
        path.write_bytes(content)
    assert feature_cache.read_cached(path, 5) is None
    np.save(path, np.zeros((5, 8), np.float32))
    assert feature_cache.read_cached(path, 5).shape == (5, 8)


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe", b"[1, 2]", b"null"])
def test_damaged_model_and_data_files_are_one_line(tmp_path, content):
    readers = {"labels.json": model_files.read_labels, "preprocessing.json": model_files.read_preprocessing,
               "run.json": model_files.read_run, "format.json": resized.read_format,
               "model.keras": model_files.load_model}
    for name, read in readers.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(PipelineError, match=rf"{name}: .*run `dvc repro"):
            read(tmp_path / name)
