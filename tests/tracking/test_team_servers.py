"""A team's setup, started for real: MLflow on PostgreSQL with S3 artifacts and basic auth, a DVC S3 remote.

One module-wide set of servers on 127.0.0.1 (moto S3, PostgreSQL from the pgserver wheel,
``mlflow server --app-name basic-auth``), one tiny project whose baseline and a queued sweep
of two experiments (``dvc queue start -j 2``) log to that server with a user's password
from the environment; then the DVC side: ``dvc push``, a fresh clone that ``dvc pull``s
and has nothing to recompute, ``dvc exp push``/``pull``/``apply`` through a bare git remote.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import boto3  # noqa: F401  # the team extra must be installed: a missing package fails, never skips
import dvc_s3  # noqa: F401
import mlflow
import pgserver  # noqa: F401
import psycopg  # noqa: F401
import pytest
import yaml

from painter_id.core.errors import PipelineError
from painter_id.core.params import MlflowParams
from painter_id.tracking.store import prepare_store
from testkit import servers as ts
from testkit.project import STAGES, TINY, dvc, make_project, run, wait_for_queue

ARTIFACTS_BUCKET = "mlflow-artifacts"
DVC_BUCKET = "dvc-store"
# Two, run side by side by `dvc queue start -j 2` (a third would only queue behind them).
EXPERIMENTS = {"lr-a": 0.002, "lr-b": 0.003}
ADMIN = ("admin", secrets.token_hex(8))
USER = ("alice", secrets.token_hex(8))


@pytest.fixture(scope="module")
def servers():
    """moto S3 with two buckets, PostgreSQL with two databases, the MLflow server; user ``alice``."""
    base = Path(tempfile.mkdtemp(prefix="team-servers-"))
    os.chmod(base, 0o755)  # PostgreSQL runs as nobody under root and must reach its folder
    started = []
    postgres = None
    try:
        moto, s3_url = ts.start_moto(base / "moto.log")
        started.append(moto)
        for bucket in (ARTIFACTS_BUCKET, DVC_BUCKET):
            ts.s3_client(s3_url).create_bucket(Bucket=bucket)
        postgres = ts.start_postgres(base / "pg")
        backend, users = postgres.createdb("mlflow"), postgres.createdb("mlflow_auth")
        config = ts.write_auth_config(base / "basic_auth.ini", users, *ADMIN)
        server, url = ts.start_mlflow(backend, f"s3://{ARTIFACTS_BUCKET}/mlartifacts", s3_url, config,
                                      base / "mlflow.log", secret_key=secrets.token_hex(16))
        started.append(server)
        ts.create_user(url, ADMIN, USER)
        yield {"s3": s3_url, "mlflow": url, "logs": base}
    finally:
        for proc in reversed(started):
            ts.stop(proc)
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


def client_env(servers: dict) -> dict:
    """What a team member's shell holds: the server, their MLflow login, the S3 keys for DVC."""
    return {**ts.S3_ENV, "MLFLOW_TRACKING_URI": servers["mlflow"], "MLFLOW_TRACKING_USERNAME": USER[0],
            "MLFLOW_TRACKING_PASSWORD": USER[1], "DVC_NO_ANALYTICS": "1", "DVC_ROOT": None, "DVC_EXP_NAME": None}


@pytest.fixture(scope="module")
def sweep(servers, tmp_path_factory):
    """Baseline ``dvc repro`` and a queued sweep of two experiments against the server, then ``dvc push``."""
    env = client_env(servers)
    root = tmp_path_factory.mktemp("team")
    project = make_project(root / "one", TINY)
    out = []
    dvc(project, "remote", "add", "-d", "store", f"s3://{DVC_BUCKET}/dvc", env=env)
    dvc(project, "remote", "modify", "store", "endpointurl", servers["s3"], env=env)
    out.append(dvc(project, "repro", env=env))
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "baseline on the team's servers"], project)
    run(["git", "init", "-q", "--bare", "-b", "main", str(root / "origin.git")], root)
    run(["git", "remote", "add", "origin", str(root / "origin.git")], project)
    run(["git", "push", "-q", "origin", "main"], project)
    for name, rate in EXPERIMENTS.items():
        dvc(project, "exp", "run", "--queue", "-n", name, "-S", f"train.learning_rate={rate}", env=env)
    out.append(dvc(project, "queue", "start", "-j", "2", env=env))
    status = wait_for_queue(project, env)
    out.append(dvc(project, "push", env=env))
    out.append(dvc(project, "exp", "push", "origin", "lr-b", env=env))
    return {"project": project, "root": root, "env": env, "status": status, "outputs": out}


def team_runs(servers: dict) -> list:
    """Every run of the pipeline's experiment on the server, read with alice's login."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", USER[0])
        patch.setenv("MLFLOW_TRACKING_PASSWORD", USER[1])
        client = mlflow.MlflowClient(servers["mlflow"])
        experiment = client.get_experiment_by_name("painter-identification")
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        history = {r.info.run_id: [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")] for r in runs}
    return [(r, history[r.info.run_id]) for r in runs]


@pytest.mark.slow
def test_queued_sweep_logs_finished_runs_with_artifacts_in_the_bucket(servers, sweep):
    assert sweep["status"].count("Success") == len(EXPERIMENTS), sweep["status"]
    runs = team_runs(servers)
    assert len(runs) == 1 + len(EXPERIMENTS)  # the baseline and each queued experiment
    rates = sorted(float(r.data.params["train.learning_rate"]) for r, _ in runs)
    assert rates == [0.001, *EXPERIMENTS.values()]
    objects = ts.bucket_objects(servers["s3"], ARTIFACTS_BUCKET)
    for run_, steps in runs:
        assert run_.info.status == "FINISHED"
        assert run_.data.params["model.backbone"] == "simple_cnn"
        assert steps == [1, 2]  # one loss per epoch
        assert 0.0 <= run_.data.metrics["test_accuracy"] <= 1.0
        assert run_.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: clients need no S3 keys
        names = {key.rsplit("/", 1)[-1] for key in objects if f"/{run_.info.run_id}/artifacts/" in key}
        assert {"params.yaml", "history.csv", "labels.json"} <= names, names
    assert {r.data.tags.get("dvc.exp_name") for r, _ in runs} == {None, *EXPERIMENTS}


@pytest.mark.slow
def test_server_refuses_requests_without_the_right_credentials(servers, sweep):
    search = f"{servers['mlflow']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert ts.http_status(search) == 401
    assert ts.http_status(search, (USER[0], "wrong-password-123")) == 401
    assert ts.http_status(search, USER) == 200


@pytest.mark.slow
def test_no_password_in_any_written_file_artifact_or_output(servers, sweep):
    project = sweep["project"]
    written = [p for p in sweep["root"].rglob("*") if p.is_file()]
    assert project / "dvc.lock" in written and project / "models" / "run.json" in written
    assert any(".dvc/tmp/exps" in p.as_posix() for p in written)  # the queued runs' logs are scanned too
    objects = {**ts.bucket_objects(servers["s3"], ARTIFACTS_BUCKET), **ts.bucket_objects(servers["s3"], DVC_BUCKET)}
    run_info = json.loads((project / "models" / "run.json").read_text())
    assert run_info["tracking_uri"] == servers["mlflow"]
    for secret in (USER[1], ADMIN[1]):
        for path in written:
            assert secret.encode() not in path.read_bytes(), path
        for key, body in objects.items():
            assert secret.encode() not in body, key
        for proc in sweep["outputs"]:
            assert secret not in proc.stdout + proc.stderr
        for run_, _ in team_runs(servers):
            assert secret not in json.dumps([run_.data.params, run_.data.tags])


@pytest.mark.slow
def test_prepare_store_works_with_the_login_and_fails_fast_without(servers, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", USER[1])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, experiment_id = prepare_store(MlflowParams(tracking_uri=servers["mlflow"], experiment="team-check"))
    assert uri == servers["mlflow"] and experiment_id
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password-123")
    start = time.monotonic()
    with pytest.raises(PipelineError) as info:
        prepare_store(MlflowParams(tracking_uri=servers["mlflow"], experiment="team-check"))
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert "\n" not in message and servers["mlflow"] in message and "wrong-password" not in message


@pytest.fixture(scope="module")
def second_clone(servers, sweep):
    """A fresh clone of the bare remote: ``dvc pull``, ``dvc status``, ``dvc repro``, then the pushed experiment."""
    env = sweep["env"]
    clone = sweep["root"] / "two"
    run(["git", "clone", "-q", str(sweep["root"] / "origin.git"), str(clone)], sweep["root"])
    log = {"pull": dvc(clone, "pull", env=env).stdout}
    model = clone / "models" / "model.keras"
    log["model_mtime"] = model.stat().st_mtime_ns
    log["status"] = dvc(clone, "status", "--json", env=env).stdout
    log["repro"] = dvc(clone, "repro", env=env).stdout
    log["model_mtime_after"] = model.stat().st_mtime_ns
    log["exp_pull"] = dvc(clone, "exp", "pull", "origin", "lr-b", env=env).stdout
    log["exp_show"] = dvc(clone, "exp", "show", "--json", env=env).stdout
    log["apply"] = dvc(clone, "exp", "apply", "lr-b", env=env).stdout
    log["status_after_apply"] = dvc(clone, "status", "--json", env=env).stdout
    return clone, log


@pytest.mark.slow
def test_fresh_clone_pulls_and_has_nothing_to_recompute(sweep, second_clone):
    clone, log = second_clone
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    recorded = {out["path"]: out["md5"] for out in lock["stages"]["train"]["outs"]}
    pulled = hashlib.md5((clone / "metrics" / "history.csv").read_bytes()).hexdigest()
    assert pulled == recorded["metrics/history.csv"] and (clone / "models" / "model.keras").is_file()
    # Only `source` (always changed: it looks at the data source each time) is listed.
    assert set(json.loads(log["status"])) <= {"source"}, log["status"]
    assert not any(f"Running stage '{stage}'" in log["repro"] for stage in STAGES), log["repro"]
    assert log["model_mtime_after"] == log["model_mtime"]


@pytest.mark.slow
def test_experiment_pushed_from_one_clone_is_pulled_shown_and_applied_in_another(sweep, second_clone):
    clone, log = second_clone
    assert "lr-b" in log["exp_show"]
    params = yaml.safe_load((clone / "params.yaml").read_text())
    assert params["train"]["learning_rate"] == EXPERIMENTS["lr-b"]
    metrics = json.loads((clone / "metrics" / "train.json").read_text())
    assert metrics["epochs_run"] == 2
    assert set(json.loads(log["status_after_apply"])) <= {"source"}, log["status_after_apply"]


# --- multi-worker training: only the chief records ----------------------------------------


