"""The source as a dependency: a changed folder, archive, URL or Kaggle version reruns download, and nothing else does.

A folder, an archive or a link is DVC's own `${data.path}` / `${data.url}` dependency (a bare
`dvc status` names download); a Kaggle version, or a link's bytes when the server sends no
ETag or Last-Modified, goes through the source stage. End to end under the real `dvc status` /
`dvc repro` (tiny Kaggle-layout sources, stopping at `download`), plus the source stage's
fingerprints and one-line errors in-process: local HTTP servers, and a stand-in for Kaggle's API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from painter_id.core.errors import PipelineError
from painter_id.core.params import DataParams
from painter_id.sources.fetch import fingerprint
from testkit.checks import read_rows
from testkit.images import jpeg, make_source
from testkit.project import download, dvc, make_project
from testkit.web import QuietHandler, serve_folder

FOLDERS = {"Ann_Ash": 4, "Bob_Birch": 4}
DATA_STAGES = ("source", "download")


def ran(output: str) -> set[str]:
    return {stage for stage in DATA_STAGES if f"Running stage '{stage}'" in output}


def manifest(project: Path) -> dict[str, str]:
    """``path -> sha256`` of what download kept."""
    return {row["path"]: row["sha256"] for row in read_rows(project / "data" / "raw" / "manifest.csv")}


def zip_folder(folder: Path, dest: Path) -> Path:
    """``dest`` (a .zip) holding ``folder``'s files."""
    shutil.make_archive(str(dest.with_suffix("")), "zip", folder)
    return dest


def changed(project: Path, *stages: str, env: dict | None = None) -> set[str]:
    return set(yaml.safe_load(dvc(project, "status", *stages, "--json", env=env).stdout))


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_folder_source_add_remove_replace_show_in_bare_dvc_status_and_nothing_else_does(tmp_path):
    # data.path is relative, as users write it: taken from the main workspace.
    make_source(tmp_path / "paintings", FOLDERS)
    project = make_project(tmp_path / "project", {"data": {"source": "path", "path": "../paintings"}})
    images = tmp_path / "paintings" / "images" / "images"
    assert ran(dvc(project, "repro", "download").stdout) == {"source", "download"}
    before = manifest(project)

    # Nothing changed: source looks, nothing else runs, and `dvc status` says only that
    # (asked about download: the stages after it never ran here).
    again = dvc(project, "repro", "download").stdout
    assert ran(again) == {"source"} and "Stage 'download' didn't change" in again
    assert changed(project, "download") == set()
    # Same bytes, new modification time (a copy, a backup restored): DVC rehashes, nothing changed.
    os.utime(images / "Ann_Ash" / "Ann_Ash_1.jpg")
    assert changed(project, "download") == set()

    # A painting added: the bare `dvc status` (no stage run first) names download.
    jpeg(images / "Ann_Ash" / "Ann_Ash_new.jpg", seed=99)
    assert changed(project, "download") == {"download"}
    assert ran(dvc(project, "repro", "download").stdout) == {"source", "download"}
    assert set(manifest(project)) - set(before) == {"images/Ann_Ash/Ann_Ash_new.jpg"}

    # One removed, another rewritten in place under the same name.
    (images / "Bob_Birch" / "Bob_Birch_1.jpg").unlink()
    old_sha = manifest(project)["images/Ann_Ash/Ann_Ash_2.jpg"]
    jpeg(images / "Ann_Ash" / "Ann_Ash_2.jpg", seed=123)
    assert changed(project, "download") == {"download"}
    assert ran(dvc(project, "repro", "download").stdout) == {"source", "download"}
    after = manifest(project)
    assert "images/Bob_Birch/Bob_Birch_1.jpg" not in after and after["images/Ann_Ash/Ann_Ash_2.jpg"] != old_sha

    # Code: editing a module of a library folder download imports from marks it changed; a
    # module of a folder it never imports (the page) does not.
    with open(project / "painter_id" / "serving" / "page.py", "a", encoding="utf-8") as handle:
        handle.write("\n# edited\n")
    assert changed(project, "download") == set()
    with open(project / "painter_id" / "sources" / "layout.py", "a", encoding="utf-8") as handle:
        handle.write("\n# edited\n")
    assert changed(project, "download") == {"download"}


@pytest.mark.slow
def test_archive_replaced_under_the_same_name_shows_in_dvc_status_and_a_missing_one_is_one_line(tmp_path):
    folder = make_source(tmp_path / "src", FOLDERS)
    archive = zip_folder(folder, tmp_path / "art.zip")
    project = make_project(tmp_path / "project", {"data": {"source": "path", "path": str(archive)}})
    dvc(project, "repro", "download")

    jpeg(folder / "images" / "images" / "Bob_Birch" / "Bob_Birch_9.jpg", seed=77)
    zip_folder(folder, archive)
    assert changed(project, "download") == {"download"}
    assert ran(dvc(project, "repro", "download").stdout) == {"source", "download"}
    assert "images/Bob_Birch/Bob_Birch_9.jpg" in manifest(project)

    # Gone: source, which runs first, names the param (not DVC's bare "No such file").
    archive.unlink()
    proc = dvc(project, "repro", "download", check=False)
    assert proc.returncode != 0 and "Running stage 'download'" not in proc.stdout
    assert f"error: source: data.path {archive}: no such folder or archive" in proc.stderr


@pytest.mark.slow
def test_url_serving_other_bytes_shows_in_bare_dvc_status_with_credentials_from_netrc(tmp_path, private_web):
    www, host, password = private_web
    folder = make_source(tmp_path / "src", FOLDERS)
    archive = zip_folder(folder, www / "art.zip")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login art password {password}\n", encoding="utf-8")
    env = {**os.environ, "NETRC": str(netrc)}  # read by DVC's HTTP client and by the stages alike
    project = make_project(tmp_path / "project", {"data": {"source": "url", "url": f"http://{host}/art.zip"}})
    assert ran(dvc(project, "repro", "download", env=env).stdout) == {"source", "download"}
    assert changed(project, "download", env=env) == set()

    # Other bytes at the same link: a bare `dvc status` (no stage run first) names download.
    jpeg(folder / "images" / "images" / "Ann_Ash" / "Ann_Ash_9.jpg", seed=55)
    zip_folder(folder, archive)
    assert changed(project, "download", env=env) == {"download"}
    assert ran(dvc(project, "repro", "download", env=env).stdout) == {"source", "download"}
    assert "images/Ann_Ash/Ann_Ash_9.jpg" in manifest(project)
    assert changed(project, "download", env=env) == set()
    recorded = json.loads((project / "data" / "source.json").read_text(encoding="utf-8"))
    assert recorded["Content-Length"] == str(archive.stat().st_size)
    lock = (project / "dvc.lock").read_text(encoding="utf-8")
    assert f"http://{host}/art.zip" in lock and password not in lock


# ------------------------------------------------------------------ fingerprints in-process


def test_path_fingerprint_is_where_and_what_not_the_contents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = make_source(tmp_path / "src", {"Ann": 2})
    zip_folder(folder, tmp_path / "art.zip")
    first = fingerprint(DataParams(source="path", path="src"), 60.0)
    assert first == {"source": "path", "path": "src", "kind": "folder"}
    jpeg(folder / "images" / "images" / "Ann" / "Ann_9.jpg", seed=3)
    assert fingerprint(DataParams(source="path", path="src"), 60.0) == first  # DVC's own dependency sees that
    assert fingerprint(DataParams(source="path", path="art.zip"), 60.0)["kind"] == "archive"


@pytest.mark.parametrize("path, expected", [
    ("nowhere", "data.path nowhere: no such folder or archive"),
    ("~/paintings", "data.path ~/paintings: DVC does not expand ~"),
])
def test_path_dvc_cannot_find_is_one_line(tmp_path, monkeypatch, path, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=expected):
        fingerprint(DataParams(source="path", path=path), 60.0)


def test_relative_path_in_an_experiment_copy_is_one_line(tmp_path, monkeypatch):
    # Queued and --temp experiments run in <repo>/.dvc/tmp/exps/<name>/ (DVC_ROOT names the
    # repo): DVC would take ../src from there, where it is not.
    make_source(tmp_path / "src", {"Ann": 2})
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpx1"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(copy))
    with pytest.raises(PipelineError, match=r"data.path \.\./src is relative, .* give the absolute path"):
        fingerprint(DataParams(source="path", path="../src"), 60.0)
    assert fingerprint(DataParams(source="path", path=str(tmp_path / "src")), 60.0)["kind"] == "folder"


class NoValidators(QuietHandler):
    """Serves files without Last-Modified (and without ETag), as some servers do."""

    def send_header(self, keyword, value):
        if keyword.lower() != "last-modified":
            super().send_header(keyword, value)


@pytest.mark.parametrize("handler, key", [(QuietHandler, "Last-Modified"), (NoValidators, "sha256")])
def test_url_fingerprint_uses_validators_or_else_the_bytes(tmp_path, monkeypatch, handler, key):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.zip").write_bytes(b"first archive")
    with serve_folder(www, handler) as server:
        params = DataParams(source="url", url=f"http://127.0.0.1:{server.server_address[1]}/a.zip", timeout=5)
        first = fingerprint(params, 60.0)
        assert key in first and fingerprint(params, 60.0) == first
        (www / "a.zip").write_bytes(b"second archive, longer")
        assert fingerprint(params, 60.0) != first
    assert list((tmp_path / "data").iterdir()) == []  # the hashed copy is gone


def test_url_unreachable_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PipelineError, match=r"127.0.0.1:\d+/a.zip: cannot download"):
        fingerprint(DataParams(source="url", url=f"http://127.0.0.1:{port}/a.zip", timeout=5), 60.0)


class KaggleStandIn(BaseHTTPRequestHandler):
    """Answers kagglehub's GetDataset call the way Kaggle's API does, with version 7."""

    requests: list[tuple[str, dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        KaggleStandIn.requests.append((self.path, body))
        reply = json.dumps({"currentVersionNumber": 7}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def kaggle_api(monkeypatch):
    """Kaggle's API on localhost:7777, where kagglehub's TEST environment sends its calls."""
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("KAGGLE_USERNAME", "art")
    monkeypatch.setenv("KAGGLE_KEY", "k" * 32)
    try:
        server = ThreadingHTTPServer(("127.0.0.1", 7777), KaggleStandIn)
    except OSError:
        pytest.skip("port 7777 (kagglehub's test endpoint) is busy")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_kaggle_fingerprint_is_the_current_version_looked_up_on_the_api(monkeypatch):
    KaggleStandIn.requests.clear()
    with kaggle_api(monkeypatch):
        found = fingerprint(DataParams(source="kaggle", kaggle_dataset="ikarus777/best-artworks-of-all-time"), 60.0)
    assert found == {"source": "kaggle", "dataset": "ikarus777/best-artworks-of-all-time", "version": 7}
    (path, body), = KaggleStandIn.requests
    assert path.endswith("/GetDataset") and body == {"ownerSlug": "ikarus777", "datasetSlug": "best-artworks-of-all-time"}


def test_kaggle_pinned_version_needs_no_network_and_offline_lookup_is_one_line(monkeypatch):
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")  # localhost:7777, where nothing listens
    monkeypatch.setenv("KAGGLE_USERNAME", "art")
    monkeypatch.setenv("KAGGLE_KEY", "s3cr3tkey")
    pinned = fingerprint(DataParams(source="kaggle", kaggle_dataset="a/b/versions/3"), 60.0)
    assert pinned["version"] == 3
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 7777)) == 0:
            pytest.skip("something listens on port 7777")
    with pytest.raises(PipelineError) as info:
        fingerprint(DataParams(source="kaggle", kaggle_dataset="a/b"), 60.0)
    message = str(info.value)
    assert message.startswith("Kaggle: looking up the current version of a/b failed (") and "connection" in message
    assert "\n" not in message and "s3cr3tkey" not in message


def test_download_fetches_the_version_source_recorded(tmp_path, monkeypatch):
    import kagglehub

    asked = []

    def fake_download(handle, *args, **kwargs):  # the internet, mocked: kagglehub's cache of that version
        asked.append(handle)
        return str(make_source(tmp_path / "kaggle", FOLDERS))

    monkeypatch.setattr(kagglehub, "dataset_download", fake_download)
    monkeypatch.setenv("KAGGLE_USERNAME", "art")
    monkeypatch.setenv("KAGGLE_KEY", "k" * 32)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "source.json").write_text(json.dumps({"source": "kaggle", "dataset": "a/b", "version": 7}))
    download(tmp_path, monkeypatch, source="kaggle", kaggle_dataset="a/b")
    assert asked == ["a/b/versions/7"]
