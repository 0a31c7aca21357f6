"""Where a login may go, how long a download may take, and what a killed fetch leaves: on real local servers."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from painter_id.core import urls
from painter_id.core.errors import PipelineError
from painter_id.sources.downloads import fetch_url
from testkit import badfiles
from testkit.project import REPO_ROOT, run_stage, write_params
from testkit.web import DripHandler, RedirectHandler, self_signed_certificate, serve_folder

LIMIT = 1_000_000
PASSWORD = "pw-only-for-the-first-host"
LOGIN = "Basic " + base64.b64encode(f"art:{PASSWORD}".encode()).decode()


@pytest.fixture
def netrc_for(tmp_path, monkeypatch):
    """Write a ``~/.netrc`` (through ``$NETRC``) with user ``art`` for the hosts given."""
    def write(*hosts: str) -> None:
        path = tmp_path / "netrc"
        path.write_text("".join(f"machine {host} login art password {PASSWORD}\n" for host in hosts), encoding="utf-8")
        monkeypatch.setenv("NETRC", str(path))
    write()
    return write


@pytest.mark.parametrize("url, first, expected", [
    ("http://127.0.0.1:8000/a.zip", "http://u:p@127.0.0.1:8000/a.zip", ("u", "p")),  # the link's own origin
    ("http://127.0.0.1/b.zip", "http://u:p@127.0.0.1:80/a.zip", ("u", "p")),  # the default port, spelled or not
    ("http://127.0.0.1:8001/a.zip", "http://u:p@127.0.0.1:8000/a.zip", None),  # another port
    ("http://localhost:8000/a.zip", "http://u:p@127.0.0.1:8000/a.zip", None),  # another host
    ("https://127.0.0.1:8000/a.zip", "http://u:p@127.0.0.1:8000/a.zip", None),  # another scheme
    ("https://example.org/a.zip", "https://example.org/a.zip", ("art", PASSWORD)),  # ~/.netrc: its host
    ("https://mirror.example.org/a.zip", "https://example.org/a.zip", None),  # ~/.netrc: only its host
    ("http://example.org/a.zip", "https://example.org/a.zip", None),  # never plain http after https
    ("http://example.org/a.zip", "https://u:p@example.org/a.zip", None),
])
def test_a_login_goes_only_where_it_was_written_for(netrc_for, url, first, expected):
    netrc_for("example.org")
    assert urls.login_for(url, first) == expected


def zip_site(folder: Path) -> Path:
    folder.mkdir()
    badfiles.write_zip(folder / "art.zip", badfiles.kaggle_members())
    return folder


def test_a_redirect_to_another_port_gets_no_login_from_the_link(tmp_path, netrc_for):
    www = zip_site(tmp_path / "www")
    with serve_folder(www) as target, serve_folder(www, RedirectHandler) as first:
        first.target = f"http://127.0.0.1:{target.server_port}"
        archive = fetch_url(f"http://art:{PASSWORD}@127.0.0.1:{first.server_port}/art.zip", tmp_path, 5, LIMIT, 60)
    assert archive.read_bytes() == (www / "art.zip").read_bytes()
    assert first.logins == [LOGIN] and target.logins == [None]


def test_a_redirect_to_another_host_gets_no_login_from_netrc(tmp_path, netrc_for):
    netrc_for("127.0.0.1")
    www = zip_site(tmp_path / "www")
    with serve_folder(www) as target, serve_folder(www, RedirectHandler) as first:
        first.target = f"http://localhost:{target.server_port}"
        fetch_url(f"http://127.0.0.1:{first.server_port}/art.zip", tmp_path, 5, LIMIT, 60)
    assert first.logins == [LOGIN] and target.logins == [None]


def test_no_login_travels_over_http_after_https(tmp_path, netrc_for, monkeypatch):
    netrc_for("127.0.0.1")  # even the entry for the very host the redirect names
    certificate = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    www = zip_site(tmp_path / "www")
    with serve_folder(www) as plain, serve_folder(www, RedirectHandler, tls=certificate) as secure:
        secure.target = f"http://127.0.0.1:{plain.server_port}"
        for link in (f"https://art:{PASSWORD}@127.0.0.1:{secure.server_port}/art.zip",
                     f"https://127.0.0.1:{secure.server_port}/art.zip"):
            fetch_url(link, tmp_path, 5, LIMIT, 60)
    assert secure.logins == [LOGIN, LOGIN] and plain.logins == [None, None]


def test_a_redirect_to_another_scheme_is_refused_in_one_line(tmp_path):
    www = zip_site(tmp_path / "www")
    with serve_folder(www, RedirectHandler) as first:
        first.target = "ftp://user:secret@127.0.0.1:21"
        with pytest.raises(PipelineError) as caught:
            fetch_url(f"http://127.0.0.1:{first.server_port}/art.zip", tmp_path, 5, LIMIT, 60)
    assert str(caught.value) == (
        f"http://127.0.0.1:{first.server_port}/art.zip: cannot download (redirected to ftp://127.0.0.1:21/art.zip: "
        "only http and https links are followed); check data.url and your connection")


def url_project(root: Path, url: str, **runtime) -> Path:
    """A project folder whose params read ``url`` (a 5 s read timeout) with the ``runtime`` settings given."""
    root.mkdir(exist_ok=True)
    write_params(root, {"data": {"source": "url", "url": url, "timeout": 5}, "runtime": runtime})
    return root


@pytest.mark.parametrize("stage", ["source", "download"])
def test_a_server_dripping_bytes_is_cut_off_at_download_seconds(tmp_path, stage):
    with serve_folder(tmp_path, DripHandler) as drip:
        drip.length, drip.interval = 100_000, 0.2  # each byte well within the read timeout; hours in all
        project = url_project(tmp_path / "project", f"http://127.0.0.1:{drip.server_port}/art.zip",
                              download_seconds=2)
        # The subprocess timeout only keeps a failure from hanging the suite; the stage must end by itself.
        proc = run_stage(stage, project, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {stage}: http://127.0.0.1:{drip.server_port}/art.zip: not done within runtime.download_seconds=2 s "
        "(the server sends too slowly); raise runtime.download_seconds, or check the link and your connection")
    assert temporaries(project) == []


def temporaries(project: Path) -> list[str]:
    """What a fetch leaves in ``data/`` besides outputs: its temporary folders."""
    data = project / "data"
    return sorted(entry.name for entry in data.iterdir() if entry.name.startswith(".")) if data.is_dir() else []


@pytest.mark.parametrize("stage, prefix", [("source", ".source-"), ("download", ".download-")])
def test_the_next_run_removes_what_a_killed_fetch_left(tmp_path, stage, prefix):
    www = zip_site(tmp_path / "www")
    with serve_folder(tmp_path, DripHandler) as drip:
        drip.length, drip.interval = 100_000, 0.05
        project = url_project(tmp_path / "project", f"http://127.0.0.1:{drip.server_port}/art.zip")
        proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=project, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        try:
            partial = wait_for_partial_download(project, proc)
        finally:
            proc.kill()
            proc.wait()
        assert partial.exists() and temporaries(project)[0].startswith(f"{prefix}{proc.pid}-")

    with serve_folder(www) as good:
        url_project(project, f"http://127.0.0.1:{good.server_port}/art.zip")
        run_stage(stage, project)
    assert temporaries(project) == []


def wait_for_partial_download(project: Path, proc: subprocess.Popen) -> Path:
    """The ``.part`` file of the download ``proc`` is running (the server drips, so it stays partial)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for part in (project / "data").glob(".*/.*.part"):
            return part
        time.sleep(0.05)
    raise AssertionError(f"no partial download appeared (exit code {proc.poll()})")


def test_a_download_within_its_bound_leaves_no_timer_behind(tmp_path):
    # The bound is a SIGALRM timer: once the download is done, nothing may fire later.
    assert threading.current_thread() is threading.main_thread()  # where the stages run, and the bound applies
    www = zip_site(tmp_path / "www")
    with serve_folder(www) as good:
        fetch_url(f"http://127.0.0.1:{good.server_port}/art.zip", tmp_path, 5, LIMIT, 0.5)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None, signal.default_int_handler)
