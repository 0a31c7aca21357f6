"""Multi-worker training for real: two ``python -m stages.train`` processes on 127.0.0.1 joined by ``TF_CONFIG``.

Each worker has its own copy of the prepared workspace (two machines after the same ``dvc pull``)
and both record into one MLflow store (the team's tracking server). This is how TensorFlow tests
``MultiWorkerMirroredStrategy`` itself: one process per task, the cluster on local ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import boto3  # noqa: F401  # the team extra must be installed: a missing package fails, never skips
import dvc_s3  # noqa: F401
import keras
import mlflow
import numpy as np
import pgserver  # noqa: F401
import psycopg  # noqa: F401
import pytest

from painter_id.core.errors import PipelineError
from painter_id.model import model_files
from testkit.images import make_resized_dataset
from testkit.project import REPO_ROOT, run, run_stage, stage_main, write_params
from testkit.project import setup_frozen as setup

pytestmark = pytest.mark.slow

# No dropout or augmentation: random layers draw different numbers on each replica, so only a
# deterministic model can be compared number for number with one process.
PARAMS = {"model": {"backbone": "simple_cnn", "weights": "random", "dropout": 0.0},
          # 18 training rows in batches of 6, 6 validation rows: every batch splits 3 + 3 over the workers.
          "train": {"epochs": 2, "batch_size": 6, "flip": False, "validation_split": 0.25},
          "mlflow": {"log_model": False}}
# Float32 sums in another order (each worker's half-batch, then an all-reduce) differ in the last bits.
TOLERANCE = 1e-5
# Only a cap against a hang, far above the times in the README: every process starts TensorFlow on 2 shared cores.
CAP_S = 400


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def workspace(root: Path, store: str, train: dict) -> Path:
    """A prepared project folder (``data/resized`` and ``params.yaml``) and a private temp folder."""
    make_resized_dataset(root)
    write_params(root, {**PARAMS, "train": {**PARAMS["train"], **train}, "mlflow": {**PARAMS["mlflow"], "tracking_uri": store}})
    (root / "tmp").mkdir()
    run_stage("features", root)  # the backbone trains: "not used", in a second
    return root


def start_train(root: Path, tf_config: dict | None) -> subprocess.Popen:
    """``python -m stages.train`` in ``root``, in its own process group, its output in ``root/train.log``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": "-1", "TMPDIR": str(root / "tmp")}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    with open(root / "train.log", "w", encoding="utf-8") as log:
        return subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=root, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def processes() -> Iterator[list[subprocess.Popen]]:
    """A list to start processes into; on the way out each one still running is killed with its group."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_workers(procs: list[subprocess.Popen], roots: list[Path]) -> list[subprocess.Popen]:
    """Worker 0 (the chief) in ``roots[0]`` and worker 1 in ``roots[1]``, added to ``procs``."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = [start_train(root, {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
               for index, root in enumerate(roots)]
    procs.extend(workers)
    return workers


def finish(proc: subprocess.Popen, root: Path) -> str:
    """Wait (at most ``CAP_S``) for a training process; its output."""
    try:
        proc.wait(CAP_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"train in {root} still running after {CAP_S} s:\n{(root / 'train.log').read_text()[-3000:]}")
    return (root / "train.log").read_text(encoding="utf-8")


def runs(store: str) -> list:
    client = mlflow.MlflowClient(store)
    return [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]


def model_weights(root: Path) -> list[np.ndarray]:
    return model_files.load_model(root / "models" / "model.keras").get_weights()


def test_two_workers_train_one_model_as_one_process_does(tmp_path):
    single_store, team_store = (f"sqlite:///{tmp_path / name}.db" for name in ("single", "team"))
    single = workspace(tmp_path / "single", single_store, {"strategy": "auto"})
    chief, worker = (workspace(tmp_path / name, team_store, {"strategy": "multi_worker"}) for name in ("chief", "worker"))

    with processes() as procs:
        # The single process runs beside the workers: it shares nothing with them but the CPU.
        alone = start_train(single, None)
        procs.append(alone)
        workers = start_workers(procs, [chief, worker])
        logs = [finish(proc, root) for proc, root in zip(workers, [chief, worker])]
        finish(alone, single)
    codes = [proc.returncode for proc in workers]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert alone.returncode == 0, (single / "train.log").read_text()[-3000:]
    assert "strategy CollectiveAllReduceStrategy: 2 replica(s)" in logs[0]  # MultiWorkerMirroredStrategy's class
    # Each worker read its half of every batch of 6 (3 batches, 18 rows), not the whole batch.
    assert all("this worker trained on 9 rows in epoch 1" in log for log in logs)

    # One run, the chief's; the worker wrote nothing, not even a leftover temporary file.
    (run,) = runs(team_store)
    assert run.info.status == "FINISHED" and run.data.tags["painter_id.pid"] == str(workers[0].pid)
    assert json.loads((chief / "models" / "run.json").read_text())["run_id"] == run.info.run_id
    assert sorted(p.name for p in worker.iterdir()) == ["data", "params.yaml", "tmp", "train.log"]
    assert list((worker / "tmp").iterdir()) == [] and list((chief / "tmp").iterdir()) == []

    # The same model as one process trained, epoch for epoch.
    for ours, theirs in zip(model_weights(chief), model_weights(single), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE)
    ours, theirs = (np.genfromtxt(root / "metrics" / "history.csv", delimiter=",", names=True) for root in (chief, single))
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=0, atol=TOLERANCE)
    assert len(ours) == 2 and run.data.metrics["train.epochs_run"] == 2


def test_a_killed_worker_stops_the_chief_with_one_line(tmp_path):
    store = f"sqlite:///{tmp_path / 'team.db'}"
    # Long enough that worker 1 dies mid-training; nothing stops it early.
    long = {"strategy": "multi_worker", "epochs": 1000, "early_stopping_patience": 1000}
    chief, worker = (workspace(tmp_path / name, store, long) for name in ("chief", "worker"))

    with processes() as procs:
        start_workers(procs, [chief, worker])
        deadline = time.monotonic() + CAP_S
        while "epoch 2/1000" not in (chief / "train.log").read_text(encoding="utf-8"):
            assert procs[0].poll() is None and procs[1].poll() is None, (chief / "train.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the workers did not reach epoch 2"
            time.sleep(0.5)
        os.killpg(procs[1].pid, signal.SIGKILL)
        killed = time.monotonic()
        log = finish(procs[0], chief)
        print(f"chief stopped {time.monotonic() - killed:.1f} s after worker 1 was killed")

    assert procs[0].returncode == 2, log[-3000:]
    last = log.strip().splitlines()[-1]
    assert last.startswith("error: train: train.strategy multi_worker: training stopped because another worker"), last
    assert "start training again on every machine in TF_CONFIG" in last and "Traceback" not in log
    # The folders exist (train checks up front that it can write them), but nothing was written in them.
    # Nothing half-written: models/ appears only whole (it never did), metrics/ and the temp folder stay empty.
    assert not (chief / "models").exists()
    assert not [*(chief / "metrics").iterdir(), *(chief / "tmp").iterdir()]
    (run,) = runs(store)
    assert run.info.status == "FAILED"


def _tf_config(task_type: str, index: int, chief: bool = False) -> dict:
    cluster = {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]}
    if chief:
        cluster["chief"] = ["127.0.0.1:20000"]
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


@pytest.mark.parametrize("strategy, env, chief", [
    ("auto", _tf_config("worker", 1), True),  # TF_CONFIG matters only to multi_worker
    ("multi_worker", {}, True),  # no cluster: this machine trains alone
    ("multi_worker", _tf_config("worker", 0), True),  # no chief task: worker 0 records
    ("multi_worker", _tf_config("worker", 1), False),
    ("multi_worker", _tf_config("chief", 0, chief=True), True),
    ("multi_worker", _tf_config("worker", 0, chief=True), False),  # a chief task exists: worker 0 only trains
])
def test_only_the_chief_records_a_multi_worker_training(strategy, env, chief):
    from painter_id.model.cluster import is_chief

    assert is_chief(strategy, env) is chief


def test_a_bad_tf_config_is_a_one_line_error():
    from painter_id.model.cluster import is_chief

    with pytest.raises(PipelineError, match="TF_CONFIG: not a valid cluster description"):
        is_chief("multi_worker", {"TF_CONFIG": '{"task": {"type": "worker"}}'})


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    make_resized_dataset(tmp_path)
    write_params(tmp_path, {"model": {"backbone": "simple_cnn", "weights": "random"},
                            # 18 training and 6 validation rows: every batch splits evenly over 2 replicas.
                            "train": {"epochs": 1, "batch_size": 8, "strategy": "mirrored", "validation_split": 0.25},
                            "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    # The CPU must be split before TensorFlow initialises, so this runs in its own interpreter.
    script = textwrap.dedent("""
        import logging, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import importlib
        from painter_id.core.runner import run_stage
        importlib.import_module("stages.features").main()
        run_stage("train", importlib.import_module("stages.train").main)
    """)
    proc = run([sys.executable, "-c", script], tmp_path, env={"PYTHONPATH": str(REPO_ROOT)})

    assert "strategy MirroredStrategy: 2 replica(s)" in proc.stderr
    summary = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert summary["epochs_run"] == 1 and np.isfinite(summary["best_val_loss"])
    model = keras.models.load_model(tmp_path / "models" / "model.keras")
    assert model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0).shape == (2, 3)


def test_mixed_precision_trains_in_bfloat16_with_a_float32_softmax(tmp_path, monkeypatch):
    make_resized_dataset(tmp_path)
    setup(tmp_path, monkeypatch, {"model": {"backbone": "simple_cnn", "frozen_layers": 0},
                                  "train": {"epochs": 1, "precision": "mixed_bfloat16", "jit_compile": True}})
    try:
        stage_main("features", "train")
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the policy is per process
    model = keras.models.load_model("models/model.keras")
    conv = next(layer for layer in model.get_layer("simple_cnn").layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.dtype_policy.name == "mixed_bfloat16" and conv.compute_dtype == "bfloat16"
    assert model.get_layer("artist").dtype_policy.name == "float32"
    assert np.isfinite(json.loads(Path("metrics/train.json").read_text())["best_val_loss"])


def test_malformed_tf_config_is_one_line(monkeypatch):
    from painter_id.model import distribute

    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(PipelineError, match="TF_CONFIG: not a valid cluster description"):
        distribute.make_strategy("multi_worker")
