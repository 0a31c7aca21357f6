"""Stage ``train``: fine-tune a Keras backbone (or train ``simple_cnn``) to tell the artists apart.

Reads ``data/resized/train.{npy,csv}``, ``data/resized/format.json`` and
``params.yaml:model,train,mlflow``; writes ``models/model.keras`` (augmentation and
preprocessing inside: it takes raw 0..255 RGB pixels), ``models/labels.json``,
``models/preprocessing.json`` (the image size and resize mode, so predict brings new images
to the model exactly as resize did), ``models/run.json``, ``metrics/train.json``,
``metrics/history.csv`` and ``metrics/cv.json``, and records the run (params, per-epoch
metrics) in MLflow, with the model as an MLflow Model when ``mlflow.log_model`` is on. Under
``train.strategy: multi_worker`` only the chief does that; the other workers train in
lockstep with it and write nothing.

The network and how it is fitted live in :mod:`painter_id.model` (``training``,
``crossval``); this module reads, calls and writes.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

import mlflow

from painter_id.core.atomic import ensure_writable_dir, write_csv, write_json
from painter_id.core.params import Params, load_all
from painter_id.core.paths import (
    CV_FILE,
    HISTORY,
    LABELS_FILE,
    MODEL_FILE,
    PARAMS_FILE,
    PREPROCESSING_FILE,
    RUN_FILE,
    TRAIN_METRICS,
)
from painter_id.core.runner import run_stage
from painter_id.data import resized
from painter_id.model import distribute
from painter_id.model.backbones import check_size, get_backbone
from painter_id.model.crossval import cross_validate
from painter_id.model.network import Network, save_model
from painter_id.model.training import HISTORY_COLUMNS, EpochLog, FitInputs, network_params, prepare_fit, summarize, train
from painter_id.tracking import runs, store

log = logging.getLogger(__name__)


def save_outputs(model, labels: list[str], image_format: dict, rows: list[dict], summary: dict, cv: dict) -> None:
    """Write ``models/`` (but ``run.json``) and ``metrics/``, each file atomically."""
    save_model(model, MODEL_FILE)
    write_json(LABELS_FILE, labels)
    write_json(PREPROCESSING_FILE, {"size": image_format["size"], "mode": image_format["mode"]})
    write_csv(HISTORY, HISTORY_COLUMNS, ([row[c] for c in HISTORY_COLUMNS] for row in rows))
    write_json(TRAIN_METRICS, summary)
    write_json(CV_FILE, cv)


def train_as_worker(net: Network, inputs: FitInputs, params: Params) -> None:
    """A non-chief ``multi_worker`` task: train in lockstep with the chief and keep nothing.

    TensorFlow wants every worker to take part in saving, so the model goes to a temporary
    folder that is deleted: ``models/``, ``metrics/`` and the MLflow run are the chief's alone.
    """
    train(net, inputs, params, EpochLog())
    with tempfile.TemporaryDirectory(prefix="painter-id-worker-") as folder:
        save_model(net.model, Path(folder) / MODEL_FILE.name)
    log.info("worker done; the chief records the run and writes models/ and metrics/")


def record_training(net: Network, inputs: FitInputs, params: Params, experiment: tuple[str, str],
                    data: tuple[resized.Split, list, dict], cv: dict) -> None:
    """Train inside one MLflow run, then write ``models/``, ``metrics/`` and the run's artifacts and model.

    ``experiment``: the store's URI and the experiment's id; ``data``: the training split, the
    class names and the image format (``format.json``); ``cv``: the cross-validation summary.
    """
    uri, experiment_id = experiment
    split_data, labels, image_format = data
    client = mlflow.MlflowClient(uri)
    name = runs.run_name(net.entry.name, net.frozen)
    with runs.start_run(client, experiment_id, name, runs.run_tags()) as run_id:
        runs.log_params(client, run_id, {**params.flat(), **network_params(net, inputs)})
        epoch_log = EpochLog(lambda rows: runs.log_history(client, run_id, rows))
        start = time.monotonic()
        monitor = train(net, inputs, params, epoch_log)
        summary = summarize(epoch_log.rows, time.monotonic() - start, net, monitor)
        best = epoch_log.rows[summary["best_epoch"] - 1]
        log.info("best epoch %d of %d: %s", summary["best_epoch"], summary["epochs_run"],
                 ", ".join(f"{k} {best[k]:.3f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                           if not math.isnan(best[k])))

        save_outputs(net.model, labels, image_format, epoch_log.rows, summary, cv)
        # The best epoch's own loss and accuracy too: painter-compare shows them beside train.best_epoch.
        at_best = {"train.best_loss": best["loss"], "train.best_accuracy": best["accuracy"]}
        runs.log_metrics(client, run_id, {**{f"train.{k}": v for k, v in summary.items() if v is not None},
                                          **{k: v for k, v in at_best.items() if not math.isnan(v)},
                                          **{f"cv.{k}": v for k, v in cv.items()}})
        runs.log_artifacts(client, run_id, [PARAMS_FILE, HISTORY, CV_FILE, LABELS_FILE, PREPROCESSING_FILE])
        model_id = None
        if params.mlflow.log_model:
            # Imported here: mlflow.pyfunc is slow to import, and a params mistake must be a line before that.
            from painter_id.tracking import mlflow_model

            model_id = mlflow_model.log_model_or_warn(uri, run_id, split_data.images)
        write_json(RUN_FILE, {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri,
                              "model_id": model_id})


def main() -> None:
    params = load_all()
    data = resized.load_split("train")
    image_format = resized.read_format()
    check_size(get_backbone(params.model.backbone), data.size)  # before the store is touched: a params mistake costs nothing
    chief = distribute.is_chief(params.train.strategy)
    if chief:
        for output in (MODEL_FILE, TRAIN_METRICS):
            ensure_writable_dir(output)
        experiment = store.prepare_store(params.mlflow)

    labels = resized.class_names(data.artists)
    y = resized.encode(data.artists, labels, str(resized.table_path("train")))
    split = resized.validation_split(data, params.train.validation_split, params.train.seed)
    log.info("%d training rows, %d validation rows (originals held out), %d artists",
             len(split[0]), len(split[1]), len(labels))
    net, inputs = prepare_fit(params, data, y, split, len(labels))
    if inputs.solver == "lbfgs":
        cv = cross_validate(params, data, y, len(labels), solved=(net, inputs))
    else:
        cv = cross_validate(params, data, y, len(labels))
        if params.train.cv_folds:  # the folds cleared Keras' session: the final network is built afresh
            net, inputs = prepare_fit(params, data, y, split, len(labels))
    if chief:
        record_training(net, inputs, params, experiment, (data, labels, image_format), cv)
    else:
        train_as_worker(net, inputs, params)


if __name__ == "__main__":
    run_stage("train", main)
