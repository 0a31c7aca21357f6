"""MLflow store resolution, creation under concurrency, unusable stores, run lifecycle."""

from __future__ import annotations

import getpass
import multiprocessing
import re
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from painter_id.core import workspace
from painter_id.core.errors import PipelineError
from painter_id.core.params import MlflowParams
from painter_id.tracking import runs, store
from painter_id.tracking.store import prepare_store

CLEAN_ENV = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)


def test_default_store_is_in_dvc_root(tmp_path):
    uri = store.resolve_tracking_uri(MlflowParams(), cwd=tmp_path, env={"DVC_ROOT": "/repo/main"})
    assert uri == "sqlite:////repo/main/mlflow.db"


@pytest.mark.parametrize("env_root, cwd", [
    (None, "/repo/main/.dvc/tmp/exps/tmpab12/sub"),
    ("/repo/main/.dvc/tmp/exps/tmpab12", "/repo/main/.dvc/tmp/exps/tmpab12"),
])
def test_temporary_experiment_copy_logs_into_the_main_workspace(env_root, cwd):
    env = {"DVC_ROOT": env_root} if env_root else {}
    uri = store.resolve_tracking_uri(MlflowParams(), cwd=Path(cwd), env=env)
    assert uri == "sqlite:////repo/main/mlflow.db"


def test_git_toplevel_then_cwd_when_no_dvc_root(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    (tmp_path / "repo" / "sub").mkdir()
    assert workspace.main_workspace(tmp_path / "repo" / "sub", env={}) == (tmp_path / "repo").resolve()
    (tmp_path / "plain").mkdir()
    assert workspace.main_workspace(tmp_path / "plain", env={}) == tmp_path / "plain"


def test_env_uri_wins_and_relative_sqlite_param_is_resolved_against_the_workspace():
    params = MlflowParams(tracking_uri="sqlite:///runs/m.db")
    env = {"DVC_ROOT": "/repo/main"}
    assert store.resolve_tracking_uri(params, env=env) == "sqlite:////repo/main/runs/m.db"
    assert store.resolve_tracking_uri(params, env={**env, "MLFLOW_TRACKING_URI": "http://mlflow:5000"}) \
        == "http://mlflow:5000"
    absolute = MlflowParams(tracking_uri="sqlite:////srv/m.db")
    assert store.resolve_tracking_uri(absolute, env=env) == "sqlite:////srv/m.db"


def _prepare_in_child(uri: str, barrier) -> str:
    # Every child reaches the store at the same moment: the race the lock must win.
    barrier.wait()
    return store.prepare_store(MlflowParams(tracking_uri=uri, experiment="race"))[1]


@pytest.mark.slow
def test_four_processes_preparing_a_fresh_store_leave_one_working_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            ids = pool.starmap(_prepare_in_child, [(uri, barrier)] * 4, chunksize=1)

    assert len(set(ids)) == 1
    client = mlflow.MlflowClient(uri)
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    assert [e.name for e in experiments] == ["race"]
    run = client.create_run(ids[0])
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert experiments[0].artifact_location == (tmp_path / "mlartifacts").as_uri()


def test_store_in_a_missing_folder_is_a_one_line_error(tmp_path):
    params = MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}")
    with pytest.raises(PipelineError) as info:
        store.prepare_store(params)
    assert "\n" not in str(info.value) and str(tmp_path / "nope") in str(info.value)
    assert not (tmp_path / "nope").exists()


def test_store_that_cannot_be_written_is_a_one_line_error(tmp_path):
    (tmp_path / "mlflow.db").mkdir()  # even root cannot open a folder as the database
    with pytest.raises(PipelineError, match="not writable"):
        store.prepare_store(MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))


def test_unreachable_server_fails_fast(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(PipelineError) as info:
        store.prepare_store(MlflowParams())
    assert time.monotonic() - start < 30
    assert str(info.value) == (f"MLflow tracking store http://127.0.0.1:{port}: the server does not answer (connection "
                               "refused): start it (for a trial: painter-trial start), or correct MLFLOW_TRACKING_URI "
                               "(or mlflow.tracking_uri)")


@pytest.mark.parametrize("error, status", [(None, "FINISHED"), (RuntimeError, "FAILED"),
                                           (KeyboardInterrupt, "KILLED")])
def test_run_always_ends_with_a_final_status(tmp_path, error, status):
    uri, experiment_id = store.prepare_store(MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"))
    client = mlflow.MlflowClient(uri)
    ids = []
    try:
        with runs.start_run(client, experiment_id, "r", {"k": "v"}) as run_id:
            ids.append(run_id)
            if error:
                raise error("stop")
    except (RuntimeError, KeyboardInterrupt):
        pass
    run = client.get_run(ids[0])
    assert run.info.status == status and run.data.tags["k"] == "v" and run.info.run_name == "r"


def test_run_name_and_tags_follow_dvc_experiments(tmp_path):
    assert runs.run_name("MobileNet", 40, env={"DVC_EXP_NAME": "brave-owl"}) == "brave-owl"
    assert re.fullmatch(r"MobileNet-frozen40-\d{8}-\d{6}", runs.run_name("MobileNet", 40, env={}))

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    subprocess.run([*git, "remote", "add", "origin", "https://bob:s3cret@git.example.com/team/painter-id.git"], check=True)
    tags = runs.run_tags(tmp_path, env={"DVC_EXP_NAME": "brave-owl", "DVC_EXP_BASELINE_REV": "abc123",
                                        "MLFLOW_TRACKING_USERNAME": "alice"}, source="stages/train.py")
    assert tags == {"git.commit": head, "mlflow.source.git.commit": head, "dvc.exp_name": "brave-owl",
                    "dvc.baseline_rev": "abc123", "mlflow.user": "alice", "mlflow.source.name": "stages/train.py",
                    "mlflow.source.type": "LOCAL",
                    "mlflow.source.git.repoURL": "https://git.example.com/team/painter-id.git"}  # no password
    local = runs.run_tags(tmp_path, env={})
    assert local["dvc.baseline_rev"] == head
    assert local["mlflow.user"] == getpass.getuser()  # no login: the local user, as MLflow's own runs have


def test_a_run_shows_its_user_and_source_in_the_store(tmp_path):
    uri, experiment_id = store.prepare_store(MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"))
    client = mlflow.MlflowClient(uri)
    tags = runs.run_tags(tmp_path, env={"MLFLOW_TRACKING_USERNAME": "alice"}, source="stages/train.py")
    with runs.start_run(client, experiment_id, "r", tags) as run_id:
        pass
    run = client.get_run(run_id)
    assert run.info.user_id == "alice"  # what the UI's User column shows ("unknown" without the tag)
    assert run.data.tags["mlflow.source.name"] == "stages/train.py"


@pytest.mark.slow
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


def test_a_store_being_created_elsewhere_is_waited_for_as_long_as_the_environment_says(tmp_path, monkeypatch):
    from filelock import FileLock

    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("PAINTER_ID_LOCK_WAIT_SECONDS", "0.5")
    with FileLock(f"{db}.lock"):  # another process creating the store
        with pytest.raises(PipelineError) as info:
            prepare_store(MlflowParams(tracking_uri=f"sqlite:///{db}"))
    assert str(info.value) == (f"MLflow store {db}: locked by another process for 0.5 s (PAINTER_ID_LOCK_WAIT_SECONDS "
                               "sets how long to wait); let it finish or stop it, then run again")
    monkeypatch.delenv("PAINTER_ID_LOCK_WAIT_SECONDS")
    assert prepare_store(MlflowParams(tracking_uri=f"sqlite:///{db}"))[1]  # once it is free, the store is created
