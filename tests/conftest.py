"""Shared fixtures: real images on disk, real project copies, the real material in ../shared."""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import json
import os
import secrets
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SAMPLE = SHARED / "artworks-sample"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"

# Keep TensorFlow quiet and on the CPU in every test process, including subprocesses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def shared_sample() -> Path:
    """The 431 real paintings in ../shared (present in CI; a user's clone has none)."""
    if not (SAMPLE / "artists.csv").exists():
        pytest.skip("../shared/artworks-sample is absent (CI always has it)")
    return SAMPLE


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    """The only ImageNet weights reachable offline: MobileNet v1, alpha 0.25, no top."""
    if not MOBILENET_WEIGHTS.exists():
        pytest.skip("../shared/weights is absent (CI always has it)")
    return MOBILENET_WEIGHTS


def painting(rng: np.random.Generator, hue: int, size=(48, 40)) -> Image.Image:
    """A small random image whose colours lean towards ``hue`` (0..2), so classes differ."""
    arr = rng.integers(0, 120, size=(size[1], size[0], 3), dtype=np.uint8)
    arr[..., hue % 3] = np.clip(arr[..., hue % 3].astype(int) + 120, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def make_raw_dataset(root: Path, counts: dict[str, int], seed: int = 0, size=(48, 40)) -> Path:
    """Write ``root/data/raw`` as the download stage does: images/<Folder>/, artists.csv, manifest.csv."""
    from painter_id.images import sha256_file

    rng = np.random.default_rng(seed)
    raw = root / "data" / "raw"
    rows = []
    for index, (artist, count) in enumerate(counts.items()):
        folder = artist.replace(" ", "_")
        (raw / "images" / folder).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            rel = f"images/{folder}/{folder}_{n + 1}.jpg"
            painting(rng, index, size).save(raw / rel, quality=90)
            rows.append([rel, artist, sha256_file(raw / rel), size[0], size[1], "RGB"])
    with open(raw / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "artist", "sha256", "width", "height", "mode"])
        writer.writerows(rows)
    with open(raw / "artists.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "paintings"])
        for index, (artist, count) in enumerate(counts.items()):
            writer.writerow([index, artist, count])
    (raw / "rejected.csv").write_text("path,reason\n", encoding="utf-8")
    return raw


@pytest.fixture
def raw_dataset(tmp_path: Path) -> Path:
    """``tmp_path/data/raw`` with three artists of 30, 12 and 6 small JPEGs."""
    return make_raw_dataset(tmp_path, {"Claude Monet": 30, "Albrecht Dürer": 12, "Titian": 6})


def make_resized_dataset(root: Path, artists=("Ann", "Bob", "Cy"), n_train=24, n_test=9, size=32, seed=0,
                         mode: str = "pad") -> Path:
    """Write ``root/data/resized`` as the resize stage does: {train,test}.npy + .csv in the same order, format.json."""
    rng = np.random.default_rng(seed)
    out = root / "data" / "resized"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = [artists[i % len(artists)] for i in range(n)]
        images = np.stack(
            [np.asarray(painting(rng, artists.index(a), (size, size)), dtype=np.uint8) for a in labels]
        )
        np.save(out / f"{split}.npy", images)
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "artist", "source"])
            for i, artist in enumerate(labels):
                writer.writerow([f"data/raw/images/{artist}/{artist}_{i}.jpg", artist, ""])
    (out / "format.json").write_text(json.dumps({"size": size, "mode": mode}), encoding="utf-8")
    return out


@pytest.fixture
def resized_dataset(tmp_path: Path) -> Path:
    """``tmp_path/data/resized`` with three artists, 24 train and 9 test images of 32 px."""
    return make_resized_dataset(tmp_path)


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder without logging every request to stderr."""

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve_folder(root: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[ThreadingHTTPServer]:
    """A local HTTP server (127.0.0.1, free port, from a thread) serving ``root`` while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class AuthHandler(QuietHandler):
    """Serves files only with the Basic credentials in ``self.server.expected``, else 401."""

    def allowed(self) -> bool:
        if self.headers.get("Authorization") == self.server.expected:
            return True
        self.send_error(401)
        return False

    def do_GET(self) -> None:
        if self.allowed():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self.allowed():
            super().do_HEAD()


@pytest.fixture
def private_web(tmp_path):
    """A local server needing user ``art`` and a random password; yields (folder, base URL, password)."""
    root = tmp_path / "www"
    root.mkdir()
    password = secrets.token_hex(16)
    with serve_folder(root, AuthHandler) as server:
        server.expected = "Basic " + base64.b64encode(f"art:{password}".encode()).decode()
        yield root, f"127.0.0.1:{server.server_port}", password


# The longest files first (measured: each of the first three takes minutes of one worker), so the
# two xdist workers finish together instead of one running a long file alone at the end. pyproject
# passes --no-loadscope-reorder: xdist's own order (most tests first) would put test_workflow and
# test_team, few tests but minutes of fixtures, last.
LONGEST_FIRST = ("test_workflow.py", "test_backbones.py", "test_team.py", "test_performance.py", "test_train.py",
                 "test_hostile.py", "test_multi_worker.py", "test_source.py", "test_mlflow_model.py",
                 "test_tracking.py", "test_crossval.py", "test_pipeline.py")


def pytest_collection_modifyitems(items: list) -> None:
    """Order the collected tests by file, longest files first (a stable sort keeps each file's own order)."""
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


# Re-exported so test modules keep importing them from here.
from tests.project import (PROJECT_FILES, dvc, make_project, run, run_stage, wait_for_queue,  # noqa: E402,F401
                           write_params)
