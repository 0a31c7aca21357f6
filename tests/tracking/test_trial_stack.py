"""The trial stack's parts on their own: its S3 server keeps every object across a restart, its command's lines.

The whole stack (PostgreSQL, S3, MLflow) is started by ``tests/tracking/test_team_servers.py``,
through docs/team-setup.md; here only what needs no MLflow server: seconds, not minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from painter_id.core.errors import PipelineError
from painter_id.tracking import trial_s3, trial_stack
from testkit import servers as ts
from testkit.project import REPO_ROOT

KEYS = {"dvc/files/md5/ab/cdef0123": b"dvc object", "../up/./x": b"dots stay inside", "a//b/": b"empty parts",
        "sp ace/%25/\u00e9": b"escapes", "copied": None, "big/multipart": os.urandom(11 * 2**20)}


@pytest.fixture
def s3(tmp_path):
    """Start (and always stop) the trial's S3 server keeping its data under ``tmp_path/s3``."""
    paths = trial_stack.Paths(tmp_path)
    port = trial_stack.free_port()
    started = []

    def start():
        started.append(trial_stack.start_s3(paths, port))
        return trial_stack.s3_client(f"http://127.0.0.1:{port}")

    yield paths, start, started
    for proc in started:
        trial_stack.stop_group(proc.pid, trial_stack.MARKERS["s3"], proc)


def test_s3_objects_and_buckets_survive_a_restart(s3):
    from boto3.s3.transfer import TransferConfig

    paths, start, started = s3
    client = start()
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == set(trial_stack.BUCKETS)
    bucket = "dvc-store"
    for key, body in KEYS.items():
        if key == "copied":
            client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": "../up/./x"})
        elif key.startswith("big/"):
            (paths.folder / "big").write_bytes(body)
            client.upload_file(str(paths.folder / "big"), bucket, key,  # multipart: three parts
                               Config=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20))
        else:
            client.put_object(Bucket=bucket, Key=key, Body=body)
    for key in ("gone/one", "gone/two"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    client.delete_object(Bucket=bucket, Key="gone/one")
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "gone/two"}]})
    client.create_bucket(Bucket="scratch-bucket")
    client.delete_bucket(Bucket="scratch-bucket")
    with pytest.raises(ClientError, match="InvalidArgument"):  # a file cannot also be a folder
        client.put_object(Bucket=bucket, Key="copied/below", Body=b"x")

    kept = [p for p in paths.s3.rglob("*") if p.is_file()]
    assert all(paths.s3 / bucket in p.parents for p in kept), kept  # no key reaches outside its bucket's folder
    assert not (paths.s3 / "gone").exists() and not (paths.s3 / bucket / "gone").exists()
    assert not list((paths.s3 / trial_s3.STAGING).iterdir())  # every write renamed into place

    trial_stack.stop_group(started[0].pid, trial_stack.MARKERS["s3"], started[0])
    client = start()
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == set(trial_stack.BUCKETS)
    objects = ts.bucket_objects(f"http://127.0.0.1:{started[1].args[-1]}", bucket)
    expected = {key: KEYS["../up/./x"] if body is None else body for key, body in KEYS.items()}
    assert objects == expected


def test_object_paths_round_trip():
    root = Path("/srv/s3")
    for key in KEYS:
        path = trial_s3.object_path(root, "b-1", key)
        assert root / "b-1" in path.parents and trial_s3.key_of(root, path) == ("b-1", key)


def test_postgres_home_is_reachable_by_the_user_it_runs_as(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    home = trial_stack.postgres_home(private / ".painter-trial")
    if os.geteuid() == 0:  # PostgreSQL runs as nobody, who cannot enter a 0700 folder
        assert home.parent == Path("/var/tmp") and home == trial_stack.postgres_home(private / ".painter-trial")
    else:
        assert home == private / ".painter-trial" / "postgres"
    os.chmod(tmp_path, 0o755)
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o755)
    if trial_stack.reachable_by_others(open_folder):
        assert trial_stack.postgres_home(open_folder / ".painter-trial") == open_folder / ".painter-trial" / "postgres"


def trial_command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "painter_id.cli.trial", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=120)


def test_commands_without_a_trial_are_one_line_naming_the_folder(tmp_path):
    start = time.monotonic()
    assert trial_command("--help", cwd=tmp_path).returncode == 0
    assert time.monotonic() - start < 15  # --help imports neither MLflow nor DVC
    for command in ("status", "stop", "env"):
        proc = trial_command(*([command, "alice"] if command == "env" else [command]), cwd=tmp_path)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr == (f"error: trial: no trial in {tmp_path / '.painter-trial'} (no stack.json); "
                               + ("start one with painter-trial start, or give its folder with --dir\n"
                                  if command != "stop" else "give its folder with --dir\n"))
    proc = trial_command("start", "--users", "admin", cwd=tmp_path)
    assert proc.returncode == 2 and "'admin' is no login name" in proc.stderr
    assert not (tmp_path / ".painter-trial").exists()


def test_unknown_member_is_one_line():
    state = trial_stack.State(ports={"postgres": 1, "s3": 2, "mlflow": 3}, postgres_home="/x")
    with pytest.raises(PipelineError, match=r"no trial login 'carol' \(logins: admin, alice\); add it with: "
                                            r"painter-trial start --users carol"):
        trial_stack.member_exports(state, {"users": {"alice": "pw"}, "admin": "a"}, "carol")
