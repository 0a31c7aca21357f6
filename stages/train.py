"""Stage ``train``: learn to tell the artists apart, from the pixels or from a frozen backbone's features.

Reads ``data/resized/``, ``data/features/`` and ``params.yaml:model,train,mlflow``; writes
``models/`` (the model: ``model.keras``, or ``extractor.keras`` and ``head.npz`` for a head
solved on features; ``labels.json``; ``preprocessing.json``, the image size and resize mode;
``run.json``, the MLflow run), ``metrics/train.json``, ``metrics/history.csv`` and
``metrics/cv.json``, and records the run in MLflow (params, dataset, per-epoch metrics, the
MLflow Model). When ``data/features`` holds features, the head is solved on them with NumPy
and no TensorFlow starts; otherwise the network trains from the pixels with Keras. Under
``train.strategy: multi_worker`` only the chief records anything.
"""

from __future__ import annotations

import logging
import time

import mlflow

from painter_id.core.atomic import atomic_dir, ensure_writable_dir, write_csv, write_json
from painter_id.core.params import Params, load_all
from painter_id.core.paths import (
    CV_FILE,
    HISTORY,
    LABELS_FILE,
    MODELS_DIR,
    PARAMS_FILE,
    PREPROCESSING_FILE,
    RUN_FILE,
    TRAIN_METRICS,
)
from painter_id.core.runner import run_stage
from painter_id.data import resized
from painter_id.data.inputs import read_features_info
from painter_id.model import cluster, fitting, history
from painter_id.model.registry import check_size, get_backbone
from painter_id.tracking import runs, store

log = logging.getLogger(__name__)


def record(params: Params, experiment: tuple[str, str], splits: tuple, labels: list[str], info: dict,
           cv: dict) -> None:
    """Fit inside one MLflow run, then write ``models/`` and ``metrics/`` and log the run's results and model."""
    (uri, experiment_id), (train, test, y, split) = experiment, splits
    client = mlflow.MlflowClient(uri)
    name = runs.run_name(params.model.backbone, params.model.frozen_layers)
    with runs.start_run(client, experiment_id, name, runs.run_tags()) as run_id:
        runs.log_params(client, run_id, params.flat())
        runs.log_dataset(client, run_id, resized.dataset(train, test, params.data.describe()))
        start, on_rows = time.monotonic(), (lambda rows: runs.log_history(client, run_id, rows))
        fitted = (fitting.on_features(params, y, split, len(labels), info, on_rows) if info["used"]
                  else fitting.from_pixels(params, train, y, split, len(labels), on_rows))
        seconds, summary = time.monotonic() - start, history.summarize(fitted.rows, fitted.monitor)
        log.info(history.describe(summary, history.best_row(fitted.rows, summary)))
        runs.log_params(client, run_id, {f"model.{key}": value for key, value in fitted.sizes.items()})
        run_file = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri, "model_id": None}
        with atomic_dir(MODELS_DIR) as folder:
            fitted.write(folder)
            write_json(folder / LABELS_FILE.name, labels)
            write_json(folder / PREPROCESSING_FILE.name, {"size": train.size, "mode": resized.read_format()["mode"]})
            write_json(folder / RUN_FILE.name, run_file)
        write_csv(HISTORY, history.HISTORY_COLUMNS, ([row[c] for c in history.HISTORY_COLUMNS] for row in fitted.rows))
        write_json(TRAIN_METRICS, summary)
        write_json(CV_FILE, cv)
        runs.log_training(client, run_id, summary, history.best_row(fitted.rows, summary), cv, seconds)
        runs.log_artifacts(client, run_id, [PARAMS_FILE, HISTORY, CV_FILE, LABELS_FILE, PREPROCESSING_FILE])
        if params.mlflow.log_model:
            from painter_id.tracking import mlflow_model  # slow to import: after a params mistake could be reported

            write_json(RUN_FILE, {**run_file, "model_id": mlflow_model.log_model_or_warn(uri, run_id, train.images)})


def main() -> None:
    params = load_all()
    train, test = resized.load_split("train"), resized.load_split("test", allow_empty=True)
    info = read_features_info()
    if not info["used"]:  # before the store is touched: a params mistake costs nothing
        check_size(get_backbone(params.model.backbone), train.size)
    labels = resized.class_names(train.artists)
    y = resized.encode(train.artists, labels, str(resized.table_path("train")))
    split = resized.validation_split(train, params.train.validation_split, params.train.seed)
    log.info("%d training rows, %d validation rows (originals held out), %d artists; %s", len(split[0]),
             len(split[1]), len(labels), "head solved on the features" if info["used"] else "trained from the pixels")
    # A head on features is solved by one process; multi_worker training is from the pixels.
    chief = info["used"] or cluster.is_chief(params.train.strategy)
    if chief:
        for output in (MODELS_DIR, TRAIN_METRICS):
            ensure_writable_dir(output)
        experiment = store.prepare_store(params.mlflow)
    cv = fitting.cross_validate(params, train, y, len(labels), info)
    if chief:
        record(params, experiment, (train, test, y, split), labels, info, cv)
    else:
        from painter_id.model.training import train_as_worker

        train_as_worker(params, train, y, split, len(labels))


if __name__ == "__main__":
    run_stage("train", main)
