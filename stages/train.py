"""Stage ``train``: fine-tune a Keras backbone (or train ``simple_cnn``) to tell the artists apart.

Reads ``data/resized/train.{npy,csv}``, ``data/resized/format.json`` and
``params.yaml:model,train,mlflow``; writes ``models/model.keras`` (augmentation and
preprocessing inside: it takes raw 0..255 RGB pixels), ``models/labels.json``,
``models/preprocessing.json`` (the image size and resize mode of the training images, so
predict brings new images to the model exactly as resize did),
``models/run.json``, ``metrics/train.json``, ``metrics/history.csv`` and ``metrics/cv.json``, and records the
run (params, per-epoch metrics) in MLflow, with the model as an MLflow Model when
``mlflow.log_model`` is on (see :mod:`painter_id.mlflow_model`). Under
``train.strategy: multi_worker`` only the chief does that; the other workers train in
lockstep with it and write nothing.

With the feature cache in use and no dropout, ``train.head_solver`` fits the head with
full-batch L-BFGS (:mod:`painter_id.head_fit`) instead of mini-batch epochs. With
``train.cv_folds: k`` the stage first trains and scores k stratified folds of the training
originals (:mod:`painter_id.crossval`), fresh weights each, then the final model on every row.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import keras
import mlflow
import numpy as np
from mlflow.entities import Metric
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from painter_id import crossval, distribute, feature_cache, head_fit, model_files, resized, style, tracking
from painter_id.atomic import atomic_path, ensure_writable_dir, write_csv, write_json
from painter_id.backbones import (Backbone, Preprocess, build_backbone, check_size, freeze, get_backbone,
                                  resolve_weights)
from painter_id.errors import PipelineError, first_line
from painter_id.params import PARAMS_FILE, ModelParams, Params, TrainParams, load_all
from painter_id.progress import Progress
from painter_id.runner import run_stage
from painter_id.workspace import main_workspace

log = logging.getLogger(__name__)

TRAIN_METRICS = Path("metrics/train.json")
HISTORY = Path("metrics/history.csv")
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
CV_FILE = Path("metrics/cv.json")
# MLflow's log_batch takes at most 1000 metrics per call.
MLFLOW_BATCH = 1000


def augmentation_layers(params: TrainParams) -> list[keras.layers.Layer]:
    """The random augmentation layers ``train.*`` switches on; active only while fitting."""
    seed = params.seed
    layers = []
    if params.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="flip"))
    if params.rotation > 0:
        layers.append(keras.layers.RandomRotation(params.rotation, seed=seed + 1, name="rotation"))
    if params.zoom > 0:
        layers.append(keras.layers.RandomZoom(params.zoom, seed=seed + 2, name="zoom"))
    if params.contrast > 0:
        layers.append(keras.layers.RandomContrast(params.contrast, seed=seed + 3, name="contrast"))
    return layers


def build_model(entry: Backbone, size: int, n_classes: int, model_params: ModelParams,
                train_params: TrainParams, root: Optional[Path] = None) -> tuple[keras.Model, keras.Model, int]:
    """Input -> augmentation -> :class:`Preprocess` -> backbone -> pooling, dropout, softmax.

    With ``model.pooled_layers`` the layer named ``pool`` concatenates the pooled outputs of
    those backbone layers and of its last one (``model.pooling``), with ``model.gram_layers``
    their Gram matrices, at each of ``model.scales`` (:mod:`painter_id.style`). Returns
    ``(model, backbone, frozen)`` where ``frozen`` is the resolved ``model.frozen_layers``.
    """
    # A relative weights path means the same file in a queued experiment's copy of the repo.
    weights = resolve_weights(model_params.weights, (root or main_workspace()).absolute())
    backbone = build_backbone(entry, size, weights, model_params.alpha, any_size=model_params.scales != (1.0,))
    frozen = freeze(backbone, model_params.frozen_layers)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = inputs
    for layer in augmentation_layers(train_params):
        x = layer(x)
    x = Preprocess(entry.preprocess, name="preprocess")(x)
    x = style.pooled_features(backbone, x, model_params, size, entry.min_size)
    x = keras.layers.Dropout(model_params.dropout, seed=train_params.seed, name="dropout")(x)
    l2 = keras.regularizers.L2(model_params.l2) if model_params.l2 else None
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", kernel_regularizer=l2,
                                 name="artist")(x)
    return keras.Model(inputs, outputs, name=f"{entry.name}_painter"), backbone, frozen


@dataclass(frozen=True)
class Network:
    """The model being trained, its backbone, the registry entry it was built from, and the layers frozen."""

    entry: Backbone
    model: keras.Model
    backbone: keras.Model
    frozen: int


def make_optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    """The optimizer ``train.optimizer`` names, at ``train.learning_rate``."""
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(params.learning_rate, momentum=params.momentum)
    if params.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(params.learning_rate)
    return keras.optimizers.Adam(params.learning_rate)


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> Optional[dict[int, float]]:
    """``balanced`` weights (sklearn) so rare artists count as much as common ones; ``none``: None."""
    if mode == "none":
        return None
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    # Classes without training rows never occur as targets; weight 1 keeps Keras happy.
    table = {i: 1.0 for i in range(n_classes)}
    table.update({int(c): float(w) for c, w in zip(present, weights)})
    return table


def count_params(weights: list) -> int:
    """Number of scalars in a list of Keras variables."""
    return int(sum(math.prod(w.shape) for w in weights))


class EpochLog(keras.callbacks.Callback):
    """Collects one history row per epoch and logs it to the MLflow run (step = epoch)."""

    def __init__(self, client: Optional[mlflow.MlflowClient], run_id: Optional[str]):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = logs or {}
        # Read before ReduceLROnPlateau (later in the callback list) lowers it: the rate of this epoch.
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {key: float(logs.get(key, float("nan"))) for key in HISTORY_COLUMNS[1:-1]}
        row["learning_rate"] = round(lr, 10)  # float32 noise: 0.0010000000474974513
        self.rows.append({"epoch": epoch + 1, **row})
        # Logged as each epoch ends: a long training shows its curves in MLflow while it runs.
        self.log_rows(self.rows[-1:])

    def log_rows(self, rows: list[dict[str, float]]) -> None:
        """Log ``rows`` (step = their epoch) in as few store calls as MLflow allows; warn if the store fails."""
        if self.client is None or not rows:  # a non-chief worker or a fold: the final run logs its own
            return
        now = int(time.time() * 1000)
        # Without a validation set there is no val_* (and the solver has no learning rate): nothing to chart.
        metrics = [Metric(key, value, now, int(row["epoch"])) for row in rows for key, value in row.items()
                   if key != "epoch" and not math.isnan(value)]
        try:
            for start in range(0, len(metrics), MLFLOW_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[start:start + MLFLOW_BATCH])
        except Exception as exc:  # a busy store must not cost hours of training; history.csv has it all
            log.warning("MLflow: epoch %d metrics not logged (%s)", int(rows[0]["epoch"]), first_line(exc)[:200])


def summarize(rows: list[dict[str, float]], seconds: float, model: keras.Model, backbone: keras.Model,
              frozen: int, monitor: Optional[str] = "val_loss") -> dict:
    """``metrics/train.json``: the best epoch (whose weights are kept) and the model size.

    The best epoch has the lowest ``monitor``: ``val_loss``, or ``loss`` when nothing is held
    out for validation (``train.validation_split: 0``; the val_* metrics are then null).
    ``monitor`` None: the last epoch (the L-BFGS solver keeps its last iterate, the optimum).
    """
    losses = np.array([row[monitor] for row in rows], dtype=float) if monitor else np.array([np.nan])
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else len(rows) - 1

    def finite(value: float) -> Optional[float]:
        return None if math.isnan(value) else value

    return {
        "best_epoch": best + 1,
        "epochs_run": len(rows),
        "best_val_accuracy": finite(rows[best]["val_accuracy"]),
        "best_val_loss": finite(rows[best]["val_loss"]),
        "train_seconds": round(seconds, 1),
        "trainable_params": count_params(model.trainable_weights),
        "frozen_params": count_params(model.non_trainable_weights),
        "backbone_layers": len(backbone.layers),
        "frozen_layers": frozen,
    }


def training_inputs(net: Network, data: resized.Split, params: Params,
                    strategy: tf.distribute.Strategy) -> tuple[keras.Model, np.ndarray, str]:
    """The model ``fit`` trains and the rows it reads, and whether the feature cache was used.

    With the whole backbone frozen and no augmentation (see :mod:`painter_id.feature_cache`)
    that is the head alone on the backbone's cached features (``"hit"`` or ``"miss"``);
    otherwise the full model on the pixels (``"off"``).
    """
    model_params, train_params = params.model, params.train
    reason = feature_cache.skip_reason(train_params.feature_cache, net.backbone, net.frozen,
                                       augmentation_layers(train_params))
    if reason:
        log.info("feature cache not used: %s", reason)
        return net.model, data.images, "off"
    weights = resolve_weights(model_params.weights, main_workspace().absolute())
    parts = {
        "backbone": net.entry.name,
        "alpha": model_params.alpha if net.entry.takes_alpha else None,
        "weights": feature_cache.weights_identity(weights, train_params.seed),
        "size": data.size,
        "frozen_layers": net.frozen,
        "pooled_layers": list(model_params.pooled_layers),
        **style.cache_parts(model_params),
        "precision": train_params.precision,
        "data": feature_cache.data_identity([resized.array_path("train"), resized.table_path("train")]),
    }
    cached, hit = feature_cache.features_for(net.model, data.images, parts)
    with strategy.scope():
        head = feature_cache.head_model(net.model)
    return head, cached, "hit" if hit else "miss"


def build_network(params: Params, size: int, n_classes: int) -> tuple[Network, tf.distribute.Strategy]:
    """The distribution strategy, then the model built in its scope, seeded and at ``train.precision``."""
    train_params = params.train
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = distribute.make_strategy(train_params.strategy)
    distribute.check_batch_size(strategy, train_params.batch_size)
    keras.utils.set_random_seed(train_params.seed)
    tf.config.experimental.enable_op_determinism()
    # Keras keeps the policy per process: set every time, float32 included (the softmax stays float32).
    keras.mixed_precision.set_global_policy(train_params.precision)
    entry = get_backbone(params.model.backbone)
    with strategy.scope():
        model, backbone, frozen = build_model(entry, size, n_classes, params.model, train_params)
    log.info("backbone %s: %d layers, %d frozen; %d trainable / %d frozen params",
             entry.name, len(backbone.layers), frozen, count_params(model.trainable_weights),
             count_params(model.non_trainable_weights))
    return Network(entry, model, backbone, frozen), strategy


def network_params(net: Network, inputs: FitInputs) -> dict:
    """What MLflow records about the built network and how it was fitted, beside params.yaml."""
    return {
        "model.backbone_layers": len(net.backbone.layers),
        "model.frozen_layers_resolved": net.frozen,
        "model.trainable_params": count_params(net.model.trainable_weights),
        "model.frozen_params": count_params(net.model.non_trainable_weights),
        "train.feature_cache_used": inputs.cache,
        "train.head_solver_used": inputs.solver,
    }


def head_solver(params: Params, cache: str) -> str:
    """How the head is fitted: ``lbfgs`` (full batch, cached features) or ``minibatch`` (Keras epochs).

    ``train.head_solver: auto`` picks L-BFGS where it finds what the epochs converge to: the
    features cached, no dropout (a random mask every step is no full-batch objective) and
    ``model.l2`` above 0 (with 0 the optimum of separable rows lies at infinity, and where the
    epochs stop depends on the optimizer, which ``auto`` must not change).
    """
    mode = params.train.head_solver
    if mode == "minibatch":
        return mode
    if mode == "lbfgs" and (cache == "off" or params.model.dropout > 0):
        why = ("the feature cache is not used (the log line above says why)" if cache == "off"
               else f"model.dropout is {params.model.dropout}")
        raise PipelineError(f"params.yaml: train.head_solver is lbfgs but {why}; it fits only a frozen backbone's "
                            "head without dropout: fix that or set train.head_solver: minibatch")
    if mode == "lbfgs" or (cache != "off" and params.model.dropout == 0 and params.model.l2 > 0):
        return "lbfgs"
    return "minibatch"


def solve_head(net: Network, inputs: FitInputs, params: Params, epoch_log: EpochLog) -> None:
    """Fit the head on the cached features with L-BFGS and set it into ``net.model``'s ``artist`` layer.

    One history row per iteration: the objective on the training rows (``loss``, penalty
    included, as Keras reports it), their accuracy, and the same on the validation rows, if
    any (unweighted, as Keras validates). No early stopping: the L2 penalty regularises, and
    the last iterate, the optimum, is kept.
    """
    train_idx, val_idx = inputs.split
    n_classes = int(inputs.model.output_shape[-1])
    table = class_weights(inputs.y[train_idx], n_classes, params.train.class_weight)
    weight = None if table is None else np.array([table[c] for c in inputs.y[train_idx]])
    parts = {"": (np.asarray(inputs.x[train_idx], np.float64), inputs.y[train_idx], weight),
             "val_": (np.asarray(inputs.x[val_idx], np.float64), inputs.y[val_idx], None)}

    def on_iteration(kernel: np.ndarray, bias: np.ndarray) -> None:
        row = {"epoch": len(epoch_log.rows) + 1, "learning_rate": float("nan")}
        for prefix, (x, y, w) in parts.items():
            if not len(x):  # no validation rows: val_* stay empty, as in Keras' history
                row[f"{prefix}loss"] = row[f"{prefix}accuracy"] = float("nan")
                continue
            loss = head_fit.objective(kernel, bias, x, y, np.ones(len(x)) if w is None else w, params.model.l2)[0]
            row[f"{prefix}loss"] = loss
            row[f"{prefix}accuracy"] = float(np.mean((x @ kernel + bias).argmax(1) == y))
        epoch_log.rows.append(row)

    x, y, _ = parts[""]
    solution = head_fit.solve(x, y, n_classes, params.model.l2, weight, on_iteration)
    if not solution.iterations:  # already optimal at zero (features without signal): one row for the record
        on_iteration(solution.kernel.astype(np.float64), solution.bias.astype(np.float64))
    net.model.get_layer("artist").set_weights([solution.kernel, solution.bias])
    log.info("head solved by L-BFGS in %d iterations%s", solution.iterations,
             "" if solution.converged else f" (stopped at the cap of {head_fit.MAX_ITER}, not converged)")
    epoch_log.log_rows(epoch_log.rows)


def train_head(net: Network, inputs: FitInputs, params: Params, epoch_log: EpochLog) -> Optional[str]:
    """Fit the model the way ``inputs.solver`` says; return the loss that picks the best epoch (None: the last)."""
    if inputs.solver == "lbfgs":
        solve_head(net, inputs, params, epoch_log)
        return None
    return fit(inputs.model, inputs.x, inputs.y, inputs.split, params.train, epoch_log)


def fit(fit_model: keras.Model, x: np.ndarray, y: np.ndarray, split: tuple[np.ndarray, np.ndarray],
        params: TrainParams, epoch_log: EpochLog) -> str:
    """Compile and fit ``fit_model`` on rows ``split[0]``, validating on ``split[1]``; return the monitored loss.

    Without a validation set (``train.validation_split: 0``) the callbacks watch the training loss.
    """
    train_idx, val_idx = split
    train_ds = resized.make_dataset(x, y, train_idx, params.batch_size, seed=params.seed)
    val_ds = resized.make_dataset(x, y, val_idx, params.batch_size) if len(val_idx) else None
    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks = [
        epoch_log,
        keras.callbacks.EarlyStopping(monitor=monitor, patience=params.early_stopping_patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=params.reduce_lr_factor,
                                          patience=params.reduce_lr_patience, min_lr=params.min_learning_rate),
        Progress(),  # last: its per-epoch line shows what the others add to the logs (learning_rate)
    ]
    n_classes = int(fit_model.output_shape[-1])
    distribute.fit(fit_model, train_ds, validation_data=val_ds, epochs=params.epochs, shuffle=False,
                   class_weight=class_weights(y[train_idx], n_classes, params.class_weight),
                   callbacks=callbacks, verbose=0)
    return monitor


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        # Same layers, not compiled: the file holds no optimizer state (3x the weights with Adam).
        keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)


def save_outputs(model: keras.Model, labels: list[str], image_format: dict, rows: list[dict], summary: dict) -> None:
    """Write ``models/`` and ``metrics/`` (each file atomically)."""
    save_model(model, model_files.MODEL_FILE)
    write_json(model_files.LABELS_FILE, labels)
    write_json(model_files.PREPROCESSING_FILE, {"size": image_format["size"], "mode": image_format["mode"]})
    write_csv(HISTORY, HISTORY_COLUMNS, ([row[c] for c in HISTORY_COLUMNS] for row in rows))
    write_json(TRAIN_METRICS, summary)


@dataclass(frozen=True)
class FitInputs:
    """What ``fit`` trains on: the model it fits (whole, or the head on cached features), its rows and labels."""

    model: keras.Model
    x: np.ndarray
    y: np.ndarray
    split: tuple[np.ndarray, np.ndarray]
    cache: str  # feature cache: hit, miss or off
    solver: str  # head_solver: lbfgs or minibatch


def log_mlflow_model(uri: str, run_id: str, images: np.ndarray) -> Optional[str]:
    """Log ``models/`` as the run's MLflow Model and return its id; ``None`` (with a warning) if the store fails."""
    # Imported here: mlflow.pyfunc is slow to import and warns at import time, before a
    # params mistake could be reported on one line.
    from painter_id import mlflow_model

    try:
        return mlflow_model.log_model(uri, run_id, mlflow_model.example_image(images))
    except Exception as exc:  # the trained model is in models/ already: a busy store must not cost the training
        log.warning("MLflow: model not logged (%s); models/model.keras has it", first_line(exc)[:300])
        return None


def train_as_worker(net: Network, inputs: FitInputs, params: Params) -> None:
    """A non-chief ``multi_worker`` task: train in lockstep with the chief and keep nothing.

    TensorFlow wants every worker to take part in saving, so the model goes to a temporary
    folder that is deleted: ``models/``, ``metrics/`` and the MLflow run are the chief's alone.
    """
    train_head(net, inputs, params, EpochLog(None, None))
    with tempfile.TemporaryDirectory(prefix="painter-id-worker-") as folder:
        save_model(net.model, Path(folder) / model_files.MODEL_FILE.name)
    log.info("worker done; the chief records the run and writes models/ and metrics/")


def record_training(net: Network, inputs: FitInputs, params: Params, store: tuple[str, str],
                    data: tuple[resized.Split, list, dict], cv: dict) -> None:
    """Train inside one MLflow run, then write ``models/``, ``metrics/`` and the run's artifacts and model.

    ``data``: the training split, the class names and the image format (``format.json``);
    ``cv``: the cross-validation summary (``metrics/cv.json``), logged as ``cv.*`` metrics.
    """
    uri, experiment_id = store
    split_data, labels, image_format = data
    client = mlflow.MlflowClient(uri)
    name = tracking.run_name(net.entry.name, net.frozen)
    with tracking.start_run(client, experiment_id, name, tracking.run_tags()) as run_id:
        tracking.log_params(client, run_id, {**params.flat(), **network_params(net, inputs)})
        epoch_log = EpochLog(client, run_id)
        start = time.monotonic()
        monitor = train_head(net, inputs, params, epoch_log)
        summary = summarize(epoch_log.rows, time.monotonic() - start, net.model, net.backbone, net.frozen, monitor)
        best = epoch_log.rows[summary["best_epoch"] - 1]
        log.info("best epoch %d of %d: %s", summary["best_epoch"], summary["epochs_run"],
                 ", ".join(f"{k} {best[k]:.3f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                           if not math.isnan(best[k])))

        save_outputs(net.model, labels, image_format, epoch_log.rows, summary)
        write_json(CV_FILE, cv)
        # The best epoch's own loss and accuracy too: painter-compare shows them beside train.best_epoch.
        at_best = {"train.best_loss": best["loss"], "train.best_accuracy": best["accuracy"]}
        tracking.log_metrics(client, run_id, {**{f"train.{k}": v for k, v in summary.items() if v is not None},
                                              **{k: v for k, v in at_best.items() if not math.isnan(v)},
                                              **{f"cv.{k}": v for k, v in cv.items()}})
        tracking.log_artifacts(client, run_id, [PARAMS_FILE, HISTORY, CV_FILE, model_files.LABELS_FILE,
                                                  model_files.PREPROCESSING_FILE])
        model_id = log_mlflow_model(uri, run_id, split_data.images) if params.mlflow.log_model else None
        write_json(model_files.RUN_FILE, {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri,
                                          "model_id": model_id})


def prepare_fit(params: Params, data: resized.Split, y: np.ndarray, split: tuple[np.ndarray, np.ndarray],
                n_classes: int) -> tuple[Network, FitInputs]:
    """A freshly built (seeded) network and what fits it: the head on cached features or the whole model."""
    net, strategy = build_network(params, data.size, n_classes)
    fit_model, x, cache = training_inputs(net, data, params, strategy)
    solver = head_solver(params, cache)
    if solver == "minibatch":
        with strategy.scope():
            fit_model.compile(optimizer=make_optimizer(params.train), loss="sparse_categorical_crossentropy",
                              metrics=["accuracy"], jit_compile=params.train.jit_compile)
    return net, FitInputs(fit_model, x, y, split, cache, solver)


def predict_rows(model: keras.Model, x: np.ndarray, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities of ``model`` for ``x[rows]``, a batch at a time (``x`` may be memory-mapped pixels)."""
    parts = [np.asarray(model.predict_on_batch(np.asarray(x[rows[start:start + batch_size]])), dtype=np.float32)
             for start in range(0, len(rows), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, int(model.output_shape[-1])), np.float32)


def fold_split(data: resized.Split, rows: np.ndarray, params: TrainParams) -> tuple[np.ndarray, np.ndarray]:
    """``train.validation_split`` applied within a fold's training ``rows``, as the final model applies it to all."""
    subset = resized.Split(data.images, [data.paths[i] for i in rows], [data.artists[i] for i in rows],
                           [data.sources[i] for i in rows])
    train_idx, val_idx = resized.validation_split(subset, params.validation_split, params.seed)
    return rows[train_idx], rows[val_idx]


def cross_validate(params: Params, data: resized.Split, y: np.ndarray, n_classes: int,
                   solved: Optional[tuple[Network, FitInputs]] = None) -> dict:
    """Train and score ``train.cv_folds`` folds, each from fresh weights; ``{"folds": 0}`` when off.

    ``solved``: the final model's network and cached features when its head is solved by
    L-BFGS, which starts from zero and so needs no fresh weights: the folds reuse them instead
    of building the network and looking the features up again (seconds a fold).
    """
    k = params.train.cv_folds
    if not k:
        return {"folds": 0}
    scores = []
    start = time.monotonic()
    for fold, (train_rows, scored) in enumerate(crossval.fold_rows(data, k, params.train.seed), 1):
        split = fold_split(data, train_rows, params.train)
        net, inputs = ((solved[0], replace(solved[1], split=split)) if solved
                       else prepare_fit(params, data, y, split, n_classes))
        train_head(net, inputs, params, EpochLog(None, None))
        scores.append(crossval.score(y[scored], predict_rows(inputs.model, inputs.x, scored, params.train.batch_size)))
        log.info("fold %d/%d: accuracy %.3f, macro F1 %.3f on %d paintings", fold, k, scores[-1]["accuracy"],
                 scores[-1]["macro_f1"], len(scored))
        if not solved:
            keras.backend.clear_session()  # the fold's graphs and weights: the next fold builds its own
    summary = {**crossval.summarize_folds(scores), "seconds": round(time.monotonic() - start, 1)}
    log.info("%d-fold cross-validation over %d paintings: accuracy %.3f +- %.3f (standard error), macro F1 %.3f, "
             "top-5 %.3f", k, summary["paintings"], summary["accuracy_mean"], summary["accuracy_sem"],
             summary["macro_f1_mean"], summary["top5_accuracy_mean"])
    return summary


def main() -> None:
    params = load_all()
    train_params = params.train
    entry = get_backbone(params.model.backbone)
    data = resized.load_split("train")
    image_format = resized.read_format()
    check_size(entry, data.size)  # before the MLflow store is touched: a params mistake costs nothing
    chief = distribute.is_chief(train_params.strategy)
    if chief:
        for output in (model_files.MODEL_FILE, TRAIN_METRICS):
            ensure_writable_dir(output)
        store = tracking.prepare_store(params.mlflow)

    labels = resized.class_names(data.artists)
    y = resized.encode(data.artists, labels, str(resized.table_path("train")))
    split = resized.validation_split(data, train_params.validation_split, train_params.seed)
    log.info("%d training rows, %d validation rows (originals held out), %d artists",
             len(split[0]), len(split[1]), len(labels))
    net, inputs = prepare_fit(params, data, y, split, len(labels))
    if inputs.solver == "lbfgs":
        cv = cross_validate(params, data, y, len(labels), solved=(net, inputs))
    else:
        cv = cross_validate(params, data, y, len(labels))
        if train_params.cv_folds:  # the folds cleared Keras' session: the final network is built afresh
            net, inputs = prepare_fit(params, data, y, split, len(labels))
    if chief:
        record_training(net, inputs, params, store, (data, labels, image_format), cv)
    else:
        train_as_worker(net, inputs, params)


if __name__ == "__main__":
    run_stage("train", main)
