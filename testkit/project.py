"""Temporary copies of the project as real git + DVC repositories, for tests and benchmarks.

No pytest here and no side effects on import, so ``benchmarks/`` can use it too.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real material beside the repository (in CI too); a user's clone has none.
SHARED = REPO_ROOT.parent / "shared"
SAMPLE = SHARED / "artworks-sample"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


def write_params(root: Path, overrides: dict[str, dict]) -> Path:
    """Write ``root/params.yaml``: the project's defaults with ``overrides`` merged per section."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None,
        timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command, returning its output; on an unexpected failure show what it printed."""
    # DVC runs stage commands as `python -m ...`: that must be this interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    full_env = {**os.environ, "PATH": path, **(env or {})}
    # A value of None in ``env`` removes that variable.
    full_env = {key: value for key, value in full_env.items() if value is not None}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_stage(name: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m stages.<name>`` in ``cwd`` the way DVC does."""
    return run([sys.executable, "-m", f"stages.{name}"], cwd, check=check, env={"PYTHONPATH": str(REPO_ROOT), **(env or {})})


def dvc(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``dvc`` CLI of this environment in ``cwd``."""
    return run([sys.executable, "-m", "dvc", *args], cwd, check=check, env=env)


PROJECT_FILES = ["stages", "painter_id", "presets", "unused.txt", "params.yaml", "dvc.yaml", ".dvcignore", ".gitignore",
                 "pyproject.toml"]


def make_project(dest: Path, overrides: dict[str, dict] | None = None) -> Path:
    """A fresh git + DVC repository holding a copy of the project's code and pipeline."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    if overrides:
        write_params(dest, overrides)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "config", "user.email", "tests@example.com"], dest)
    run(["git", "config", "user.name", "tests"], dest)
    dvc(dest, "init", "-q")
    dvc(dest, "config", "core.analytics", "false")
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "project"], dest)
    return dest


def wait_for_queue(project: Path, env: dict | None = None, timeout: float = 600) -> str:
    """Wait until ``dvc queue status`` shows nothing queued or running; return that status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dvc(project, "queue", "status", env=env).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"queue still busy after {timeout} s:\n{status}")


# The stages of dvc.yaml in pipeline order, the always-changed source stage aside.
STAGES = ("download", "split", "oversample", "resize", "features", "train", "evaluate")
# A tiny training: the small CNN, two epochs.
TINY = {"model": {"backbone": "simple_cnn", "weights": "random", "frozen_layers": 0},
        "train": {"epochs": 2, "batch_size": 8}}
# A frozen backbone: MobileNet (random weights, alpha 0.25) frozen whole, its head trained.
FROZEN = {"model": {"backbone": "MobileNet", "alpha": 0.25, "weights": "random", "frozen_layers": "all", "dropout": 0.3},
          "train": {"epochs": 3, "batch_size": 8, "flip": False, "learning_rate": 0.01}}


def setup_project(root: Path, monkeypatch, overrides: dict, base: dict = TINY) -> Path:
    """Make ``root`` the project dir (cwd) with ``base`` params updated by ``overrides`` and its own MLflow store.

    Returns the store's database path. ``monkeypatch`` (pytest's) undoes the directory and
    environment changes after the test.
    """
    monkeypatch.chdir(root)
    for name in ("DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    db = root / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    write_params(root, {section: {**base.get(section, {}), **overrides.get(section, {})}
                        for section in {*base, *overrides}})
    return db


def setup_frozen(root: Path, monkeypatch, overrides: dict) -> Path:
    """:func:`setup_project` with the frozen-backbone defaults (:data:`FROZEN`)."""
    return setup_project(root, monkeypatch, overrides, FROZEN)


def cached_files(root: Path) -> list[Path]:
    """The frozen-feature cache's entries under the project ``root``."""
    return sorted((root / ".cache" / "features").glob("*.npy"))


def stage_main(*names: str) -> None:
    """Run the stages ``names`` in this process, in order, in the current directory: each ``main()``, as ``python -m``.

    What a stage does, not how (its functions are not a library): the test needs no
    interpreter and TensorFlow start-up per run, and a stage's error arrives as the exception
    its runner would turn into a one-line message.
    """
    for name in names:
        importlib.import_module(f"stages.{name}").main()


def download(project: Path, monkeypatch, **data) -> Path:
    """Run the download stage in-process in ``project`` with ``data`` params; return data/raw."""
    write_params(project, {"data": data})
    monkeypatch.chdir(project)
    stage_main("download")
    return project / "data" / "raw"
