"""The model as an MLflow Model: pyfunc outside the repo, the registry, `mlflow models serve`, the page.

One tiny simple_cnn (32 px, trained on images resized with ``crop``) is trained, evaluated and
registered once for the whole module; every test reads that store.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow
import pytest

from painter_id.cli import predict as predict_command
from painter_id.core.errors import PipelineError
from testkit.project import run
from testkit.served import CHAMPION, NAME, as_lists, assert_same, predict_csv


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
    assert (folder / "code" / "painter_id" / "data" / "images.py").is_file()  # the package travels with the model
    assert (folder / "artifacts" / "model.keras").is_file() and (folder / "serving_input_example.json").is_file()
    pins = (folder / "requirements.txt").read_text().split()
    assert {p.split("==")[0] for p in pins} >= {"mlflow", "tensorflow", "keras", "pillow"}


@pytest.mark.slow
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
        predict_command.main([str(images), "--model", f"models:/{NAME}@nosuch"])


