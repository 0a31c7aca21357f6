"""Shared fixtures: real images on disk, real project copies, the real material in ../shared."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
from pathlib import Path

import pytest
from PIL import Image

from painter_id.cli import register
from testkit.images import make_raw_dataset, make_resized_dataset
from testkit.project import MOBILENET_WEIGHTS, SAMPLE, run, setup_project, stage_main
from testkit.web import AuthHandler, serve_folder

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


@pytest.fixture
def raw_dataset(tmp_path: Path) -> Path:
    """``tmp_path/data/raw`` with three artists of 30, 12 and 6 small JPEGs."""
    return make_raw_dataset(tmp_path, {"Claude Monet": 30, "Albrecht Dürer": 12, "Titian": 6})


@pytest.fixture
def resized_dataset(tmp_path: Path) -> Path:
    """``tmp_path/data/resized`` with three artists, 24 train and 9 test images of 32 px."""
    return make_resized_dataset(tmp_path)


@pytest.fixture
def web(tmp_path):
    """A local HTTP server (127.0.0.1, from a thread) serving ``tmp_path/www``; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_folder(root) as server:
        yield root, f"http://127.0.0.1:{server.server_port}"


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
LONGEST_FIRST = ("test_walkthrough.py", "test_workflow.py", "test_backbones.py", "test_team_servers.py",
                 "test_training.py", "test_bad_input.py", "test_distribute.py", "test_source_changes.py",
                 "test_mlflow_model.py", "test_serving.py", "test_store.py", "test_crossval.py", "test_data_stages.py")


def pytest_collection_modifyitems(items: list) -> None:
    """Order the collected tests by file, longest files first (a stable sort keeps each file's own order)."""
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A git project whose run was trained (with its MLflow Model), evaluated and registered as ``@champion``."""
    root = tmp_path_factory.mktemp("served")
    make_resized_dataset(root, mode="crop")
    for cmd in (["git", "init", "-q"], ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q",
                                        "--allow-empty", "-m", "start"]):
        run(cmd, root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        db = setup_project(root, monkeypatch, {"train": {"epochs": 1}})
        monkeypatch.setenv("DVC_EXP_NAME", "tiny-lamb")
        stage_main("features", "train")
        stage_main("evaluate")
        register.main([])
    uri = f"sqlite:///{db}"
    return {"root": root, "uri": uri, "run": json.loads((root / "models" / "run.json").read_text()),
            "eval": json.loads((root / "metrics" / "eval.json").read_text())}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Real paintings of any size (when ../shared has them) and made-up ones, JPEG and PNG, wide and tall."""
    folder = tmp_path_factory.mktemp("images")
    sample = SAMPLE / "images" / "Titian"
    for src in sorted(sample.iterdir())[:2] if sample.is_dir() else []:
        shutil.copy(src, folder / src.name)
    Image.new("RGB", (300, 90), (200, 40, 30)).save(folder / "wide.png")
    Image.effect_noise((70, 260), 60).convert("RGB").save(folder / "tall.jpg")
    return folder


@pytest.fixture
def in_store(store, monkeypatch):
    """Commands run in the project with its store, as a user would."""
    monkeypatch.chdir(store["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    return store
