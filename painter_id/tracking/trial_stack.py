"""A team's servers on one machine, for a trial: PostgreSQL, S3 and an MLflow server with logins.

What ``painter-trial`` starts and stops (:mod:`painter_id.cli.trial`), and what the team
tests start their servers with, so the trial a team runs is the tested one:

- PostgreSQL from the binaries in the ``pgserver`` wheel, databases ``mlflow`` (runs) and
  ``mlflow_auth`` (logins), password login from 127.0.0.1 only. PostgreSQL refuses to run as
  root, so under root it runs as ``nobody``;
- S3 (:mod:`painter_id.tracking.trial_s3`, moto keeping every object as a file), buckets
  ``mlflow-artifacts`` and ``dvc-store``;
- ``mlflow server`` on that database with artifacts proxied to the bucket, basic-auth logins,
  one worker and no job runner (:func:`mlflow_server_command`).

Everything lives in one folder (``.painter-trial/`` by default): ``stack.json`` (ports, pids),
``secrets.json`` and ``basic_auth.ini`` (passwords, owner-only), ``logs/``, ``s3/``, and
PostgreSQL's cluster. Stopping keeps it all; the next start uses the same ports and data.
Every server runs in its own session, so a Ctrl-C in the terminal reaches only the command,
which then stops them in order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from painter_id.core.atomic import owned_folder
from painter_id.core.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_FOLDER = ".painter-trial"
BUCKETS = ("mlflow-artifacts", "dvc-store")
DATABASES = ("mlflow", "mlflow_auth")
ARTIFACTS = f"s3://{BUCKETS[0]}/mlartifacts"
SERVICES = ("postgres", "s3", "mlflow")
# moto takes any key; these only have to be present for boto3 and DVC (no secret).
S3_KEYS = {"AWS_ACCESS_KEY_ID": "painter-trial", "AWS_SECRET_ACCESS_KEY": "painter-trial",
           "AWS_DEFAULT_REGION": "us-east-1"}
# The variables a member's MLflow client reads; the server must not inherit the starter's.
CLIENT_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
START_TIMEOUT_S = 240  # MLflow's first start migrates both databases: 15-25 s on 2 loaded cores
STOP_TIMEOUT_S = 30


def mlflow_server_command(backend_uri: str, port: int, artifacts: Optional[str] = None,
                          host: str = "127.0.0.1", auth: bool = True) -> list[str]:
    """``mlflow server`` the light way: one worker process (the default is one per core).

    Run it with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (:data:`LIGHT_ENV`): otherwise
    MLflow 3 also starts a job runner with seven huey consumers, which the pipeline never uses.
    """
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri]
    if artifacts:
        command += ["--artifacts-destination", artifacts, "--serve-artifacts"]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    return command + (["--app-name", "basic-auth"] if auth else [])


LIGHT_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass
class Paths:
    """The files and folders of a trial stack's data folder."""

    folder: Path

    @property
    def state(self) -> Path:
        return self.folder / "stack.json"

    @property
    def secrets(self) -> Path:
        return self.folder / "secrets.json"

    @property
    def auth_config(self) -> Path:
        return self.folder / "basic_auth.ini"

    @property
    def pgpass(self) -> Path:
        return self.folder / "pgpass"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def s3(self) -> Path:
        return self.folder / "s3"


@dataclass
class State:
    """What ``stack.json`` holds: ports (kept across restarts), PostgreSQL's folder, the running pids."""

    ports: dict[str, int]
    postgres_home: str
    users: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, whole or not at all."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_state(paths: Paths) -> Optional[State]:
    """The stack's ``stack.json``, or ``None`` before its first start."""
    if not paths.state.exists():
        return None
    try:
        return State(**json.loads(paths.state.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"{paths.state}: unreadable ({exc}); delete it (new ports are picked) and start again") from None


def save_state(paths: Paths, state: State) -> None:
    """Write ``stack.json`` atomically."""
    write_private(paths.state, json.dumps(state.__dict__, indent=2) + "\n")


def load_secrets(paths: Paths) -> dict:
    """The stack's passwords (made on its first start): PostgreSQL's, the admin's, the members', Flask's key."""
    if paths.secrets.exists():
        return json.loads(paths.secrets.read_text(encoding="utf-8"))
    # Hex, at least 12 characters: MLflow's minimum, and nothing a shell would interpret.
    made = {"postgres": secrets.token_hex(12), "admin": secrets.token_hex(8), "flask": secrets.token_hex(16),
            "users": {}}
    write_private(paths.secrets, json.dumps(made, indent=2) + "\n")
    return made


# --- processes ----------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_http(url: str, proc: subprocess.Popen, log_file: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Poll ``url`` until it answers (any HTTP status); a one-line error when ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise PipelineError(f"{url} exited with code {proc.returncode} while starting; see {log_file}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise PipelineError(f"{url} did not answer within {timeout:.0f} s; see {log_file}") from None
        time.sleep(0.3)


def spawn(command: list[str], log_file: Path, env: Optional[dict] = None) -> subprocess.Popen:
    """Start ``command`` in its own session (Ctrl-C in the terminal does not reach it), output to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def command_line(pid: int) -> str:
    """The command line of process ``pid`` (empty when it is gone)."""
    proc = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return proc.stdout.strip()


def group_alive(pid: int) -> bool:
    """True while any process of the process group (session) led by ``pid`` is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(pid: int, proc: Optional[subprocess.Popen] = None) -> None:
    """Collect ``pid``'s exit status if it is this process's child: a zombie still counts as alive."""
    if proc is not None:
        proc.poll()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (a detached start's): init collects it
        pass


def stop_group(pid: int, marker: str, proc: Optional[subprocess.Popen] = None) -> None:
    """Stop the process group led by ``pid`` (TERM, then KILL after :data:`STOP_TIMEOUT_S`), helpers included.

    ``marker`` must appear in the leader's command line: a pid reused by another program
    after a reboot is left alone.
    """
    if proc is None and marker not in command_line(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while group_alive(pid) and time.monotonic() < deadline:
        reap(pid, proc)
        time.sleep(0.2)
    if group_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(10)


# --- PostgreSQL ---------------------------------------------------------------------------

def pg_bin(name: str) -> str:
    """A program of the PostgreSQL build inside the ``pgserver`` wheel (``initdb``, ``pg_ctl``)."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise PipelineError('the trial needs the team extra: pip install -e ".[team]"')
    return str(Path(spec.origin).parent / "pginstall" / "bin" / name)


def reachable_by_others(path: Path) -> bool:
    """True when a user other than the owner (``nobody``) may enter ``path`` and every folder above it."""
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def postgres_home(folder: Path) -> Path:
    """Where the cluster lives: ``<folder>/postgres``, unless root's PostgreSQL (as nobody) could not reach it.

    Then (a folder under /root, which is 0700) it is a folder of /var/tmp named after
    ``folder``, which survives reboots like the rest; ``painter-trial start`` names it.
    """
    home = folder / "postgres"
    if os.geteuid() != 0 or reachable_by_others(folder):
        return home
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"painter-trial-{digest}"


def _as_postgres_user(home: Path) -> dict:
    """``subprocess`` arguments that run PostgreSQL's programs as ``nobody`` under root (it refuses root)."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _pg(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "LC_ALL": "C", "HOME": str(home)}
    # A session of its own: the postmaster pg_ctl leaves running must not get the terminal's Ctrl-C.
    proc = subprocess.run([pg_bin(args[0]), *args[1:]], env=env, cwd=home, capture_output=True, text=True,
                          start_new_session=True, **_as_postgres_user(home))
    if check and proc.returncode != 0:
        reason = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise PipelineError(f"PostgreSQL {args[0]} failed ({reason[0][:300]}); see {home / 'postgres.log'}")
    return proc


def start_postgres(home: Path, port: int, password: str) -> None:
    """Create the cluster in ``home`` on its first start (password login), then start it on 127.0.0.1:``port``."""
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    pgdata = home / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        shutil.rmtree(pgdata, ignore_errors=True)  # an initdb that was interrupted
        pwfile = home / "initdb-password"
        write_private(pwfile, password + "\n")
        _as_postgres_user(pwfile)  # chowns it to nobody under root, who must read it
        try:
            _pg(home, "initdb", "-D", str(pgdata), "-U", "postgres", "--auth=scram-sha-256",
                f"--pwfile={pwfile}", "--encoding=UTF8")
        finally:
            pwfile.unlink(missing_ok=True)
    options = f"-h 127.0.0.1 -p {port} -k {home}"
    _pg(home, "pg_ctl", "-D", str(pgdata), "-l", str(home / "postgres.log"), "-o", options, "-w", "-t", "120", "start")


def postgres_running(home: Path) -> bool:
    """True while the cluster in ``home`` runs (``pg_ctl status``)."""
    return (home / "pgdata").exists() and _pg(home, "pg_ctl", "-D", str(home / "pgdata"), "status", check=False).returncode == 0


def stop_postgres(home: Path) -> None:
    """Stop the cluster, letting it finish what it writes (``-m fast``: sessions are ended, data kept)."""
    if postgres_running(home):
        _pg(home, "pg_ctl", "-D", str(home / "pgdata"), "-m", "fast", "-w", "-t", "120", "stop")


def database_uri(port: int, name: str) -> str:
    """``postgresql://`` URI of database ``name`` (the password comes from ``PGPASSFILE``, never the URI)."""
    return f"postgresql://postgres@127.0.0.1:{port}/{name}"


def ensure_databases(port: int, password: str, names: Iterable[str] = DATABASES) -> list[str]:
    """Create the databases of ``names`` that do not exist yet; return those created."""
    import psycopg

    created = []
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=password, dbname="postgres",
                         autocommit=True, connect_timeout=10) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                conn.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
    return created


# --- S3 and MLflow ------------------------------------------------------------------------

def s3_client(endpoint: str):
    """A boto3 S3 client for the trial's S3 server."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=S3_KEYS["AWS_DEFAULT_REGION"],
                        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"])


def start_s3(paths: Paths, port: int) -> subprocess.Popen:
    """The S3 server (:mod:`painter_id.tracking.trial_s3`) keeping its objects in ``<folder>/s3``; buckets made."""
    log_file = paths.logs / "s3.log"
    # Run as a file: it imports nothing of painter_id, and so needs no import path set up for it.
    script = Path(__file__).with_name("trial_s3.py")
    proc = spawn([sys.executable, str(script), "--folder", str(paths.s3), "--port", str(port)], log_file)
    wait_http(f"http://127.0.0.1:{port}/moto-api/", proc, log_file)
    client = s3_client(f"http://127.0.0.1:{port}")
    existing = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
    for bucket in BUCKETS:
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
    return proc


def write_auth_config(path: Path, database_uri_: str, admin_password: str) -> None:
    """MLflow's basic-auth config (owner-only): logins in ``database_uri_``, user ``admin`` manages them.

    Every member may log runs into every experiment (``EDIT``): a team shares one; a request
    without a login is refused all the same.
    """
    write_private(path,
                  "[mlflow]\n"
                  "default_permission = EDIT\n"
                  f"database_uri = {database_uri_}\n"
                  "admin_username = admin\n"
                  f"admin_password = {admin_password}\n"
                  "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                  # Without a cache every request pays a PBKDF2 password check: a run logs 4x slower.
                  "auth_cache_ttl_seconds = 60\n")


def start_mlflow(paths: Paths, state: State, keys: dict) -> subprocess.Popen:
    """``mlflow server`` on the trial's databases and bucket, with logins; returns once ``/health`` answers."""
    pg = state.ports["postgres"]
    write_private(paths.pgpass, f"127.0.0.1:{pg}:*:postgres:{keys['postgres']}\n")
    write_auth_config(paths.auth_config, database_uri(pg, DATABASES[1]), keys["admin"])
    env = {**{k: v for k, v in os.environ.items() if k not in CLIENT_VARS}, **S3_KEYS, **LIGHT_ENV,
           "MLFLOW_S3_ENDPOINT_URL": state.s3_url,
           "PGPASSFILE": str(paths.pgpass),
           "MLFLOW_AUTH_CONFIG_PATH": str(paths.auth_config),
           "MLFLOW_FLASK_SERVER_SECRET_KEY": keys["flask"]}  # basic-auth's CSRF protection needs one
    log_file = paths.logs / "mlflow.log"
    proc = spawn(mlflow_server_command(database_uri(pg, DATABASES[0]), state.ports["mlflow"], ARTIFACTS), log_file, env)
    log.info("MLflow server starting on %s (10-30 s; a first start also creates its tables)", state.mlflow_url)
    wait_http(f"{state.mlflow_url}/health", proc, log_file)
    return proc


def mlflow_request(url: str, login: Optional[tuple[str, str]] = None, body: Optional[dict] = None) -> int:
    """HTTP status of a GET, or of a JSON POST with ``body``, with basic auth ``login`` when given."""
    import base64

    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def ensure_users(state: State, paths: Paths, keys: dict, users: Iterable[str]) -> None:
    """Create each member's MLflow login that does not exist yet (a password made now, kept in secrets.json)."""
    for user in users:
        if user in keys["users"]:
            continue
        password = secrets.token_hex(8)
        status = mlflow_request(f"{state.mlflow_url}/api/2.0/mlflow/users/create", ("admin", keys["admin"]),
                                {"username": user, "password": password})
        if status != 200:
            raise PipelineError(f"MLflow server refused to create login {user!r} (HTTP {status}); "
                                f"see {paths.logs / 'mlflow.log'}")
        keys["users"][user] = password
        write_private(paths.secrets, json.dumps(keys, indent=2) + "\n")
    state.users = sorted(keys["users"])


def member_exports(state: State, keys: dict, user: str) -> str:
    """The ``export`` lines a member pastes into their shell: MLflow server and login, S3 endpoint and keys."""
    if user != "admin" and user not in keys["users"]:
        raise PipelineError(f"no trial login {user!r} (logins: admin, {', '.join(sorted(keys['users']))}); "
                            f"add it with: painter-trial start --users {user}")
    password = keys["admin"] if user == "admin" else keys["users"][user]
    return (f"export MLFLOW_TRACKING_URI={state.mlflow_url} MLFLOW_TRACKING_USERNAME={user} "
            f"MLFLOW_TRACKING_PASSWORD={password}\n"
            f"export AWS_ENDPOINT_URL={state.s3_url} "
            + " ".join(f"{key}={value}" for key, value in S3_KEYS.items()) + "\n")


# --- the stack ----------------------------------------------------------------------------

# What each recorded pid's command line holds, so that a pid reused after a reboot is never signalled.
MARKERS = {"s3": "trial_s3.py", "mlflow": "mlflow", "supervisor": "trial"}


def running(state: State, paths: Paths) -> dict[str, bool]:
    """Which of the stack's servers run now (and the foreground ``painter-trial start``, if any)."""
    found = {"postgres": postgres_running(Path(state.postgres_home))}
    for name, pid in state.pids.items():
        found[name] = MARKERS[name] in command_line(pid)
    return found


def pick_ports(paths: Paths, state: Optional[State]) -> dict[str, int]:
    """The ports of the last start (the URLs members have are kept), else free ones; each must be free now."""
    ports = dict(state.ports) if state else {name: free_port() for name in SERVICES}
    for name, port in ports.items():
        if port_in_use(port):
            raise PipelineError(f"port {port} of the trial's {name} (kept in {paths.state}) is in use by another "
                                f"program: stop that program, or delete {paths.state} to pick new ports")
    return ports


def start_stack(folder: Path, users: Iterable[str] = (), supervisor: Optional[int] = None
                ) -> tuple[State, dict[str, subprocess.Popen]]:
    """Start PostgreSQL, S3 and MLflow with their data in ``folder``; create missing databases, buckets and logins.

    Returns the state and the server processes. ``supervisor``: the pid of a foreground
    ``painter-trial start`` that ``painter-trial stop`` asks to stop them. On any failure
    what was started is stopped again, and the error names the log to read.
    """
    paths = Paths(folder.absolute())
    owned_folder(paths.logs).mkdir(parents=True, exist_ok=True)
    old = read_state(paths)
    if old is not None and any(running(old, paths).values()):
        raise PipelineError(f"the trial in {paths.folder} is already running (painter-trial status --dir {folder}); "
                            f"stop it first: painter-trial stop --dir {folder}")
    keys = load_secrets(paths)
    state = State(ports=pick_ports(paths, old), postgres_home=str(postgres_home(paths.folder)), users=sorted(keys["users"]))
    procs: dict[str, subprocess.Popen] = {}
    try:
        start_postgres(Path(state.postgres_home), state.ports["postgres"], keys["postgres"])
        ensure_databases(state.ports["postgres"], keys["postgres"])
        procs["s3"] = start_s3(paths, state.ports["s3"])
        state.pids["s3"] = procs["s3"].pid
        save_state(paths, state)  # from here on, `painter-trial stop` finds what runs
        procs["mlflow"] = start_mlflow(paths, state, keys)
        state.pids["mlflow"] = procs["mlflow"].pid
        save_state(paths, state)
        ensure_users(state, paths, keys, users)
        if supervisor:
            state.pids["supervisor"] = supervisor
        save_state(paths, state)
    except BaseException:
        stop_services(paths, state, procs)
        raise
    return state, procs


def stop_services(paths: Paths, state: State, procs: Optional[dict[str, subprocess.Popen]] = None) -> None:
    """Stop MLflow, then S3, then PostgreSQL (clients first), and record that none runs."""
    procs = procs or {}
    for name in ("mlflow", "s3"):
        if name in state.pids:
            stop_group(state.pids[name], MARKERS[name], procs.get(name))
    stop_postgres(Path(state.postgres_home))
    state.pids = {}
    save_state(paths, state)


def stop_stack(folder: Path, procs: Optional[dict[str, subprocess.Popen]] = None) -> State:
    """Stop the trial in ``folder``: through its foreground ``painter-trial start`` when one runs, else directly."""
    paths = Paths(folder.absolute())
    state = read_state(paths)
    if state is None:
        raise PipelineError(f"no trial in {paths.folder} (no {paths.state.name}); give its folder with --dir")
    supervisor = state.pids.get("supervisor")
    if supervisor and supervisor != os.getpid() and MARKERS["supervisor"] in command_line(supervisor):
        os.kill(supervisor, signal.SIGTERM)  # it stops the servers it started, in order, then exits
        deadline = time.monotonic() + 3 * STOP_TIMEOUT_S
        while MARKERS["supervisor"] in command_line(supervisor) and time.monotonic() < deadline:
            time.sleep(0.2)
        state = read_state(paths) or state
    stop_services(paths, state, procs)
    return state


def members(folder: Path) -> tuple[State, dict]:
    """The state and secrets of the trial in ``folder``, for ``painter-trial env`` and ``status``."""
    paths = Paths(folder.absolute())
    state = read_state(paths)
    if state is None:
        raise PipelineError(f"no trial in {paths.folder} (no {paths.state.name}); start one with painter-trial start, "
                            "or give its folder with --dir")
    return state, load_secrets(paths)
