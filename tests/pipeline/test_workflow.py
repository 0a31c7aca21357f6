"""The experiment workflow a user types, end to end, with real git, dvc and MLflow.

One temporary clone of the project on the smallest config: `dvc repro`, commit,
`dvc exp run -S model.frozen_layers=N`, `dvc metrics diff`, a queued experiment run by
`dvc queue start` (the three-point `-j 2` sweep is in tests/tracking/test_team_servers.py), then
the MLflow store (the default one, in the main workspace) must hold one finished run per
training with the right params, and `painter-compare` must list them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from testkit.project import STAGES, dvc, make_project, run, wait_for_queue, write_params

TINY = {
    "data": {"synthetic_artists": 3, "synthetic_images": 48},
    "oversample": {"min_count": 12},
    "resize": {"image_size": 32},
    # The small CNN: the workflow is about DVC and MLflow, and a keras.applications network
    # would add ~30 s of graph building to each of its trainings (they are tested in test_train).
    "model": {"backbone": "simple_cnn", "weights": "random", "frozen_layers": 0},
    "train": {"epochs": 2, "batch_size": 16},
    "evaluate": {"misclassified": 4},
    # MLflow Models are tested in tests/test_mlflow_model.py; here they would only add ~10 s a run.
    "mlflow": {"log_model": False},
}
# The default store must be used, so no test-wide override may leak in.
ENV = {"MLFLOW_TRACKING_URI": None, "DVC_ROOT": None, "DVC_EXP_NAME": None}


def _ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


def _runs(store: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("painter-identification")
    assert experiment is not None, "the train stage did not create the MLflow experiment"
    return client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """Run the README's workflow once; the tests below check what it left behind."""
    project = make_project(tmp_path_factory.mktemp("workflow") / "painter-id", TINY)
    log = {}
    log["repro"] = dvc(project, "repro", env=ENV).stdout
    run(["git", "add", "dvc.lock", "metrics"], project)
    run(["git", "commit", "-q", "-m", "baseline"], project)
    log["noop"] = dvc(project, "repro", env=ENV).stdout
    # Where runs are recorded is no dependency: another store or experiment name retrains nothing.
    params = (project / "params.yaml").read_text(encoding="utf-8")
    write_params(project, {**TINY, "mlflow": {"tracking_uri": "http://127.0.0.1:9/team", "experiment": "other",
                                              "log_model": True}})
    log["status_other_store"] = dvc(project, "status", "--json", env=ENV).stdout
    (project / "params.yaml").write_text(params, encoding="utf-8")
    log["exp"] = dvc(project, "exp", "run", "-n", "frozen4", "-S", "model.frozen_layers=4", env=ENV).stdout
    log["metrics_diff"] = dvc(project, "metrics", "diff", "--all", "--json", env=ENV).stdout
    log["only_changed"] = dvc(project, "exp", "show", "--only-changed", "--md", env=ENV).stdout
    # The baseline's params again: DVC restores train/evaluate from its run cache, and no
    # MLflow run is added.
    log["cached"] = dvc(project, "exp", "run", "-n", "baseline-again", "-S", "model.frozen_layers=0",
                        env=ENV).stdout
    log["runs_after_cached"] = len(_runs(project / "mlflow.db"))
    dvc(project, "exp", "run", "--queue", "-S", "model.frozen_layers=2", env=ENV)
    dvc(project, "queue", "start", env=ENV)
    log["queue_status"] = wait_for_queue(project, ENV)
    # Each queued experiment's log as a user reads it (the first task's is enough).
    task = next(line.split()[0] for line in log["queue_status"].splitlines() if "Success" in line)
    log["queue_logs"] = dvc(project, "queue", "logs", task, env=ENV).stdout
    log["exp_show"] = dvc(project, "exp", "show", "--json", env=ENV).stdout
    return project, log


@pytest.mark.slow
def test_repro_runs_all_stages_then_exp_run_only_retrains(workflow):
    project, log = workflow
    assert _ran(log["repro"]) == set(STAGES)
    # features reads model.frozen_layers (it says "not used" for a backbone that trains, in a second).
    assert _ran(log["exp"]) == {"features", "train", "evaluate"}
    diff = json.loads(log["metrics_diff"])
    # Results only, each once: no settings (layer or parameter counts), no times, no cross-validation copy.
    assert set(diff["metrics/eval.json"]) == {"scored_on", "accuracy", "top5_accuracy", "balanced_accuracy",
                                              "macro_f1"}, diff
    assert set(diff["metrics/train.json"]) == {"best_epoch", "epochs_run", "best_val_accuracy", "best_val_loss"}
    assert "metrics/cv.json" not in diff or not diff["metrics/cv.json"]
    # Freezing layers changes what is trained: fewer trainable parameters in MLflow, where sizes live.
    runs = {run.info.run_name: run.data.params for run in _runs(project / "mlflow.db")}
    baseline = next(params for name, params in runs.items() if name != "frozen4")
    assert int(runs["frozen4"]["model.trainable_params"]) < int(baseline["model.trainable_params"])


@pytest.mark.slow
def test_exp_show_only_changed_shows_the_param_and_what_it_changed(workflow):
    _, log = workflow
    header = [cell.strip() for cell in log["only_changed"].splitlines()[0].strip("|").split("|")]
    # The param that differs, the results, and the model it made: no code, data or time columns.
    assert "model.frozen_layers" in header and "accuracy" in header and "models" in header, header
    assert not [name for name in header if name.startswith(("painter_id", "stages/", "data/")) or "seconds" in name]
    assert len(header) <= 16, header


@pytest.mark.slow
def test_nothing_reruns_when_nothing_changed_nor_when_only_the_mlflow_store_does(workflow):
    project, log = workflow
    assert _ran(log["noop"]) == set() and "Running stage 'source'" in log["noop"]
    # source is always changed (it looks at the data each time); train and evaluate are not.
    assert set(json.loads(log["status_other_store"])) == {"source"}


@pytest.mark.slow
def test_run_cache_restore_logs_no_duplicate_run(workflow):
    project, log = workflow
    assert "is cached - skipping run" in log["cached"]
    assert _ran(log["cached"]) == set()
    assert log["runs_after_cached"] == 2


@pytest.mark.slow
def test_queued_sweep_ran_and_every_training_is_one_mlflow_run(workflow):
    project, log = workflow
    assert log["queue_status"].count("Success") == 1, log["queue_status"]
    runs = _runs(project / "mlflow.db")
    assert len(runs) == 3
    assert all(run.info.status == "FINISHED" for run in runs)
    frozen = sorted(int(run.data.params["model.frozen_layers"]) for run in runs)
    assert frozen == [0, 2, 4]
    for run_ in runs:
        assert run_.data.params["model.backbone"] == "simple_cnn"
        assert 0.0 <= run_.data.metrics["test_accuracy"] <= 1.0
    exp_runs = [r for r in runs if r.data.tags.get("dvc.exp_name")]
    assert len(exp_runs) == 2
    assert all(r.info.run_name == r.data.tags["dvc.exp_name"] for r in exp_runs)
    assert "frozen4" in {r.info.run_name for r in exp_runs}
    shown = log["exp_show"]
    assert all(r.data.tags["dvc.exp_name"] in shown for r in exp_runs)
    # Queued runs happen in copies under .dvc/tmp/exps; none may create a store of its own.
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))
    # Training progress reaches `dvc queue logs` during each epoch, not only at its end.
    assert "epoch 1/2: batch 1/" in log["queue_logs"] and "epoch 2/2: batch 1/" in log["queue_logs"], log["queue_logs"]


@pytest.mark.slow
def test_compare_lists_the_runs(workflow):
    project, _ = workflow
    proc = run([sys.executable, "-m", "painter_id.cli.compare", "--format", "csv", "--sort", "macro_f1"], project, env=ENV)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert sorted(int(r["model.frozen_layers"]) for r in rows) == [0, 2, 4]
    scores = [float(r["macro_f1"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert "model.backbone" not in rows[0] and "resize.image_size" not in rows[0]  # the same in every run
    assert all(1 <= float(r["best_epoch"]) for r in rows)
    every = run([sys.executable, "-m", "painter_id.cli.compare", "--format", "csv", "--all-params"], project, env=ENV)
    rows = list(csv.DictReader(io.StringIO(every.stdout)))
    assert {r["model.backbone"] for r in rows} == {"simple_cnn"} and {r["resize.image_size"] for r in rows} == {"32"}
    only = run([sys.executable, "-m", "painter_id.cli.compare", "--where", "model.frozen_layers=4"], project, env=ENV)
    lines = only.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["run", "accuracy"] and len(lines) == 2  # one run: no param differs
    assert "frozen4" in lines[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_mlflow_server_serves_the_runs_over_rest(workflow):
    project, _ = workflow
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{project / 'mlflow.db'}", "--workers", "1"],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=painter-identification",
                                            timeout=5) as reply:
                    experiment = json.load(reply)["experiment"]
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mlflow server did not start: {server.stderr.read().decode()[-2000:]}")
                time.sleep(1)
        request = urllib.request.Request(
            f"{base}/runs/search", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [experiment["experiment_id"]], "max_results": 100}).encode(),
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            runs = json.load(reply)["runs"]
        assert len(runs) == 3
        params = [{p["key"]: p["value"] for p in r["data"]["params"]} for r in runs]
        assert sorted(int(p["model.frozen_layers"]) for p in params) == [0, 2, 4]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.slow
def test_plots_show_draws_curves_per_artist_f1_confusion_and_images(workflow):
    project, _ = workflow
    shown = json.loads(dvc(project, "plots", "show", "--json", env=ENV).stdout)["data"]
    # Exactly the declared plots: the CSVs are drawn only by the top-level definitions.
    assert sorted(shown) == sorted(["Training accuracy", "Training loss", "Per-artist F1 on the test split",
                                    "Confusion matrix", "metrics/confusion.png", "metrics/misclassified.png"])
