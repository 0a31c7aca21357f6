"""A team's servers started for real on 127.0.0.1: S3 (moto), PostgreSQL (pgserver's binaries), MLflow.

No pytest here and no side effects on import, so the README's commands and ``benchmarks/``
can use the same helpers. Every server runs in its own process group and stops with it.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

BIN = Path(sys.executable).parent
# moto accepts any key; these only have to be present for boto3 and DVC.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
CLIENT_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Poll ``url`` until it answers (any HTTP status); fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s") from None
        time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True``, helpers (uvicorn workers) included."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    """``moto_server`` (an S3-compatible server); returns the process and its endpoint URL."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/moto-api/", proc, timeout=60)
    return proc, url


@dataclass
class Postgres:
    """A PostgreSQL cluster from the binaries inside the ``pgserver`` wheel."""

    base: Path
    port: int
    run_as: dict

    @property
    def bin(self) -> Path:
        """The wheel's ``initdb``, ``pg_ctl``, ``createdb`` (importing pgserver itself is not needed)."""
        return Path(importlib.util.find_spec("pgserver").origin).parent / "pginstall" / "bin"

    def _run(self, *args: str) -> None:
        env = {**os.environ, "LC_ALL": "C", "HOME": str(self.base)}
        subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, env=env, cwd=self.base,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self.run_as)

    def start(self) -> "Postgres":
        """initdb and start, listening on 127.0.0.1 only, trust auth (tests only), no fsync."""
        pgdata = str(self.base / "pgdata")
        self._run("initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.base} "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        self._run("pg_ctl", "-D", pgdata, "-l", str(self.base / "pg.log"), "-o", options, "-w", "-t", "60", "start")
        return self

    def createdb(self, name: str) -> str:
        """Create database ``name``; return its ``postgresql://`` URI (psycopg 3 driver)."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop at once: the data is thrown away with the folder."""
        self._run("pg_ctl", "-D", str(self.base / "pgdata"), "-m", "immediate", "-w", "stop")


def start_postgres(base: Path) -> Postgres:
    """PostgreSQL in ``base``. It refuses to run as root, so as root it runs as ``nobody``.

    ``base`` and every folder above it must then be traversable by nobody (``mkdtemp``
    makes 0700 folders: chmod 755 them).
    """
    base.mkdir(parents=True, exist_ok=True)
    run_as = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    return Postgres(base, free_port(), run_as).start()


def write_auth_config(path: Path, database_uri: str, admin: str, admin_password: str) -> Path:
    """MLflow's basic-auth config: users in ``database_uri``, everyone may read, the first admin."""
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Without a cache every request pays a PBKDF2 password check: a run logs 4x slower.
        "auth_cache_ttl_seconds = 60\n",
        encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def mlflow_server_command(backend_uri: str, artifacts: str, port: int) -> list[str]:
    """``mlflow server`` on PostgreSQL, proxying artifacts to S3, with basic auth, on 127.0.0.1."""
    return [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_uri,
            "--artifacts-destination", artifacts, "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--app-name", "basic-auth"]


def start_mlflow(backend_uri: str, artifacts: str, s3_url: str, auth_config: Path, log: Path,
                 secret_key: str) -> tuple[subprocess.Popen, str]:
    """Start the tracking server; return it and its URL once ``/health`` answers."""
    port = free_port()
    env = {**os.environ, **S3_ENV,
           "MLFLOW_S3_ENDPOINT_URL": s3_url,
           "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key,  # basic-auth's CSRF protection needs one
           # Otherwise MLflow 3 also starts a job runner and seven huey consumers.
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for name in CLIENT_VARS:
        env.pop(name, None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(mlflow_server_command(backend_uri, artifacts, port), env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc)
    except Exception:
        stop(proc)
        raise RuntimeError(f"mlflow server did not start:\n{log.read_text(errors='replace')[-3000:]}") from None
    return proc, url


def s3_client(endpoint: str):
    """A boto3 S3 client for the moto server."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=S3_ENV["AWS_DEFAULT_REGION"],
                        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])


def bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    """Every object in ``bucket``: key -> content."""
    client = s3_client(endpoint)
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def http_status(url: str, auth: Optional[tuple[str, str]] = None, body: Optional[dict] = None) -> int:
    """The HTTP status of a GET, or of a JSON POST when ``body`` is given (with basic auth when given)."""
    import base64
    import json

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def create_user(url: str, admin: tuple[str, str], user: tuple[str, str]) -> None:
    """Create an MLflow user with the admin's credentials (REST, no prompt)."""
    status = http_status(f"{url}/api/2.0/mlflow/users/create", admin, {"username": user[0], "password": user[1]})
    if status != 200:
        raise RuntimeError(f"creating MLflow user {user[0]} answered HTTP {status}")
