"""The model as an MLflow Model: pyfunc outside the repo, the registry, `mlflow models serve`, the page.

One tiny simple_cnn (32 px, trained on images resized with ``crop``) is trained, evaluated and
registered once for the whole module; every test reads that store.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from PIL import Image

from painter_id import mlflow_model, page, predict, register
from painter_id.errors import PipelineError
from stages import evaluate, train
from tests.conftest import SAMPLE, make_resized_dataset, run
from tests.test_train import setup_project

NAME = "painter-id"
CHAMPION = f"models:/{NAME}@champion"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A git project whose run was trained (with its MLflow Model), evaluated and registered as ``@champion``."""
    root = tmp_path_factory.mktemp("served")
    make_resized_dataset(root, mode="crop")
    for cmd in (["git", "init", "-q"], ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q",
                                        "--allow-empty", "-m", "start"]):
        run(cmd, root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        db = setup_project(root, monkeypatch, {"train": {"epochs": 1}})
        monkeypatch.setenv("DVC_EXP_NAME", "tiny-lamb")
        train.main()
        evaluate.main()
        register.main([])
    uri = f"sqlite:///{db}"
    return {"root": root, "uri": uri, "run": json.loads((root / "models" / "run.json").read_text()),
            "eval": json.loads((root / "metrics" / "eval.json").read_text())}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Real paintings of any size (when ../shared has them) and made-up ones, JPEG and PNG, wide and tall."""
    folder = tmp_path_factory.mktemp("images")
    sample = SAMPLE / "images" / "Titian"
    for src in sorted(sample.iterdir())[:2] if sample.is_dir() else []:
        shutil.copy(src, folder / src.name)
    Image.new("RGB", (300, 90), (200, 40, 30)).save(folder / "wide.png")
    Image.effect_noise((70, 260), 60).convert("RGB").save(folder / "tall.jpg")
    return folder


@pytest.fixture
def in_store(store, monkeypatch):
    """Commands run in the project with its store, as a user would."""
    monkeypatch.chdir(store["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    return store


def predict_csv(capsys, *args: str) -> dict[str, list[tuple[str, float]]]:
    """``painter-predict`` output as ``{file name: [(artist, probability), ...]}``."""
    predict.main(list(args))
    grouped: dict[str, list[tuple[str, float]]] = {}
    for row in csv.DictReader(io.StringIO(capsys.readouterr().out)):
        grouped.setdefault(Path(row["path"]).name, []).append((row["artist"], float(row["probability"])))
    return grouped


def as_lists(frame_rows: list[dict], names: list[str]) -> dict[str, list[tuple[str, float]]]:
    """The model's long output (index, rank, artist, probability) keyed by file name."""
    grouped: dict[str, list[tuple[str, float]]] = {}
    for row in sorted(frame_rows, key=lambda r: (r["index"], r["rank"])):
        grouped.setdefault(names[row["index"]], []).append((row["artist"], row["probability"]))
    return grouped


def assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name in expected:
        assert [a for a, _ in got[name]] == [a for a, _ in expected[name]], name
        assert [p for _, p in got[name]] == pytest.approx([p for _, p in expected[name]], abs=1e-5), name


def test_training_logs_a_pyfunc_model_with_signature_example_and_the_test_metrics(in_store):
    store = in_store
    client = mlflow.MlflowClient(store["uri"])
    model_id = store["run"]["model_id"]
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == store["run"]["run_id"] and logged.name == "model"
    metrics = {m.key: m.value for m in logged.metrics}
    assert metrics["test_accuracy"] == store["eval"]["accuracy"] and "train.best_epoch" in metrics
    folder = Path(logged.artifact_location.removeprefix("file://"))
    info = mlflow.models.get_model_info(f"models:/{model_id}")
    assert info.signature.inputs.input_names() == ["image"]
    assert {p.name: p.default for p in info.signature.params.params} == {"top_k": 5, "tta": "none"}
    assert (folder / "code" / "painter_id" / "images.py").is_file()  # the package travels with the model
    assert (folder / "artifacts" / "model.keras").is_file() and (folder / "serving_input_example.json").is_file()
    pins = (folder / "requirements.txt").read_text().split()
    assert {p.split("==")[0] for p in pins} >= {"mlflow", "tensorflow", "keras", "pillow"}


def test_model_loads_and_predicts_in_a_fresh_process_outside_the_repo(store, images, tmp_path, capsys,
                                                                      monkeypatch):
    names = sorted(p.name for p in images.iterdir())
    script = (
        "import base64, json, sys, mlflow, pandas as pd\n"
        f"names = {names!r}\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        f"frame = pd.DataFrame({{'image': [base64.b64encode(open({str(images)!r} + '/' + n, 'rb').read()).decode()"
        " for n in names]})\n"
        "print(model.predict(frame, params={'top_k': 2}).to_json(orient='records'))\n"
    )
    env = {"MLFLOW_TRACKING_URI": store["uri"], "PYTHONPATH": None}  # no repo on the path, not in the repo
    proc = run([sys.executable, "-c", script, CHAMPION], tmp_path, env=env)
    got = as_lists(json.loads(proc.stdout.strip().splitlines()[-1]), names)

    # The same images through painter-predict on the trained .keras file beside its labels and
    # preprocessing.json (crop): labels and the resize mode travelled with the MLflow Model.
    monkeypatch.chdir(store["root"])
    expected = predict_csv(capsys, str(images), "--model", "models/model.keras", "--top-k", "2")
    assert len(names) >= 2 and all(len(rows) == 2 for rows in got.values())
    assert_same(got, expected)


def test_predict_with_a_registered_model_uri(in_store, images, capsys):
    from_registry = predict_csv(capsys, str(images), "--model", CHAMPION, "--top-k", "3", "--tta", "flip")
    from_file = predict_csv(capsys, str(images), "--model", "models/model.keras", "--top-k", "3", "--tta", "flip")
    assert_same(from_registry, from_file)
    with pytest.raises(PipelineError, match="cannot load MLflow model models:/painter-id@nosuch"):
        predict.main([str(images), "--model", f"models:/{NAME}@nosuch"])


def test_register_tags_the_version_and_moves_the_alias(in_store, capsys):
    client = mlflow.MlflowClient(in_store["uri"])
    first = client.get_model_version_by_alias(NAME, "champion")
    assert first.run_id == in_store["run"]["run_id"]
    commit = run(["git", "rev-parse", "HEAD"], in_store["root"]).stdout.strip()
    assert first.tags["dvc_exp"] == "tiny-lamb" and first.tags["git_commit"] == commit

    register.main(["--run", "tiny-lamb"])

    assert "alias 'champion' -> version" in capsys.readouterr().out
    now = client.get_model_version_by_alias(NAME, "champion")
    assert int(now.version) == int(first.version) + 1 and now.run_id == first.run_id
    with pytest.raises(PipelineError, match="--run 'nosuch': no such run"):
        register.main(["--run", "nosuch"])
    with pytest.raises(PipelineError, match="no finished run has both the metric 'test_nothing'"):
        register.main(["--metric", "test_nothing"])


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
    server = page.make_server("127.0.0.1", 0, page.create_app(served, max_mb=1), threaded=True)
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
