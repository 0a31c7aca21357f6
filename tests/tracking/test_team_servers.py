"""docs/team-setup.md run as written: two fresh clones on one machine, ``painter-trial`` for the servers.

One module-wide run of the page (:mod:`testkit.docs_script`): its ``console`` blocks, command
by command, in three shells (admin, alice, bob) with a fresh home folder holding a copy of
the project with the tests' small configuration as ``~/painter-id``. First the admin's
``painter-trial start`` (fixture ``trial``), on which the error lines are tried while its
buckets are still empty; then the rest but the final ``painter-trial stop`` (fixture
``team``): alice's remote, baseline and queued sweep of two experiments (``-j 2``) logged
to the server with her login, bob's clone that pulls, applies her experiment; last the
stop, after which nothing may run and the data must still be there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3  # noqa: F401  # the team extra must be installed: a missing package fails, never skips
import dvc_s3  # noqa: F401
import mlflow
import pgserver  # noqa: F401
import psycopg
import pytest
import yaml

from painter_id.core.errors import PipelineError
from painter_id.core.params import MlflowParams
from painter_id.tracking import compare, trial_stack
from painter_id.tracking.store import prepare_store
from testkit import docs_script
from testkit import servers as ts
from testkit.project import REPO_ROOT, TINY, make_project, run

PAGE = REPO_ROOT / "docs" / "team-setup.md"
COMMANDS = docs_script.parse(PAGE)
START = next(i for i, c in enumerate(COMMANDS) if c.text.startswith("painter-trial start"))
EXPERIMENTS = {"lr-a": 0.002, "lr-b": 0.003}  # what the page queues
WRONG = "wrong-password-123"


def test_the_page_sets_the_remote_up_before_anything_is_queued_and_ends_with_the_stop():
    texts = [c.text for c in COMMANDS]
    first = {key: next(i for i, t in enumerate(texts) if key in t)
             for key in ("dvc remote add", "git push", "dvc exp run", "dvc push", "dvc exp show")}
    assert first["dvc remote add"] < first["git push"] < first["dvc push"] < first["dvc exp run"]
    assert "git add .dvc/config" in texts[first["git push"]]  # the commit that adds the remote is pushed
    assert "-A" in texts[first["dvc exp show"]].split()  # a pulled experiment is listed only with -A
    assert COMMANDS[-1].terminal == "admin" and COMMANDS[-1].text == "painter-trial stop"
    assert {c.terminal for c in COMMANDS} == {"admin", "alice", "bob"}
    assert 'painter-trial = "painter_id.cli.trial:cli"' in (REPO_ROOT / "pyproject.toml").read_text()


@pytest.fixture(scope="module")
def trial():
    """A fresh home (``~/painter-id``: the project, tiny params), three shells, and the page up to the trial's start."""
    home = Path(tempfile.mkdtemp(prefix="team-home-"))
    os.chmod(home, 0o755)  # as root PostgreSQL runs as nobody, who must reach ~/team/.painter-trial
    bin_dir = Path(tempfile.mkdtemp(prefix="team-bin-"))
    folder = home / "team" / trial_stack.DEFAULT_FOLDER
    try:
        project = make_project(home / "painter-id", TINY)
        # The repository's DVC settings (autostage), so that DVC prints what it prints in a real checkout.
        shutil.copy(REPO_ROOT / ".dvc" / "config", project / ".dvc" / "config")
        run(["git", "commit", "-q", "-am", "the repository's DVC settings"], project)
        env = docs_script.base_environment(home, [docs_script.console_scripts(bin_dir, REPO_ROOT, sys.executable),
                                                  Path(sys.executable).parent])
        shells = {name: docs_script.Terminal(name, home, dict(env)) for name in ("admin", "alice", "bob")}
        done = docs_script.run_page(COMMANDS[:START + 1], shells)
        state, keys = trial_stack.members(folder)
        yield {"home": home, "folder": folder, "shells": shells, "done": done, "state": state, "keys": keys}
    finally:
        if (folder / "stack.json").exists():  # a test failed before the page's stop: nothing may stay running
            trial_stack.stop_stack(folder)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(bin_dir, ignore_errors=True)


def login(trial: dict, user: str) -> dict:
    """A member's shell variables, from the exports ``painter-trial env`` prints."""
    exports = trial_stack.member_exports(trial["state"], trial["keys"], user).split()
    return dict(item.split("=", 1) for item in exports if "=" in item)


@pytest.fixture
def as_alice(trial, monkeypatch):
    """This process with alice's exports."""
    for key, value in login(trial, "alice").items():
        monkeypatch.setenv(key, value)
    return trial


@pytest.mark.slow
def test_trial_has_the_databases_buckets_and_logins_of_the_page(trial):
    state, keys = trial["state"], trial["keys"]
    with psycopg.connect(host="127.0.0.1", port=state.ports["postgres"], user="postgres", password=keys["postgres"],
                         dbname="postgres") as conn:
        assert {"mlflow", "mlflow_auth"} <= {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert {b["Name"] for b in trial_stack.s3_client(state.s3_url).list_buckets()["Buckets"]} == set(trial_stack.BUCKETS)
    search = f"{state.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert ts.http_status(search) == 401
    assert ts.http_status(search, ("alice", WRONG)) == 401
    assert ts.http_status(search, ("alice", keys["users"]["alice"])) == 200
    assert ts.http_status(search, ("bob", keys["users"]["bob"])) == 200
    for path in (trial["folder"] / "secrets.json", trial["folder"] / "basic_auth.ini", trial["folder"] / "pgpass"):
        assert path.stat().st_mode & 0o077 == 0, path  # passwords: the owner's alone


# --- error lines of the team path: each names the fix --------------------------------------

@pytest.mark.slow
def test_wrong_or_missing_login_names_the_variables(as_alice, monkeypatch):
    uri = as_alice["state"].mlflow_url
    assert prepare_store(MlflowParams(experiment="team-check"))[0] == uri
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WRONG)
    for attempt in (lambda: prepare_store(MlflowParams(experiment="team-check")),
                    lambda: compare.fetch_runs(uri, "team-check")):  # painter-compare
        start = time.monotonic()
        with pytest.raises(PipelineError) as info:
            attempt()
        assert time.monotonic() - start < 30
        message = str(info.value)
        assert "\n" not in message and uri in message and WRONG not in message
        assert "refused the login of user 'alice' (HTTP 401)" in message
        assert "MLFLOW_TRACKING_USERNAME or MLFLOW_TRACKING_PASSWORD" in message and "damaged" not in message
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(PipelineError, match="asks for a login: export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
        prepare_store(MlflowParams(experiment="team-check"))


@pytest.mark.slow
def test_missing_database_is_one_line_within_seconds(trial, monkeypatch):
    monkeypatch.setenv("PGPASSFILE", str(trial["folder"] / "pgpass"))
    uri = trial_stack.database_uri(trial["state"].ports["postgres"], "no_such_db")
    start = time.monotonic()
    with pytest.raises(PipelineError) as info:
        prepare_store(MlflowParams(tracking_uri=uri))
    assert time.monotonic() - start < 30  # MLflow alone retries for minutes
    shown = uri.replace("postgres@", "")  # a URI is shown without its user and password
    assert str(info.value) == (f"MLflow tracking store {shown}: database 'no_such_db' does not exist on that server: "
                               "create it (e.g. createdb no_such_db, see docs/team-setup.md) or correct "
                               "mlflow.tracking_uri (or MLFLOW_TRACKING_URI)")


@pytest.mark.slow
def test_missing_artifact_bucket_is_seen_before_any_training(as_alice):
    client = trial_stack.s3_client(as_alice["state"].s3_url)
    bucket = trial_stack.BUCKETS[0]
    # File order runs this before the page's training: the bucket is still empty, and can go for a while.
    client.delete_bucket(Bucket=bucket)
    try:
        with pytest.raises(PipelineError) as info:
            prepare_store(MlflowParams(experiment="team-check"))
    finally:
        client.create_bucket(Bucket=bucket)
    assert str(info.value) == (
        f"MLflow server {as_alice['state'].mlflow_url} cannot store artifacts: bucket 'mlflow-artifacts' "
        "(s3://mlflow-artifacts/mlartifacts) does not exist on its S3 server; create it there (see "
        "docs/team-setup.md), or restart the server with another --artifacts-destination")


def check(trial: dict, project: Path, env: dict) -> subprocess.CompletedProcess:
    """``painter-trial check`` in ``project`` with ``env`` (None removes a variable)."""
    shell = trial["shells"]["alice"].env
    return run([str(Path(shell["PATH"].split(os.pathsep)[0]) / "painter-trial"), "check"], project, check=False,
               env={**{k: None for k in os.environ if k.startswith(("AWS_", "MLFLOW_"))}, "HOME": str(project), **env})


@pytest.mark.slow
def test_dvc_remote_without_credentials_or_bucket_is_one_line(trial, tmp_path):
    project = tmp_path / "scratch"
    project.mkdir()
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                    [sys.executable, "-m", "dvc", "remote", "add", "-d", "store", "s3://dvc-store/dvc"]):
        run(command, project)
    alice = login(trial, "alice")
    no_keys = {k: v for k, v in alice.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    proc = check(trial, project, no_keys)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.strip() == (
        "error: trial: DVC remote 'store' (s3://dvc-store/dvc): no S3 credentials: export AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or keep them out of git with: dvc remote modify --local store access_key_id ... "
        "(and secret_access_key)")
    run([sys.executable, "-m", "dvc", "remote", "modify", "store", "url", "s3://no-such-bucket/dvc"], project)
    proc = check(trial, project, alice)
    assert proc.returncode == 2 and "bucket 'no-such-bucket' does not exist on the S3 server; create it" in proc.stderr
    assert proc.stdout == "" and alice["MLFLOW_TRACKING_PASSWORD"] not in proc.stderr


# --- the page, run to its end ------------------------------------------------------------

@pytest.fixture(scope="module")
def team(trial):
    """The rest of the page but its final stop: alice's remote, baseline and sweep, bob's clone and apply."""
    done = docs_script.run_page(COMMANDS[START + 1:-1], trial["shells"])
    return {**trial, "done": trial["done"] + done, "alice": trial["home"] / "alice", "bob": trial["home"] / "bob"}


@pytest.mark.slow
def test_every_output_the_page_shows_is_the_real_one(team):
    wrong = {f"line {ran.command.line}: {ran.command.text}": mismatch for ran in team["done"]
             if (mismatch := docs_script.output_mismatch(ran.command.shown, ran.output, team["home"]))}
    assert not wrong, json.dumps(wrong, indent=1) + "\n\n" + docs_script.transcript(team["done"])[-20000:]


def exp_file(repo: Path, name: str, path: str) -> bytes:
    """A file of experiment ``name``'s commit in ``repo``."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    ref = next(ref for ref in refs if ref.endswith(f"/{name}"))
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True, check=True).stdout


@pytest.mark.slow
def test_bob_applies_alices_experiment_with_its_model_and_metrics(team):
    bob = team["bob"]
    params = yaml.safe_load((bob / "params.yaml").read_text())
    assert params["train"]["learning_rate"] == EXPERIMENTS["lr-b"]
    for path in ("metrics/train.json", "metrics/eval.json", "dvc.lock"):
        assert (bob / path).read_bytes() == exp_file(team["alice"], "lr-b", path), path
    lock = yaml.safe_load((bob / "dvc.lock").read_text())
    recorded = {out["path"]: out["md5"] for out in lock["stages"]["train"]["outs"]}
    history = hashlib.md5((bob / "metrics" / "history.csv").read_bytes()).hexdigest()
    assert history == recorded["metrics/history.csv"] and "models" in recorded
    assert (bob / "models" / "model.keras").is_file()  # the folder out: model, labels, image format, run
    assert json.loads((bob / "models" / "run.json").read_text())["tracking_uri"] == team["state"].mlflow_url


def team_runs(trial: dict) -> list:
    """Every run of the pipeline's experiment on the server, read with bob's login."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in login(trial, "bob").items():
            patch.setenv(key, value)
        client = mlflow.MlflowClient(trial["state"].mlflow_url)
        experiment = client.get_experiment_by_name("painter-identification")
        return client.search_runs([experiment.experiment_id], max_results=100)


@pytest.mark.slow
def test_runs_carry_the_members_login_commit_and_source(team):
    runs = team_runs(team)
    assert len(runs) == 1 + len(EXPERIMENTS)  # the baseline and each queued experiment
    assert sorted(float(r.data.params["train.learning_rate"]) for r in runs) == [0.001, *EXPERIMENTS.values()]
    assert {r.data.tags.get("dvc.exp_name") for r in runs} == {None, *EXPERIMENTS}
    commits = set(run(["git", "rev-list", "--all"], team["alice"]).stdout.split())
    objects = ts.bucket_objects(team["state"].s3_url, trial_stack.BUCKETS[0])
    for run_ in runs:
        assert run_.info.status == "FINISHED" and run_.data.params["model.backbone"] == "simple_cnn"
        assert run_.info.user_id == "alice" and run_.data.tags["mlflow.user"] == "alice"  # the UI's User column
        assert run_.data.tags["mlflow.source.name"] == "stages/train.py"
        assert run_.data.tags["mlflow.source.git.commit"] in commits
        assert run_.data.tags["mlflow.source.git.repoURL"] == str(team["home"] / "team" / "painter-id.git")
        assert 0.0 <= run_.data.metrics["test_accuracy"] <= 1.0
        assert run_.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: members need no S3 keys for MLflow
        names = {key.rsplit("/", 1)[-1] for key in objects if f"/{run_.info.run_id}/artifacts/" in key}
        assert {"params.yaml", "history.csv", "labels.json", "eval.json"} <= names, names


@pytest.mark.slow
def test_no_password_in_any_written_file_artifact_or_output(team):
    written = [p for clone in (team["alice"], team["bob"]) for p in clone.rglob("*") if p.is_file()]
    assert team["alice"] / "dvc.lock" in written and team["bob"] / "models" / "run.json" in written
    assert any(".dvc/tmp/exps" in p.as_posix() for p in written)  # the queued runs' logs are scanned too
    state = team["state"]
    objects = {**ts.bucket_objects(state.s3_url, "mlflow-artifacts"), **ts.bucket_objects(state.s3_url, "dvc-store")}
    # Printing the exports to paste is what `painter-trial start` and `env` are for; nothing else may show one.
    outputs = [ran.output for ran in team["done"] if not ran.command.text.startswith("painter-trial start")]
    for secret in (team["keys"]["admin"], *team["keys"]["users"].values(), team["keys"]["postgres"]):
        assert not [p for p in written if secret.encode() in p.read_bytes()]
        assert not [key for key, body in objects.items() if secret.encode() in body]
        assert not [out for out in outputs if secret in out]
        assert not [r for r in team_runs(team) if secret in json.dumps([r.data.params, r.data.tags])]


def start_in_foreground(folder: Path, shell: docs_script.Terminal) -> tuple[subprocess.Popen, list[str]]:
    """``painter-trial start`` without ``--detach``, as in a terminal; returns once it says it runs."""
    proc = subprocess.Popen(["painter-trial", "start", "--dir", str(folder)], env=shell.env, cwd=shell.cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    watchdog = threading.Timer(trial_stack.START_TIMEOUT_S + 60, proc.kill)  # a hang fails, never blocks
    watchdog.start()
    printed = []
    for line in proc.stdout:  # waits on its output, line by line
        printed.append(line)
        if line.startswith("Running; press Ctrl-C"):
            break
    watchdog.cancel()
    return proc, printed


@pytest.mark.slow
def test_stop_leaves_nothing_running_and_ctrl_c_after_a_restart_too(team):
    folder, state = team["folder"], team["state"]
    done = docs_script.run_page(COMMANDS[-1:], team["shells"])
    assert docs_script.output_mismatch(COMMANDS[-1].shown, done[0].output, team["home"]) is None
    assert ts.processes_naming(str(folder)) == []  # PostgreSQL, S3, MLflow and its workers
    assert not any(trial_stack.port_in_use(port) for port in state.ports.values())
    kept = [p for p in (folder / "s3" / "dvc-store").rglob("*") if p.is_file()]
    assert kept  # the DVC remote's objects, one file each

    # Started again in the foreground, it finds every run, login and object on the same ports.
    proc, printed = start_in_foreground(folder, team["shells"]["admin"])
    try:
        assert printed and printed[-1].startswith("Running; press Ctrl-C"), printed
        assert f"MLflow      {state.mlflow_url}" in "".join(printed)
        assert len(team_runs(team)) == 1 + len(EXPERIMENTS)
        assert len(ts.bucket_objects(state.s3_url, "dvc-store")) == len(kept)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the command's process group
        rest, _ = proc.communicate(timeout=3 * trial_stack.STOP_TIMEOUT_S)
    assert proc.returncode == 0 and rest.strip().endswith(f"Stopped; the data stays in {folder}"), rest
    assert ts.processes_naming(str(folder)) == []
    assert not any(trial_stack.port_in_use(port) for port in state.ports.values())
