"""HTTP downloads and their logins: links, ~/.netrc, timeouts, and secrets that never reach a log, an output or MLflow."""

from __future__ import annotations

import shutil
import socket

import pytest

from painter_id.core import urls
from painter_id.core.errors import PipelineError
from painter_id.core.urls import redact_url
from painter_id.sources.downloads import fetch_url
from testkit import badfiles
from testkit.badfiles import DURER_NFC, DURER_NFD
from testkit.checks import read_rows
from testkit.images import make_raw_dataset, make_source
from testkit.project import download, run_stage, stage_main, write_params

LIMIT = 1_000_000


class _Response:
    """What kagglehub's HTTP error carries: a status code."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def test_url_password_comes_from_netrc_and_an_env_reference_is_one_line(tmp_path, monkeypatch, private_web):
    www, host, password = private_web
    badfiles.write_zip(www / "art.zip", badfiles.kaggle_members())
    monkeypatch.chdir(tmp_path)
    # DVC checks data.url itself (a dependency of download) and cannot expand ${NAME}.
    write_params(tmp_path, {"data": {"source": "url", "url": f"http://art:${{ART_TOKEN}}@{host}/art.zip"}})
    with pytest.raises(PipelineError, match=r"data\.url holds \$\{ART_TOKEN\}, .* put them in ~/\.netrc"):
        stage_main("download")
    write_params(tmp_path, {"data": {"source": "url", "url": f"http://{host}/art.zip"}})
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    with pytest.raises(PipelineError, match=r"HTTP 401 .*; check data\.url and its login in ~/\.netrc \(\$NETRC\)$"):
        stage_main("download")
    (tmp_path / "netrc").write_text(f"machine 127.0.0.1 login art password {password}\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    stage_main("download")
    assert len(read_rows(tmp_path / "data" / "raw" / "manifest.csv")) == 4
    assert password not in (tmp_path / "params.yaml").read_text()


def test_a_broken_netrc_is_one_line_naming_it(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("default\n  bogus s3cret-token\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(PipelineError, match=rf"{netrc}: cannot read it \(NetrcParseError\); fix or remove") as caught:
        urls.authorized_request("http://127.0.0.1:9/a.zip")
    assert "s3cret" not in str(caught.value)


def test_redact_url_drops_credentials_and_query():
    assert redact_url("https://bob:pw@example.org:8443/a/b.zip?sig=XYZ#frag") == "https://example.org:8443/a/b.zip"


def test_fetch_url_timeout_is_one_line(tmp_path):
    # A socket that accepts connections (kernel backlog) but never answers.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/data.zip?key=SECRET"
        with pytest.raises(PipelineError) as info:
            fetch_url(url, tmp_path, timeout=0.5, max_bytes=LIMIT, seconds=60)
    message = str(info.value)
    assert "data.timeout=0.5" in message and "SECRET" not in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_fetch_url_unreachable(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PipelineError, match=rf"127\.0\.0\.1:{port}/x\.zip: cannot download"):
        fetch_url(f"http://127.0.0.1:{port}/x.zip", tmp_path, timeout=2, max_bytes=LIMIT, seconds=60)


@pytest.mark.parametrize("fmt, suffix", [("zip", ".zip"), ("gztar", ".tar.gz")])
def test_url_source_zip_and_tar_gz(tmp_path, monkeypatch, web, fmt, suffix):
    www, base = web
    src = make_source(tmp_path / "src", {DURER_NFD: 2, "Claude_Monet": 3}, names=["Albrecht Dürer", "Claude Monet"])
    shutil.make_archive(str(www / "artworks"), fmt, root_dir=src)
    (tmp_path / "proj").mkdir()
    raw = download(tmp_path / "proj", monkeypatch, source="url", url=f"{base}/artworks{suffix}", timeout=10)
    manifest = read_rows(raw / "manifest.csv")
    assert sorted({r["artist"] for r in manifest}) == ["Albrecht Dürer", "Claude Monet"] and len(manifest) == 5
    assert (raw / "images" / DURER_NFC / f"{DURER_NFC}_2.jpg").is_file()
    assert [p.name for p in (tmp_path / "proj" / "data").iterdir()] == ["raw"]  # download + extraction removed


def test_url_404_is_one_line_without_secrets_and_keeps_previous(tmp_path, monkeypatch, web):
    _, base = web
    make_raw_dataset(tmp_path, {"Old One": 3, "Old Two": 3})
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*"))
    url = base.replace("http://", "http://alice:hunter2@") + "/missing.zip?token=SECRET"
    with pytest.raises(PipelineError) as info:
        download(tmp_path, monkeypatch, source="url", url=url, timeout=5)
    message = str(info.value)
    assert "\n" not in message and "HTTP 404" in message and f"{base}/missing.zip".replace("http://", "") in message
    assert "hunter2" not in message and "alice" not in message and "SECRET" not in message
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*")) == before


def test_url_larger_than_max_archive_bytes_is_refused(tmp_path, monkeypatch, web):
    www, base = web
    (www / "big.zip").write_bytes(bytes(5000))
    with pytest.raises(PipelineError, match=r"big\.zip: the download is larger than data\.max_archive_bytes=1000"):
        download(tmp_path, monkeypatch, source="url", url=f"{base}/big.zip", max_archive_bytes=1000)
    assert [p.name for p in (tmp_path / "data").iterdir()] == []


def test_kaggle_without_credentials_is_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "home"
    empty.mkdir()
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    write_params(tmp_path, {"data": {"source": "kaggle"}})
    proc = run_stage("download", tmp_path, check=False, env={"HOME": str(empty), "KAGGLE_CONFIG_DIR": str(empty)})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: download: Kaggle: no credentials") and "KAGGLE_USERNAME" in last and "kaggle.json" in last
    assert not (tmp_path / "data" / "raw").exists()


@pytest.mark.parametrize(
    "error, expected",
    [
        (type("KaggleApiHTTPError", (Exception,), {"response": _Response(401)})("401 for user bob key s3cr3tkey"),
         "rejected the credentials"),
        (ConnectionError("cannot reach kaggle.com with key s3cr3tkey"), "failed (ConnectionError)"),
    ],
)
def test_kaggle_rejected_or_offline_never_shows_the_key(tmp_path, monkeypatch, caplog, error, expected):
    import kagglehub

    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    monkeypatch.setenv("KAGGLE_KEY", "s3cr3tkey")
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)

    def fail(handle, *args, **kwargs):
        raise error

    monkeypatch.setattr(kagglehub, "dataset_download", fail)
    with pytest.raises(PipelineError) as info:
        download(tmp_path, monkeypatch, source="kaggle")
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert "s3cr3tkey" not in message and "s3cr3tkey" not in caplog.text
    assert not (tmp_path / "data" / "raw").exists()
