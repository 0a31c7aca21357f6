"""Interrupted, killed and failed stages: the previous outputs stay, nothing is left behind, a rerun works."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painter_id.core.params import MlflowParams
from painter_id.tracking.store import PID_TAG, prepare_store
from testkit.checks import assert_interrupted, assert_one_line_error, interrupt, leftovers, read_rows, snapshot
from testkit.images import make_raw_dataset
from testkit.project import REPO_ROOT, run_stage, write_params


def test_sigterm_during_download_keeps_previous_data_and_a_rerun_works(tmp_path):
    write_params(tmp_path, {"data": {"source": "synthetic", "synthetic_artists": 2, "synthetic_images": 20}})
    run_stage("download", tmp_path)
    before = snapshot(tmp_path / "data")
    write_params(tmp_path, {"data": {"source": "synthetic", "synthetic_artists": 3, "synthetic_images": 400}})

    proc = interrupt(tmp_path, "download", signal.SIGTERM,
                     lambda: any(p.name.startswith(".download-") for p in (tmp_path / "data").iterdir()))

    assert_interrupted(proc, "download", 143)
    assert snapshot(tmp_path / "data") == before and leftovers(tmp_path) == []
    write_params(tmp_path, {"data": {"source": "synthetic", "synthetic_artists": 3, "synthetic_images": 30}})
    run_stage("download", tmp_path)
    assert len(read_rows(tmp_path / "data" / "raw" / "manifest.csv")) == 30 and leftovers(tmp_path) == []


# One process and a pool of two; SIGINT as a terminal sends it (to the stage and its workers),
# and to a stage started with SIGINT ignored (a background job, `kill -INT` to its pid): Python
# then installs no Ctrl-C handler of its own.
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background-job"])
def test_sigint_during_resize_keeps_previous_arrays_and_a_rerun_works(tmp_path, workers, sigint_ignored):
    make_raw_dataset(tmp_path, {"Ann": 6, "Bob": 6}, size=(400, 300))
    write_params(tmp_path, {"oversample": {"strategy": "none"}, "resize": {"image_size": 64},
                            "runtime": {"workers": workers}})
    for stage in ("split", "oversample", "resize"):
        run_stage(stage, tmp_path)
    before = snapshot(tmp_path / "data" / "resized")
    small = (tmp_path / "data" / "oversampled" / "train.csv").read_text(encoding="utf-8")
    grow_train_csv(tmp_path, 400)

    proc = interrupt(tmp_path, "resize", signal.SIGINT, lambda: any((tmp_path / "data").glob(".resized.tmp-*")),
                     sigint_ignored=sigint_ignored, to_group=not sigint_ignored)

    assert_interrupted(proc, "resize")
    assert snapshot(tmp_path / "data" / "resized") == before and leftovers(tmp_path) == []
    (tmp_path / "data" / "oversampled" / "train.csv").write_text(small, encoding="utf-8")
    run_stage("resize", tmp_path)
    assert snapshot(tmp_path / "data" / "resized") == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background-job"])
def test_sigint_during_oversample_in_a_pool_keeps_previous_copies(tmp_path, sigint_ignored):
    make_raw_dataset(tmp_path, {"Ann": 6, "Bob": 6}, size=(400, 300))
    write_params(tmp_path, {"oversample": {"strategy": "min_count", "min_count": 8}, "runtime": {"workers": 2}})
    for stage in ("split", "oversample"):
        run_stage(stage, tmp_path)
    before = snapshot(tmp_path / "data" / "oversampled")
    write_params(tmp_path, {"oversample": {"strategy": "min_count", "min_count": 20000}, "runtime": {"workers": 2}})

    proc = interrupt(tmp_path, "oversample", signal.SIGINT, lambda: any((tmp_path / "data").glob(".oversampled.tmp-*")),
                     sigint_ignored=sigint_ignored, to_group=not sigint_ignored)

    assert_interrupted(proc, "oversample")
    assert snapshot(tmp_path / "data" / "oversampled") == before and leftovers(tmp_path) == []


def grow_train_csv(root: Path, times: int) -> None:
    """Repeat the rows of data/oversampled/train.csv, so resize runs long enough to be killed."""
    path = root / "data" / "oversampled" / "train.csv"
    header, *lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(header + "".join(lines * times), encoding="utf-8")


@pytest.fixture
def resize_project(tmp_path) -> Path:
    make_raw_dataset(tmp_path, {"Ann": 6, "Bob": 6}, size=(400, 300))
    write_params(tmp_path, {"oversample": {"strategy": "none"}, "resize": {"image_size": 64}, "runtime": {"workers": 1}})
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
    from painter_id.core.atomic import atomic_dir

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
        "from painter_id.core.params import MlflowParams\n"
        "from painter_id.tracking.runs import start_run\nfrom painter_id.tracking.store import prepare_store\n"
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
    write_params(root, {"oversample": {"strategy": "none"}, "resize": {"image_size": 128}, "runtime": {"workers": 1}})
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
