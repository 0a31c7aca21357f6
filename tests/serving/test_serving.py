"""Serving the MLflow Model: `mlflow models serve` answers as painter-predict does, and the page in a headless browser."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from painter_id.serving import page
from testkit.served import CHAMPION, NAME, as_lists, assert_same, predict_csv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def wait_for(url: str, proc: subprocess.Popen, log: Path, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_painter_predict(in_store, images, tmp_path, capsys):
    port = free_port()
    log = tmp_path / "serve.log"
    # uvicorn is started by name through a shell: the environment's bin must be on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION,
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                                  cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", server, log)
        names = sorted(p.name for p in images.iterdir())
        encoded = [[base64.b64encode((images / n).read_bytes()).decode()] for n in names]
        status, answer = post_json(f"http://127.0.0.1:{port}/invocations",
                                   {"dataframe_split": {"columns": ["image"], "data": encoded}, "params": {"top_k": 3}})
        assert status == 200, answer
        served = as_lists(answer["predictions"], names)
        assert_same(served, predict_csv(capsys, str(images), "--model", CHAMPION, "--top-k", "3"))

        text = base64.b64encode(b"not a painting").decode()
        status, answer = post_json(f"http://127.0.0.1:{port}/invocations", {"inputs": {"image": [text]}})
        assert status == 400 and "row 0: not an image" in answer["message"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture
def browser():
    """Headless Debian Chromium through its own chromedriver (Selenium Manager never runs, nothing is downloaded)."""
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,760"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page_url(in_store):
    """The page of ``@champion`` served on a free port of 127.0.0.1, uploads limited to 1 MB."""
    served = page.load(CHAMPION, in_store["uri"])
    server = make_server("127.0.0.1", 0, page.create_app(served, max_mb=1), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def upload(driver, url: str, path: Path, done: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(done))


@pytest.mark.slow
def test_page_in_a_headless_browser(in_store, page_url, browser, images, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    painting = sorted(images.iterdir())[0]
    upload(browser, page_url, painting, "return document.getElementById('result').dataset.done === '1'")
    rows = [row.text.split("\n") for row in browser.find_elements(By.CSS_SELECTOR, ".result-row")]
    expected = predict_csv(capsys, str(painting), "--model", CHAMPION, "--top-k", "5")[painting.name]
    assert [name for name, _ in rows] == [artist.replace("_", " ") for artist, _ in expected]
    assert [float(pct.rstrip(" %")) for _, pct in rows] == pytest.approx([100 * p for _, p in expected], abs=0.06)
    model_line = browser.find_element(By.ID, "model").text
    assert f"{NAME} version" in model_line and "alias champion" in model_line
    assert "tiny-lamb" in model_line and in_store["run"]["run_id"] in model_line

    notes = tmp_path / "notes.jpg"
    notes.write_text("just text\n")
    error_shown = "return document.getElementById('error').textContent.length > 0"
    upload(browser, page_url, notes, error_shown)
    assert browser.find_element(By.ID, "error").text.startswith("notes.jpg cannot be read as an image (not an image")

    big = tmp_path / "big.jpg"
    with open(big, "wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    upload(browser, page_url, big, error_shown)  # refused in the browser, before it is sent
    assert browser.find_element(By.ID, "error").text == "big.jpg is 2.0 MB; the limit is 1 MB."
    # ...and by the server, without the page's check: 413 with the reason
    request = urllib.request.Request(page_url + "predict", data=big.read_bytes(), method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=x",
                                              "Accept": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413 and "refused: the limit is 1 MB" in json.load(refused.value)["error"]
